package signaling

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"

	"github.com/medcall/medcall/sfu"
	"github.com/pion/webrtc/v4"
)

// Resume (PROTOCOL.md, "Network change"): a client whose network changed
// opens a new socket and joins with the secret its joined reply gave it.
// The participant — its peer connections, tracks, downtracks and place in
// the recording — moves to the new socket; nobody sees it leave. The SFU
// talks to a participant through a relay that outlives any one socket.

// relay is the participant's sfu.Signaler: it forwards to the session that
// holds the participant now.
type relay struct {
	srv    *Server
	secret string

	mu sync.Mutex
	s  *session
}

func (r *relay) current() *session {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s
}

// Offer implements sfu.Signaler.
func (r *relay) Offer(sdp string) { r.current().Offer(sdp) }

// Candidate implements sfu.Signaler.
func (r *relay) Candidate(pc sfu.PC, c webrtc.ICECandidateInit) { r.current().Candidate(pc, c) }

// Peer implements sfu.Signaler.
func (r *relay) Peer(ev sfu.PeerEvent) { r.current().Peer(ev) }

// Bye implements sfu.Signaler: the participant is gone, so it can no longer
// be resumed.
func (r *relay) Bye(reason string) {
	r.srv.seats.drop(r.secret)
	r.current().Bye(reason)
}

// seat is a participant that a new socket may resume.
type seat struct {
	p        *sfu.Participant
	relay    *relay
	cid, sub string
}

// seatBook holds the resumable participants by secret. The zero value is ready.
type seatBook struct {
	mu    sync.Mutex
	seats map[string]*seat
}

func (b *seatBook) add(st *seat) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.seats == nil {
		b.seats = map[string]*seat{}
	}
	b.seats[st.relay.secret] = st
}

func (b *seatBook) drop(secret string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.seats, secret)
}

// find returns the seat of secret if it is cid's participant sub; the
// secret is compared in constant time.
func (b *seatBook) find(secret, cid, sub string) *seat {
	b.mu.Lock()
	defer b.mu.Unlock()
	for k, st := range b.seats {
		if subtle.ConstantTimeCompare([]byte(k), []byte(secret)) == 1 && st.cid == cid && st.sub == sub {
			return st
		}
	}
	return nil
}

// newSecret is a resume secret: 128 random bits, URL-safe base64.
func newSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// detach hands the session's participant and its ICE server release to a
// resuming session and closes this socket without removing the participant.
// ok is false when the participant already left through this session.
func (s *session) detach() (release func(), ok bool) {
	s.mu.Lock()
	ok = s.p != nil
	s.p = nil
	release = s.release
	s.release = nil
	s.mu.Unlock()
	if ok {
		s.push(Message{Type: TypeBye, Reason: ByeReplaced}, true)
	}
	return release, ok
}

// resume moves the participant of seat st to this session and answers the
// join with joined{resumed:true}; the caller has verified the token. It
// returns false, changing nothing, when the participant has already gone.
func (s *session) resume(m Message, st *seat, recording bool) bool {
	old := st.relay.current()
	oldRelease, ok := old.detach()
	if !ok || st.p.Gone() {
		if oldRelease != nil {
			oldRelease()
		}
		return false
	}
	st.relay.mu.Lock()
	st.relay.s = s
	st.relay.mu.Unlock()
	audio, video := st.p.Media()
	peers := st.p.Peers()
	reply := Message{
		Type: TypeJoined, ID: m.ID, Consultation: st.cid,
		Participant: &Peer{ID: st.sub, Role: st.p.Role(), Audio: audio, Video: video},
		Recording:   &recording, Participants: make([]Peer, 0, len(peers)),
		Resume: st.relay.secret, Resumed: true,
	}
	for _, q := range peers {
		reply.Participants = append(reply.Participants, Peer{ID: q.ID, Role: q.Role, Audio: q.Audio, Video: q.Video})
	}
	// Fresh TURN credentials for the new network; the old ones end with
	// the participant, as they would have.
	release := oldRelease
	if f := s.srv.ICEServers; f != nil {
		var fresh func()
		reply.ICEServers, fresh = f()
		release = func() {
			if oldRelease != nil {
				oldRelease()
			}
			if fresh != nil {
				fresh()
			}
		}
	}
	s.admit(st.p, st.relay, release, reply)
	// A subscribe offer sent on the old socket may never have arrived.
	st.p.ResendOffer()
	s.srv.log().Info("resumed on a new socket", "consultation", st.cid, "participant", st.sub)
	return true
}

// dropSeat makes the session's participant no longer resumable (it leaves).
func (s *session) dropSeat() {
	s.mu.Lock()
	rl := s.relay
	s.mu.Unlock()
	if rl != nil {
		s.srv.seats.drop(rl.secret)
	}
}

// joinResume answers a join carrying a resume secret: the participant moves
// to this socket, or the join is refused with resume_failed.
func (s *session) joinResume(m Message, b sfu.Binding, sub string, refuse func(code, text string)) bool {
	st := s.srv.seats.find(m.Resume, b.Consultation, sub)
	if st == nil {
		refuse(CodeResumeFailed, "no participant to resume with that secret (it left, was removed or never joined here); join without resume and negotiate anew")
		return false
	}
	// The consultation is running, so it is bound: a token that contradicts
	// its binding is refused as at any join.
	if err := s.srv.SFU.Bind(b); err != nil {
		refuse(CodeBindingMismatch, "this consultation is bound to another patient or recording setting")
		return false
	}
	if !s.resume(m, st, b.Record) {
		refuse(CodeResumeFailed, "that participant has left; join without resume and negotiate anew")
	}
	return false
}

// admit makes p this session's participant and sends the joined reply,
// then the SFU messages held back until it.
func (s *session) admit(p *sfu.Participant, rl *relay, release func(), joined Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.p, s.relay, s.release = p, rl, release
	s.enqueue(joined, false)
	s.ready = true
	for _, h := range s.held {
		s.enqueue(h, false)
	}
	s.held = nil
}
