package sfu

import (
	"slices"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestSentLogTellsRetransmissionsApart(t *testing.T) {
	var l sentLog
	now := time.Now().UnixNano()
	if l.sent(10, now) {
		t.Error("a first send counted as a retransmission")
	}
	if !l.sent(10, now+1) {
		t.Error("a second send of 10 not counted as a retransmission")
	}
	if l.sent(10+sentLogSize, now+2) {
		t.Error("a new packet in 10's slot counted as a retransmission")
	}
	if l.fresh(10, now+3, 0, time.Second) {
		t.Error("10 is fresh after its slot was reused")
	}
}

func TestFilterNackRefusesWhatTheSubscriberCannotUse(t *testing.T) {
	var l sentLog
	t0 := time.Now().UnixNano()
	for seq := uint16(65530); seq != 20; seq++ { // through the wrap
		l.sent(seq, t0+int64(seq-65530)*int64(50*time.Millisecond))
	}
	now := t0 + int64(25*50*time.Millisecond) // 1.25 s after 65530 was sent
	for _, tc := range []struct {
		name  string
		since int64
		ask   []uint16
		keep  []uint16
	}{
		{"fresh packets are kept", 0, []uint16{15, 16, 18}, []uint16{15, 16, 18}},
		{"packets older than maxNackAge are refused", 0, []uint16{65531, 65535, 0, 10, 12}, []uint16{10, 12}},
		{"packets never sent are refused", 0, []uint16{20, 500}, nil},
		{"packets sent before an overflow cut are refused", t0 + int64(22*50*time.Millisecond), []uint16{15, 16, 18}, []uint16{16, 18}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &rtcp.TransportLayerNack{Nacks: rtcp.NackPairsFromSequenceNumbers(tc.ask)}
			asked, kept := filterNack(n, &l, now, tc.since)
			var got []uint16
			for _, p := range n.Nacks {
				got = append(got, p.PacketList()...)
			}
			if asked != len(tc.ask) || kept != len(tc.keep) || !slices.Equal(got, tc.keep) {
				t.Errorf("asked %v: kept %v (%d of %d), want %v", tc.ask, got, kept, asked, tc.keep)
			}
		})
	}
}

// The retransmission budget: half the cap; without a cap, a fifth of what
// the link carried over the last second once its feedback measures that
// (never below the floor, never above half the ceiling), else half the
// ceiling.
func TestNackBudget(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cap, rate uint64
		want      int
	}{
		{"a cut link: half its cap", 400_000, 1_000_000, 200_000},
		{"no cap, nothing measured (no transport-cc): half the ceiling", 0, 0, 750_000},
		{"no cap, 1 Mbit/s carried: a fifth of it", 0, 1_000_000, 200_000},
		{"no cap, audio only: the floor", 0, 100_000, minRetransmitBudget},
		{"no cap, carrying more than the ceiling: half the ceiling", 0, 5_000_000, 750_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &link{ceiling: 1_500_000}
			l.cap.bps = tc.cap
			l.rate.Store(tc.rate)
			if got := (&nackBudget{l: l}).GetTargetBitrate(); got != tc.want {
				t.Fatalf("budget %d, want %d", got, tc.want)
			}
		})
	}
}
