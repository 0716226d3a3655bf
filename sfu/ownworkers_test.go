package sfu

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// workerRig is a pool of one worker and streams whose forwards it records.
type workerRig struct {
	t        *testing.T
	w        *ownWorkers
	mu       sync.Mutex
	got      []string // "stream/seq", in the order forwarded
	gate     chan struct{}
	in       chan struct{} // the worker is at the gate
	gateOnce sync.Once
}

func newWorkerRig(t *testing.T) *workerRig {
	g := &workerRig{t: t, w: newOwnWorkers(1), gate: make(chan struct{}), in: make(chan struct{}, 1)}
	t.Cleanup(func() {
		g.open() // a test that failed with the worker at the gate
		g.w.close()
	})
	return g
}

// open opens the gate, once.
func (g *workerRig) open() { g.gateOnce.Do(func() { close(g.gate) }) }

// stream makes a stream served by the pool while direct (nil: always);
// the forward of the packet with sequence number 0 waits for the gate to
// open, and after forwarding any other, after is called with it.
func (g *workerRig) stream(name string, video bool, direct *atomic.Bool, after func(n int)) *ownStream {
	st := &ownStream{ch: make(chan *ownPacket, 64), video: video, pool: g.w, wake: make(chan struct{}, 1)}
	st.forward = func(p *ownPacket) {
		n := p.n
		if n == 0 {
			g.in <- struct{}{}
			<-g.gate
		}
		g.mu.Lock()
		g.got = append(g.got, fmt.Sprintf("%s/%d", name, n))
		g.mu.Unlock()
		ownPackets.Put(p)
		if after != nil && n != 0 {
			after(n)
		}
	}
	st.direct = func() bool { return direct == nil || direct.Load() }
	return st
}

// idle waits until no packet of st is pending (the count drops once its
// forward has returned).
func (g *workerRig) idle(st *ownStream) {
	g.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); st.pending.Load() != 0 || len(st.ch) != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			g.t.Fatalf("%d pending, %d queued after every packet was forwarded", st.pending.Load(), len(st.ch))
		}
	}
}

// woken waits for st to be handed to its goroutine.
func woken(t *testing.T, st *ownStream, what string) {
	t.Helper()
	select {
	case <-st.wake:
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

func (g *workerRig) queue(st *ownStream, seqs ...int) {
	g.t.Helper()
	for _, n := range seqs {
		p := ownPackets.Get().(*ownPacket)
		p.n = n
		if !st.queue(p) {
			g.t.Fatalf("packet %d not queued", n)
		}
	}
}

// wait returns the first n forwards, once there are n.
func (g *workerRig) wait(n int) []string {
	g.t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		g.mu.Lock()
		got := slices.Clone(g.got)
		g.mu.Unlock()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("forwarded %v, want %d packets", got, n)
		}
	}
}

func seqs(name string, from, to int) []string {
	var s []string
	for n := from; n <= to; n++ {
		s = append(s, fmt.Sprintf("%s/%d", name, n))
	}
	return s
}

// A worker takes a stream with audio waiting before any with video
// waiting, whichever was queued first, and serves a stream for at most
// ownQuantum packets before the next of its kind; each stream's packets
// stay in order.
func TestOwnWorkersServeAudioFirst(t *testing.T) {
	g := newWorkerRig(t)
	busy := g.stream("busy", true, nil, nil)
	g.queue(busy, 0) // the worker waits at the gate in its forward
	<-g.in
	v1, v2 := g.stream("v1", true, nil, nil), g.stream("v2", true, nil, nil)
	a := g.stream("a", false, nil, nil)
	g.queue(v1, seqs2(1, 40)...)
	g.queue(v2, seqs2(1, 20)...)
	g.queue(a, 1, 2, 3)
	g.open()

	var want []string
	want = append(want, "busy/0")
	want = append(want, seqs("a", 1, 3)...)
	want = append(want, seqs("v1", 1, 16)...)
	want = append(want, seqs("v2", 1, 16)...)
	want = append(want, seqs("v1", 17, 32)...)
	want = append(want, seqs("v2", 17, 20)...)
	want = append(want, seqs("v1", 33, 40)...)
	if got := g.wait(len(want)); !slices.Equal(got, want) {
		t.Fatalf("forwarded\n%v\nwant\n%v", got, want)
	}
	for _, st := range []*ownStream{busy, v1, v2, a} {
		g.idle(st)
	}
	// Served again, once empty: a new packet is dispatched anew.
	g.queue(v2, 21)
	if got := g.wait(len(want) + 1); got[len(want)] != "v2/21" {
		t.Errorf("after the queues emptied, forwarded %v", got[len(want):])
	}
}

