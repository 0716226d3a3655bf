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

	started atomic.Bool
	muted   atomic.Bool
	ssrc    atomic.Uint32
	lastPLI atomic.Int64 // unix nanos
	// pliDeferred is set while a throttled keyframe request waits its turn.
	pliDeferred atomic.Bool

	// upgradeAt is when the current upgrade began (unix nanos), cleared when
	// its first keyframe is forwarded; upgradePath names the path.
	upgradeAt   atomic.Int64
	upgradePath atomic.Pointer[string]
}

func newReceiver(owner *Participant, mid string, kind Kind, codec webrtc.RTPCodecCapability) *Receiver {
	r := &Receiver{owner: owner, mid: mid, kind: kind, codec: codec}
	r.setMime(codec.MimeType)
	path := "prenegotiated"
	r.upgradePath.Store(&path)
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

// RequestKeyframe sends a PLI to the publisher, at most once per PLIInterval.
// Before media flows it does nothing: forwarding starts with a PLI anyway.
func (r *Receiver) RequestKeyframe() {
	if r.kind != KindVideo || !r.started.Load() {
		return
	}
	now := time.Now().UnixNano()
	last := r.lastPLI.Load()
	interval := int64(r.owner.c.s.cfg.PLIInterval)
	if now-last < interval {
		// Throttled, but not forgotten: a subscriber that bound just after the
		// last request may have missed the keyframe it produced. Ask once more
		// when the interval is up.
		if r.pliDeferred.CompareAndSwap(false, true) {
			time.AfterFunc(time.Duration(last+interval-now), func() {
				r.pliDeferred.Store(false)
				r.RequestKeyframe()
			})
		}
		return
	}
	if !r.lastPLI.CompareAndSwap(last, now) {
		return
	}
	r.sendPLI()
}

func (r *Receiver) sendPLI() {
	pli := &rtcp.PictureLossIndication{MediaSSRC: r.ssrc.Load()}
	if err := r.owner.pub.WriteRTCP([]rtcp.Packet{pli}); err == nil {
		r.owner.c.s.cfg.Metrics.PLISent.Add(1)
	}
}

// setMuted records the publisher's media notice. Unmuting starts an upgrade:
// subscribers wait for a keyframe, which is requested at once.
func (r *Receiver) setMuted(muted bool, path string) {
	if r.muted.Swap(muted) == muted {
		return
	}
	if muted {
		return
	}
	r.beginUpgrade(path)
	for _, d := range *r.downs.Load() {
		d.requestResync()
	}
	if r.started.Load() {
		r.lastPLI.Store(time.Now().UnixNano())
		r.sendPLI()
	}
}

// beginUpgrade starts timing an upgrade unless one is already being timed
// (the re-offer and the notice of one renegotiated upgrade are one upgrade).
func (r *Receiver) beginUpgrade(path string) {
	if r.kind != KindVideo || !r.upgradeAt.CompareAndSwap(0, time.Now().UnixNano()) {
		return
	}
	r.upgradePath.Store(&path)
	if f := r.owner.c.s.cfg.Metrics.OnUpgradeStart; f != nil {
		f(path)
	}
}

// start runs when the first RTP packet of this m-line arrives. It binds the
// tap, asks for a keyframe, and forwards until the track ends.
func (r *Receiver) start(track *webrtc.TrackRemote, rr *webrtc.RTPReceiver) {
	c := r.owner.c
	r.setMime(track.Codec().MimeType)
	r.ssrc.Store(uint32(track.SSRC()))
	if r.kind == KindVideo && r.upgradeAt.Load() == 0 && !r.muted.Load() {
		// RTP before any notice: the pre-negotiated path's upgrade starts here.
		r.beginUpgrade("prenegotiated")
	}
	r.started.Store(true)
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
	if r.kind == KindVideo {
		r.lastPLI.Store(time.Now().UnixNano())
		r.sendPLI()
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
	r.forward(track)
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
	if len(pkt.Payload) == 0 || r.muted.Load() {
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
		r.observeUpgrade()
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

func (r *Receiver) observeUpgrade() {
	at := r.upgradeAt.Swap(0)
	if at == 0 {
		return
	}
	if f := r.owner.c.s.cfg.Metrics.OnUpgrade; f != nil {
		f(*r.upgradePath.Load(), time.Duration(time.Now().UnixNano()-at))
	}
}

// readRTCP drains the publisher's RTCP (which drives pion's interceptors) and
// hands sender reports to the taps.
func (r *Receiver) readRTCP(rr *webrtc.RTPReceiver) {
	buf := make([]byte, 1500)
	for {
		n, _, err := rr.Read(buf)
		if err != nil {
			if !errors.Is(err, io.EOF) {
				r.owner.c.s.log.Debug("rtcp read ended", "err", err)
			}
			return
		}
		pkts, err := rtcp.Unmarshal(buf[:n])
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
