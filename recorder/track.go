package recorder

import (
	"time"

	"github.com/medcall/medcall/sfu"
)

// Reordering limits: a missing packet is given up once this many newer
// packets, or this much arrival time, have gone by.
const (
	reorderMaxLate = 64
	reorderMaxWait = 200 * time.Millisecond
	// srHoldMax bounds how long a track's first packets wait for its first
	// sender report. Placing them by arrival time and correcting later
	// cannot work for continuous audio: a frame may never start before the
	// previous one ends, so an early mapping error would stay for the whole
	// track. Chromium sends its first audio report 2.5 s after it starts; a sender
	// that sends none is placed by arrival time after this wait.
	srHoldMax = 3 * time.Second
)

// track is one published track being recorded: its queue, and the goroutine
// that reorders, depacketizes and timestamps its frames into the spool.
type track struct {
	rec     *recording
	info    sfu.TrackInfo
	codec   codec
	q       *queue
	clock   *trackClock
	seq     unwrap16
	reorder reorderBuffer
	dep     *depacketizer
	done    chan struct{}
	id      uint16 // spool track id

	// Owned by the track goroutine.
	declared   bool // this track object has made sure its id is declared
	lastMS     int64
	lastExtTS  int64 // RTP timestamp of the last frame written
	haveLast   bool
	now        time.Time // arrival time of the packet being handled
	lastKeyReq time.Time // when a keyframe was last asked for
	askedFor   time.Time // lastKey when it was asked for
	lastKey    time.Time // arrival of the last keyframe written
	frames     uint64
	lostPkts   uint64
	emitFn     func(*item)
	lostFn     func(int64)
	// held are the first packets, waiting (up to srHoldMax after holdFrom)
	// for the track's first sender report; holdOver once they are released.
	// holdTimer ends the wait when packets stop coming before srHoldMax
	// of them have arrived.
	held      []item
	holdFrom  time.Time
	holdOver  bool
	holdTimer *time.Timer
}

func newTrack(rec *recording, info sfu.TrackInfo, c codec, q *queue) *track {
	t := &track{
		rec:     rec,
		info:    info,
		codec:   c,
		q:       q,
		clock:   newTrackClock(info.ClockRate),
		reorder: reorderBuffer{maxLate: reorderMaxLate, maxWait: reorderMaxWait},
		dep:     newDepacketizer(c),
		done:    make(chan struct{}),
	}
	t.emitFn, t.lostFn = t.emit, t.lost
	return t
}

// drainEvery is how often a track goroutine takes what its queue holds when
// the backlog has not woken it sooner. Packets carry their arrival time, so
// the wait moves nothing in the recording; a crash loses at most this much
// more than the spool's sync interval.
const drainEvery = 100 * time.Millisecond

// run is the track goroutine. It ends when the queue is closed and drained.
func (t *track) run() {
	defer close(t.done)
	defer func() {
		if t.holdTimer != nil {
			t.holdTimer.Stop()
		}
	}()
	tick := time.NewTicker(drainEvery)
	defer tick.Stop()
	for {
		t.drain()
		select {
		case <-t.q.wake:
		case <-tick.C:
		case <-t.holdExpired():
			// A sender report may wait in the queue (drained on the tick):
			// take it first, so held packets are placed by it when it came
			// in time.
			t.drain()
			t.releaseHeld()
		case <-t.q.done:
			t.drain()
			t.releaseHeld()
			t.reorder.flush(t.emitFn, t.lostFn)
			return
		}
	}
}

// drain handles everything queued.
func (t *track) drain() {
	for it, ok := t.q.pop(); ok; it, ok = t.q.pop() {
		t.handle(it)
	}
}

func (t *track) handle(it item) {
	t.now = it.arrival
	if it.sr {
		t.clock.senderReport(it.srNTP, it.srRTP, it.srOffset)
		t.releaseHeld()
		return
	}
	if len(it.payload()) > 0 {
		// A packet the SFU did not forward (padding, muted media) holds
		// its sequence number only: its timestamp is not media time, so
		// it must not anchor or move the clock.
		it.extTS = t.clock.packet(it.ts, it.arrival)
	}
	if !t.holdOver {
		if t.holdFrom.IsZero() {
			t.holdFrom = it.arrival
			t.holdTimer = time.NewTimer(srHoldMax)
		}
		if it.arrival.Sub(t.holdFrom) < srHoldMax {
			t.held = append(t.held, it)
			return
		}
		t.releaseHeld()
	}
	t.push(it)
}

