package sfu

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// feedbackFresh is how long a subscriber's last congestion feedback (a
// transport-cc report or a REMB) keeps its estimate in use. A subscriber
// that stops reporting stops constraining its publishers.
const feedbackFresh = 3 * time.Second

// link is what the SFU knows about the downlink of one subscribe
// connection: pion's send-side estimator (GCC, fed by the subscriber's
// transport-cc feedback on the media the SFU sends it) and the subscriber's
// own receive-side estimate (REMB), whichever it sends. Safe for concurrent
// use: the interceptors write it, the rate controllers read it.
//
// The SFU sends only what its publishers send and never probes, so GCC's
// target on an uncongested link is no measure of its capacity (it follows
// 1.5 times what was delivered, and from an audio-only start it would keep
// video at the floor for half a minute). The link therefore has no cap
// until GCC sees congestion (loss or delay overuse, three times in a row);
// from then on the cap moves as capState.step says, until it grows back to
// the ceiling and is lifted.
type link struct {
	gcc        atomic.Pointer[gccEstimator]
	feedbackAt atomic.Int64 // unix nanos of the last transport-cc feedback
	remb       atomic.Uint64
	rembAt     atomic.Int64

	ceiling uint64 // GCC's maximum; a cap that grows to it is lifted

	sent atomic.Uint64
	// onStale is called with the SSRC of an outgoing stream whose subscriber
	// asked for packets too old to resend.
	onStale atomic.Pointer[func(ssrc uint32)] // bytes of RTP sent on the connection

	mu       sync.Mutex // guards the cap and the last step's time and bytes
	cap      capState
	stepAt   time.Time
	stepSent uint64

	losses lossReports // what the subscriber reports lost, per stream (lossreport.go)
}

type gccEstimator struct{ cc.BandwidthEstimator }

// capState is a link's congestion cap in bits/s (zero means none), how
// many observations in a row saw delay overuse or loss (one or two alone
// may be a scheduling hiccup or a burst of random loss, so congestion
// counts from the third, 100 ms apart), how many observations ago the
// cap was last cut, and the knee: the cap the last cut set, where the link
// was last found full, near which the cap grows slowly (zero once the cap
// has grown well past it: the link has room it did not have then).
type capState struct {
	bps      uint64
	strikes  int
	sinceCut int
	knee     uint64
}

const (
	capInterval = 100 * time.Millisecond
	// congestedLoss is the average loss at which a link counts as congested
	// even without delay overuse (a shallow buffer drops before it queues).
	// It is GCC's own threshold: below it, loss is the radio's, not the
	// rate's, and cutting would not help (NACKs and FEC do).
	congestedLoss = 0.1
	// capGrowth per capInterval without congestion: about 10% a second,
	// and kneeGrowth, about 1% a second, from the knee to kneeSpan times
	// it. Growing fast through the rate at which the link was last full
	// fills its queue again within seconds (a freeze every ~10 s on a
	// 500 kbit/s link); growing slowly there lets GCC see the queue build
	// as delay before it overflows.
	capGrowth  = 1.01
	kneeGrowth = 1.001
	kneeSpan   = 1.25
	// cutHold observations pass between two cuts: the loss and delay a
	// cut answers take a moment to clear (the link's queue drains, the
	// publisher's encoder settles on the new rate, about a second), and
	// must not be answered twice.
	cutHold = 10
	// maxCut is the deepest one cut goes (a fraction of the cap before it):
	// a measurement taken while the publisher was already slowing down must
	// not send video to the floor.
	maxCut = 0.5
)

// step moves the cap on by one observation: the link's bandwidth as
// measured now (linkTarget), what the SFU was sending on it, whether GCC
// sees delay overuse or loss, and the ceiling. It is additive-increase,
// multiplicative-decrease on GCC's congestion signals: congestion cuts the
// cap to the measurement (at most by maxCut of the cap, or of what was
// being sent when there was none, at most once per cutHold), quiet lets
// it grow by capGrowth (kneeGrowth near the knee), and at the ceiling it
// is lifted. GCC's own target between congestions is no measure here: the
// SFU never probes, so it follows what was sent.
func (c capState) step(measured, sending uint64, overuse, loss bool, ceiling uint64) capState {
	c.sinceCut++
	if overuse || loss {
		c.strikes++
	} else {
		c.strikes = 0
	}
	if congested := c.strikes >= 3; congested {
		if c.bps != 0 && c.sinceCut <= cutHold {
			return c
		}
		prev := c.bps
		if prev == 0 {
			prev = min(max(sending, measured), ceiling)
		}
		cut := max(min(measured, prev), uint64(maxCut*float64(prev)), 1)
		if cut >= ceiling {
			return c
		}
		c.bps, c.sinceCut, c.knee = cut, 0, cut
		return c
	}
	if c.bps == 0 {
		return c
	}
	growth := capGrowth
	if c.knee > 0 && c.bps >= c.knee {
		growth = kneeGrowth
	}
	c.bps = uint64(float64(c.bps) * growth)
	if float64(c.bps) > kneeSpan*float64(c.knee) {
		c.knee = 0
	}
	if c.bps >= ceiling {
		c.bps, c.knee = 0, 0
	}
	return c
}

