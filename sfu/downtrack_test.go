package sfu

import (
	"testing"

	"github.com/pion/rtp"
)

type captureWriter struct{ seqs []uint16 }

func (w *captureWriter) WriteRTP(h *rtp.Header, _ []byte) (int, error) {
	if h.Extension || h.SSRC != 42 || h.PayloadType != 96 {
		panic("header not rewritten")
	}
	w.seqs = append(w.seqs, h.SequenceNumber)
	return 0, nil
}
func (w *captureWriter) Write(b []byte) (int, error) { return len(b), nil }

// TestDownTrackSequence checks that a subscriber sees contiguous sequence
// numbers across a wait for a keyframe and across a mute, through wrap-around,
// and that late packets from before a resume are not sent twice.
func TestDownTrackSequence(t *testing.T) {
	r := &Receiver{kind: KindVideo}
	d := newDownTrack(r, nil)
	w := &captureWriter{}
	d.bound.Store(&binding{w: w, ssrc: 42, pt: 96})
	m := &Metrics{}
	send := func(seq uint16, key bool) bool {
		return d.writeRTP(&rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Extension: true}, Payload: []byte{1}}, key, m)
	}
	if send(65530, false) {
		t.Fatal("forwarded a delta frame before the first keyframe")
	}
	for s := uint16(65531); s != 3; s++ { // through the wrap
		send(s, s == 65531)
	}
	// A gap: a mute (resync) drops packets 3..9; 10 is a keyframe.
	d.requestResync()
	for s := uint16(3); s < 10; s++ {
		send(s, false)
	}
	send(10, true)
	send(11, false)
	if send(8, false) {
		t.Fatal("a late packet from before the resume was sent")
	}
	d.skip() // 12 is a padding-only probe the receiver does not forward
	send(13, false)
	want := []uint16{65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3, 4, 5}
	if len(w.seqs) != len(want) {
		t.Fatalf("sent %v, want %v", w.seqs, want)
	}
	for i := range want {
		if w.seqs[i] != want[i] {
			t.Fatalf("sent %v, want %v", w.seqs, want)
		}
	}
	if m.DroppedWaitKeyframe.Load() != 8 {
		t.Errorf("counted %d waits for a keyframe, want 8", m.DroppedWaitKeyframe.Load())
	}
}
