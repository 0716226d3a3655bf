package sfu

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// discardWriter stands in for a subscriber's transport: it takes the
// rewritten header and payload and does nothing (pion's SRTP and socket
// write cost is not the SFU's code and is not measured here).
type discardWriter struct{ n int }

func (w *discardWriter) WriteRTP(h *rtp.Header, p []byte) (int, error) {
	w.n += len(p)
	return len(p), nil
}
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkForward measures the SFU's per-packet forwarding cost: one RTP
// packet, as read from the publisher, parsed and fanned out to k
// downtracks (sequence rewrite, header rewrite, write) with the metrics
// the forwarding loop keeps: Receiver.fanout, the body of the forwarding loop.
func BenchmarkForward(b *testing.B) {
	for _, kind := range []Kind{KindAudio, KindVideo} {
		for _, k := range []int{1, 2, 4, 8} {
			b.Run(fmt.Sprintf("%s/k=%d", kind, k), func(b *testing.B) {
				benchForward(b, kind, k)
			})
		}
	}
}

func benchForward(b *testing.B, kind Kind, k int) {
	mime, size := webrtc.MimeTypeOpus, 120 // a 20 ms Opus frame
	if kind == KindVideo {
		mime, size = webrtc.MimeTypeVP8, 1200 // a full video packet
	}
	r := &Receiver{kind: kind}
	r.setMime(mime)
	r.downs.Store(&[]*DownTrack{})
	r.sinks.Store(&[]TrackSink{})
	for i := range k {
		d := newDownTrack(r, nil)
		d.bound.Store(&binding{w: &discardWriter{}, ssrc: uint32(100 + i), pt: 96})
		d.resync.Store(false)
		r.addDown(d)
	}
	src := &rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 1, Timestamp: 1, SSRC: 7},
		Payload: make([]byte, size),
	}
	raw, err := src.Marshal()
	if err != nil {
		b.Fatal(err)
	}
	m := &Metrics{}
	var pkt rtp.Packet
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	b.ResetTimer()
	for i := range b.N {
		binary.BigEndian.PutUint16(raw[2:4], uint16(i))
		r.fanout(raw, &pkt, m)
	}
	b.StopTimer()
	if got := m.PacketsOut[kindIndex(kind)].Load(); got != uint64(b.N*k) {
		b.Fatalf("forwarded %d packets, want %d", got, b.N*k)
	}
}
