package sfu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// PC names one of a participant's two peer connections.
type PC string

// The two peer connections of a participant.
const (
	PCPublish   PC = "publish"   // the client offers, the server answers
	PCSubscribe PC = "subscribe" // the server offers, the client answers
)

// Errors returned to signaling for a client's bad input.
var (
	ErrBadSDP       = errors.New("bad sdp")
	ErrBadCandidate = errors.New("bad ice candidate")
	ErrNoOffer      = errors.New("no subscribe offer is waiting for an answer")
	ErrGone         = errors.New("participant has left")
)

// Signaler carries a participant's server-side messages to its client. The SFU
// calls it from several goroutines; implementations must not block.
type Signaler interface {
	Offer(sdp string)                           // a subscribe offer to answer
	Candidate(pc PC, c webrtc.ICECandidateInit) // a server ICE candidate
	Peer(ev PeerEvent)                          // another participant joined, left or changed media
	Bye(reason string)                          // the server removed this participant
}

// maxPendingCandidates bounds candidates queued before a remote description.
const maxPendingCandidates = 64

// Participant is one person in a consultation with their two peer connections.
type Participant struct {
	c        *Consultation
	id, role string
	sig      Signaler
	pub, sub *webrtc.PeerConnection
	own      *ownConn   // the publish connection on the own receive path, or nil
	osend    *ownSender // the subscribe connection on the own send path, or nil
	link     *link      // the subscribe connection's downlink (bwe.go)
	// keyframesHeldUntil (unix nanos): until then keyframes for this
	// subscriber are not asked for (pauseVideoForKeyframe asks at the end).
	keyframesHeldUntil atomic.Int64

	mu        sync.Mutex
	closed    bool
	offers    int                  // publish offers handled
	published map[string]*Receiver // by mid
	subs      map[*Receiver]*DownTrack
	audio     bool
	video     bool
	pending   map[PC][]webrtc.ICECandidateInit
	failing   map[PC]*time.Timer // failed connections, until recovered or their grace ends

	// sendMu orders a subscribe offer before the candidates it causes.
	sendMu sync.Mutex
	// negMu guards the subscribe negotiation: one offer in flight at a time.
	negMu       sync.Mutex
	negotiating bool
	negPending  bool
	iceRestart  bool // the next subscribe offer restarts ICE (icerestart.go)
}

func newParticipant(c *Consultation, peer PeerInfo, sig Signaler) (*Participant, error) {
	p := &Participant{
		c: c, id: peer.ID, role: peer.Role, sig: sig,
		published: map[string]*Receiver{},
		subs:      map[*Receiver]*DownTrack{},
		pending:   map[PC][]webrtc.ICECandidateInit{},
		failing:   map[PC]*time.Timer{},
	}
	var err error
	if p.pub, p.own, err = c.s.newPublishConnection(); err != nil {
		return nil, fmt.Errorf("sfu: publish connection: %w", err)
	}
	c.s.links.take(p.pub) // a publish connection sends no media to estimate for
	if p.sub, p.osend, err = c.s.newSubscribeConnection(); err != nil {
		_ = p.pub.Close()
		if p.own != nil {
			p.own.close()
		}
		return nil, fmt.Errorf("sfu: subscribe connection: %w", err)
	}
	if p.osend != nil {
		p.osend.onRTCP(p.onOwnRTCP)
	}
	p.link = c.s.links.take(p.sub)
	c.s.publishers.Store(p.pub.ID(), p)
	stale := p.keyframeFor
	if p.osend != nil && p.osend.rtcpOn() {
		// The NACK guard calls it from the chain, which the UDP port's
		// reader runs for the own path's RTCP (ownrtcp.go), and it takes
		// p.mu and writes to the publisher through pion.
		stale = func(ssrc uint32) { go p.keyframeFor(ssrc) }
	}
	p.link.onStale.Store(&stale)
	drained := p.keyframesForAll
	p.link.onDrained.Store(&drained)
	overflow := p.pauseVideoForKeyframe
	p.link.onOverflow.Store(&overflow)
	p.pub.OnICECandidate(func(ic *webrtc.ICECandidate) {
		if ic != nil {
			sig.Candidate(PCPublish, ic.ToJSON())
		}
	})
	p.sub.OnICECandidate(func(ic *webrtc.ICECandidate) {
		if ic != nil {
			p.sendMu.Lock()
			sig.Candidate(PCSubscribe, ic.ToJSON())
			p.sendMu.Unlock()
		}
	})
	p.pub.OnConnectionStateChange(func(s webrtc.PeerConnectionState) { p.onConnectionState(PCPublish, s) })
	p.sub.OnConnectionStateChange(func(s webrtc.PeerConnectionState) { p.onConnectionState(PCSubscribe, s) })
	var followPub, followSub func(*webrtc.ICECandidatePair)
	if p.own != nil {
		followPub = p.own.pairChanged
	}
	if p.osend != nil {
		followSub = p.osend.pairChanged
	}
	c.s.watchSelectedPair(PCPublish, p.pub, followPub)
	c.s.watchSelectedPair(PCSubscribe, p.sub, followSub)
	p.pub.OnTrack(p.onTrack)
	return p, nil
}