func seqs2(from, to int) []int {
	var s []int
	for n := from; n <= to; n++ {
		s = append(s, n)
	}
	return s
}

// A stream with a subscriber pion sends to is served by its own goroutine,
// not the pool: handed over when it is queued, or mid-way through its
// packets once a subscriber goes to pion, in order either way; and back to
// the pool after a turn once every subscriber is on the own path again.
func TestOwnWorkersLeaveBlockingStreamsToTheirGoroutines(t *testing.T) {
	g := newWorkerRig(t)
	g.open()
	var direct atomic.Bool
	st := g.stream("s", false, &direct, func(n int) {
		if n == 4 {
			direct.Store(false) // a subscriber goes to pion after the pool forwarded 3 and 4
		}
	})
	g.queue(st, 1, 2)
	woken(t, st, "a stream sent to through pion was not given to its goroutine")
	st.serve(false) // the stream's goroutine
	if got := g.wait(2); !slices.Equal(got, seqs("s", 1, 2)) {
		t.Fatalf("forwarded %v", got)
	}

	direct.Store(true)
	g.queue(st, 3, 4, 5, 6) // to the pool, until 4 is forwarded
	woken(t, st, "the pool kept a stream sent to through pion")
	if got := g.wait(4); len(got) != 4 || got[3] != "s/4" {
		t.Fatalf("the pool forwarded %v; want up to s/4 only", got)
	}
	st.serve(false)
	if got := g.wait(6); !slices.Equal(got, seqs("s", 1, 6)) {
		t.Fatalf("forwarded %v", got)
	}

}

// A stream its goroutine serves goes back to the pool after a turn once
// every subscriber is on the own path again, to be served by priority.
func TestOwnWorkersTakeStreamsBackFromTheirGoroutines(t *testing.T) {
	g := newWorkerRig(t)
	busy := g.stream("busy", true, nil, nil)
	g.queue(busy, 0) // the worker waits at the gate
	<-g.in
	var direct atomic.Bool
	st := g.stream("s", false, &direct, nil)
	n := ownQuantum + 4
	g.queue(st, seqs2(1, n)...)
	woken(t, st, "a stream sent to through pion was not given to its goroutine")
	direct.Store(true)
	st.serve(false) // the stream's goroutine: one turn, then to the pool
	g.mu.Lock()
	got := slices.Clone(g.got)
	g.mu.Unlock()
	if !slices.Equal(got, seqs("s", 1, ownQuantum)) {
		t.Fatalf("the stream's goroutine forwarded %v; want one turn of %d, then the pool", got, ownQuantum)
	}
	g.open()
	g.idle(st)
	if got := g.wait(n + 1); !slices.Equal(got[ownQuantum:], append([]string{"busy/0"}, seqs("s", ownQuantum+1, n)...)) {
		t.Fatalf("forwarded %v", got)
	}
	select {
	case <-st.wake:
		t.Error("the goroutine was woken again though the pool served the rest")
	default:
	}
}

// Once the stream's goroutine has ended, what the pool still holds of it
// goes back to the packet pool, unforwarded.
func TestOwnWorkersAfterTheStreamEnded(t *testing.T) {
	g := newWorkerRig(t)
	busy := g.stream("busy", true, nil, nil)
	g.queue(busy, 0)
	<-g.in
	st := g.stream("s", false, nil, nil)
	g.queue(st, 1, 2)
	st.close()
	g.open()
	g.wait(1)
	for deadline := time.Now().Add(10 * time.Second); st.pending.Load() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the pool did not empty an ended stream's queue")
		}
	}
	if got := g.wait(1); len(got) != 1 {
		t.Errorf("forwarded %v of an ended stream", got[1:])
	}
}
