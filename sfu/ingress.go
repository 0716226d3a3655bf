package sfu

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// ingress.go: the UDP port's socket as pion's UDP mux reads it. Every
// consultation's UDP media arrives on this one socket and one goroutine (pion's
// mux worker) reads it; on a saturated machine that goroutine waits for a
// CPU like thousands of others, and the kernel queues what it has not read.
//
//   - Datagrams are read in batches (recvmmsg on Linux on amd64 or arm64,
//     ingress_linux.go; elsewhere one at a time, ingress_other.go):
//     one system call takes whatever is queued, up to ingressBatch, where
//     pion's reader makes one per datagram. The saving is largest exactly
//     when the queue is long.
//   - The kernel stamps each datagram on arrival (SO_TIMESTAMPNS), so how
//     long it waited to be read is known: Metrics.OnUDPQueueDelay, exported
//     as medcall_udp_queue_delay_seconds. That is the media delay an
//     overloaded server adds before any of its own work.
//   - Reads are coalesced (Config.UDPCoalesce): after a batch that did not
//     fill, the reader sleeps until the interval since that read is over,
//     so it wakes about once per interval rather than once per datagram.
//     Each wake-up of an idle reader costs the Go scheduler a thread
//     parked and woken and the kernel a system call; at N=50 one-to-one
//     consultations that was most datagrams, and coalescing by 1 ms took
//     CPU per forwarded packet down by 17-32 %, and audio's median delay
//     from 0.5 to 1.7 ms (docs/performance.md). A full batch, or one that
//     found the reader behind, is followed by the next read at once, so a
//     busy reader never sleeps.
//   - On Linux on amd64 or arm64 the socket is in none of Go's epoll sets
//     (portsocket_linux.go): a datagram arriving while the reader sleeps
//     wakes no thread.
//
// Tried and not kept: dropping RTP unread once it had waited too long
// (video after 150 or 400 ms, audio after 500 or 1000 ms). Each dropped
// video packet is a loss to the publisher's NACK generator and the
// subscriber's decoder, so it came back as retransmissions and keyframes:
// up to twice as many video packets were dropped as were sent, and video
// loss at N=150 rose from about 2 % to 19-29 % (docs/performance.md).

// MaxUDPCoalesce bounds Config.UDPCoalesce: past a few milliseconds a
// reader wakes too seldom to save more, and media only waits longer.
const MaxUDPCoalesce = 10 * time.Millisecond

const (
	ingressBatch = 32   // datagrams per recvmmsg
	ingressMTU   = 8192 // pion's UDP mux reads up to this

	// ingressBehind: a datagram that has waited longer than this since it
	// arrived says the port's reader is behind, and the own path hands its
	// packets to the forwarding pool (or their streams' goroutines) rather
	// than forwarding them on the reader (ownpath.go, takeAt). 4 ms was tried
	// too (docs/mediapath.md).
	ingressBehind = time.Millisecond
)

// ingressMsg is one datagram of a batch.
type ingressMsg struct {
	buf     []byte
	n       int
	from    netip.AddrPort
	arrived time.Time // the kernel's receive time; zero when not known
}

// ingressConn is the UDP port's socket with batched, timed reads. It
// implements net.PacketConn and pion's allocation-free AddrPortReaderWriter.
type ingressConn struct {
	udpSocket
	reader  batchReader // ingress_linux.go, ingress_other.go
	onDelay func(time.Duration)
	// take, if set, is offered each datagram first; what it takes, pion
	// never reads (the own receive path, ownpath.go).
	take func(b []byte, from netip.AddrPort, arrived time.Time, behind bool) taken

	mu         sync.Mutex // one reader: pion's mux worker
	msgs       []ingressMsg
	next, have int
	now        time.Time // when the batch was read
	batches    uint64    // reads of the socket, for tests
	yields     uint64    // yields before a read, for tests
	forwarded  bool      // take forwarded a datagram of this batch itself
	// coalesce: after a batch that did not fill, the reader sleeps until
	// this long after that batch's read (0: it reads again at once).
	coalesce time.Duration
	awake    time.Time // when the reader last woke from such a sleep
	lagged   bool      // a datagram of this batch found the reader behind
	sleeps   uint64    // those sleeps, for tests
}

// taken is what the own path did with a datagram the ingress offered it.
type taken uint8

const (
	notTaken       taken = iota // pion reads it
	takenQueued                 // queued for the stream's server, or dropped
	takenForwarded              // forwarded there and then, on the reader
	takenRTCP                   // a subscriber's RTCP, read there and then (ownrtcp.go)
)

