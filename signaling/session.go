package signaling

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/pion/webrtc/v4"
	"golang.org/x/time/rate"
)

// outQueue bounds the messages waiting for a slow client; past it the socket is closed.
const outQueue = 256

// maxStrikes is how many rate-limited messages a socket may send before it is closed.
const maxStrikes = 100

type outMsg struct {
	m     Message
	close bool // close the socket after writing m
}

// session is one WebSocket: at most one participant.
type session struct {
	srv    *Server
	conn   *websocket.Conn
	lim    Limits
	out    chan outMsg
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool      // no more sends
	closing bool      // a message that closes the socket is queued
	ready   bool      // joined reply sent; SFU messages flow
	held    []Message // SFU messages produced before the joined reply
	p       *sfu.Participant
	release func() // ends the participant's ICE server credentials
}

func newSession(s *Server, conn *websocket.Conn) *session {
	return &session{srv: s, conn: conn, lim: s.Limits.withDefaults(), out: make(chan outMsg, outQueue)}
}

func (s *session) run(parent context.Context) {
	ctx, cancel := context.WithCancel(parent)
	s.cancel = cancel
	defer cancel()
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		s.writer(ctx)
	}()
	s.readLoop(ctx)

	s.mu.Lock()
	p := s.p
	s.closed = true
	closing := s.closing
	s.mu.Unlock()
	if p != nil {
		p.Leave() // a dropped socket cleans up its participant
	}
	s.mu.Lock()
	release := s.release
	s.mu.Unlock()
	if release != nil {
		release() // a left participant's TURN credential stops working
	}
	if closing {
		// A goodbye is queued (leave's ack and bye): let the writer send what
		// is queued before it, then close; only a stuck client is cut short.
		t := time.NewTimer(5 * time.Second)
		select {
		case <-writerDone:
		case <-t.C:
		}
		t.Stop()
	}
	cancel()
	<-writerDone
	_ = s.conn.CloseNow()
}

func (s *session) readLoop(ctx context.Context) {
	limiter := rate.NewLimiter(rate.Limit(s.lim.RatePerSec), s.lim.Burst)
	strikes := 0
	// One deadline for the whole time before a successful join: pings do not
	// keep an unauthenticated socket open.
	joinBy := time.Now().Add(s.lim.JoinTimeout)
	for {
		rctx, rcancel := ctx, context.CancelFunc(func() {})
		if s.participant() == nil {
			rctx, rcancel = context.WithDeadline(ctx, joinBy)
		}
		typ, data, err := s.conn.Read(rctx)
		rcancel()
		if err != nil {
			return
		}
		if !limiter.Allow() {
			strikes++
			s.reply(errMsg("", CodeRateLimited, fmt.Sprintf("more than %.0f messages per second; message dropped", s.lim.RatePerSec)))
			if strikes > maxStrikes {
				_ = s.conn.Close(websocket.StatusPolicyViolation, "rate limit")
				return
			}
			continue
		}
		if typ != websocket.MessageText {
			s.reply(errMsg("", CodeBadMessage, "messages are JSON text frames"))
			continue
		}
		if len(data) > s.lim.MaxMessage {
			s.reply(errMsg("", CodeTooLarge, fmt.Sprintf("message of %d bytes is over the %d-byte limit", len(data), s.lim.MaxMessage)))
			continue
		}
		var m Message
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&m); err != nil {
			s.reply(errMsg("", CodeBadMessage, "malformed message: "+err.Error()))
			continue
		}
		if dec.More() {
			s.reply(errMsg("", CodeBadMessage, "one JSON object per message"))
			continue
		}
		if stop := s.handle(m); stop {
			return
		}
	}
}

func (s *session) participant() *sfu.Participant {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.p
}

// writer sends queued messages in order; it is the only goroutine that writes.
func (s *session) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-s.out:
			b, err := json.Marshal(o.m)
			if err != nil {
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = s.conn.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil || o.close {
				if o.close {
					_ = s.conn.Close(websocket.StatusNormalClosure, o.m.Reason)
				}
				s.cancel()
				return
			}
		}
	}
}

// enqueue queues m for the writer; a client that does not read is cut off
// rather than let its queue grow.
func (s *session) enqueue(m Message, closeAfter bool) {
	if s.closed {
		return
	}
	select {
	case s.out <- outMsg{m: m, close: closeAfter}:
		if closeAfter {
			s.closed, s.closing = true, true
		}
	default:
		s.closed = true
		s.srv.log().Warn("signaling client too slow; closing its socket")
		s.cancel()
	}
}

// reply sends a reply to a request (or a protocol error) at once.
func (s *session) reply(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enqueue(m, false)
}

// push sends a message from the SFU, held back until the joined reply is out.
func (s *session) push(m Message, closeAfter bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready && !closeAfter {
		s.held = append(s.held, m)
		return
	}
	s.enqueue(m, closeAfter)
}

func (s *session) shutdown() {
	s.push(Message{Type: TypeBye, Reason: "shutdown"}, true)
}

func errMsg(id, code, text string) Message {
	return Message{Type: TypeError, ID: id, Code: code, Message: text}
}

// Offer implements sfu.Signaler.
func (s *session) Offer(sdp string) {
	s.push(Message{Type: TypeOffer, PC: string(sfu.PCSubscribe), SDP: sdp}, false)
}

// Candidate implements sfu.Signaler.
func (s *session) Candidate(pc sfu.PC, c webrtc.ICECandidateInit) {
	s.push(Message{Type: TypeCandidate, PC: string(pc), Candidate: &c}, false)
}

// Peer implements sfu.Signaler.
func (s *session) Peer(ev sfu.PeerEvent) {
	s.push(Message{Type: TypeParticipant, Event: ev.Event, Participant: &Peer{ID: ev.ID, Role: ev.Role, Audio: ev.Audio, Video: ev.Video}}, false)
}

// Bye implements sfu.Signaler.
func (s *session) Bye(reason string) {
	s.push(Message{Type: TypeBye, Reason: reason}, true)
}
