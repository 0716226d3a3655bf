package sfu

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// resendLog collects what a history writes when it resends.
type resendLog struct {
	hdrs     []rtp.Header
	payloads [][]byte
}

func (l *resendLog) writer() interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		l.hdrs = append(l.hdrs, *h)
		l.payloads = append(l.payloads, append([]byte(nil), p...))
		return h.MarshalSize() + len(p), nil
	})
}

func always(int) bool { return true }

// sendAt adds count packets from seq at pps packets a second from start and
// returns the time of the last.
func sendAt(h *history, seq uint16, count, pps, size int, start int64) int64 {
	at := start
	for i := range count {
		at = start + int64(i)*int64(time.Second)/int64(pps)
		s := seq + uint16(i)
		payload := make([]byte, size)
		binary.BigEndian.PutUint16(payload, s)
		h.add(&rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s, SSRC: 1}, payload, at)
	}
	return at
}

// TestHistoryHoldsTheNACKWindowAtAnyRate: whatever the packet rate (up to
// what maxSlots allows), every packet of the last maxNackAge can be resent,
// nothing older is held, and the ring stays near what the window needs.
func TestHistoryHoldsTheNACKWindowAtAnyRate(t *testing.T) {
	for _, c := range []struct {
		pps      int
		maxRing  int // the ring never grows past this
		maxSlots uint16
	}{
		{20, 32, 256},   // 150 kbit/s video: 16 packets in the window
		{150, 256, 256}, // the default ceiling: 120 packets
		{50, 64, 256},
	} {
		h := &history{maxSlots: int(c.maxSlots)}
		var out resendLog
		h.w = out.writer()
		const count = 2000
		first := uint16(65000) // wraps
		last := sendAt(h, first, count, c.pps, 900, 1)
		if len(h.ring) > c.maxRing {
			t.Errorf("%d pps: ring of %d slots, want at most %d", c.pps, len(h.ring), c.maxRing)
		}
		held := 0
		for i := range h.ring {
			if h.ring[i].buf != nil {
				held++
			}
		}
		window := int(maxNackAge.Seconds()*float64(c.pps)) + 1
		if held > window+1 {
			t.Errorf("%d pps: %d packets held, the window needs %d", c.pps, held, window)
		}
		for i := range count {
			seq := first + uint16(i)
			sentAt := 1 + int64(i)*int64(time.Second)/int64(c.pps)
			out = resendLog{}
			h.resend(seq, last, always)
			want := last-sentAt <= int64(maxNackAge)
			if got := len(out.hdrs) == 1; got != want {
				t.Fatalf("%d pps: packet sent %v before the NACK: resent %v, want %v", c.pps, time.Duration(last-sentAt), got, want)
			}
			if want && (out.hdrs[0].SequenceNumber != seq || binary.BigEndian.Uint16(out.payloads[0]) != seq || len(out.payloads[0]) != 900) {
				t.Fatalf("%d pps: NACK for %d resent %d with %d bytes of payload %x…", c.pps, seq, out.hdrs[0].SequenceNumber, len(out.payloads[0]), out.payloads[0][:2])
			}
		}
	}
}

// TestHistoryResendsOncePerRoundTrip: a packet NACKed twice within a round
// trip is resent once; after the round trip, again.
func TestHistoryResendsOncePerRoundTrip(t *testing.T) {
	var out resendLog
	h := &history{maxSlots: 256, w: out.writer()}
	h.setRTT(50 * time.Millisecond)
	last := sendAt(h, 10, 10, 100, 500, 1)
	for _, dt := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond} {
		h.resend(15, last+int64(dt), always)
	}
	if len(out.hdrs) != 2 {
		t.Errorf("NACKed at 0, 20 and 60 ms with a 50 ms round trip: resent %d times, want 2", len(out.hdrs))
	}
}

// TestHistoryResendsOnRTX: with RTX negotiated, a resend goes on the RTX
// SSRC and payload type, with its own sequence numbers and the original
// sequence number in front of the payload (RFC 4588).
func TestHistoryResendsOnRTX(t *testing.T) {
	var out resendLog
	h := &history{maxSlots: 256, w: out.writer(), ssrc: 1, rtxSSRC: 2, rtxPT: 97}
	last := sendAt(h, 100, 10, 100, 300, 1)
	h.resend(103, last, always)
	h.resend(105, last, always)
	if len(out.hdrs) != 2 {
		t.Fatalf("resent %d packets, want 2", len(out.hdrs))
	}
	for i, seq := range []uint16{103, 105} {
		hd, p := out.hdrs[i], out.payloads[i]
		if hd.SSRC != 2 || hd.PayloadType != 97 || hd.SequenceNumber != uint16(i) {
			t.Errorf("RTX of %d: ssrc %d pt %d seq %d, want 2, 97, %d", seq, hd.SSRC, hd.PayloadType, hd.SequenceNumber, i)
		}
		if len(p) != 302 || binary.BigEndian.Uint16(p) != seq || binary.BigEndian.Uint16(p[2:]) != seq {
			t.Errorf("RTX of %d: %d bytes starting %x, want the OSN then the 300-byte payload", seq, len(p), p[:4])
		}
	}
}

// TestHistoryStopsAtTheBudget: resends stop when the budget says no.
func TestHistoryStopsAtTheBudget(t *testing.T) {
	var out resendLog
	h := &history{maxSlots: 256, w: out.writer()}
	last := sendAt(h, 0, 10, 100, 500, 1)
	left := 3
	spend := func(int) bool { left--; return left >= 0 }
	for seq := range uint16(10) {
		if !h.resend(seq, last, spend) {
			break
		}
	}
	if len(out.hdrs) != 3 {
		t.Errorf("a budget of 3 packets let %d through", len(out.hdrs))
	}
}

// TestTokenBucketKeepsTheRate: over two seconds, what a bucket allows is
// its rate plus one burst of half a second.
func TestTokenBucketKeepsTheRate(t *testing.T) {
	var b tokenBucket
	start := time.Unix(1000, 0)
	const bps, size = 800_000, 1000
	sent := 0
	for ms := range 2000 {
		for b.allow(start.Add(time.Duration(ms)*time.Millisecond), size, bps) {
			sent += size
		}
	}
	want := bps/8*2 + bps/8/2
	if sent < want*9/10 || sent > want*11/10 {
		t.Errorf("sent %d bytes in 2 s at %d bit/s, want about %d", sent, bps, want)
	}
}