func (t taken) String() string {
	switch t {
	case notTaken:
		return "not taken"
	case takenQueued:
		return "queued"
	case takenForwarded:
		return "forwarded"
	case takenRTCP:
		return "RTCP"
	}
	return "taken(?)"
}

// newIngressConn reads conn in batches; onDelay, if not nil, observes how
// long each datagram waited in the kernel queue. coalesce is
// Config.UDPCoalesce; it needs batched reads, without which it is 0.
func newIngressConn(conn udpSocket, onDelay func(time.Duration), coalesce time.Duration) (*ingressConn, error) {
	if !batched {
		coalesce = 0 // one datagram per read: a sleep after each would starve the port
	}
	coalesce = min(coalesce, MaxUDPCoalesce)
	c := &ingressConn{udpSocket: conn, onDelay: onDelay, coalesce: coalesce, msgs: make([]ingressMsg, ingressBatch)}
	for i := range c.msgs {
		c.msgs[i].buf = make([]byte, ingressMTU)
	}
	if err := c.reader.init(conn, c.msgs); err != nil {
		return nil, err
	}
	return c, nil
}

// ReadFromAddrPort returns the next datagram.
func (c *ingressConn) ReadFromAddrPort(b []byte) (int, netip.AddrPort, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.next == c.have {
			c.coalesceReads()
			if c.forwarded {
				// The reader forwarded packets of the batch itself
				// (ownstream.go): let the goroutines it readied run first.
				// Forwarding back to back, the reader would hold its P for
				// up to the scheduler's 10 ms slice while they wait (at N=75
				// a quarter of goroutine wake-ups waited over 10 ms, and the
				// bench's upgrade p95 went from 107-190 ms to 306-642).
				// Not after a batch it only queued: behind, a yield puts
				// the reader at the back of the run queue, behind every
				// goroutine it readied, and the kernel's queue overflows
				// (at N=150, recorded, in three runs of five: up to 56,000
				// datagrams dropped by the kernel and up to 5 % of audio
				// lost, against none).
				c.forwarded = false
				c.yields++
				runtime.Gosched()
			}
			n, err := c.reader.read(c.msgs)
			if err != nil {
				return 0, netip.AddrPort{}, err
			}
			c.next, c.have, c.now, c.lagged = 0, n, time.Now(), false
			c.batches++
			continue
		}
		m := &c.msgs[c.next]
		c.next++
		if c.onDelay != nil && !m.arrived.IsZero() {
			c.onDelay(max(c.now.Sub(m.arrived), 0))
		}
		late := c.behind(m)
		c.lagged = c.lagged || late
		if c.take != nil {
			if t := c.take(m.buf[:m.n], m.from, m.arrived, late); t != notTaken {
				c.forwarded = c.forwarded || t == takenForwarded
				continue
			}
		}
		return copy(b, m.buf[:m.n]), m.from, nil
	}
}

// coalesceReads sleeps, before the next read, until c.coalesce after the
// last batch's read if that batch did not fill and none of its datagrams
// found the reader behind (a reader behind reads again at once, as after a
// full batch). The sleep yields the reader's P, so the goroutines the
// batch readied run: no yield is due. awake, from which behind counts, is
// when the sleep was due to end, give or take the timer's slop (up to
// ingressBehind): a wait for a CPU after that is lag, as before.
func (c *ingressConn) coalesceReads() {
	if c.coalesce <= 0 || c.have == len(c.msgs) || c.lagged || c.now.IsZero() {
		return
	}
	due := c.now.Add(c.coalesce)
	if d := time.Until(due); d > 0 {
		c.sleeps++
		time.Sleep(d)
		c.forwarded, c.awake = false, time.Now()
		if late := due.Add(ingressBehind); c.awake.After(late) {
			c.awake = late // the rest was a wait for a CPU: lag
		}
	}
}

// behind says whether the reader is behind: m has waited longer than
// ingressBehind since it arrived, counting the time the reader spent on
// the datagrams before it in the batch, and not the time it slept to
// coalesce reads (that wait is its choice, not its lag). Without receive
// times (a kernel refusing them, or no recvmmsg) a full batch says so.
func (c *ingressConn) behind(m *ingressMsg) bool {
	if m.arrived.IsZero() {
		return c.have == len(c.msgs)
	}
	since := m.arrived
	if since.Before(c.awake) {
		since = c.awake
	}
	return time.Since(since) > ingressBehind
}

// ReadFrom is ReadFromAddrPort for callers wanting a net.Addr.
func (c *ingressConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteToAddrPort sends as the socket does.
func (c *ingressConn) WriteToAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return c.udpSocket.WriteToUDPAddrPort(b, to)
}
