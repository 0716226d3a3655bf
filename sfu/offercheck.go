package sfu

import (
	"fmt"

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
