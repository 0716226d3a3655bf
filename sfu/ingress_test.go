package sfu

import (
	"bytes"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"
)

// ingressPair is an ingressConn on loopback and a socket sending to it.
func ingressPair(t *testing.T, onDelay func(time.Duration)) (*ingressConn, *net.UDPConn) {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	setSocketBuffers(conn, 4<<20, slog.New(slog.DiscardHandler))
	in, err := newIngressConn(conn, onDelay, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = in.Close() })
	peer, err := net.DialUDP("udp4", nil, conn.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	return in, peer
}

func rtpBytes(ssrc uint32, seq uint16, size int) []byte {
	b := make([]byte, size)
	b[0], b[1] = 0x80, 96
	binary.BigEndian.PutUint16(b[2:], seq)
	binary.BigEndian.PutUint32(b[8:], ssrc)
	return b
}

func send(t *testing.T, peer *net.UDPConn, pkts ...[]byte) {
	t.Helper()
	for _, p := range pkts {
		if _, err := peer.Write(p); err != nil {
			t.Fatal(err)
		}
	}
}

// readAll reads n datagrams, failing after a few seconds without one.
func readAll(t *testing.T, in *ingressConn, n int) ([][]byte, netip.AddrPort) {
	t.Helper()
	var got [][]byte
	var from netip.AddrPort
	buf := make([]byte, ingressMTU)
	for len(got) < n {
		_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, f, err := in.ReadFromAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), n, err)
		}
		got, from = append(got, bytes.Clone(buf[:k])), f
	}
	return got, from
}

func TestIngressReadsQueuedDatagramsInBatchesIntact(t *testing.T) {
	in, peer := ingressPair(t, nil)
	var sent [][]byte
	for i := range 100 {
		p := rtpBytes(uint32(i), uint16(i), 12+i*13)
		if i == 50 {
			p = rtpBytes(7, 7, 8000) // above any link's MTU, within the 8192 bytes read: whole
		}
		sent = append(sent, p)
	}
	send(t, peer, sent...)
	time.Sleep(50 * time.Millisecond) // all queued before the first read
	got, from := readAll(t, in, len(sent))
	for i := range sent {
		if !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("datagram %d: got %d bytes, sent %d (or different bytes)", i, len(got[i]), len(sent[i]))
		}
	}
	if want := peer.LocalAddr().(*net.UDPAddr).AddrPort(); from != want {
		t.Errorf("from %v, want the sender %v", from, want)
	}
	if batched && in.batches > 4 {
		t.Errorf("100 queued datagrams took %d reads of the socket, want at most 4 (batches of %d)", in.batches, ingressBatch)
	}
}

// TestIngressMeasuresHowLongDatagramsWaited: each datagram's wait in the
// kernel queue is observed from the kernel's receive time, so a datagram
// left unread is seen to have waited, and one read at once is not; the own
// path is told the reader is behind for a datagram that waited longer than
// ingressBehind.
func TestIngressMeasuresHowLongDatagramsWaited(t *testing.T) {
	if !batched {
		t.Skip("receive timestamps are read on 64-bit Linux only")
	}
	var waits []time.Duration
	var behinds []bool
	in, peer := ingressPair(t, func(d time.Duration) { waits = append(waits, d) })
	in.take = func(_ []byte, _ netip.AddrPort, _ time.Time, behind bool) taken {
		behinds = append(behinds, behind)
		return notTaken
	}
	const queued = time.Second
	send(t, peer, rtpBytes(1, 1, 100), rtpBytes(1, 2, 100))
	time.Sleep(queued)
	readAll(t, in, 2)
	go func() {
		time.Sleep(100 * time.Millisecond) // the reader is waiting by then
		_, _ = peer.Write(rtpBytes(1, 3, 100))
	}()
	readAll(t, in, 1)
	if len(waits) != 3 {
		t.Fatalf("observed %d waits for 3 datagrams", len(waits))
	}
	for i, w := range waits[:2] {
		if w < queued || w > queued+time.Second {
			t.Errorf("datagram %d left %v in the queue: observed %v", i, queued, w)
		}
	}
	if waits[2] > queued/2 {
		t.Errorf("a datagram read as it arrived is said to have waited %v", waits[2])
	}
	if len(behinds) != 3 || !behinds[0] || !behinds[1] {
		t.Fatalf("behind %v for 3 datagrams, the first two left %v in the queue", behinds, queued)
	}
	if waits[2] > ingressBehind && !behinds[2] {
		t.Errorf("datagram 2 waited %v, over %v, and the reader is not behind", waits[2], ingressBehind)
	}
}

// Without receive times the reader is behind when a batch came full.
func TestIngressBehindWithoutReceiveTimes(t *testing.T) {
	c := &ingressConn{msgs: make([]ingressMsg, ingressBatch)}
	var m ingressMsg
	for _, tc := range []struct {
		have    int
		arrived time.Time
		want    bool
	}{
		{ingressBatch, time.Time{}, true},
		{ingressBatch - 1, time.Time{}, false},
		{1, time.Now().Add(-time.Second), true},
		{ingressBatch, time.Now().Add(time.Minute), false}, // a receive time rules
	} {
		c.have, m.arrived = tc.have, tc.arrived
		if got := c.behind(&m); got != tc.want {
			t.Errorf("batch of %d, arrived %v: behind %v, want %v", tc.have, tc.arrived, got, tc.want)
		}
	}
}

