package sfu

import (
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// TestPacerSpreadsVideoOnACappedLinkOnly: on an uncapped link the pacer
// sends every packet at once; on a link capped at 400 kbit/s a 60 kB video
// burst (a keyframe) leaves at pacingFactor times the cap, in order, none
// dropped, while audio written during it goes at once and a retransmission
// on the RTX stream goes ahead of the queued video.
func TestPacerSpreadsVideoOnACappedLinkOnly(t *testing.T) {
	l := &link{}
	p := newLinkPacer()
	p.l.Store(l)
	t.Cleanup(func() { _ = p.Close() })
	type sent struct {
		seq uint16
		at  time.Time
	}
	var mu sync.Mutex
	got := map[uint32][]sent{}
	rec := interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		got[h.SSRC] = append(got[h.SSRC], sent{h.SequenceNumber, time.Now()})
		return h.MarshalSize() + len(payload), nil
	})
	const video, audio, rtx = 1, 2, 3
	p.AddStream(video, rec)
	p.AddStream(audio, rec)
	p.AddStream(rtx, rec)
	p.setAudio(audio)
	p.setRTX(rtx)
	count := func(ssrc uint32) int {
		mu.Lock()
		defer mu.Unlock()
		return len(got[ssrc])
	}
	write := func(ssrc uint32, seq uint16, size int) {
		h := &rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq}
		if _, err := p.Write(h, make([]byte, size), nil); err != nil {
			t.Fatal(err)
		}
	}

	for i := range 10 {
		write(video, uint16(i), 1200)
	}
	if n := count(video); n != 10 {
		t.Fatalf("uncapped: %d of 10 video packets sent at once, want all", n)
	}

	const capBps, packets, size = 400_000, 50, 1200
	l.capBps.Store(capBps)
	start := time.Now()
	for i := range packets {
		write(video, uint16(100+i), size)
		if i%10 == 0 {
			write(audio, uint16(i), 100)
		}
	}
	write(rtx, 1, size) // a retransmission, asked for while the burst is queued
	if n := count(audio); n != packets/10 {
		t.Errorf("%d of %d audio packets sent at once on a paced link, want all: audio is never queued", n, packets/10)
	}
	deadline := time.Now().Add(5 * time.Second)
	for count(video) < 10+packets && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	v := got[video][10:]
	if len(v) != packets {
		t.Fatalf("%d of %d paced video packets sent within 5 s (%d dropped)", len(v), packets, p.dropped.Load())
	}
	for i := 1; i < len(v); i++ {
		if v[i].seq != v[i-1].seq+1 {
			t.Fatalf("paced video out of order: %d after %d", v[i].seq, v[i-1].seq)
		}
	}
	if len(got[rtx]) != 1 || !got[rtx][0].at.Before(v[len(v)/2].at) {
		t.Errorf("the retransmission was sent %v, want it ahead of the queued video (half of which was out by %v)", got[rtx], v[len(v)/2].at)
	}
	took := v[len(v)-1].at.Sub(start)
	pace := time.Duration(float64(packets*(size+12)*8) / (pacingFactor * capBps) * float64(time.Second))
	t.Logf("%d kB of video on a %d kbit/s cap: sent over %v (pace %v)", packets*size/1000, capBps/1000, took, pace)
	if took < pace-pacingBurst-50*time.Millisecond {
		t.Errorf("the burst left in %v, faster than the pace allows (%v)", took, pace)
	}
	if took > 2*pace {
		t.Errorf("the burst took %v, more than twice the pace (%v)", took, pace)
	}
}
