package sfu

import (
	"encoding/binary"
	"slices"
	"testing"
)

// While the port's reader keeps up, a held stream's packets are forwarded
// on it; once one is queued (the reader behind), later ones queue behind it
// until the stream's goroutine has forwarded it, so none overtakes another.
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
	g.oc.hold(1111, st)
	take := func(seq uint16, behind bool) {
		t.Helper()
		if _, wire := g.packet(t, 1111, seq); !g.path.take(wire, addr(5000), behind) {
			t.Fatalf("packet %d not taken", seq)
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

	take(1, false)
	want(1) // on the reader
	take(2, true)
	take(3, false) // 2 waits: 3 must not overtake it
	want(1)
	drain()
	want(1, 2, 3)
	take(4, false)
	want(1, 2, 3, 4)

	st.mu.Lock() // the stream's goroutine forwarding a packet pion delivered
	take(5, false)
	st.mu.Unlock()
	want(1, 2, 3, 4)
	drain()
	want(1, 2, 3, 4, 5)
	if q, n := g.m.OwnPathQueued.Load(), g.m.OwnPathPackets.Load(); q != 3 || n != 5 {
		t.Errorf("queued %d of %d taken, want 3 of 5", q, n)
	}

	st.close() // the stream's goroutine has ended: nothing forwarded here
	take(6, false)
	want(1, 2, 3, 4, 5)
	if len(st.ch) != 1 {
		t.Errorf("%d packets queued after the stream's goroutine ended, want 1", len(st.ch))
	}
}
