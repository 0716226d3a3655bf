package sfu

import (
	"fmt"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// checkOffer applies a client's offer to a throwaway peer connection first.
// pion cannot roll back a remote offer, and applying one can fail after the
// signaling state has moved to have-remote-offer (no ICE credentials, a bad
// candidate line, an m-line without a mid); on the participant's own
// publish connection that would refuse every later offer. An offer that
// fails here never reaches it.
func (s *SFU) checkOffer(offerSDP string) error {
	probe, err := s.api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("sfu: probe connection: %w", err)
	}
	defer func() { _ = probe.Close() }()
	if err := probe.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: offerSDP}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	return nil
}

// refuseOffer reports an offer the publish connection could not take. It
// passed checkOffer, so this is rare; pion cannot roll back a remote offer,
// so a connection left waiting in have-remote-offer is logged.
func (p *Participant) refuseOffer(err error) error {
	if st := p.pub.SignalingState(); st != webrtc.SignalingStateStable {
		p.c.s.log.Warn("publish connection left mid-negotiation by a refused offer", "participant", p.id, "state", st.String(), "err", err)
	}
	return fmt.Errorf("%w: %v", ErrBadSDP, err)
}

// checkAnswer refuses an answer that pion would take only half-way: one
// that moves the subscribe connection to stable and then fails for want of
// ICE credentials, a fingerprint or a mid, leaving a connection that can
// neither take a proper answer nor send a new offer. An answer refused here
// changes nothing: the offer stays open for a proper answer.
func checkAnswer(raw string) error {
	if len(raw) > maxSDP {
		return fmt.Errorf("%w: longer than %d bytes", ErrBadSDP, maxSDP)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	if len(sd.MediaDescriptions) == 0 {
		return fmt.Errorf("%w: no m-lines", ErrBadSDP)
	}
	for i, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 {
			continue // rejected
		}
		if mid, _ := md.Attribute("mid"); mid == "" {
			return fmt.Errorf("%w: m-line %d has no mid", ErrBadSDP, i)
		}
		for _, a := range []string{"ice-ufrag", "ice-pwd", "fingerprint"} {
			_, inMedia := md.Attribute(a)
			_, inSession := sd.Attribute(a)
			if !inMedia && !inSession {
				return fmt.Errorf("%w: m-line %d has no %s", ErrBadSDP, i, a)
			}
		}
	}
	return nil
}
