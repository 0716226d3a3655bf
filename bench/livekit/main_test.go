package main

import "testing"

// TestCounterCountsAsMedcallsClient: expected runs from an SSRC's first
// sequence number to its highest, across a wrap (a late packet from before
// the wrap stays before it); every packet received counts, a resent one
// too; a new SSRC starts a new sequence space and keeps what the old one
// expected.
func TestCounterCountsAsMedcallsClient(t *testing.T) {
	var c counter
	for _, seq := range []uint16{65533, 65534, 65535, 0, 0, 2, 3, 65535} { // 1 lost; 0 and 65535 twice
		c.add(7, seq)
	}
	if e, r := c.result(); e != 7 || r != 8 {
		t.Fatalf("expected %d received %d, want 7 and 8", e, r)
	}
	c.add(9, 100)
	c.add(9, 102)
	if e, r := c.result(); e != 10 || r != 10 {
		t.Fatalf("after a new SSRC: expected %d received %d, want 10 and 10", e, r)
	}
}
