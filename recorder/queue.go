package recorder

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// maxPooledPayload bounds the payload buffers kept in the pool; anything larger
// (not seen with a normal MTU) is allocated and left to the garbage collector.
const maxPooledPayload = 1500

var payloadPool = sync.Pool{New: func() any {
	b := make([]byte, 0, maxPooledPayload)
	return &b
}}

// item is one entry of a track queue: an RTP packet copied out of the SFU's
// buffer, or (sr true) a sender report. It travels by value so queueing costs
// no allocation beyond the pooled payload buffer.
type item struct {
	arrival  time.Time
	buf      *[]byte // pooled; holds the payload. nil for sender reports.
	seq      uint16
	ts       uint32
	marker   bool
	sr       bool
	srNTP    uint64
	srRTP    uint32
	srOffset int64 // the sender's clock offset as known when this report arrived
	extTS    int64 // set by the track goroutine
}

func (it *item) payload() []byte {
	if it.buf == nil {
		return nil
	}
	return *it.buf
}

func (it *item) release() {
	if it.buf != nil && cap(*it.buf) <= maxPooledPayload {
		*it.buf = (*it.buf)[:0]
		payloadPool.Put(it.buf)
	}
	it.buf = nil
}

// queue is the bounded hand-off between the SFU's forwarding goroutine and a
// track goroutine. It implements sfu.TrackSink. WriteRTP and OnRTCP never
// block: when the queue is full the packet is dropped and counted.
//
// Its ring grows (by doubling, up to size) only as far as the track
// goroutine falls behind and is let go when it catches up: a channel of
// size items would hold 72 KiB per track for the whole call, used only in
// bursts.
type queue struct {
	mu      sync.Mutex
	ring    []item // len 0 or a power of two ≥ minQueueRing, at most size rounded up
	head    int
	n       int
	size    int
	wake    chan struct{} // one pending signal that wakeAt items are queued
	wakeAt  int           // the backlog that wakes the track goroutine before its tick
	done    chan struct{}
	once    sync.Once
	clock   func() time.Time
	drops   atomic.Uint64  // this track's drops
	total   *atomic.Uint64 // the recorder's drops, for metrics
	log     *slog.Logger
	logName string
	// srOffset records a sender report's NTP time and arrival with the
	// recording's timeline and returns the sender's clock offset.
	srOffset func(ntp uint64, arrival time.Time) int64
}

func newQueue(size int, clock func() time.Time, total *atomic.Uint64, log *slog.Logger, name string) *queue {
	return &queue{
		size:    size,
		wake:    make(chan struct{}, 1),
		wakeAt:  max(1, min(wakeBacklog, size/2)),
		done:    make(chan struct{}),
		clock:   clock,
		total:   total,
		log:     log,
		logName: name,
	}
}

// WriteRTP copies pkt into the queue. It never blocks and never retains pkt.
func (q *queue) WriteRTP(pkt *rtp.Packet) {
	select {
	case <-q.done:
		return
	default:
	}
	var buf *[]byte
	if len(pkt.Payload) <= maxPooledPayload {
		buf = payloadPool.Get().(*[]byte)
		*buf = append((*buf)[:0], pkt.Payload...)
	} else {
		b := append([]byte(nil), pkt.Payload...)
		buf = &b
	}
	it := item{
		arrival: q.clock(),
		buf:     buf,
		seq:     pkt.SequenceNumber,
		ts:      pkt.Timestamp,
		marker:  pkt.Marker,
	}
	if !q.push(it) {
		it.release()
		q.overflow()
	}
}

// OnRTCP queues a sender report; like WriteRTP it never blocks.
func (q *queue) OnRTCP(sr *rtcp.SenderReport) {
	if sr == nil {
		return
	}
	select {
	case <-q.done:
		return
	default:
	}
	now := q.clock()
	it := item{arrival: now, sr: true, srNTP: sr.NTPTime, srRTP: sr.RTPTime}
	if q.srOffset != nil {
		// Here, not in the track goroutine: offsets then follow arrival
		// order across all of a sender's tracks.
		it.srOffset = q.srOffset(sr.NTPTime, now)
	}
	if !q.push(it) {
		q.overflow()
	}
}

// minQueueRing is the ring a queue starts with once something is queued.
const minQueueRing = 16

// wakeBacklog is the backlog that wakes a track goroutine at once; below it
// the goroutine takes what is queued on its tick (drainEvery). Waking it for
// every packet cost a goroutine switch per packet, about a fifth of those on
// the forwarding path.
const wakeBacklog = 32

// push appends it unless size items are queued, and wakes the track
// goroutine once wakeAt items wait.
func (q *queue) push(it item) bool {
	q.mu.Lock()
	if q.n >= q.size {
		q.mu.Unlock()
		return false
	}
	if q.n == len(q.ring) {
		ring := make([]item, max(minQueueRing, 2*len(q.ring)))
		for i := range q.n {
			ring[i] = q.ring[(q.head+i)&(len(q.ring)-1)]
		}
		q.ring, q.head = ring, 0
	}
	q.ring[(q.head+q.n)&(len(q.ring)-1)] = it
	q.n++
	n := q.n
	q.mu.Unlock()
	if n < q.wakeAt {
		return true
	}
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return true
}

// queued is how many items wait.
func (q *queue) queued() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// pop takes the oldest item; ok is false when none is queued. An emptied
// ring larger than twice the wake-up backlog (what a track normally holds
// between drains, keyframe bursts included) is let go.
func (q *queue) pop() (it item, ok bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == 0 {
		return item{}, false
	}
	i := q.head & (len(q.ring) - 1)
	it, q.ring[i] = q.ring[i], item{}
	q.head, q.n = i+1, q.n-1
	if q.n == 0 && len(q.ring) > max(minQueueRing, 2*q.wakeAt) {
		q.ring, q.head = nil, 0
	}
	return it, true
}

// Close tells the track goroutine to drain what is queued and finish.
func (q *queue) Close() {
	q.once.Do(func() { close(q.done) })
}

func (q *queue) overflow() {
	n := q.drops.Add(1)
	q.total.Add(1)
	// Log the first drop and then every 1000th, so a stuck disk cannot flood the log.
	if n == 1 || n%1000 == 0 {
		q.log.Warn("recorder queue full: packet dropped", "track", q.logName, "dropped", n)
	}
}
