package signaling

import (
	"context"
	"encoding/json"
	"errors"
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

// outMsg travels by pointer: a queue of outQueue values would hold
// outQueue whole Messages (~100 KB) per socket for its lifetime.
type outMsg struct {
	m     Message
	close bool // close the socket after writing m

	// closeOnly closes the socket with status without writing a message.
	closeOnly bool
	status    websocket.StatusCode
}

// session is one WebSocket: at most one participant.
type session struct {
	srv    *Server
	conn   *websocket.Conn
	lim    Limits
	out    chan *outMsg
	cancel context.CancelFunc

	mu      sync.Mutex
	closed  bool      // no more sends
	closing bool      // a message that closes the socket is queued
	ready   bool      // joined reply sent; SFU messages flow
	held    []Message // SFU messages produced before the joined reply
	refused string    // the error code that answered the frame being handled
	p       *sfu.Participant
	relay   *relay // p's signaler, which a resume moves to another session
	release func() // ends the participant's ICE server credentials
}

func newSession(s *Server, conn *websocket.Conn) *session {
	return &session{srv: s, conn: conn, lim: s.Limits.withDefaults(), out: make(chan *outMsg, outQueue)}
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
	keepaliveDone := make(chan struct{})
	go func() {
		defer close(keepaliveDone)
		s.keepalive(ctx)
	}()
	s.readLoop(ctx)

	s.mu.Lock()
	p := s.p
	s.p = nil // taken: a resume racing this end finds nothing to take over
	s.closed = true
	closing := s.closing
	s.mu.Unlock()
	if p != nil {
		s.dropSeat()
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
	<-keepaliveDone
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
			id := ""
			if len(data) <= s.lim.MaxMessage {
				id = requestID(data)
			}
			s.reply(errMsg(id, CodeRateLimited, fmt.Sprintf("more than %g messages per second; message dropped", s.lim.RatePerSec)))
			if strikes > maxStrikes {
				// The replies already queued still go out, then the close.
				s.closeAfterQueued(websocket.StatusPolicyViolation, "rate limit")
				return
			}
			continue
		}
		if typ != websocket.MessageText {
			s.reply(errMsg(requestID(data), CodeBadMessage, "messages are JSON text frames"))
			continue
		}
		if len(data) > s.lim.MaxMessage {
			s.reply(errMsg(requestID(data), CodeTooLarge, fmt.Sprintf("message of %d bytes is over the %d-byte limit", len(data), s.lim.MaxMessage)))
			continue
		}
		s.mu.Lock()
		s.refused = ""
		s.mu.Unlock()
		stop := s.frame(data)
		if h := s.srv.Hooks.Received; h != nil {
			s.mu.Lock()
			code := s.refused
			s.mu.Unlock()
			h(data, code)
		}
		if stop {
			return
		}
	}
}

// frame decodes and handles one text frame within the limits; it returns
// true when the socket should close.
func (s *session) frame(data []byte) bool {
	m, err := decode(data)
	if errors.Is(err, errBadRequestID) {
		s.reply(errMsg("", CodeBadRequest, err.Error()))
		return false
	}
	if err != nil {
		s.reply(errMsg(requestID(data), CodeBadMessage, "malformed message: "+err.Error()))
		return false
	}
	return s.handle(m)
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
			if o.closeOnly {
				_ = s.conn.Close(o.status, o.m.Reason)
				s.cancel()
				return
			}
			b, err := json.Marshal(o.m)
			if err != nil {
				continue
			}
			if h := s.srv.Hooks.Sent; h != nil {
				h(b)
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
	case s.out <- &outMsg{m: m, close: closeAfter}:
		if closeAfter {
			s.closed, s.closing = true, true
		}
	default:
		s.closed = true
		s.srv.log().Warn("signaling client too slow; closing its socket")
		s.cancel()
	}
}

// closeAfterQueued closes the socket with status once everything queued
// before it has been written.
func (s *session) closeAfterQueued(status websocket.StatusCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	select {
	case s.out <- &outMsg{closeOnly: true, status: status, m: Message{Reason: reason}}:
		s.closed, s.closing = true, true
	default:
		s.closed = true
		s.cancel()
	}
}

// reply sends a reply to a request (or a protocol error) at once.
func (s *session) reply(m Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m.Type == TypeError {
		s.refused = m.Code
	}
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
	s.push(Message{Type: TypeBye, Reason: ByeShutdown}, true)
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
