package sfu

import (
	"time"

	"github.com/pion/webrtc/v4"
)

// Defaults for noticing a participant whose media transport died while its
// socket may still be open (a network that lets TCP through but not UDP, a
// client whose WebRTC stack crashed).
const (
	defaultICEFailedGrace = 5 * time.Second
)

// onConnectionState watches one of p's peer connections. A connection that
// has failed (pion declares it so after ICEDisconnectedTimeout plus
// ICEFailedTimeout without connectivity) and has not come back, by an ICE
// restart, within ICEFailedGrace removes the participant: the others get
// participant left, the tap the leave, the client bye connection_failed.
func (p *Participant) onConnectionState(pc PC, s webrtc.PeerConnectionState) {
	p.mu.Lock()
	defer p.mu.Unlock() // p.mu guards failing
	if p.closed {
		return
	}
	switch s {
	case webrtc.PeerConnectionStateFailed:
		if p.failing[pc] != nil {
			return
		}
		grace := p.c.s.cfg.ICEFailedGrace
		p.failing[pc] = time.AfterFunc(grace, func() {
			p.c.s.log.Info("peer connection failed and did not recover; removing the participant",
				"participant", p.id, "pc", string(pc), "grace", grace.String())
			p.close("connection_failed")
		})
		if pc == PCSubscribe && p.osend != nil {
			p.osend.fail()
		}
	case webrtc.PeerConnectionStateConnected:
		if pc == PCPublish && p.own != nil {
			p.own.connected(p.pub, p.c.s.log)
		}
		if pc == PCSubscribe && p.osend != nil {
			p.osend.connected(p.sub, p.c.s.log)
		}
		if t := p.failing[pc]; t != nil {
			t.Stop()
			delete(p.failing, pc)
		}
	}
}

// stopFailTimers stops the failure timers of a closing participant (called locked).
func (p *Participant) stopFailTimers() {
	for pc, t := range p.failing {
		t.Stop()
		delete(p.failing, pc)
	}
}
