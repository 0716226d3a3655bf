package gcc

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

const testExtID = 3

// sent stamps a header with transport-wide sequence number seq, as pion's
// header extension interceptor does, and records it as sent at ts.
func sent(t *testing.T, f *feedbackAdapter, seq uint16, payload int, ts time.Time) {
	t.Helper()
	b, err := (&rtp.TransportCCExtension{TransportSequence: seq}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	h := &rtp.Header{Version: 2, SSRC: 1, SequenceNumber: seq}
	if err := h.SetExtension(testExtID, b); err != nil {
		t.Fatal(err)
	}
	if err := f.onSent(ts, testExtID, h, payload); err != nil {
		t.Fatal(err)
	}
}

// feedback is what pion's recorder (the one pion's receivers use) reports
// on the packets of arrivals: sequence number -> arrival in µs.
func feedback(t *testing.T, arrivals map[uint16]int64, order []uint16) *rtcp.TransportLayerCC {
	t.Helper()
	r := twcc.NewRecorder(5000)
	for _, seq := range order {
		if at, ok := arrivals[seq]; ok {
			r.Record(5000, seq, at)
		}
	}
	pkts := r.BuildFeedbackPacket()
	if len(pkts) != 1 {
		t.Fatalf("recorder built %d feedback packets, want 1", len(pkts))
	}
	fb, ok := pkts[0].(*rtcp.TransportLayerCC)
	if !ok {
		t.Fatalf("recorder built %T", pkts[0])
	}
	// Through the wire format, as the subscriber's feedback comes.
	raw, err := fb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var out rtcp.TransportLayerCC
	if err := out.Unmarshal(raw); err != nil {
		t.Fatal(err)
	}
	return &out
}

// TestFeedbackAdapterMapsFeedback: across a sequence number wrap, with
// packets lost in runs and singly (the recorder writes status vector
// chunks), every packet reported on comes back with its size and
// departure, a received one with its arrival (to the 250 µs the format
// carries, on the recorder's clock), a lost one with none.
func TestFeedbackAdapterMapsFeedback(t *testing.T) {
	f := &feedbackAdapter{}
	t0 := time.Unix(1000, 0)
	var order []uint16
	arrivals := map[uint16]int64{}
	departures := map[uint16]time.Time{}
	for i := range 40 {
		seq := uint16(65520 + i) //nolint:gosec // wraps on purpose
		dep := t0.Add(time.Duration(i) * 3 * time.Millisecond)
		sent(t, f, seq, 100+i, dep)
		order = append(order, seq)
		departures[seq] = dep
		lost := (i >= 10 && i < 20) || i%7 == 3
		if !lost {
			arrivals[seq] = 5_000_000 + int64(i)*3_250
		}
	}
	acks, err := f.onTransportCCFeedback(feedback(t, arrivals, order))
	if err != nil {
		t.Fatal(err)
	}
	got := map[uint16]acknowledgment{}
	for i, a := range acks {
		if i > 0 && a.SequenceNumber != acks[i-1].SequenceNumber+1 {
			t.Fatalf("ack %d is for %d after %d: want consecutive", i, a.SequenceNumber, acks[i-1].SequenceNumber)
		}
		got[a.SequenceNumber] = a
	}
	if len(acks) != len(order) {
		t.Fatalf("%d acks for %d packets", len(acks), len(order))
	}
	for i, seq := range order {
		a := got[seq]
		if a.Size != 12+8+100+i || !a.Departure.Equal(departures[seq]) {
			t.Fatalf("packet %d: size %d departure %v, want %d %v", seq, a.Size, a.Departure, 12+8+100+i, departures[seq])
		}
		at, received := arrivals[seq]
		if !received {
			if !a.Arrival.IsZero() {
				t.Fatalf("lost packet %d has arrival %v", seq, a.Arrival)
			}
			continue
		}
		if a.Arrival.IsZero() {
			t.Fatalf("received packet %d has no arrival", seq)
		}
		want := time.Time{}.Add(time.Duration(at) * time.Microsecond)
		if d := a.Arrival.Sub(want); d < -250*time.Microsecond || d > 250*time.Microsecond {
			t.Fatalf("packet %d arrived %v, want %v", seq, a.Arrival, want)
		}
	}
}

// TestFeedbackAdapterForgetsOldPackets: feedback on packets sent more than
// historySize packets ago maps to nothing, and a run of lost packets longer
// than the history reports the ones still remembered, in order.
func TestFeedbackAdapterForgetsOldPackets(t *testing.T) {
	f := &feedbackAdapter{}
	t0 := time.Unix(1000, 0)
	var base uint16 = 65000 // the last 1,000 packets cross the wrap
	for i := range 1000 {
		sent(t, f, base+uint16(i), 50, t0.Add(time.Duration(i)*time.Millisecond)) //nolint:gosec // wraps on purpose
	}
	if _, ok := f.get(base + 1000 - historySize - 1); ok { //nolint:gosec // wraps on purpose
		t.Fatal("a packet older than the history is remembered")
	}
	if a, ok := f.get(base + 1000 - historySize); !ok || a.Departure != t0.Add((1000-historySize)*time.Millisecond) { //nolint:gosec // wraps
		t.Fatalf("the oldest packet remembered: %v %v", a, ok)
	}
	// All 1,000 reported lost in one run-length chunk.
	fb := &rtcp.TransportLayerCC{
		BaseSequenceNumber: base, PacketStatusCount: 1000,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{
			PacketStatusSymbol: rtcp.TypeTCCPacketNotReceived, RunLength: 1000,
		}},
	}
	acks, err := f.onTransportCCFeedback(fb)
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != historySize {
		t.Fatalf("%d acks, want the %d remembered", len(acks), historySize)
	}
	for i, a := range acks {
		if want := base + 1000 - historySize + uint16(i); a.SequenceNumber != want || !a.Arrival.IsZero() { //nolint:gosec // wraps
			t.Fatalf("ack %d: %d arrival %v, want %d lost", i, a.SequenceNumber, a.Arrival, want)
		}
	}
}

