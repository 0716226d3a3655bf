package client

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TrackStats is what one side saw of one track.
type TrackStats struct {
	Packets       uint64
	Bytes         uint64
	Keyframes     uint64
	FirstPacket   time.Time
	FirstKeyframe time.Time
	LastKeyframe  time.Time
	// Receive side only. Expected is the number of packets the sequence
	// numbers say were sent since the first one received (RFC 3550 A.3,
	// summed over the track's SSRCs): Expected - Packets is what was lost.
	// The SFU closes the sequence gaps it makes on purpose (waiting for a
	// keyframe, muted), so those drops are not counted as loss.
	Expected uint64
	// Jitter is the RFC 3550 interarrival jitter (section 6.4.1) as a
	// duration; zero until the clock rate is known.
	Jitter time.Duration
}

// sendStats counts what a pump sent.
type sendStats struct {
	mu     sync.Mutex
	st     TrackStats
	prints map[uint32]struct{}  // RTP timestamps sent, when fingerprinting
	times  map[uint32]time.Time // when each fingerprinted timestamp was first sent
}

// sent records one packet; keyframe marks the first packet of a keyframe.
func (s *sendStats) sent(pkt *rtp.Packet, keyframe bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.Packets++
	s.st.Bytes += uint64(len(pkt.Payload))
	if s.st.FirstPacket.IsZero() {
		s.st.FirstPacket = now
	}
	if keyframe {
		s.st.Keyframes++
		s.st.LastKeyframe = now
		if s.st.FirstKeyframe.IsZero() {
			s.st.FirstKeyframe = now
		}
	}
	if s.prints != nil {
		s.prints[pkt.Timestamp] = struct{}{}
		if s.times == nil {
			s.times = map[uint32]time.Time{}
		}
		if _, ok := s.times[pkt.Timestamp]; !ok {
			s.times[pkt.Timestamp] = now
		}
	}
}

func (s *sendStats) sendTimes() map[uint32]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.times)
}

func (s *sendStats) snapshot() (TrackStats, map[uint32]struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var prints map[uint32]struct{}
	if s.prints != nil {
		prints = make(map[uint32]struct{}, len(s.prints))
		for k := range s.prints {
			prints[k] = struct{}{}
		}
	}
	return s.st, prints
}

// recvStats counts what arrived from one remote participant's track of one kind.
type recvStats struct {
	mu     sync.Mutex
	st     TrackStats
	prints map[uint32]struct{}
	times  map[uint32]time.Time // first arrival of each fingerprinted timestamp
	change chan struct{}        // closed and replaced on every keyframe and every 50 packets
	track  uint32               // the SSRC the subscribe connection receives it as (RequestKeyframe)

	// Loss and jitter state for the current SSRC (RFC 3550 appendix A).
	clockRate uint32
	ssrc      uint32
	seqInit   bool
	baseSeq   uint32    // extended sequence number of the first packet of this SSRC
	maxSeq    uint32    // highest extended sequence number of this SSRC
	expBefore uint64    // packets expected on earlier SSRCs
	ref       time.Time // arrival clock origin, so tick arithmetic stays small
	transit   int64     // previous packet's arrival minus RTP time, in clock ticks
	hasTrans  bool
	jitter    float64
}

func newRecvStats(fingerprint bool) *recvStats {
	r := &recvStats{change: make(chan struct{})}
	if fingerprint {
		r.prints = map[uint32]struct{}{}
		r.times = map[uint32]time.Time{}
	}
	return r
}

// setClockRate gives the track's RTP clock rate, which jitter needs.
func (r *recvStats) setClockRate(hz uint32) {
	r.mu.Lock()
	r.clockRate = hz
	r.mu.Unlock()
}

