package sfu

import (
	"sync"
	"time"

	"github.com/medcall/medcall/sfu/gcc"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// Loss repair without storms. The NACK responder (nackresponder.go, which
// keeps pion's rules) answers a subscriber's NACK from its packet history;
// it resends one packet at most once per round trip, and keeps the bytes it
// resends within the rate its connection's congestion controller reports.
// medcall narrows both:
//   - the rate it reports to the responder is retransmitShare of the link's
//     estimate (while the link has no cap, uncappedShare of what it
//     carries), so repair never takes the bandwidth the media needs
//     (nackBudget);
//   - a NACK for a packet sent more than maxNackAge ago is refused before the
//     responder sees it: the subscriber's jitter buffer has given up on it,
//     and what it needs is a keyframe, which is requested at once (throttled
//     by the Receiver) rather than when the subscriber gets round to a PLI.
//
// What the subscriber's transport-cc feedback reports lost is resent too,
// without waiting for a NACK it repeats only every 100 ms (lossresend.go).
const (
	retransmitShare = 0.5
	// uncappedShare of the link's rate is the budget while it has no cap:
	// 5 % random loss needs a tenth of it at most.
	uncappedShare       = 0.2
	minRetransmitBudget = 64_000
	maxNackAge          = 800 * time.Millisecond
	sentLogSize         = 1024
)

// sentLog remembers when each of the last sentLogSize sequence numbers of
// one outgoing stream was first sent.
type sentLog struct {
	mu  sync.Mutex
	at  [sentLogSize]int64 // unix nanos; 0 for none
	seq [sentLogSize]uint16
}

// sent records a packet; it reports whether the packet was sent before (a
// retransmission).
func (s *sentLog) sent(seq uint16, now int64) (again bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := seq % sentLogSize
	if s.at[i] != 0 && s.seq[i] == seq {
		return true
	}
	s.at[i], s.seq[i] = now, seq
	return false
}

// fresh reports whether seq was sent within maxAge of now and not before
// since (unix nanos).
func (s *sentLog) fresh(seq uint16, now, since int64, maxAge time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := seq % sentLogSize
	return s.at[i] != 0 && s.seq[i] == seq && now-s.at[i] <= int64(maxAge) && s.at[i] >= since
}

// filterNack keeps in n only the sequence numbers log says are fresh (and
// sent since since) and returns how many were asked for and how many were
// kept.
func filterNack(n *rtcp.TransportLayerNack, log *sentLog, now, since int64) (asked, kept int) {
	var keep []uint16
	for _, p := range n.Nacks {
		for _, seq := range p.PacketList() {
			asked++
			if log.fresh(seq, now, since, maxNackAge) {
				keep = append(keep, seq)
			}
		}
	}
	if len(keep) < asked {
		n.Nacks = rtcp.NackPairsFromSequenceNumbers(keep)
	}
	return asked, len(keep)
}

// nackBudget is the GCC estimator as pion's cc interceptor sees it: the
// "target bitrate" it hands the NACK responder is the retransmission budget.
// The link reads the real estimator (Unwrap).
type nackBudget struct {
	*gcc.SendSideBWE
	l *link
}

// GetTargetBitrate is the retransmission budget of the link, in bits/s:
// retransmitShare of its cap, or while it has none, uncappedShare of what
// it carried over the last second when its feedback measures that (at
// least minRetransmitBudget, at most retransmitShare of the ceiling). A
// link without a cap may be filling unnoticed, and half the ceiling's
// worth of resends fills its queue twice as fast.
func (b *nackBudget) GetTargetBitrate() int {
	if b.l == nil {
		return 0
	}
	b.l.mu.Lock()
	capped := b.l.cap.bps
	b.l.mu.Unlock()
	if capped > 0 {
		return int(retransmitShare * float64(capped))
	}
	budget := retransmitShare * float64(b.l.ceiling)
	if r := b.l.rate.Load(); r > 0 { // measured: the subscriber sends transport-cc
		budget = min(budget, max(uncappedShare*float64(r), minRetransmitBudget))
	}
	return int(budget)
}

// BindLocalStream records what a connection sends, for the NACK filter and the
// retransmission counters.
func (o *linkObserver) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	log := &sentLog{}
	o.logs.Store(info.SSRC, log)
	id := uint8(0)
	if supportsNack(info) {
		id = twccID(info)
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		// A packet on the RTX stream (rtx.go) is a retransmission with a
		// sequence number of that stream's own.
		now := time.Now().UnixNano()
		again := h.SSRC != info.SSRC || log.sent(h.SequenceNumber, now)
		o.copies.noteCopy(info, id, h, payload, now)
		n, err := w.Write(h, payload, a)
		o.l.sent.Add(uint64(n))
		if again && err == nil {
			o.m.Retransmissions.Add(1)
			o.m.RetransmittedBytes.Add(uint64(n))
		}
		return n, err
	})
}

func (o *linkObserver) UnbindLocalStream(info *interceptor.StreamInfo) { o.logs.Delete(info.SSRC) }

// guardNacks drops from the subscriber's NACKs what it can no longer use.
func (o *linkObserver) guardNacks(pkts []rtcp.Packet, now time.Time) {
	for _, p := range pkts {
		n, ok := p.(*rtcp.TransportLayerNack)
		if !ok {
			continue
		}
		v, ok := o.logs.Load(n.MediaSSRC)
		if !ok {
			continue
		}
		asked, kept := filterNack(n, v.(*sentLog), now.UnixNano(), o.l.nackSince.Load())
		o.m.NACKedPackets.Add(uint64(asked))
		o.m.NACKStale.Add(uint64(asked - kept))
		if kept < asked {
			if f := o.l.onStale.Load(); f != nil {
				(*f)(n.MediaSSRC)
			}
		}
	}
}
