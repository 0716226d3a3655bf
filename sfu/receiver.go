package sfu

import (
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Receiver is one published track: it exists from the moment the publisher's
// offer announces a sending m-line (so subscribers can be given an idle sender
// before any media flows, the pre-negotiated upgrade path) and starts
// forwarding when the first RTP packet arrives.
type Receiver struct {
	owner    *Participant
	mid      string
	kind     Kind
	mimeType atomic.Pointer[string]
	codec    webrtc.RTPCodecCapability

	mu    sync.Mutex // guards changes to downs and sinks (readers load the pointers)
	downs atomic.Pointer[[]*DownTrack]
	sinks atomic.Pointer[[]TrackSink]

	ssrc atomic.Uint32
	// up is the track's state (upgrade.go); keys owns its keyframe
	// requests (keyframerequest.go).
	up   upgrade
	keys keyframeRequester
}

func newReceiver(owner *Participant, mid string, kind Kind, codec webrtc.RTPCodecCapability) *Receiver {
	r := &Receiver{owner: owner, mid: mid, kind: kind, codec: codec}
	r.setMime(codec.MimeType)
	r.up.audio = kind == KindAudio
	m := owner.c.s.cfg.Metrics
	r.keys.interval = owner.c.s.cfg.PLIInterval
	r.keys.send = r.sendPLI
	r.keys.count = func(reason KeyframeReason, sentNow bool) {
		m.KeyframeRequests[reason].Add(1)
		if !sentNow {
			m.KeyframeRequestsThrottled[reason].Add(1)
		}
	}
	r.downs.Store(&[]*DownTrack{})
	r.sinks.Store(&[]TrackSink{})
	return r
}

func (r *Receiver) mime() string     { return *r.mimeType.Load() }
func (r *Receiver) setMime(m string) { r.mimeType.Store(&m) }

func (r *Receiver) addDown(d *DownTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.downs.Load()
	n := make([]*DownTrack, 0, len(old)+1)
	n = append(append(n, old...), d)
	r.downs.Store(&n)
}

func (r *Receiver) removeDown(d *DownTrack) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.downs.Load()
	n := make([]*DownTrack, 0, len(old))
	for _, x := range old {
		if x != d {
			n = append(n, x)
		}
	}
	r.downs.Store(&n)
}

func (r *Receiver) addSink(s TrackSink) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := *r.sinks.Load()
	n := make([]TrackSink, 0, len(old)+1)
	n = append(append(n, old...), s)
	r.sinks.Store(&n)
}

// RequestKeyframe asks the publisher of a video track for a keyframe, for
// reason. The track's keyframeRequester decides when a PLI goes out; while
// media is not forwarded the request is ignored (forwarding starts with a
// keyframe request of its own).
func (r *Receiver) RequestKeyframe(reason KeyframeReason) {
	if r.kind == KindVideo {
		r.keys.request(reason)
	}
}

// sendPLI writes one PLI to the publisher; only r.keys calls it.
func (r *Receiver) sendPLI() {
	pli := &rtcp.PictureLossIndication{MediaSSRC: r.ssrc.Load()}
	if err := r.owner.pub.WriteRTCP([]rtcp.Packet{pli}); err == nil {
		r.owner.c.s.cfg.Metrics.PLISent.Add(1)
	}
}

// event moves the track's state (upgrade.go) by ev and does what the
// transition calls for: time the upgrade, make subscribers wait for a
// keyframe and ask for it, or stop asking while media is off.
func (r *Receiver) event(ev upgradeEvent, path string) {
	if ev == eventOn && r.up.load() == statePaused {
		// A re-upgrade: subscribers must wait for a keyframe before the
		// first packet after the pause is forwarded, not after.
		for _, d := range *r.downs.Load() {
			d.requestResync()
		}
	}
	t, err := r.up.apply(ev, path, time.Now())
	if err != nil {
		r.owner.c.s.log.Debug("track event refused", "participant", r.owner.id, "kind", r.kind, "err", err)
		return
	}
	if !t.changed() {
		return
	}
	m := r.owner.c.s.cfg.Metrics
	if t.began && m.OnUpgradeStart != nil {
		m.OnUpgradeStart(t.path)
	}
	switch t.to {
	case stateStarting:
		r.keys.activate(DetectsKeyframes(r.mime()))
		r.RequestKeyframe(KeyframeUpgrade)
	case stateFlowing:
		if t.from == stateStarting && m.OnUpgrade != nil {
			m.OnUpgrade(t.path, t.took)
		}
	case stateOff, statePaused:
		r.keys.deactivate()
	}
}