// TestIngressYieldsOnlyAfterForwarding: the reader yields before its next
// read after a batch in which the own path forwarded a packet on it, not
// after one whose packets it only queued: behind, a yield would put it at
// the back of the run queue while the kernel's queue overflows.
func TestIngressYieldsOnlyAfterForwarding(t *testing.T) {
	in, peer := ingressPair(t, nil)
	in.take = func(b []byte, _ netip.AddrPort, _ time.Time, _ bool) taken {
		switch binary.BigEndian.Uint32(b[8:12]) {
		case 1:
			return takenQueued
		case 2:
			return takenForwarded
		}
		return notTaken // the marker that ends each batch's read
	}
	batch := func(ssrc uint32, n int) {
		t.Helper()
		for i := range n {
			send(t, peer, rtpBytes(ssrc, uint16(i), 100))
		}
		send(t, peer, rtpBytes(3, 0, 100))
		readAll(t, in, 1)
	}
	batch(1, 10) // queued only
	batch(1, 10) // so no yield before this read
	if in.yields != 0 {
		t.Fatalf("%d yields after batches the reader only queued, want 0", in.yields)
	}
	batch(2, 1) // forwarded on the reader
	batch(1, 1)
	if in.yields != 1 {
		t.Fatalf("%d yields after one batch the reader forwarded from, want 1", in.yields)
	}
}

// coalescingPair is ingressPair with a 200 ms coalescing wait; it skips
// where reads are not batched.
func coalescingPair(t *testing.T) (*ingressConn, *net.UDPConn) {
	t.Helper()
	if !batched {
		t.Skip("coalescing needs batched reads (64-bit Linux)")
	}
	in, peer := ingressPair(t, nil)
	in.coalesce = 200 * time.Millisecond
	return in, peer
}

// TestIngressCoalescesReads: with a coalescing wait, datagrams that arrive
// one by one after a batch that did not fill are read together once the
// wait since that batch's read is over; a full batch is read again at once.
func TestIngressCoalescesReads(t *testing.T) {
	in, peer := coalescingPair(t)
	send(t, peer, rtpBytes(1, 0, 100))
	readAll(t, in, 1)
	first := in.now
	// Five datagrams 1 ms apart, well within the wait: one read takes them.
	lastSent := make(chan time.Time, 1)
	go func() {
		for i := range 5 {
			time.Sleep(time.Millisecond)
			_, _ = peer.Write(rtpBytes(1, uint16(1+i), 100))
		}
		lastSent <- time.Now()
	}()
	readAll(t, in, 5)
	if last := <-lastSent; last.After(first.Add(in.coalesce)) {
		t.Skipf("the sender was starved: its last datagram left %v after the first read, past the wait", last.Sub(first))
	}
	if in.batches != 2 || in.sleeps != 1 {
		t.Errorf("6 datagrams, the last 5 arriving within the wait: %d reads and %d sleeps, want 2 and 1", in.batches, in.sleeps)
	}
	if waited := in.now.Sub(first); waited < in.coalesce {
		t.Errorf("the second read came %v after the first, want at least the wait (%v)", waited, in.coalesce)
	}

	// A full batch and then some, queued before the read: the rest is read
	// at once, with no sleep between.
	for i := range ingressBatch + 3 {
		send(t, peer, rtpBytes(2, uint16(i), 100))
	}
	time.Sleep(in.coalesce) // the last batch's wait is over: no sleep before the first read
	readAll(t, in, ingressBatch+3)
	if in.sleeps != 1 {
		t.Errorf("%d sleeps reading a full batch and the rest after it, want none more than the 1 before", in.sleeps)
	}
}

// TestIngressReadsAtOnceWhenBehind: a batch that did not fill but whose
// datagram found the reader behind (it waited 20 ms in the kernel's queue)
// is followed by the next read at once, not by a sleep.
func TestIngressReadsAtOnceWhenBehind(t *testing.T) {
	in, peer := coalescingPair(t)
	send(t, peer, rtpBytes(1, 0, 100))
	time.Sleep(20 * time.Millisecond)
	readAll(t, in, 1)
	send(t, peer, rtpBytes(1, 1, 100))
	readAll(t, in, 1)
	if in.sleeps != 0 {
		t.Errorf("%d sleeps after a batch that found the reader behind, want 0", in.sleeps)
	}
}

// TestIngressBehindCountsFromTheSleepsEnd: a datagram that arrived while
// the reader slept to coalesce is not behind for that sleep, only for the
// time since it ended.
func TestIngressBehindCountsFromTheSleepsEnd(t *testing.T) {
	c := &ingressConn{msgs: make([]ingressMsg, ingressBatch), have: 1}
	now := time.Now()
	m := ingressMsg{arrived: now.Add(-40 * time.Millisecond)}
	c.awake = now
	if c.behind(&m) {
		t.Error("a datagram that arrived 40 ms into the reader's sleep, read as it woke: behind, want not")
	}
	c.awake = now.Add(-30 * time.Millisecond)
	if !c.behind(&m) {
		t.Error("the same, read 30 ms after the reader woke: not behind, want behind")
	}
}

// TestIngressCoalesceIsBounded: the wait newIngressConn takes is the one
// given, at most MaxUDPCoalesce, and none without batched reads.
func TestIngressCoalesceIsBounded(t *testing.T) {
	for _, tc := range []struct{ give, want time.Duration }{
		{0, 0}, {3 * time.Millisecond, 3 * time.Millisecond}, {time.Second, MaxUDPCoalesce},
	} {
		conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		in, err := newIngressConn(conn, nil, tc.give)
		if err != nil {
			t.Fatal(err)
		}
		want := tc.want
		if !batched {
			want = 0
		}
		if in.coalesce != want {
			t.Errorf("newIngressConn with %v: waits %v, want %v", tc.give, in.coalesce, want)
		}
		_ = in.Close()
	}
}
