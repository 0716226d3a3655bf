package main

import "testing"

// TestCounterCountsEachPacketOnceAcrossTheWrap: expected runs from the
// first sequence number to the highest, across a wrap; a resent packet
// counts once; a gap is loss.
func TestCounterCountsEachPacketOnceAcrossTheWrap(t *testing.T) {
	var c counter
	for _, seq := range []uint16{65533, 65534, 65535, 0, 0, 2, 3, 65535} { // 1 lost; 0 and 65535 twice
		c.add(seq)
	}
	e, r := c.result()
	if e != 7 || r != 6 {
		t.Fatalf("expected %d received %d, want 7 and 6", e, r)
	}
}
