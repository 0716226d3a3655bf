package sfu

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// The NACK responder answers a subscriber's NACKs from a history of what
// its connection sent. It takes pion's place (nack.ResponderInterceptor)
// because pion's history is a fixed number of slots, each a 1,460-byte
// copy, whatever the stream's rate: 256 slots hold 800 ms of video at the
// bitrate ceiling but 13 s at the 150 kbit/s a consultation often runs at,
// and that was the largest part of a consultation's memory. Here:
//
//   - a stream keeps only what was sent in the last maxNackAge (older NACKs
//     are refused by the NACK guard, nackguard.go, and answered with a
//     keyframe), so the history follows the stream's packet rate;
//   - its slots grow by doubling up to maxSlots, so a slow stream has a
//     small ring and the ceiling's rate still fits;
//   - packet copies come from pools shared by every stream, sized to the
//     packet, so steady forwarding allocates nothing.
//
// What pion's responder did and this one keeps: a packet is resent at most
// once per round trip (from the subscriber's receiver reports) plus 5 ms,
// resends stay within the link's retransmission budget (nackBudget), and a
// stream negotiated with RTX is answered on its RTX SSRC (RFC 4588).

// nackResponderFactory builds a responder per subscribe connection.
type nackResponderFactory struct {
	maxSlots uint16
	ls       *links
}

func (f nackResponderFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	l := f.ls.get(id)
	n := &nackResponder{maxSlots: int(f.maxSlots), budget: &nackBudget{l: l}, streams: map[uint32]*history{}}
	resend := n.resendLost
	l.resendLost.Store(&resend)
	return n, nil
}

// nackResponder is one connection's responder.
type nackResponder struct {
	interceptor.NoOp
	maxSlots int
	budget   *nackBudget
	rate     tokenBucket

	mu      sync.Mutex
	streams map[uint32]*history // by media SSRC
}

// BindLocalStream keeps a history of a stream that the subscriber may NACK.
func (n *nackResponder) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if !supportsNack(info) {
		return w
	}
	h := &history{w: w, maxSlots: n.maxSlots, ssrc: info.SSRC, rtxSSRC: info.SSRCRetransmission, rtxPT: info.PayloadTypeRetransmission}
	n.mu.Lock()
	n.streams[info.SSRC] = h
	n.mu.Unlock()
	return interceptor.RTPWriterFunc(func(hdr *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		if hdr.SSRC == info.SSRC {
			h.add(hdr, payload, time.Now().UnixNano())
		}
		return w.Write(hdr, payload, a)
	})
}

// UnbindLocalStream gives the stream's packet copies back to the pools.
func (n *nackResponder) UnbindLocalStream(info *interceptor.StreamInfo) {
	n.mu.Lock()
	h := n.streams[info.SSRC]
	delete(n.streams, info.SSRC)
	n.mu.Unlock()
	if h != nil {
		h.clear()
	}
}

// Close gives every stream's packet copies back to the pools.
func (n *nackResponder) Close() error {
	n.mu.Lock()
	hs := n.streams
	n.streams = map[uint32]*history{}
	n.mu.Unlock()
	for _, h := range hs {
		h.clear()
	}
	return nil
}

// BindRTCPReader answers NACKs (as the NACK guard left them) and follows
// the round trip from receiver reports.
func (n *nackResponder) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		i, a, err := r.Read(b, a)
		if err != nil {
			return i, a, err
		}
		if a == nil {
			a = interceptor.Attributes{}
		}
		pkts, err := a.GetRTCPPackets(b[:i])
		if err != nil {
			return i, a, nil // not ours to judge; the next reader sees the same bytes
		}
		now := time.Now()
		for _, p := range pkts {
			switch p := p.(type) {
			case *rtcp.ReceiverReport:
				n.updateRTT(p.Reports, now)
			case *rtcp.TransportLayerNack:
				n.resend(p, now)
			}
		}
		return i, a, nil
	})
}

func (n *nackResponder) stream(ssrc uint32) *history {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.streams[ssrc]
}

func (n *nackResponder) updateRTT(reports []rtcp.ReceptionReport, now time.Time) {
	for _, r := range reports {
		if h := n.stream(r.SSRC); h != nil && r.LastSenderReport != 0 {
			if rtt := ntp32(now) - r.LastSenderReport - r.Delay; rtt < 1<<31 {
				h.setRTT(time.Duration(rtt) * time.Second / (1 << 16))
			}
		}
	}
}

// resend answers one NACK in the order its packets were asked for, until
// the retransmission budget runs out.
func (n *nackResponder) resend(nack *rtcp.TransportLayerNack, now time.Time) {
	h := n.stream(nack.MediaSSRC)
	if h == nil {
		return
	}
	bps := n.budget.GetTargetBitrate()
	for _, p := range nack.Nacks {
		for _, seq := range p.PacketList() {
			if !h.resend(seq, now.UnixNano(), func(size int) bool { return n.rate.allow(now, size, bps) }) {
				return
			}
		}
	}
}

// supportsNack reports whether the subscriber negotiated NACK for the stream.
func supportsNack(info *interceptor.StreamInfo) bool {
	for _, fb := range info.RTCPFeedback {
		if fb.Type == "nack" && fb.Parameter == "" {
			return true
		}
	}
	return false
}

// ntp32 is the middle 32 bits of now as an NTP timestamp, the unit of
// receiver reports' LSR and DLSR.
func ntp32(now time.Time) uint32 {
	const ntpEpochOffset = 2208988800
	s := uint64(now.Unix()) + ntpEpochOffset
	frac := uint64(now.Nanosecond()) << 32 / 1e9
	return uint32((s<<32 | frac) >> 16)
}

// tokenBucket keeps resends within a bitrate, with a burst of half a
// second's worth (libwebrtc's retransmission window, as pion's responder).
type tokenBucket struct {
	mu     sync.Mutex
	at     time.Time
	tokens float64 // bytes
}

func (b *tokenBucket) allow(now time.Time, size, bps int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	burst := float64(max(bps, 0)) / 8 / 2
	if b.at.IsZero() {
		b.tokens = burst
	} else {
		b.tokens = min(b.tokens+now.Sub(b.at).Seconds()*float64(bps)/8, burst)
	}
	b.at = now
	if b.tokens < float64(size) {
		return false
	}
	b.tokens -= float64(size)
	return true
}

// rtxHeader is the RTX payload's original sequence number (RFC 4588).
const rtxHeader = 2

// putOSN writes the original sequence number in front of an RTX payload.
func putOSN(b []byte, seq uint16) { binary.BigEndian.PutUint16(b, seq) }