// push hands an in-order or late packet to the reorder buffer.
func (t *track) push(it item) {
	if !t.reorder.push(t.seq.unwrap(it.seq), it, t.emitFn, t.lostFn) {
		it.release()
	}
}

// holdExpired fires when the wait for a first sender report is up by the
// wall clock; nil (never) while nothing is held.
func (t *track) holdExpired() <-chan time.Time {
	if t.holdTimer == nil || t.holdOver {
		return nil
	}
	return t.holdTimer.C
}

// releaseHeld ends the wait for the first sender report: the packets held
// so far are placed, through the report's mapping if one came, and every
// later packet goes straight on.
func (t *track) releaseHeld() {
	if t.holdOver {
		return
	}
	t.holdOver = true
	now := t.now
	for i := range t.held {
		t.now = t.held[i].arrival
		t.push(t.held[i])
	}
	t.now = now
	t.held = nil
}

// emit takes the next in-order packet.
func (t *track) emit(it *item) {
	if f, ok := t.dep.push(it.extTS, it.marker, it.payload()); ok {
		t.write(f) // before release: an Opus frame aliases the payload
	}
	it.release()
	t.maybeRequestKeyframe()
}

// lost is told that n packets will never come.
func (t *track) lost(n int64) {
	t.lostPkts += uint64(n)
	t.dep.lost()
	if t.codec.video() {
		t.askKeyframe(sfu.KeyframeRecorderSync) // a new need: frames are missing
	}
}

// maybeRequestKeyframe asks the publisher for a keyframe when the track
// waits for one, and ahead of the keyframe interval: a browser's encoder
// sends keyframes only when asked, and a seek can only start decoding at
// one. The request goes out a lead before the interval is up, so the
// keyframe it brings arrives within it.
//
// The SFU throttles keyframe requests and retries one until a keyframe is
// forwarded, so the track asks once per need (each loss asks in lost). A
// need still open a whole interval later (the SFU gave up: the publisher
// ignored its PLIs) is asked for again.
func (t *track) maybeRequestKeyframe() {
	if !t.codec.video() {
		return
	}
	every := t.rec.r.opts.KeyframeInterval
	due := !t.lastKey.IsZero() && t.now.Sub(t.lastKey) >= every-min(every/5, time.Second)
	if !t.dep.needKey && !due {
		return
	}
	if t.askedFor.Equal(t.lastKey) && !t.lastKeyReq.IsZero() && t.now.Sub(t.lastKeyReq) < every {
		return // asked for this need already
	}
	if t.dep.needKey {
		t.askKeyframe(sfu.KeyframeRecorderSync)
	} else {
		t.askKeyframe(sfu.KeyframeRecorderInterval)
	}
}

// askKeyframe asks the SFU for a keyframe, for reason.
func (t *track) askKeyframe(reason sfu.KeyframeReason) {
	if t.info.RequestKeyframe == nil {
		return
	}
	t.askedFor, t.lastKeyReq = t.lastKey, t.now
	t.info.RequestKeyframe(reason)
}

// write puts a frame on the recording's timeline and into the spool.
func (t *track) write(f assembled) {
	ms := floorDiv(t.clock.wall(f.extTS)-t.rec.startNanos, 1e6)
	// A new sender report may move the mapping back by a few ms. A frame
	// still never starts before the previous one ends (by the RTP clock):
	// overlapping audio frames are a decoding error. The clamp holds only
	// while the mapping is behind, so it never accumulates.
	if t.haveLast {
		minMS := t.lastMS + 1
		if rate := int64(t.info.ClockRate); rate > 0 && f.extTS > t.lastExtTS {
			minMS = max(minMS, t.lastMS+(f.extTS-t.lastExtTS)*1000/rate)
		}
		ms = max(ms, minMS)
	}
	t.lastMS, t.lastExtTS, t.haveLast = ms, f.extTS, true
	if f.keyframe && t.codec.video() {
		t.lastKey = t.now
	}
	if t.rec.writeFrame(t, ms, f) {
		t.frames++
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
