package sfu

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// A participant's offer/answer and ICE candidate exchange: the client offers
// on the publish connection, the server on the subscribe connection (one
// offer in flight at a time), and candidates wait for a remote description
// of their ICE generation.

// HandleOffer answers the client's offer on the publish connection and
// reconciles the published tracks with the m-lines it sends.
func (p *Participant) HandleOffer(offerSDP string) (string, error) {
	sending, err := sendingMedia(offerSDP)
	if err != nil {
		return "", err
	}
	if err := p.c.s.checkOffer(offerSDP); err != nil {
		return "", err
	}
	restart := p.restartsPublish(offerSDP)
	if err := p.pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return "", p.refuseOffer(err)
	}
	answer, err := p.pub.CreateAnswer(nil)
	if err != nil {
		return "", p.refuseOffer(err)
	}
	if err := p.pub.SetLocalDescription(answer); err != nil {
		return "", p.refuseOffer(err)
	}
	p.flushCandidates(PCPublish)
	if restart {
		p.restarted(PCPublish)
	}
	codecs, err := answeredCodecs(answer.SDP)
	if err != nil {
		return "", err
	}
	p.reconcile(sending, codecs)
	return answer.SDP, nil
}

// reconcile creates a Receiver for each newly sending m-line the answer
// accepted and removes those that stopped sending.
func (p *Participant) reconcile(sending map[string]Kind, codecs map[string]webrtc.RTPCodecCapability) {
	var added, removed []*Receiver
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.offers++
	renegotiation := p.offers > 1
	for mid, kind := range sending {
		codec, ok := codecs[mid]
		if !ok || p.published[mid] != nil {
			continue
		}
		r := newReceiver(p, mid, kind, codec)
		if renegotiation {
			r.event(eventOn, PathRenegotiate)
		}
		p.published[mid] = r
		added = append(added, r)
	}
	for mid, r := range p.published {
		if _, ok := sending[mid]; !ok {
			delete(p.published, mid)
			removed = append(removed, r)
		}
	}
	p.mu.Unlock()
	if len(removed) > 0 {
		p.c.unpublish(p, removed)
	}
	if len(added) > 0 {
		p.c.publish(p, added)
	}
}

// HandleAnswer applies the client's answer to the last subscribe offer.
func (p *Participant) HandleAnswer(answerSDP string) error {
	if p.sub.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return ErrNoOffer
	}
	if err := checkAnswer(answerSDP); err != nil {
		return err // nothing applied: the offer is still open
	}
	err := p.sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answerSDP})
	if err != nil {
		err = fmt.Errorf("%w: %v", ErrBadSDP, err)
		if p.sub.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
			return err // refused before it was applied: the offer is still open
		}
		// pion cannot roll back: a fresh offer is the way on.
		p.c.s.log.Warn("subscribe answer failed after it was applied; offering again", "participant", p.id, "err", err)
	} else {
		p.flushCandidates(PCSubscribe)
		if p.osend != nil {
			p.osend.renegotiated(p.sub)
		}
	}
	p.negMu.Lock()
	p.negotiating = false
	again := p.negPending || err != nil
	p.negPending = false
	p.negMu.Unlock()
	if again {
		p.negotiate()
	}
	return err
}

// negotiate sends a subscribe offer, or marks one pending while another is in flight.
func (p *Participant) negotiate() {
	p.negMu.Lock()
	if p.negotiating {
		p.negPending = true
		p.negMu.Unlock()
		return
	}
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed || len(p.sub.GetTransceivers()) == 0 {
		p.negMu.Unlock()
		return
	}
	p.negotiating = true
	p.negMu.Unlock()

	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	opts := p.offerOptions()
	offer, err := p.sub.CreateOffer(opts)
	if err == nil {
		err = p.sub.SetLocalDescription(offer)
	}
	if err != nil {
		p.c.s.log.Warn("subscribe offer failed", "participant", p.id, "err", err)
		p.negMu.Lock()
		p.negotiating = false
		p.negMu.Unlock()
		return
	}
	p.sig.Offer(offer.SDP)
	if opts != nil {
		p.restarted(PCSubscribe)
	}
}

// AddCandidate adds a client ICE candidate, queueing it until the connection
// has a remote description of its ICE generation (after an ICE restart a
// client's new candidates may overtake its offer or answer).
func (p *Participant) AddCandidate(pc PC, c webrtc.ICECandidateInit) error {
	target := p.pub
	if pc == PCSubscribe {
		target = p.sub
	}
	p.mu.Lock()
	if rd := target.RemoteDescription(); rd == nil || !SameICEGeneration(c, rd.SDP) {
		defer p.mu.Unlock()
		if len(p.pending[pc]) >= maxPendingCandidates {
			return fmt.Errorf("%w: too many candidates before a description", ErrBadCandidate)
		}
		p.pending[pc] = append(p.pending[pc], c)
		return nil
	}
	p.mu.Unlock()
	if err := target.AddICECandidate(c); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCandidate, err)
	}
	return nil
}

func (p *Participant) flushCandidates(pc PC) {
	p.mu.Lock()
	cs := p.pending[pc]
	delete(p.pending, pc)
	p.mu.Unlock()
	target := p.pub
	if pc == PCSubscribe {
		target = p.sub
	}
	for _, c := range cs {
		// At once: one of an older ICE generation is dropped, not queued again.
		if err := target.AddICECandidate(c); err != nil {
			p.c.s.log.Debug("queued candidate refused", "participant", p.id, "err", err)
		}
	}
}
