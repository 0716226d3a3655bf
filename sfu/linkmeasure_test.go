package sfu

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
)

func TestCountFeedbackReadsEveryChunkKind(t *testing.T) {
	for _, tc := range []struct {
		name           string
		fb             *rtcp.TransportLayerCC
		received, lost uint64
	}{
		{"run lengths", twcc(7, 3), 7, 3},
		{"a two-bit vector", &rtcp.TransportLayerCC{PacketStatusCount: 4, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{
				rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketNotReceived, rtcp.TypeTCCPacketReceivedLargeDelta, rtcp.TypeTCCPacketNotReceived}},
		}}, 2, 2},
		{"a one-bit vector's padding is not counted", &rtcp.TransportLayerCC{PacketStatusCount: 3, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: []uint16{1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		}}, 2, 1},
		{"a run longer than the count is cut to it", &rtcp.TransportLayerCC{PacketStatusCount: 5, PacketChunks: []rtcp.PacketStatusChunk{
			&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 9},
		}}, 0, 5},
		{"empty", &rtcp.TransportLayerCC{}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r, l := countFeedback(tc.fb); r != tc.received || l != tc.lost {
				t.Errorf("countFeedback = %d received, %d lost; want %d, %d", r, l, tc.received, tc.lost)
			}
		})
	}
}

func TestFeedbackLossIsSinceTheLastTakeOverTheWindow(t *testing.T) {
	var f feedbackLoss
	var w lossWindow
	if _, ok := w.add(f.take()); ok {
		t.Fatal("a loss with no feedback")
	}
	f.note(twcc(30, 10))
	f.note(twcc(10, 0))
	if loss, ok := w.add(f.take()); !ok || loss != 0.2 {
		t.Fatalf("loss = %v %v, want 0.2 (10 of 50)", loss, ok)
	}
	f.note(twcc(50, 0))
	if loss, _ := w.add(f.take()); loss != 0.1 {
		t.Fatalf("loss after a clean step = %v, want 0.1 (10 of 100 in the window)", loss)
	}
	for range lossSteps - 1 {
		f.note(twcc(10, 0))
		w.add(f.take())
	}
	if loss, _ := w.add(f.take()); loss != 0 {
		t.Fatalf("loss once the lossy step left the window = %v, want 0", loss)
	}
}

func TestLossWindowOverflowsOnTwoStepsLosingMostPackets(t *testing.T) {
	var w lossWindow
	for _, s := range []struct {
		received, lost uint64
		want           bool
		loss           float64
	}{
		{18, 0, false, 0},
		{8, 10, false, 0},        // one step
		{6, 12, true, 22.0 / 36}, // two in a row
		{10, 8, true, 20.0 / 36},
		{12, 6, false, 0}, // a third of the packets is not most
		{2, 3, false, 0},  // too few packets to tell
		{3, 4, false, 0},
	} {
		w.add(s.received, s.lost)
		loss, ok := w.overflowing()
		if ok != s.want || (ok && loss != s.loss) {
			t.Fatalf("after a step of %d received, %d lost: overflowing %v at %.3f, want %v at %.3f", s.received, s.lost, ok, loss, s.want, s.loss)
		}
	}
}

func TestSendHistoryMeasuresOverAboutASecond(t *testing.T) {
	var h sendHistory
	t0 := time.Now()
	if r := h.add(t0, 0); r != 0 {
		t.Fatalf("first step: %v, want 0", r)
	}
	// 100 kB per 100 ms step (8 Mbit/s) for half a second, then a burst.
	sent := uint64(0)
	for i := 1; i <= 5; i++ {
		sent += 100_000
		h.add(t0.Add(time.Duration(i)*100*time.Millisecond), sent)
	}
	sent += 300_000
	r := h.add(t0.Add(600*time.Millisecond), sent)
	if want := float64(800_000*8) / 0.6; r != want {
		t.Fatalf("rate over the first 600 ms = %v, want %v (the whole window, not the burst's step)", r, want)
	}
	// Two seconds later only the steps within the last second count.
	for i := 7; i <= 26; i++ {
		sent += 10_000
		r = h.add(t0.Add(time.Duration(i)*100*time.Millisecond), sent)
	}
	if want := float64(10_000*8) / 0.1; r < want*0.99 || r > want*1.01 {
		t.Fatalf("rate after the burst has left the window = %v, want %v", r, want)
	}
}

func TestLinkTargetTrustsDelayOnOveruseAndTheLesserOnLoss(t *testing.T) {
	for _, tc := range []struct {
		name       string
		overuse    bool
		delay      int
		loss, sent float64
		want       uint64
	}{
		{"overuse: GCC's delay-based target", true, 425_000, 0.3, 1_400_000, 425_000},
		{"loss alone: 85% of what got through", false, 900_000, 0.6, 1_400_000, 476_000},
		{"loss alone: GCC's target when that is less", false, 400_000, 0.6, 1_400_000, 400_000},
		{"loss before a delay target: what got through", false, 0, 0.6, 1_400_000, 476_000},
		{"overuse before a delay target: what got through", true, 0, 0, 500_000, 425_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := linkTarget(tc.overuse, tc.delay, tc.loss, tc.sent); got != tc.want {
				t.Errorf("linkTarget = %d, want %d", got, tc.want)
			}
		})
	}
}