// TestFeedbackAdapterRefusesBadInput: a packet without the transport-wide
// number is refused (pion's does the same: it cannot be mapped), and
// feedback claiming more received packets than it has deltas is invalid.
func TestFeedbackAdapterRefusesBadInput(t *testing.T) {
	f := &feedbackAdapter{}
	if err := f.onSent(time.Now(), testExtID, &rtp.Header{Version: 2}, 10); !errors.Is(err, errMissingTWCCExtension) {
		t.Fatalf("a packet without the extension: %v", err)
	}
	sent(t, f, 7, 10, time.Now())
	fb := &rtcp.TransportLayerCC{
		BaseSequenceNumber: 7, PacketStatusCount: 2,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{
			PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 2,
		}},
		RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 250}},
	}
	if _, err := f.onTransportCCFeedback(fb); !errors.Is(err, errInvalidFeedback) {
		t.Fatalf("two received, one delta: %v", err)
	}
}

// TestFeedbackAdapterReferenceTimeWraps: the 24-bit reference time (units
// of 64 ms) wraps every ~12 days; arrivals keep increasing across it.
func TestFeedbackAdapterReferenceTimeWraps(t *testing.T) {
	f := &feedbackAdapter{}
	sent(t, f, 1, 10, time.Now())
	sent(t, f, 2, 10, time.Now())
	one := func(seq uint16, ref uint32) time.Time {
		acks, err := f.onTransportCCFeedback(&rtcp.TransportLayerCC{
			BaseSequenceNumber: seq, PacketStatusCount: 1, ReferenceTime: ref,
			PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{
				PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 1,
			}},
			RecvDeltas: []*rtcp.RecvDelta{{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 0}},
		})
		if err != nil || len(acks) != 1 {
			t.Fatalf("feedback on %d: %v %v", seq, acks, err)
		}
		return acks[0].Arrival
	}
	before := one(1, 0xffffff)
	after := one(2, 0)
	if d := after.Sub(before); d != 64*time.Millisecond {
		t.Fatalf("across the wrap the arrival moved %v, want 64ms", d)
	}
}

// TestFeedbackAdapterRunOfReceived: a run-length chunk of received packets
// (what a browser sends for a burst without loss) takes one delta each,
// and a packet sent late by a held-up writer does not overwrite a newer one
// in its slot.
func TestFeedbackAdapterRunOfReceived(t *testing.T) {
	f := &feedbackAdapter{}
	t0 := time.Unix(1000, 0)
	for i := range 5 {
		sent(t, f, uint16(100+i), 10, t0.Add(time.Duration(i)*time.Millisecond)) //nolint:gosec // small
	}
	late := uint16(100)
	sent(t, f, late-historySize, 10, t0) // a packet a whole history late
	fb := &rtcp.TransportLayerCC{
		BaseSequenceNumber: 100, PacketStatusCount: 5, ReferenceTime: 10,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.RunLengthChunk{
			PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 5,
		}},
	}
	for i := range 5 {
		fb.RecvDeltas = append(fb.RecvDeltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: int64(1000 * (i + 1))})
	}
	acks, err := f.onTransportCCFeedback(fb)
	if err != nil {
		t.Fatal(err)
	}
	if len(acks) != 5 {
		t.Fatalf("%d acks, want 5", len(acks))
	}
	at := time.Time{}.Add(10 * 64 * time.Millisecond)
	for i, a := range acks {
		at = at.Add(time.Duration(1000*(i+1)) * time.Microsecond)
		if a.SequenceNumber != uint16(100+i) || !a.Arrival.Equal(at) || !a.Departure.Equal(t0.Add(time.Duration(i)*time.Millisecond)) { //nolint:gosec // small
			t.Fatalf("ack %d: %+v, want %d arriving %v", i, a, 100+i, at)
		}
	}
}