// linkTarget is the link's bandwidth as measured now. On delay overuse it
// is GCC's delay-based target (85% of what the subscriber acknowledged
// receiving, lost packets excluded). On loss alone it is 85% of what got
// through; GCC's loss-based part, without a pacer, halves again and again
// down to the floor.
func linkTarget(overuse bool, delayTarget int, loss, sentBps float64) uint64 {
	if overuse && delayTarget > 0 {
		return uint64(delayTarget)
	}
	return uint64(max(0.85*sentBps*(1-min(max(loss, 0), 1)), 0))
}

// estimate is the link's available bandwidth in bits/s, the smaller of the
// cap and a fresh REMB; ok is false when neither constrains it.
func (l *link) estimate(now time.Time) (bps uint64, ok bool) {
	cutoff := now.Add(-feedbackFresh).UnixNano()
	if l.feedbackAt.Load() > cutoff {
		l.mu.Lock()
		bps, ok = l.cap.bps, l.cap.bps > 0
		l.mu.Unlock()
	}
	if l.rembAt.Load() > cutoff {
		if r := l.remb.Load(); !ok || r < bps {
			bps, ok = r, true
		}
	}
	return bps, ok
}

// observe notes the congestion feedback in a batch of RTCP from the subscriber.
func (l *link) observe(pkts []rtcp.Packet, now time.Time) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerCC:
			l.feedbackAt.Store(now.UnixNano())
			l.stepCap(now)
		case *rtcp.ReceiverReport:
			l.losses.note(p.Reports, now)
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			l.remb.Store(uint64(p.Bitrate))
			l.rembAt.Store(now.UnixNano())
		}
	}
}

// stepCap reads GCC at most once per capInterval.
func (l *link) stepCap(now time.Time) {
	g := l.gcc.Load()
	if g == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.stepAt) < capInterval {
		return
	}
	dt := now.Sub(l.stepAt).Seconds()
	sent := l.sent.Load()
	rate := float64(sent-l.stepSent) * 8 / dt
	l.stepAt, l.stepSent = now, sent
	st := g.GetStats()
	loss, _ := st["averageLoss"].(float64)
	usage, _ := st["usage"].(string)
	delayTarget, _ := st["delayTargetBitrate"].(int)
	// Before its first delay update GCC's usage reads "overuse" (its zero value).
	overuse := usage == "overuse" && delayTarget > 0
	l.cap = l.cap.step(linkTarget(overuse, delayTarget, loss, rate), uint64(rate), overuse, loss > congestedLoss, l.ceiling)
}

// links holds a link per peer connection from the moment pion builds the
// connection's interceptors (inside NewPeerConnection, before the
// Participant has it) until the Participant takes it.
type links struct {
	m       sync.Map // pc id -> *link
	ceiling uint64
	// downLoss is SFU.downstreamLoss, set before any connection exists.
	downLoss func(pcID string, ssrc uint32) uint8
}

func (ls *links) get(id string) *link {
	l, _ := ls.m.LoadOrStore(id, &link{ceiling: ls.ceiling})
	return l.(*link)
}

// take hands over the link of a new peer connection and forgets it here.
func (ls *links) take(pc *webrtc.PeerConnection) *link {
	l, _ := ls.m.LoadAndDelete(pc.ID())
	if l == nil {
		return &link{}
	}
	return l.(*link)
}

// addBandwidthEstimation registers, ahead of pion's defaults, GCC (without a
// pacer: the SFU forwards as it receives and steers the publishers instead;
// a pacer at the link's cap was tried and froze no less, see
// docs/quality.md),
// the transport-wide sequence numbers the subscriber's feedback refers to,
// and an observer of the subscriber's feedback that also guards the NACK
// responder (nackguard.go).
func addBandwidthEstimation(m *webrtc.MediaEngine, ir *interceptor.Registry, ls *links, maxBitrate int, metrics *Metrics) error {
	f, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		e, err := gcc.NewSendSideBWE(gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
			gcc.SendSideBWEInitialBitrate(maxBitrate), gcc.SendSideBWEMaxBitrate(maxBitrate),
			gcc.SendSideBWEMinBitrate(minVideoBitrate/2))
		return &nackBudget{SendSideBWE: e}, err
	})
	if err != nil {
		return err
	}
	f.OnNewPeerConnection(func(id string, e cc.BandwidthEstimator) {
		b := e.(*nackBudget)
		b.l = ls.get(id)
		b.l.gcc.Store(&gccEstimator{b.SendSideBWE})
	})
	ir.Add(f)
	ls.ceiling = uint64(maxBitrate)
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return err
	}
	// The subscriber sends transport-cc feedback only where it is negotiated.
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeAudio)
	ir.Add(linkObserverFactory{ls, metrics})
	return nil
}

// linkObserver feeds a connection's link with the feedback its subscriber sends.
type linkObserver struct {
	interceptor.NoOp
	l    *link
	m    *Metrics
	logs sync.Map // ssrc -> *sentLog
}

func (o *linkObserver) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		if a == nil {
			a = interceptor.Attributes{}
		}
		if pkts, err := a.GetRTCPPackets(b[:n]); err == nil {
			now := time.Now()
			o.l.observe(pkts, now)
			o.guardNacks(pkts, now)
		}
		return n, a, nil
	})
}

type linkObserverFactory struct {
	ls *links
	m  *Metrics
}

func (f linkObserverFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return &linkObserver{l: f.ls.get(id), m: f.m}, nil
}
