package sfu

import (
	"bytes"
	"testing"
)

func newOpener(g *ownRig, st *ownStream, ssrc uint32) *ownOpener {
	return &ownOpener{oc: g.oc, st: st, ssrc: ssrc, m: g.m}
}

// heldOpener is a rig whose stream 1111 is held, with its opener.
func heldOpener(t *testing.T) (*ownRig, *ownStream, *ownOpener) {
	t.Helper()
	g := newOwnRig(t)
	st := &ownStream{ch: make(chan *ownPacket, 1)}
	g.oc.hold(1111, st)
	return g, st, newOpener(g, st, 1111)
}

func queued(b []byte, encrypted bool) *ownPacket {
	p := &ownPacket{encrypted: encrypted}
	p.n = copy(p.buf[:], b)
	return p
}

// A stream's packets are opened with the connection's keys; what does not
// authenticate and what was seen before, from the ingress or from pion,
// is dropped and counted.
func TestOwnOpenerDecryptsAndDropsReplays(t *testing.T) {
	g, _, o := heldOpener(t)
	plain := make([]byte, ownMTU)

	p1, w1 := g.packet(t, 1111, 1)
	if got := o.open(queued(w1, true), plain); !bytes.Equal(got, p1) {
		t.Fatalf("opened %x, want %x", got, p1)
	}
	if o.open(queued(w1, true), plain) != nil || g.m.OwnPathDuplicates.Load() != 1 {
		t.Error("a replayed packet was not dropped as a duplicate")
	}
	p2, w2 := g.packet(t, 1111, 2)
	if got := o.open(queued(p2, false), plain); !bytes.Equal(got, p2) {
		t.Errorf("a packet pion decrypted came out as %x, want %x", got, p2)
	}
	if o.open(queued(w2, true), plain) != nil || g.m.OwnPathDuplicates.Load() != 2 {
		t.Error("a packet pion delivered was forwarded again from the ingress")
	}
	_, w3 := g.packet(t, 1111, 3)
	w3[len(w3)-1] ^= 1
	if o.open(queued(w3, true), plain) != nil || g.m.OwnPathDecryptErrors.Load() != 1 {
		t.Error("a forged packet was not dropped and counted")
	}
	p3, w3 := g.packet(t, 1111, 3)
	if got := o.open(queued(w3, true), plain); !bytes.Equal(got, p3) {
		t.Error("the genuine packet after a forged one with its sequence number was refused")
	}
}

// A stream whose packets fail to authenticate ownFailLimit times in a row
// goes back to pion (its rollover counter is pion's to know); fewer, with
// a good one between, do not.
func TestOwnOpenerReleasesAfterFailuresInARow(t *testing.T) {
	g, st, o := heldOpener(t)
	plain := make([]byte, ownMTU)
	forged := func(seq uint16) *ownPacket {
		_, w := g.packet(t, 1111, seq)
		w[len(w)-1] ^= 1
		return queued(w, true)
	}
	for seq := uint16(1); seq < ownFailLimit; seq++ {
		o.open(forged(seq), plain)
	}
	_, good := g.packet(t, 1111, 100)
	if o.open(queued(good, true), plain) == nil {
		t.Fatal("a genuine packet was refused")
	}
	for seq := uint16(101); seq < 100+ownFailLimit; seq++ {
		o.open(forged(seq), plain)
	}
	if g.oc.stream(1111) != st {
		t.Fatalf("released after %d failures in a row", ownFailLimit-1)
	}
	o.open(forged(200), plain)
	if g.oc.stream(1111) != nil {
		t.Errorf("still taken after %d failures in a row", ownFailLimit)
	}
	// A newer stream under the same SSRC is not released by the old one.
	st2 := &ownStream{ch: make(chan *ownPacket, 1)}
	g.oc.hold(1111, st2)
	g.oc.release(1111, st)
	if g.oc.stream(1111) != st2 {
		t.Error("an old stream released the SSRC a newer stream holds")
	}
}

// The window accepts each sequence number once, across the wrap, refuses
// what is older than srtpReplayWindow, and forgets what a jump passed.
func TestSeqWindow(t *testing.T) {
	var w seqWindow
	want := func(seq uint16, ok bool) {
		t.Helper()
		if got := w.accept(seq); got != ok {
			t.Errorf("accept(%d) = %v, want %v", seq, got, ok)
		}
	}
	want(65530, true)
	want(65530, false)
	want(65535, true)
	want(2, true) // across the wrap
	want(65533, true)
	want(65533, false)
	want(65531, true)
	want(2, false)
	want(2+srtpReplayWindow-1, true)
	want(2, false)     // still in the window, and seen
	want(65535, false) // older than the window
	want(3, true)      // in the window, not seen
	want(3+2*srtpReplayWindow, true)
	want(3+srtpReplayWindow+1, true) // in the window, never seen

	// A jump shorter than the window frees the slots it passes over: seq 0
	// and seq srtpReplayWindow share one.
	w = seqWindow{}
	for seq := uint16(0); seq < 6; seq++ {
		want(seq, true)
	}
	want(srtpReplayWindow+3, true)
	want(srtpReplayWindow, true)
	want(5, false) // older than the window now
}

// pion delivered the stream's first packets across a sequence wrap before
// the ingress took it: the stream's context starts at the rollover
// counter those packets reached, so the next packet opens.
func TestOwnOpenerStartsAtTheRolloverCounterPionReached(t *testing.T) {
	g := newOwnRig(t)
	st := &ownStream{ch: make(chan *ownPacket, 1)}
	o := newOpener(g, st, 1111)
	plain := make([]byte, ownMTU)
	for _, seq := range []uint16{65533, 65534, 65535, 0, 1} {
		p, _ := g.packet(t, 1111, seq) // the peer's context counts the wrap
		if o.open(queued(p, false), plain) == nil {
			t.Fatalf("pion's packet %d refused", seq)
		}
	}
	p2, w2 := g.packet(t, 1111, 2)
	if got := o.open(queued(w2, true), plain); !bytes.Equal(got, p2) {
		t.Fatalf("the first packet from the ingress after a wrap pion saw did not open (%d failures)", g.m.OwnPathDecryptErrors.Load())
	}
}
