package recorder

import (
	"sync/atomic"
	"testing"
	"time"
)

// The track goroutine is woken once a backlog of wakeAt packets waits, not
// for every packet: below it, its tick takes what is queued.
func TestQueueWakesOnBacklog(t *testing.T) {
	var drops atomic.Uint64
	q := newQueue(1024, time.Now, &drops, discardLogger(), "patient/audio")
	for i := 1; i < wakeBacklog; i++ {
		q.WriteRTP(rtpPacket(1))
		select {
		case <-q.wake:
			t.Fatalf("woken at a backlog of %d, want %d", i, wakeBacklog)
		default:
		}
	}
	q.WriteRTP(rtpPacket(1))
	select {
	case <-q.wake:
	default:
		t.Fatalf("not woken at a backlog of %d", wakeBacklog)
	}
	if n := q.queued(); n != wakeBacklog {
		t.Fatalf("%d queued, want %d", n, wakeBacklog)
	}
	// A small queue wakes at half its size, so it is drained before it is full.
	small := newQueue(8, time.Now, &drops, discardLogger(), "patient/video")
	for range 4 {
		small.WriteRTP(rtpPacket(1))
	}
	select {
	case <-small.wake:
	default:
		t.Fatal("a queue of 8 was not woken at a backlog of 4")
	}
	if drops.Load() != 0 {
		t.Fatalf("%d dropped", drops.Load())
	}
}
