package signaling

import (
	"errors"
	"fmt"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/sfu/ident"
	"github.com/medcall/medcall/signaling/token"
)

// handle runs one client request; it returns true when the socket should close.
func (s *session) handle(m Message) bool {
	p := s.participant()
	if m.Type != TypeJoin && m.Type != TypePing && p == nil {
		if isRequest(m.Type) {
			s.reply(errMsg(m.ID, CodeNotJoined, "send join first"))
			return false
		}
	}
	switch m.Type {
	case TypeJoin:
		if p != nil {
			s.reply(errMsg(m.ID, CodeAlreadyJoined, "this socket has already joined"))
			return false
		}
		return s.join(m)
	case TypeOffer:
		if m.PC != string(sfu.PCPublish) {
			s.reply(errMsg(m.ID, CodeBadRequest, `offers are sent on pc "publish" only`))
			return false
		}
		if m.SDP == "" {
			s.reply(errMsg(m.ID, CodeBadRequest, "offer needs sdp"))
			return false
		}
		answer, err := p.HandleOffer(m.SDP)
		if err != nil {
			s.reply(errMsg(m.ID, sfuCode(err), err.Error()))
			return false
		}
		s.reply(Message{Type: TypeAnswer, ID: m.ID, PC: string(sfu.PCPublish), SDP: answer})
	case TypeAnswer:
		if m.PC != string(sfu.PCSubscribe) {
			s.reply(errMsg(m.ID, CodeBadRequest, `answers are sent on pc "subscribe" only`))
			return false
		}
		if m.SDP == "" {
			s.reply(errMsg(m.ID, CodeBadRequest, "answer needs sdp"))
			return false
		}
		if err := p.HandleAnswer(m.SDP); err != nil {
			s.reply(errMsg(m.ID, sfuCode(err), err.Error()))
			return false
		}
		s.reply(Message{Type: TypeAck, ID: m.ID})
	case TypeCandidate:
		pc := sfu.PC(m.PC)
		if (pc != sfu.PCPublish && pc != sfu.PCSubscribe) || m.Candidate == nil {
			s.reply(errMsg(m.ID, CodeBadRequest, `candidate needs pc ("publish" or "subscribe") and a candidate object`))
			return false
		}
		if err := p.AddCandidate(pc, *m.Candidate); err != nil {
			s.reply(errMsg(m.ID, sfuCode(err), err.Error()))
			return false
		}
		s.reply(Message{Type: TypeAck, ID: m.ID})
	case TypeMedia:
		if m.Audio == nil && m.Video == nil {
			s.reply(errMsg(m.ID, CodeBadRequest, "media needs audio or video"))
			return false
		}
		if m.Path != "" && m.Path != PathPrenegotiated && m.Path != PathRenegotiate {
			s.reply(errMsg(m.ID, CodeBadRequest, fmt.Sprintf("path must be %q or %q", PathPrenegotiated, PathRenegotiate)))
			return false
		}
		p.SetMedia(m.Audio, m.Video, m.Path)
		s.reply(Message{Type: TypeAck, ID: m.ID})
	case TypePing:
		s.reply(Message{Type: TypePong, ID: m.ID})
	case TypeRestart:
		if m.PC != string(sfu.PCSubscribe) {
			s.reply(errMsg(m.ID, CodeBadRequest, `restart names pc "subscribe"; the publish connection restarts with an offer carrying new ICE credentials`))
			return false
		}
		s.reply(Message{Type: TypeAck, ID: m.ID})
		p.RestartICE() // its offer follows the ack
	case TypeLeave:
		// The TURN credential ends before the ack: once a client is told it
		// has left, its credential no longer opens the relay.
		s.mu.Lock()
		release := s.release
		s.release = nil
		s.mu.Unlock()
		if release != nil {
			release()
		}
		s.reply(Message{Type: TypeAck, ID: m.ID})
		s.mu.Lock()
		s.p = nil
		s.mu.Unlock()
		s.dropSeat()
		p.Leave()
		s.push(Message{Type: TypeBye, Reason: ByeLeft}, true)
		return true
	default:
		s.reply(errMsg(m.ID, CodeUnknownType, fmt.Sprintf("unknown message type %q", m.Type)))
	}
	return false
}

func isRequest(t string) bool {
	for _, r := range ClientRequests {
		if r == t {
			return true
		}
	}
	return false
}