// start runs when the first RTP packet of this m-line arrives. It binds the
// tap, asks for a keyframe, and forwards until the track ends.
func (r *Receiver) start(track *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
	c := r.owner.c
	r.setMime(track.Codec().MimeType)
	r.ssrc.Store(uint32(track.SSRC()))
	// RTP before any notice is the pre-negotiated path's upgrade starting;
	// a video track asks for its first keyframe here.
	r.event(eventRTP, "")
	c.s.cfg.Metrics.TracksPublished[kindIndex(r.kind)].Add(1)
	if c.tap != nil {
		sink := c.tap.OnTrack(TrackInfo{
			Participant: r.owner.id, Role: r.owner.role, Kind: r.kind,
			MimeType: track.Codec().MimeType, ClockRate: track.Codec().ClockRate,
			Channels: track.Codec().Channels, SSRC: uint32(track.SSRC()),
			RequestKeyframe: r.RequestKeyframe,
		})
		if sink != nil {
			r.addSink(sink)
		}
	}
	rtcpDone := make(chan struct{})
	go func() {
		defer close(rtcpDone)
		r.readRTCP(rr)
	}()
	stopRate := make(chan struct{})
	if r.kind == KindVideo {
		go r.controlRate(stopRate)
	}
	if oc := r.owner.own; oc != nil {
		r.forwardOwn(track, rr, oc) // ownconn.go
	} else {
		r.forward(track)
	}
	r.keys.deactivate()
	close(stopRate)
	_ = rr.Stop() // ends readRTCP if the track ended on its own
	<-rtcpDone
	for _, s := range *r.sinks.Load() {
		s.Close()
	}
}

// forward is the hot loop: read a packet, hand it to fanout, until the track ends.
func (r *Receiver) forward(track *webrtc.TrackRemote) {
	m := r.owner.c.s.cfg.Metrics
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := track.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			m.DroppedGarbage.Add(1) // larger than any MTU: not ours to forward
			continue
		}
		if err != nil {
			return
		}
		r.fanout(buf[:n], &pkt, m)
	}
}

// fanout parses one packet and sends it to every downtrack and tap. pkt is
// scratch space reused between calls.
func (r *Receiver) fanout(raw []byte, pkt *rtp.Packet, m *Metrics) {
	if err := pkt.Unmarshal(raw); err != nil {
		m.DroppedGarbage.Add(1)
		return
	}
	ki := kindIndex(r.kind)
	m.PacketsIn[ki].Add(1)
	m.BytesIn[ki].Add(uint64(len(raw)))
	state := r.up.load()
	if len(pkt.Payload) == 0 || state == statePaused || state == stateOff {
		// Padding-only probes are not forwarded, nor is media the publisher
		// said is off; downtracks close the sequence gap this leaves.
		if len(pkt.Payload) > 0 {
			m.DroppedMuted.Add(1)
		}
		for _, d := range *r.downs.Load() {
			d.skip()
		}
		// Taps see the sequence number go by with no media, so a packet
		// not forwarded is never mistaken for a lost one.
		pkt.Payload = pkt.Payload[:0]
		for _, s := range *r.sinks.Load() {
			s.WriteRTP(pkt)
		}
		return
	}
	keyframe := r.kind == KindVideo && IsKeyframeStart(r.mime(), pkt)
	if keyframe {
		r.keys.keyframe() // before it is written: see keyframeRequester.keyframe
		if state == stateStarting {
			r.event(eventKeyframe, "")
		}
	}
	for _, d := range *r.downs.Load() {
		if d.writeRTP(pkt, keyframe, m) {
			m.PacketsOut[ki].Add(1)
			m.BytesOut[ki].Add(uint64(len(raw)))
		}
	}
	for _, s := range *r.sinks.Load() {
		s.WriteRTP(pkt)
	}
}

// readRTCP drains the publisher's RTCP (which drives pion's interceptors) and
// hands sender reports to the taps.
func (r *Receiver) readRTCP(rr *webrtc.RTPReceiver) {
	buf := make([]byte, 1500)
	for {
		n, a, err := rr.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.owner.c.s.log.Debug("rtcp read ended", "err", err)
			}
			return
		}
		if oc := r.owner.own; oc != nil {
			oc.feedRTCP(buf[:n]) // its receiver reports need the sender reports
		}
		pkts, err := a.GetRTCPPackets(buf[:n]) // parsed once by the chain (attrpool.go)
		putAttributes(a)
		if err != nil {
			continue
		}
		for _, p := range pkts {
			if sr, ok := p.(*rtcp.SenderReport); ok {
				for _, s := range *r.sinks.Load() {
					s.OnRTCP(sr)
				}
			}
		}
	}
}
