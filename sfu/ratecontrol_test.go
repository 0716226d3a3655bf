package sfu

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestVideoShareReservesAudioFirst(t *testing.T) {
	for _, tc := range []struct {
		name         string
		link         uint64
		audio, video int
		want         uint64
	}{
		{"one audio, one video", 500_000, 1, 1, 500_000 - audioReserve},
		{"two of each split what audio leaves", 1_000_000, 2, 2, (1_000_000 - 2*audioReserve) / 2},
		{"audio only: the whole link after audio", 300_000, 1, 0, 300_000 - audioReserve},
		{"a link too small for audio leaves nothing", 40_000, 1, 1, 0},
		{"exactly audio", audioReserve, 1, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := videoShare(tc.link, tc.audio, tc.video); got != tc.want {
				t.Errorf("videoShare(%d, %d, %d) = %d, want %d", tc.link, tc.audio, tc.video, got, tc.want)
			}
		})
	}
}

func TestVideoTargetIsTheSlowestSubscriberWithinLimits(t *testing.T) {
	const floor, ceiling = 150_000, 1_500_000
	for _, tc := range []struct {
		name   string
		shares []uint64
		want   uint64
	}{
		{"no feedback: the ceiling", nil, ceiling},
		{"one constrained subscriber sets the pace", []uint64{2_000_000, 452_000}, 452_000},
		{"never above the ceiling", []uint64{5_000_000}, ceiling},
		{"never below the floor", []uint64{20_000, 900_000}, floor},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := videoTarget(tc.shares, floor, ceiling); got != tc.want {
				t.Errorf("videoTarget(%v) = %d, want %d", tc.shares, got, tc.want)
			}
		})
	}
}

// fixedEstimator is a GCC stand-in with a fixed target.
type fixedEstimator struct{ gccEstimator }

func (fixedEstimator) GetTargetBitrate() int { return 800_000 }

func TestLinkEstimateUsesFreshFeedbackOnly(t *testing.T) {
	now := time.Now()
	l := &link{}
	if _, ok := l.estimate(now); ok {
		t.Fatal("a link with no feedback has an estimate")
	}
	l.gcc.Store(&gccEstimator{fixedEstimator{}})
	if _, ok := l.estimate(now); ok {
		t.Fatal("GCC's initial guess counted before any transport-cc feedback arrived")
	}
	l.observe([]rtcp.Packet{&rtcp.TransportLayerCC{}}, now)
	if got, ok := l.estimate(now); !ok || got != 800_000 {
		t.Fatalf("with transport-cc feedback: %d %v, want GCC's 800000", got, ok)
	}
	l.observe([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 450_000}}, now)
	if got, _ := l.estimate(now); got != 450_000 {
		t.Fatalf("with a lower REMB: %d, want the smaller 450000", got)
	}
	l.observe([]rtcp.Packet{&rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: 2_000_000}}, now)
	if got, _ := l.estimate(now); got != 800_000 {
		t.Fatalf("with a higher REMB: %d, want the smaller 800000", got)
	}
	if _, ok := l.estimate(now.Add(feedbackFresh + time.Second)); ok {
		t.Fatal("stale feedback still constrains the publisher")
	}
}

func TestNewRefusesACeilingBelowTheFloor(t *testing.T) {
	_, err := New(Config{MaxVideoBitrate: 50_000, ListenIP: []byte{127, 0, 0, 1}})
	if err == nil || !strings.Contains(err.Error(), "--max-video-bitrate") {
		t.Fatalf("New with a 50 kbit/s ceiling: %v, want an error naming --max-video-bitrate", err)
	}
}