// join admits the socket's participant; it returns true when the socket
// should close (the join was redirected to another node).
func (s *session) join(m Message) bool {
	refuse := func(code, text string) {
		if h := s.srv.Hooks.Refused; h != nil {
			h(code)
		}
		s.reply(errMsg(m.ID, code, text))
	}
	g, err := s.srv.Verifier.VerifyJoin(m.Token)
	if err != nil {
		refuse(tokenCode(err), err.Error())
		return false
	}
	if m.Consultation != "" && m.Consultation != g.Consultation {
		if !token.ValidID(m.Consultation) {
			refuse(CodeBadID, "consultation id must match "+ident.Pattern)
			return false
		}
		refuse(CodeWrongConsultation, "this token is for another consultation")
		return false
	}
	b := sfu.Binding{Consultation: g.Consultation, Patient: g.Patient, Record: g.Record}
	if m.Resume != "" {
		return s.joinResume(m, b, g.Participant, refuse)
	}
	if done, closeSocket := s.place(m.ID, g.Consultation, refuse); done {
		return closeSocket
	}
	rl := &relay{srv: s.srv, secret: newSecret(), s: s}
	p, err := s.srv.SFU.Join(b, sfu.PeerInfo{ID: g.Participant, Role: g.Role}, rl)
	switch {
	case errors.Is(err, sfu.ErrBindingMismatch):
		// Audited: someone holds a valid token that contradicts the binding.
		s.srv.log().Warn("audit: join refused, binding mismatch",
			"audit", true, "consultation", g.Consultation, "participant", g.Participant, "role", g.Role)
		if h := s.srv.Hooks.Audit; h != nil {
			h(JoinAudit{Time: time.Now().UTC(), Action: "join", Sub: g.Participant, Role: g.Role,
				Consultation: g.Consultation, Outcome: "refused", Reason: CodeBindingMismatch})
		}
		refuse(CodeBindingMismatch, "this consultation is bound to another patient or recording setting")
		return false
	case errors.Is(err, sfu.ErrFull):
		refuse(CodeConsultationFull, "the consultation has reached its participant limit")
		return false
	case errors.Is(err, sfu.ErrServerFull):
		s.srv.full.note(s.srv.log(), "this server is at capacity (--max-consultations, or short of CPU with --admit-cpu-wait)")
		refuse(CodeServerFull, "the server is at capacity; try again in a few minutes")
		return false
	case errors.Is(err, sfu.ErrClosed):
		refuse(CodeUnavailable, "the server is shutting down")
		return false
	case err != nil:
		s.srv.log().Error("join failed", "consultation", g.Consultation, "err", err)
		refuse(CodeInternal, "could not join; try again")
		return false
	}
	if h := s.srv.Hooks.Joined; h != nil {
		h()
	}
	peers := p.Peers()
	reply := Message{
		Type: TypeJoined, ID: m.ID, Consultation: g.Consultation,
		Participant: &Peer{ID: g.Participant, Role: g.Role},
		Recording:   &g.Record, Participants: make([]Peer, 0, len(peers)),
	}
	for _, q := range peers {
		reply.Participants = append(reply.Participants, Peer{ID: q.ID, Role: q.Role, Audio: q.Audio, Video: q.Video})
	}
	var release func()
	if f := s.srv.ICEServers; f != nil {
		reply.ICEServers, release = f()
	}
	reply.Resume = rl.secret
	s.srv.seats.add(&seat{p: p, relay: rl, cid: g.Consultation, sub: g.Participant})
	s.admit(p, rl, release, reply)
	s.srv.log().Info("joined", "consultation", g.Consultation, "participant", g.Participant, "role", g.Role)
	return false
}

func tokenCode(err error) string {
	switch {
	case errors.Is(err, token.ErrMissing):
		return CodeTokenMissing
	case errors.Is(err, token.ErrExpired):
		return CodeTokenExpired
	case errors.Is(err, token.ErrBadID):
		return CodeBadID
	case errors.Is(err, token.ErrRole):
		return CodeForbidden
	}
	return CodeTokenInvalid
}

func sfuCode(err error) string {
	switch {
	case errors.Is(err, sfu.ErrBadSDP), errors.Is(err, sfu.ErrNoOffer):
		return CodeBadSDP // unacceptable or out of order
	case errors.Is(err, sfu.ErrBadCandidate):
		return CodeBadCandidate
	}
	return CodeInternal
}