// ID is the participant's id (the token's sub).
func (p *Participant) ID() string { return p.id }

// Role is the participant's role.
func (p *Participant) Role() string { return p.role }

func (p *Participant) onTrack(track *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
	var mid string
	for _, t := range p.pub.GetTransceivers() {
		if t.Receiver() == rr {
			mid = t.Mid()
		}
	}
	p.mu.Lock()
	r := p.published[mid]
	p.mu.Unlock()
	if r == nil {
		p.c.s.log.Warn("track on an m-line that was not announced; ignored", "participant", p.id, "mid", mid)
		return
	}
	p.c.goTrack(func() { r.start(track, rr) })
}

func (p *Participant) receivers() []*Receiver {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*Receiver, 0, len(p.published))
	for _, r := range p.published {
		out = append(out, r)
	}
	return out
}

// Peers lists the other participants with their media state.
func (p *Participant) Peers() []PeerEvent {
	p.c.mu.Lock()
	others := p.c.others(p)
	p.c.mu.Unlock()
	out := make([]PeerEvent, 0, len(others))
	for _, q := range others {
		q.mu.Lock()
		out = append(out, PeerEvent{Event: "present", ID: q.id, Role: q.role, Audio: q.audio, Video: q.video})
		q.mu.Unlock()
	}
	return out
}

// SetMedia applies the client's media notice: nil leaves a kind unchanged.
// Turning video on is an upgrade; off, a downgrade (forwarding stops at once).
func (p *Participant) SetMedia(audio, video *bool, path string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	var events []EventType
	if audio != nil && *audio != p.audio {
		p.audio = *audio
		events = append(events, pick(*audio, EventAudioOn, EventAudioOff))
	}
	if video != nil && *video != p.video {
		p.video = *video
		events = append(events, pick(*video, EventUpgrade, EventDowngrade))
	}
	ev := PeerEvent{Event: "media", ID: p.id, Role: p.role, Audio: p.audio, Video: p.video}
	rs := make([]*Receiver, 0, len(p.published))
	for _, r := range p.published {
		rs = append(rs, r)
	}
	p.mu.Unlock()
	for _, r := range rs {
		on := audio
		if r.kind == KindVideo {
			on = video
		}
		if on == nil {
			continue
		}
		ev := eventOff
		if *on {
			ev = eventOn
		}
		r.event(ev, path)
	}
	for _, t := range events {
		p.c.event(t, p, path)
	}
	p.c.mu.Lock()
	others := p.c.others(p)
	p.c.mu.Unlock()
	for _, q := range others {
		q.sig.Peer(ev)
	}
}

// subscribe gives p a downtrack of r on its subscribe connection.
func (p *Participant) subscribe(r *Receiver) {
	p.mu.Lock()
	if p.closed || p.subs[r] != nil {
		p.mu.Unlock()
		return
	}
	d := newDownTrack(r, p)
	p.subs[r] = d
	p.mu.Unlock()
	tr, err := p.sub.AddTransceiverFromTrack(d, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		p.c.s.log.Warn("subscribe failed", "participant", p.id, "err", err)
		p.mu.Lock()
		delete(p.subs, r)
		p.mu.Unlock()
		return
	}
	d.sender = tr.Sender()
	p.mu.Lock()
	closed := p.closed
	p.mu.Unlock()
	if closed { // closed while the transceiver was being added: its close missed d
		return
	}
	r.addDown(d)
	go p.readSenderRTCP(d)
}

