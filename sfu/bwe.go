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
type link struct {
	gcc        atomic.Pointer[gccEstimator]
	feedbackAt atomic.Int64 // unix nanos of the last transport-cc feedback
	remb       atomic.Uint64
	rembAt     atomic.Int64
}

type gccEstimator struct{ cc.BandwidthEstimator }

// estimate is the link's available bandwidth in bits/s, the smaller of the
// fresh estimates; ok is false when the subscriber gave no feedback lately.
func (l *link) estimate(now time.Time) (bps uint64, ok bool) {
	cutoff := now.Add(-feedbackFresh).UnixNano()
	if g := l.gcc.Load(); g != nil && l.feedbackAt.Load() > cutoff {
		bps, ok = uint64(max(g.GetTargetBitrate(), 0)), true
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
		case *rtcp.ReceiverEstimatedMaximumBitrate:
			l.remb.Store(uint64(p.Bitrate))
			l.rembAt.Store(now.UnixNano())
		}
	}
}

// links holds a link per peer connection from the moment pion builds the
// connection's interceptors (inside NewPeerConnection, before the
// Participant has it) until the Participant takes it.
type links struct{ m sync.Map } // pc id -> *link

func (ls *links) get(id string) *link {
	l, _ := ls.m.LoadOrStore(id, &link{})
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
// pacer: the SFU forwards as it receives and steers the publishers instead),
// the transport-wide sequence numbers the subscriber's feedback refers to,
// and an observer of the subscriber's feedback.
func addBandwidthEstimation(m *webrtc.MediaEngine, ir *interceptor.Registry, ls *links, maxBitrate int) error {
	f, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		return gcc.NewSendSideBWE(gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
			gcc.SendSideBWEInitialBitrate(maxBitrate), gcc.SendSideBWEMaxBitrate(maxBitrate),
			gcc.SendSideBWEMinBitrate(minVideoBitrate/2))
	})
	if err != nil {
		return err
	}
	f.OnNewPeerConnection(func(id string, e cc.BandwidthEstimator) {
		ls.get(id).gcc.Store(&gccEstimator{e})
	})
	ir.Add(f)
	if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
		return err
	}
	ir.Add(linkObserverFactory{ls})
	return nil
}

// linkObserver feeds a connection's link with the feedback its subscriber sends.
type linkObserver struct {
	interceptor.NoOp
	l *link
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
			o.l.observe(pkts, time.Now())
		}
		return n, a, nil
	})
}

type linkObserverFactory struct{ ls *links }

func (f linkObserverFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return &linkObserver{l: f.ls.get(id)}, nil
}
