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
// mu: on the port's reader while it keeps up (inline), else from ch, which
// also carries the packets pion delivers, by one server at a time (serve):
// a worker of the path's pool (ownworkers.go, audio before video) while
// forwarding sends only on the UDP socket (direct), else the stream's own
// goroutine.
type ownStream struct {
	ch    chan *ownPacket
	seen  uint32 // packets the ingress saw (its goroutine only)
	video bool   // served after the audio by the pool

	pending atomic.Int32 // packets put in ch and not yet forwarded
	// served: a server has been given the stream (dispatch) and has not
	// yet found ch empty; nobody else takes packets from ch meanwhile.
	served atomic.Bool
	pool   *ownWorkers   // nil: the stream's goroutine serves every packet
	wake   chan struct{} // (capacity 1) the stream's goroutine serves it
	mu     sync.Mutex    // held while a packet is forwarded
	closed bool          // under mu: the stream's goroutine has ended
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

// queue puts p in ch for the stream's server, or reports that ch is full.
func (st *ownStream) queue(p *ownPacket) bool {
	st.pending.Add(1)
	select {
	case st.ch <- p:
		st.dispatch()
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
	st.dispatch()
}

// dispatch gives the stream to a server unless one has it: the pool if
// forwarding sends only on the UDP socket, else the stream's goroutine.
func (st *ownStream) dispatch() {
	if st.served.CompareAndSwap(false, true) {
		st.handOff(st.pool != nil && st.direct != nil && st.direct())
	}
}

// handOff passes the stream, served, to the pool (if toPool and it has
// room) or to the stream's goroutine.
func (st *ownStream) handOff(toPool bool) {
	if toPool && st.pool.give(st) {
		return
	}
	if st.wake != nil {
		select {
		case st.wake <- struct{}{}:
		default: // cannot be: only the one server hands off
		}
	}
}

// serve forwards what is in ch, as the stream's one server. On the pool
// (onPool) it hands the stream to its goroutine as soon as a subscriber is
// sent to through pion, whose writes may block. Every ownQuantum packets,
// while the pool may have it, the stream goes to the back of the pool's
// queue: from the pool, so that the next stream of its kind has its turn;
// from its goroutine, so that it is served by priority again.
func (st *ownStream) serve(onPool bool) {
	for n := 0; ; n++ {
		if turn := n > 0 && n%ownQuantum == 0; onPool || turn {
			direct := st.pool != nil && st.direct()
			switch {
			case onPool && !direct:
				st.handOff(false)
				return
			case turn && direct:
				st.handOff(true)
				return
			}
		}
		select {
		case p := <-st.ch:
			st.forwardQueued(p)
		default:
			st.served.Store(false)
			// A packet queued after ch was found empty and before served
			// was cleared found the stream served and dispatched nothing.
			// pending (counted before the packet is put in ch), not
			// len(ch): both it and served are atomics, so either this
			// load sees the packet or its producer sees served cleared.
			if st.pending.Load() == 0 || !st.served.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// forwardQueued forwards p, taken from ch, as the stream's server; once
// the stream's goroutine has ended, p only goes back to the pool.
func (st *ownStream) forwardQueued(p *ownPacket) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		ownPackets.Put(p)
	} else {
		st.forward(p)
	}
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
