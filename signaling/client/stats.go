package client

import (
	"context"
	"sync"
	"time"

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
}

// sendStats counts what a pump sent.
type sendStats struct {
	mu     sync.Mutex
	st     TrackStats
	prints map[uint32]struct{} // RTP timestamps sent, when fingerprinting
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
	}
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
	change chan struct{} // closed and replaced on every keyframe and every 50 packets
}

func newRecvStats(fingerprint bool) *recvStats {
	r := &recvStats{change: make(chan struct{})}
	if fingerprint {
		r.prints = map[uint32]struct{}{}
	}
	return r
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
	}
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
