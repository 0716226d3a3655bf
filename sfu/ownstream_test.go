package sfu

import (
	"encoding/binary"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// While the port's reader keeps up, a held stream's packets are forwarded
// on it; once one is queued (the reader behind), later ones queue behind it
// until the stream's goroutine has forwarded it, so none overtakes another.
// A stream with a subscriber pion sends to is never forwarded on the reader.
func TestOwnStreamForwardsOnTheReaderInOrder(t *testing.T) {
	g := newOwnRig(t)
	g.path.add(g.oc, addr(5000), true)
	st := &ownStream{ch: make(chan *ownPacket, 8)}
	var got []uint16 // in the order forwarded
	st.forward = func(p *ownPacket) {
		if !st.mu.TryLock() {
			got = append(got, binary.BigEndian.Uint16(p.buf[2:4]))
		} else {
			st.mu.Unlock()
			t.Error("a packet was forwarded without the stream's lock")
		}
		ownPackets.Put(p)
	}
	direct := true
	st.direct = func() bool { return direct }
	g.oc.hold(1111, st)
	const fwd, queued = takenForwarded, takenQueued
	take := func(seq uint16, behind bool, want taken) {
		t.Helper()
		if _, wire := g.packet(t, 1111, seq); g.path.take(wire, addr(5000), behind) != want {
			t.Fatalf("packet %d not %v", seq, want)
		}
	}
	drain := func() { // the stream's goroutine
		for len(st.ch) > 0 {
			st.forwardQueued(<-st.ch)
		}
	}
	want := func(seqs ...uint16) {
		t.Helper()
		if !slices.Equal(got, seqs) {
			t.Fatalf("forwarded %v, want %v", got, seqs)
		}
	}

	take(1, false, fwd)
	want(1) // on the reader
	take(2, true, queued)
	take(3, false, queued) // 2 waits: 3 must not overtake it
	want(1)
	drain()
	want(1, 2, 3)
	take(4, false, fwd)
	want(1, 2, 3, 4)

	st.mu.Lock() // the stream's goroutine forwarding a packet pion delivered
	take(5, false, queued)
	st.mu.Unlock()
	want(1, 2, 3, 4)
	drain()
	want(1, 2, 3, 4, 5)
	d := ownPackets.Get().(*ownPacket) // pion delivered a packet
	plain, _ := g.packet(t, 1111, 6)
	d.n, d.encrypted = copy(d.buf[:], plain), false
	st.queueDelivered(d)
	take(7, false, queued) // must not overtake it
	want(1, 2, 3, 4, 5)
	drain()
	want(1, 2, 3, 4, 5, 6, 7)

	direct = false // a subscriber sent to through pion: its writes may block
	take(8, false, queued)
	want(1, 2, 3, 4, 5, 6, 7)
	drain()
	want(1, 2, 3, 4, 5, 6, 7, 8)
	direct = true
	if q, n := g.m.OwnPathQueued.Load(), g.m.OwnPathPackets.Load(); q != 5 || n != 7 {
		t.Errorf("queued %d of %d taken, want 5 of 7", q, n)
	}

	st.close() // the stream's goroutine has ended: nothing forwarded here
	take(9, false, queued)
	want(1, 2, 3, 4, 5, 6, 7, 8)
	if len(st.ch) != 1 {
		t.Errorf("%d packets queued after the stream's goroutine ended, want 1", len(st.ch))
	}
}

// The port's reader may forward a stream only while every subscriber of it
// is sent to on the own send path.
func TestReceiverSendsOnOwnPath(t *testing.T) {
	r := &Receiver{}
	r.downs.Store(&[]*DownTrack{})
	if !r.sendsOnOwnPath() {
		t.Error("a stream with no subscriber is not sent on the own path")
	}
	own, taken := newOwnSender(&ownPath{}), newOwnSender(&ownPath{})
	taken.to.Store(&ownSendTo{})
	pion := &DownTrack{sub: &Participant{}}
	waiting := &DownTrack{sub: &Participant{osend: own}}
	onOwn := &DownTrack{sub: &Participant{osend: taken}}
	for _, c := range []struct {
		downs []*DownTrack
		want  bool
	}{
		{[]*DownTrack{onOwn}, true},
		{[]*DownTrack{onOwn, pion}, false},
		{[]*DownTrack{waiting, onOwn}, false},
	} {
		r.downs.Store(&c.downs)
		if got := r.sendsOnOwnPath(); got != c.want {
			t.Errorf("%d subscribers: sendsOnOwnPath %v, want %v", len(c.downs), got, c.want)
		}
	}
}

// Under concurrency (run with -race), with the reader falling behind now
// and then, the pool's workers and the stream's goroutine serving the
// queue meanwhile, and a subscriber going to pion and back now and then
// (handing the stream from the pool to its goroutine), every packet is
// forwarded once and in order.
func TestOwnStreamForwardsInOrderConcurrently(t *testing.T) {
	g := newOwnRig(t)
	g.path.add(g.oc, addr(5000), true)
	const n = ownPionEvery - 1 // all taken: the next is left to pion
	pool := newOwnWorkers(2)
	defer pool.close()
	st := &ownStream{ch: make(chan *ownPacket, n), pool: pool, wake: make(chan struct{}, 1), video: true}
	var got []uint16
	st.forward = func(p *ownPacket) {
		got = append(got, binary.BigEndian.Uint16(p.buf[2:4]))
		ownPackets.Put(p)
	}
	var direct atomic.Bool
	direct.Store(true)
	st.direct = direct.Load
	g.oc.hold(1111, st)
	wires := make([][]byte, n)
	for i := range wires {
		_, wires[i] = g.packet(t, 1111, uint16(i))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { // the stream's goroutine
		defer close(done)
		for {
			select {
			case <-st.wake:
				st.serve(false)
			case <-stop:
				return
			}
		}
	}()
	for i, w := range wires {
		if i%300 == 299 {
			direct.Store(!direct.Load())
		}
		if g.path.take(w, addr(5000), i%7 == 0) == notTaken { // behind now and then
			t.Fatalf("packet %d not taken", i)
		}
		for i%50 == 49 && st.pending.Load() != 0 { // and caught up now and then
			runtime.Gosched()
		}
	}
	for deadline := time.Now().Add(20 * time.Second); st.pending.Load() != 0; runtime.Gosched() {
		if time.Now().After(deadline) {
			t.Fatalf("%d packets left pending with nobody serving them", st.pending.Load())
		}
	}
	close(stop)
	<-done
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(got) != n {
		t.Fatalf("forwarded %d of %d packets", len(got), n)
	}
	for i, seq := range got {
		if seq != uint16(i) {
			t.Fatalf("packet %d forwarded in place %d", seq, i)
		}
	}
	if q := g.m.OwnPathQueued.Load(); q < n/7 || q == n {
		t.Errorf("%d of %d packets queued; the test wants some forwarded on the reader and some queued", q, n)
	}
}
