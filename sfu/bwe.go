package sfu

import (
	"log/slog"
	"math"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/sfu/gcc"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// feedbackFresh is how long a subscriber's last congestion feedback (a
// transport-cc report or a REMB) keeps its estimate in use. A subscriber
// that stops reporting stops constraining its publishers.
const feedbackFresh = 3 * time.Second

// link is what the SFU knows about the downlink of one subscribe
// connection: the send-side estimator (GCC, pion's copied into sfu/gcc,
// fed by the subscriber's transport-cc feedback on the media the SFU sends
// it) and the subscriber's own receive-side estimate (REMB), whichever it
// sends. Safe for concurrent use: the interceptors write it, the rate
// controllers read it.
//
// The SFU sends only what its publishers send and never probes, so GCC's
// target on an uncongested link is no measure of its capacity (it follows
// 1.5 times what was delivered, and from an audio-only start it would keep
// video at the floor for half a minute). The link therefore has no cap
// until it is congested (loss or delay overuse in three of the last four
// observations, or an overflow);
// from then on the cap moves as capState.step says, until it grows back to
// the ceiling and is lifted.
type link struct {
	gcc        atomic.Pointer[gccEstimator]
	feedbackAt atomic.Int64 // unix nanos of the last transport-cc feedback
	remb       atomic.Uint64
	rembAt     atomic.Int64

	ceiling uint64       // GCC's maximum; a cap that grows to it is lifted
	log     *slog.Logger // nil logs nothing

	sent atomic.Uint64 // bytes of RTP sent on the connection
	rate atomic.Uint64 // bits/s sent over the last second, as of the last step
	// onStale is called with the SSRC of an outgoing stream whose subscriber
	// asked for packets too old to resend.
	onStale atomic.Pointer[func(ssrc uint32)]
	// resendLost is the NACK responder's resend of a packet the
	// subscriber's feedback reports lost (lossresend.go).
	resendLost atomic.Pointer[func(ssrc uint32, seq uint16, copyAt int64, now time.Time) bool]
	// onDrained is called when a link whose cap was cut while it dropped
	// packets carries everything again: its subscriber lost video frames
	// and needs a keyframe, and one asked for now gets through whole (one
	// asked for while the queue still overflowed was lost with the rest).
	onDrained atomic.Pointer[func()]
	// onOverflow is called when the cap is cut well below what the link
	// carries (below overflowCut of it): the link's queue is about to
	// overflow with what is already on its way.
	onOverflow atomic.Pointer[func()]
	// nackSince (unix nanos): packets sent before it are not resent. Set
	// at an overflow cut: the video sent until then is dropped by the
	// link or undecodable, and resending it would keep the link's queue
	// full when the keyframe that resumes the video comes.
	nackSince atomic.Int64
	lossCut   bool // dropped packets around a cut, not drained yet (guarded by mu)

	mu      sync.Mutex // guards the cap and the last step's time and bytes
	cap     capState
	stepAt  time.Time
	history sendHistory

	losses  lossReports  // what the subscriber reports lost, per stream (lossreport.go)
	fbLoss  feedbackLoss // what its transport-cc feedback reports lost since the last step
	lossWin lossWindow   // and over the last steps (guarded by mu)
}

type gccEstimator struct{ cc.BandwidthEstimator }

// capState is a link's congestion cap in bits/s (zero means none), which
// of the last four observations saw delay overuse or loss (one or two may
// be a hiccup or random loss, so congestion counts from the third of four;
// not three in a row: GCC's overuse signal flickers, and that cost 0.6 s
// of overflowing queue at 500 kbit/s), how many observations ago the cap
// was last cut, and the knee: the cap the last cut set, near which the cap
// grows slowly (zero once it has grown well past it).
type capState struct {
	bps      uint64
	recent   uint8 // bit i: the observation i steps ago was congested
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
	// heavyLoss in the last few steps' feedback is a queue overflowing,
	// whatever GCC's average says yet.
	heavyLoss = 0.25
	// overflowCut: a cut below this share of what the link was carrying
	// leaves it a queue that overflows (onOverflow).
	overflowCut = 0.7
	// drainedLoss is the loss in one step's feedback below which a link
	// cut for dropping packets counts as drained.
	drainedLoss = 0.02
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
	// A cut that landed well above the link (to below recutBelow of it) is
	// corrected after recutHold observations: GCC's measurement was still
	// falling when the first one was made, and a link whose queue overflows
	// for another second freezes the video. While the measurement is that
	// far below the cap the link is still full (a publisher already below
	// the link drains its queue and ends the congestion).
	recutHold  = 1
	recutBelow = 0.8
	// maxCut is the deepest one cut goes (a fraction of the cap before it):
	// a measurement taken while the publisher was already slowing down must
	// not send video to the floor. The first cut on a link may go deeper, to
	// firstCut of what was being sent: nothing had slowed down, and a link
	// found full at a third of the stream's rate (1.5 Mbit/s into 500
	// kbit/s) must not be cut in two steps, over a second apart, while its
	// queue overflows.
	maxCut   = 0.5
	firstCut = 0.25
)

// step moves the cap on by one observation: the link's bandwidth as
// measured now (linkTarget), what the SFU was sending on it, whether GCC
// sees delay overuse or loss, whether the feedback shows the queue
// overflowing (lossWindow.overflowing), and the ceiling. It is additive-increase,
// multiplicative-decrease on GCC's congestion signals: congestion cuts the
// cap to the measurement (at most by maxCut of the cap, or of what was
// being sent when there was none, at most once per cutHold), quiet lets
// it grow by capGrowth (kneeGrowth near the knee), and at the ceiling it
// is lifted. GCC's own target between congestions is no measure here: the
// SFU never probes, so it follows what was sent.
func (c capState) step(measured, sending uint64, overuse, loss, overflow bool, ceiling uint64) capState {
	c.sinceCut++
	c.recent <<= 1
	switch {
	case overflow: // counts as three: an overflowing queue must not wait for the third of four
		c.recent |= 0b111
	case overuse || loss:
		c.recent |= 1
	}
	c.recent &= 0b1111
	if congested := c.recent&1 == 1 && bits.OnesCount8(c.recent) >= 3; congested {
		if c.bps != 0 && c.sinceCut <= cutHold &&
			(c.sinceCut <= recutHold || float64(measured) >= recutBelow*float64(c.bps)) {
			return c
		}
		prev, deepest := c.bps, maxCut
		if prev == 0 {
			prev, deepest = min(max(sending, measured), ceiling), firstCut
		}
		cut := max(min(measured, prev), uint64(deepest*float64(prev)), 1)
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
			l.fbLoss.note(p)
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
	l.stepAt = now
	rate := l.history.add(now, l.sent.Load())
	l.rate.Store(uint64(rate))
	st := g.GetStats()
	avgLoss, _ := st["averageLoss"].(float64)
	received, lost := l.fbLoss.take()
	loss, ok := l.lossWin.add(received, lost)
	if !ok {
		loss = avgLoss
	}
	// Heavy loss in the window is an overflowing queue at once; moderate
	// loss only once GCC's slower average confirms it (random loss of a few
	// percent can fill one window past congestedLoss), and GCC's average
	// alone never: it stays high for a second after the link stops losing,
	// and cut a link whose video had just been paused (so little was sent)
	// twice more, down to the floor.
	lossy := loss > heavyLoss || (loss > congestedLoss && avgLoss > congestedLoss)
	// Two steps in a row that each lost most of what they carried: the
	// link's queue overflows now, whether or not GCC saw it fill.
	overflow := false
	if r, ok := l.lossWin.overflowing(); ok {
		loss, overflow = r, true
	}
	usage, _ := st["usage"].(string)
	delayTarget, _ := st["delayTargetBitrate"].(int)
	// Before its first delay update GCC's usage reads "overuse" (its zero value).
	overuse := usage == "overuse" && delayTarget > 0
	prev := l.cap.bps
	l.cap = l.cap.step(linkTarget(overuse, delayTarget, loss, rate), uint64(rate), overuse, lossy, overflow, l.ceiling)
	if cut := l.cap.sinceCut == 0 && l.cap.bps != prev; cut {
		if l.log != nil {
			l.log.Debug("downlink cut", "bps", l.cap.bps, "from", prev, "sending", uint64(rate),
				"loss", math.Round(loss*1000)/1000, "overuse", overuse, "delay_target", delayTarget)
		}
		// What the link carried: the rate sent over the last second, or
		// the cap before this cut when that is less (the publisher already
		// follows it, and the second's average still holds what was sent
		// before: a re-cut after an overflow was taken for another one,
		// and the pause that followed threw away the keyframe that had
		// just resumed the video).
		carried := rate
		if prev > 0 {
			carried = min(rate, float64(prev))
		}
		if float64(l.cap.bps) < overflowCut*carried {
			l.nackSince.Store(now.UnixNano())
			fire(&l.onOverflow)
		}
	}
	stepLossy := received+lost > 0 && float64(lost) >= drainedLoss*float64(received+lost)
	if l.cap.bps != 0 && l.cap.sinceCut <= cutHold && stepLossy {
		// Dropping packets around a cut (the first is often made on delay
		// alone, just before the queue overflows).
		l.lossCut = true
	} else if l.lossCut && !overuse && received > 0 && !stepLossy {
		l.lossCut = false
		fire(&l.onDrained)
	}
}

// fire runs the callback h holds, if any, on its own goroutine: the link's
// lock is held and the callbacks take the Participant's.
func fire(h *atomic.Pointer[func()]) {
	if f := h.Load(); f != nil {
		go (*f)()
	}
}

// links holds a link per peer connection from the moment pion builds the
// connection's interceptors (inside NewPeerConnection, before the
// Participant has it) until the Participant takes it.
type links struct {
	m       sync.Map // pc id -> *link
	ceiling uint64
	// downLoss is SFU.downstreamLoss, set before any connection exists.
	downLoss func(pcID string, ssrc uint32) uint8
	log      *slog.Logger // the SFU's; nil logs nothing
}

func (ls *links) get(id string) *link {
	l, _ := ls.m.LoadOrStore(id, &link{ceiling: ls.ceiling, log: ls.log})
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
		// It writes at once (no pacer); attrpool.go relies on it.
		e, err := gcc.NewSendSideBWE(gcc.SendSideBWEInitialBitrate(maxBitrate), gcc.SendSideBWEMaxBitrate(maxBitrate),
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
	// The observer sits nearer the wire than the transport-wide numbers
	// are stamped: it notes each packet's number (lossresend.go).
	ir.Add(linkObserverFactory{ls, metrics})
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return err
	}
	// The subscriber sends transport-cc feedback only where it is negotiated.
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeVideo)
	m.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, webrtc.RTPCodecTypeAudio)
	return nil
}

// linkObserver feeds a connection's link with the feedback its subscriber sends.
type linkObserver struct {
	interceptor.NoOp
	l      *link
	m      *Metrics
	logs   sync.Map // ssrc -> *sentLog
	copies sentCopies
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
			o.resendReported(pkts, now)
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