// account updates the expected count and the interarrival jitter with one
// packet (called locked). A new SSRC (the track was renegotiated) starts a
// new sequence space; what was expected on the old one is kept.
func (r *recvStats) account(pkt *rtp.Packet, now time.Time) {
	seq := uint32(pkt.SequenceNumber)
	if !r.seqInit || pkt.SSRC != r.ssrc {
		if r.seqInit {
			r.expBefore += uint64(r.maxSeq - r.baseSeq + 1)
		}
		r.seqInit, r.ssrc = true, pkt.SSRC
		r.baseSeq, r.maxSeq = seq, seq
		r.hasTrans = false
	} else {
		// Extend the 16-bit number to the cycle nearest the highest seen.
		ext := r.maxSeq&^0xffff | seq
		switch {
		case int64(ext)-int64(r.maxSeq) > 1<<15:
			if ext >= 1<<16 {
				ext -= 1 << 16
			}
		case int64(r.maxSeq)-int64(ext) > 1<<15:
			ext += 1 << 16
		}
		if ext > r.maxSeq {
			r.maxSeq = ext
		}
	}
	r.st.Expected = r.expBefore + uint64(r.maxSeq-r.baseSeq+1)
	if r.clockRate == 0 {
		return
	}
	if r.ref.IsZero() {
		r.ref = now
	}
	arrival := int64(now.Sub(r.ref)) * int64(r.clockRate) / int64(time.Second)
	transit := arrival - int64(pkt.Timestamp)
	if r.hasTrans {
		d := transit - r.transit
		// RTP timestamps are 32-bit: fold the difference into that range.
		d = int64(int32(d))
		if d < 0 {
			d = -d
		}
		r.jitter += (float64(d) - r.jitter) / 16
		r.st.Jitter = time.Duration(r.jitter * float64(time.Second) / float64(r.clockRate))
	}
	r.transit, r.hasTrans = transit, true
}

func (r *recvStats) received(pkt *rtp.Packet, n int, keyframe bool, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Packets++
	r.st.Bytes += uint64(n)
	if r.st.FirstPacket.IsZero() {
		r.st.FirstPacket = now
	}
	if keyframe {
		r.st.Keyframes++
		r.st.LastKeyframe = now
		if r.st.FirstKeyframe.IsZero() {
			r.st.FirstKeyframe = now
		}
	}
	if r.prints != nil {
		r.prints[pkt.Timestamp] = struct{}{}
		if _, ok := r.times[pkt.Timestamp]; !ok {
			r.times[pkt.Timestamp] = now
		}
	}
	r.account(pkt, now)
	if keyframe || r.st.Packets%50 == 0 || r.st.Packets == 1 {
		close(r.change)
		r.change = make(chan struct{})
	}
}

// wait blocks until cond holds for the stats or ctx ends.
func (r *recvStats) wait(ctx context.Context, cond func(TrackStats) bool) (TrackStats, error) {
	for {
		r.mu.Lock()
		st, ch := r.st, r.change
		r.mu.Unlock()
		if cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-ch:
		}
	}
}

// Feedback counts the RTCP the server sent about what this client
// publishes: receiver reports, NACKs and transport-wide congestion control
// feedback (what a browser steers its encoder by), and keyframe requests
// (PLI, FIR: the server's, or a subscriber's it relays). EchoedSenderReports
// counts the reception reports that echo one of the client's sender
// reports (LSR set), from which a sender tells its round-trip time. A
// compound report is counted by each sender that reads it.
type Feedback struct {
	ReceiverReports, EchoedSenderReports, NACKs, TransportCC, KeyframeRequests uint64
	// MaxFractionLost is the highest fraction lost (RFC 3550, in 1/256) of
	// any reception report: the server's uplink loss, or for audio its
	// subscribers' if higher (so that the encoder spends bits on FEC).
	MaxFractionLost uint8
}

type feedbackCounts struct {
	rr, lsr, nack, twcc, keyframe atomic.Uint64
	lost                          atomic.Uint32
}

func (f *feedbackCounts) count(pkts []rtcp.Packet) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.ReceiverReport:
			f.rr.Add(1)
			for _, r := range p.Reports {
				if r.LastSenderReport != 0 {
					f.lsr.Add(1)
				}
				for lost := f.lost.Load(); uint32(r.FractionLost) > lost && !f.lost.CompareAndSwap(lost, uint32(r.FractionLost)); {
					lost = f.lost.Load()
				}
			}
		case *rtcp.TransportLayerNack:
			f.nack.Add(1)
		case *rtcp.TransportLayerCC:
			f.twcc.Add(1)
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			f.keyframe.Add(1)
		}
	}
}

// FeedbackReceived is what the server has sent about this client's media
// so far.
func (c *Client) FeedbackReceived() Feedback {
	f := &c.feedback
	return Feedback{f.rr.Load(), f.lsr.Load(), f.nack.Load(), f.twcc.Load(), f.keyframe.Load(), uint8(f.lost.Load())}
}
