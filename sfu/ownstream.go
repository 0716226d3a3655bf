package sfu

import (
	"sync"
	"sync/atomic"
)

// ownstream.go: one stream of the own receive path (ownpath.go), and the
// rule that lets the UDP port's reader forward its packets itself without
// reordering them.

// ownStream is one published stream the ingress may take. Its packets are
// forwarded one at a time, in the order they were taken or queued, under
// mu: on the port's reader while it keeps up (inline), else by the
// stream's goroutine from ch (forwardQueued), which also carries the
// packets pion delivers.
type ownStream struct {
	ch   chan *ownPacket
	seen uint32 // packets the ingress saw (its goroutine only)

	pending atomic.Int32 // packets put in ch and not yet forwarded
	mu      sync.Mutex   // held while a packet is forwarded
	closed  bool         // under mu: the stream's goroutine has ended
	// forward decrypts p, runs the chain and fans it out, under mu; set
	// before the stream is held.
	forward func(p *ownPacket)
	// direct says whether forwarding a packet now sends only on the UDP
	// port's socket (Receiver.sendsOnOwnPath): only then may the port's
	// reader forward it. Set with forward (nil: neither is, and the reader
	// never forwards).
	direct func() bool
}

// inline forwards p on the caller's goroutine, if no packet of the stream
// waits in ch or is being forwarded (p must not overtake one) and
// forwarding it sends only on the UDP socket (direct), and reports whether
// it did.
func (st *ownStream) inline(p *ownPacket) bool {
	if st.direct == nil || st.pending.Load() != 0 || !st.direct() || !st.mu.TryLock() {
		return false
	}
	defer st.mu.Unlock()
	if st.closed || st.pending.Load() != 0 {
		return false
	}
	st.forward(p)
	return true
}

// queue puts p in ch for the stream's goroutine, or reports that ch is full.
func (st *ownStream) queue(p *ownPacket) bool {
	st.pending.Add(1)
	select {
	case st.ch <- p:
		return true
	default:
		st.pending.Add(-1)
		return false
	}
}

// queueDelivered puts p, a packet pion delivered, in ch, waiting for room
// (pion's buffers hold the rest meanwhile): counted as pending first, so
// that the port's reader forwards nothing ahead of it.
func (st *ownStream) queueDelivered(p *ownPacket) {
	st.pending.Add(1)
	st.ch <- p
}

// forwardQueued forwards p, taken from ch, on the stream's goroutine.
func (st *ownStream) forwardQueued(p *ownPacket) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.forward(p)
	st.pending.Add(-1) // under mu: inline sees it only once p is forwarded
}

// close ends inline forwarding: the stream's goroutine is gone.
func (st *ownStream) close() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
}

// sendsOnOwnPath says whether every subscriber of the stream is sent to on
// the own send path (ownsend.go): then forwarding a packet writes only on
// the UDP port's socket, and the port's reader may do it (ownStream). pion
// writes to a subscriber on an ICE-TCP pair, or before its own path is
// taken, through its own path, which may block: a TCP write, for one,
// blocks while the subscriber does not read.
func (r *Receiver) sendsOnOwnPath() bool {
	for _, d := range *r.downs.Load() {
		if o := d.sub.osend; o == nil || o.to.Load() == nil {
			return false
		}
	}
	return true
}