func (p *Participant) unsubscribe(r *Receiver) {
	p.mu.Lock()
	d := p.subs[r]
	delete(p.subs, r)
	p.mu.Unlock()
	if d == nil {
		return
	}
	r.removeDown(d)
	_ = p.sub.RemoveTrack(d.sender)
}

// readSenderRTCP drains a subscriber's RTCP for one downtrack and relays
// keyframe requests to the publisher (throttled there).
func (p *Participant) readSenderRTCP(d *DownTrack) {
	m := p.c.s.cfg.Metrics
	buf := make([]byte, 1500)
	for {
		n, a, err := d.sender.Read(buf)
		if err != nil {
			return
		}
		// The interceptors parsed it already; the parse is cached in a.
		pkts, err := a.GetRTCPPackets(buf[:n])
		if err != nil {
			putAttributes(a)
			continue
		}
		for _, pkt := range pkts {
			switch pkt.(type) {
			case *rtcp.PictureLossIndication:
				m.PLIReceived.Add(1)
				if !p.keyframesHeld() {
					d.recv.RequestKeyframe(KeyframeSubscriber)
				}
			case *rtcp.FullIntraRequest:
				m.FIRReceived.Add(1)
				if !p.keyframesHeld() {
					d.recv.RequestKeyframe(KeyframeSubscriber)
				}
			case *rtcp.TransportLayerNack:
				m.NACKReceived.Add(1)
			}
		}
		putAttributes(a)
	}
}

// onOwnRTCP does for the RTCP the UDP port's reader took (ownrtcp.go)
// what readSenderRTCP does for pion's: counts it, and relays each PLI or
// FIR to the publisher of the stream it names, the request on a goroutine
// of its own (it writes to the publisher through pion, which on an
// ICE-TCP pair can block the port's reader).
func (p *Participant) onOwnRTCP(pkts []rtcp.Packet) {
	m := p.c.s.cfg.Metrics
	for _, pkt := range pkts {
		switch x := pkt.(type) {
		case *rtcp.PictureLossIndication:
			m.PLIReceived.Add(1)
			p.relayKeyframeRequest(x.MediaSSRC)
		case *rtcp.FullIntraRequest:
			m.FIRReceived.Add(1)
			for _, e := range x.FIR {
				p.relayKeyframeRequest(e.SSRC)
			}
		case *rtcp.TransportLayerNack:
			m.NACKReceived.Add(1)
		}
	}
}

// relayKeyframeRequest asks the publisher of the stream p receives as
// ssrc for a keyframe (throttled there).
func (p *Participant) relayKeyframeRequest(ssrc uint32) {
	if r := p.receiverToAsk(ssrc); r != nil {
		go r.RequestKeyframe(KeyframeSubscriber)
	}
}

// Leave removes the participant at its own request.
func (p *Participant) Leave() { p.close("") }

// Close removes the participant, telling its client why (if reason is set).
func (p *Participant) Close(reason string) { p.close(reason) }

func (p *Participant) close(reason string) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.stopFailTimers()
	subs := p.subs
	p.subs = map[*Receiver]*DownTrack{}
	p.mu.Unlock()
	for r, d := range subs {
		r.removeDown(d)
	}
	p.c.remove(p)
	p.c.s.publishers.CompareAndDelete(p.pub.ID(), p)
	if p.own != nil {
		p.own.close() // first: its interceptors write RTCP on p.pub
	}
	if p.osend != nil {
		p.osend.close()
	}
	_ = p.pub.Close()
	_ = p.sub.Close()
	if reason != "" {
		p.sig.Bye(reason)
	}
}

func pick(on bool, yes, no EventType) EventType {
	if on {
		return yes
	}
	return no
}
