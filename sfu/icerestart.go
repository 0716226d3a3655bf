package sfu

import (
	"bufio"
	"strings"

	"github.com/pion/webrtc/v4"
)

// ICE restarts (signaling/PROTOCOL.md, "Network change"). A client whose
// network changed gathers new candidates under new ICE credentials on both
// of its connections while keeping its place in the consultation:
//
//   - publish (the client offers): the client re-offers with new ICE
//     credentials; pion restarts the server's agent when it applies such an
//     offer, so HandleOffer only notices it (restartedPublish) to count it
//     and note the media gap in the recording's events.
//   - subscribe (the server offers): the client asks with RestartICE; the
//     next subscribe offer is created with ICERestart (negotiate), after the
//     one in flight if there is one.
//
// DTLS and SRTP survive an ICE restart, so the tracks, their SSRCs and every
// downtrack stay as they are: the others see no leave and no renegotiation.

// iceUfrag is the first ICE username fragment of an SDP ("" if none).
func iceUfrag(raw string) string {
	sc := bufio.NewScanner(strings.NewReader(raw))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "a=ice-ufrag:"); ok {
			return v
		}
	}
	return ""
}

// SameICEGeneration reports whether candidate c belongs to the ICE
// generation of the remote description sdp: true unless c names a username
// fragment (its usernameFragment, or pion's and browsers' "ufrag"
// extension) that is not the description's. A candidate that does not is
// queued until the description that does arrives.
func SameICEGeneration(c webrtc.ICECandidateInit, sdp string) bool {
	ufrag := ""
	if c.UsernameFragment != nil {
		ufrag = *c.UsernameFragment
	}
	if ufrag == "" {
		f := strings.Fields(c.Candidate)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "ufrag" {
				ufrag = f[i+1]
			}
		}
	}
	return ufrag == "" || ufrag == iceUfrag(sdp)
}

// restartsPublish reports whether offerSDP changes the publish connection's
// remote ICE credentials: an ICE restart, not a first offer.
func (p *Participant) restartsPublish(offerSDP string) bool {
	cur := p.pub.CurrentRemoteDescription()
	if cur == nil {
		return false
	}
	old, next := iceUfrag(cur.SDP), iceUfrag(offerSDP)
	return old != "" && next != "" && old != next
}

// restarted counts an applied ICE restart. A publish restart is where the
// participant's recorded media has its gap, so the recording notes it.
func (p *Participant) restarted(pc PC) {
	i := 0
	if pc == PCSubscribe {
		i = 1
	}
	p.c.s.cfg.Metrics.ICERestarts[i].Add(1)
	p.c.s.log.Info("ICE restart", "participant", p.id, "pc", string(pc))
	if pc == PCPublish {
		p.c.event(EventICERestart, p, "")
	}
}

// RestartICE restarts ICE on the subscribe connection at the client's
// request: the next subscribe offer carries new ICE credentials. With an
// offer in flight it follows that offer's answer. Without a negotiated
// subscribe connection (nobody else publishes yet) there is nothing to
// restart.
func (p *Participant) RestartICE() {
	p.negMu.Lock()
	p.iceRestart = true
	p.negMu.Unlock()
	p.negotiate()
}

// offerOptions are the options of the next subscribe offer: an ICE restart
// if the client asked for one since the last offer and the connection has
// been negotiated before.
func (p *Participant) offerOptions() *webrtc.OfferOptions {
	p.negMu.Lock()
	restart := p.iceRestart && p.sub.CurrentRemoteDescription() != nil
	p.iceRestart = false
	p.negMu.Unlock()
	if !restart {
		return nil
	}
	return &webrtc.OfferOptions{ICERestart: true}
}

// ResendOffer sends the subscribe offer that is waiting for its answer
// again: after a signaling socket was replaced (a resume), that offer may
// have been lost with the old socket, and nothing else would ever be offered.
func (p *Participant) ResendOffer() {
	p.sendMu.Lock()
	defer p.sendMu.Unlock()
	if p.sub.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return
	}
	if ld := p.sub.PendingLocalDescription(); ld != nil {
		p.sig.Offer(ld.SDP)
	}
}

// Media is what the participant now sends, as its last media notice said.
func (p *Participant) Media() (audio, video bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.audio, p.video
}

// Gone reports whether the participant has been removed.
func (p *Participant) Gone() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}
