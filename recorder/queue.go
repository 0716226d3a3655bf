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
type queue struct {
	ch      chan item
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
		ch:      make(chan item, size),
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
	select {
	case q.ch <- it:
	default:
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
	select {
	case q.ch <- it:
	default:
		q.overflow()
	}
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
