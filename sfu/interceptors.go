package sfu

import (
	"fmt"
	"math/bits"

	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/webrtc/v4"
)

// Each of a participant's two connections carries media one way, so each
// gets only the interceptors that direction needs (pion's defaults put all of
// them on every connection, and each keeps per-stream state):
//
//   - publish (the SFU receives): NACK generator, receiver reports,
//     transport-cc feedback (browsers steer their encoders by it), and the
//     count of NACKs sent.
//   - subscribe (the SFU sends): bandwidth estimation and the NACK guard
//     (bwe.go, nackguard.go), a NACK responder whose history holds what
//     was sent in the NACK window, in at most nackResponderSize slots
//     (nackresponder.go), which also resends what the transport-cc
//     feedback reports lost (lossresend.go), and sender reports
//     (subscribers' lip sync).
//
// Both chains end with attrsFactory, which lends each packet one attributes
// map so the header and RTCP are parsed once per chain (attrpool.go).
//
// No stats interceptor: nothing in medcall reads pion's GetStats, and it
// would keep a recorder per stream on both connections.

// nackPacketBytes is the smallest average video packet medcall expects at
// its bitrate ceiling; smaller packets at the ceiling would mean more
// packets per second than the responder's history is sized for.
const nackPacketBytes = 1000

// nackResponderSize is how many sent video packets a subscribe connection
// keeps per stream to answer NACKs from: every packet of the last
// maxNackAge (older NACKs are answered with a keyframe instead, see
// nackguard.go) at maxVideoBitrate, rounded up to the power of two pion
// requires. At the default 1.5 Mbit/s that is 256 packets (pion's default
// is 1024, each a 1460-byte copy); a slower stream's ring stays smaller
// (nackhistory.go).
func nackResponderSize(maxVideoBitrate int) uint16 {
	pps := float64(maxVideoBitrate) / 8 / nackPacketBytes
	n := uint(pps*maxNackAge.Seconds()) + 1
	return uint16(min(max(uint(1)<<bits.Len(n-1), 64), 32768))
}

// engines are the media engines of publish and subscribe connections: the
// same codecs, and RTX and RED on the subscribe side only (rtx.go, red.go).
type engines struct{ pub, sub *webrtc.MediaEngine }

// newMediaEngine registers the codecs medcall forwards (Opus, VP8, VP9; never
// H.264, which cannot be recorded into WebM) with their feedback and header
// extensions, and builds the interceptors of publish and subscribe
// connections.
func newMediaEngine(cfg Config, ls *links) (e engines, pub, sub *interceptor.Registry, err error) {
	for _, m := range []**webrtc.MediaEngine{&e.pub, &e.sub} {
		*m = &webrtc.MediaEngine{}
		if err := RegisterCodecs(*m); err != nil {
			return e, nil, nil, err
		}
		if err := webrtc.ConfigureSimulcastExtensionHeaders(*m); err != nil {
			return e, nil, nil, fmt.Errorf("sfu: header extensions: %w", err)
		}
	}
	m := e.pub
	pub, sub = &interceptor.Registry{}, &interceptor.Registry{}

	pub.Add(nackCounterFactory{m: cfg.Metrics})
	gen, err := nack.NewGeneratorInterceptor()
	if err != nil {
		return e, nil, nil, fmt.Errorf("sfu: NACK generator: %w", err)
	}
	pub.Add(gen)
	rr, err := report.NewReceiverInterceptor()
	if err != nil {
		return e, nil, nil, fmt.Errorf("sfu: receiver reports: %w", err)
	}
	pub.Add(lossReporterFactory{ls}) // before rr: it edits what rr writes
	pub.Add(rr)
	// ConfigureTWCCSender negotiates transport-cc for both kinds and adds the
	// feedback sender, which belongs here only.
	if err := webrtc.ConfigureTWCCSender(m, pub); err != nil {
		return e, nil, nil, fmt.Errorf("sfu: transport-cc feedback: %w", err)
	}
	pub.Add(attrsFactory{}) // last: outermost (attrpool.go)

	// Order matters on the subscribe side: the NACK guard (added by
	// addBandwidthEstimation) reads each NACK before the responder does.
	m = e.sub
	if err := addBandwidthEstimation(m, sub, ls, cfg.MaxVideoBitrate+2*audioReserve, cfg.Metrics); err != nil {
		return e, nil, nil, fmt.Errorf("sfu: bandwidth estimation: %w", err)
	}
	if err := registerRTX(m); err != nil {
		return e, nil, nil, err
	}
	if err := registerRED(m); err != nil {
		return e, nil, nil, fmt.Errorf("sfu: register RED: %w", err)
	}
	size := cfg.NACKHistory
	if size == 0 {
		size = nackResponderSize(cfg.MaxVideoBitrate)
	}
	if size&(size-1) != 0 {
		return e, nil, nil, fmt.Errorf("sfu: NACK history of %d packets: not a power of two (use one)", size)
	}
	sub.Add(nackResponderFactory{maxSlots: size, ls: ls})
	sr, err := report.NewSenderInterceptor()
	if err != nil {
		return e, nil, nil, fmt.Errorf("sfu: sender reports: %w", err)
	}
	sub.Add(sr)
	sub.Add(attrsFactory{}) // last: outermost (attrpool.go)
	return e, pub, sub, nil
}
