package sfu

import "sync"

// ownworkers.go: the own receive path's forwarding pool, and its rule:
// audio before video.
//
// The packets the port's reader does not forward itself (ownpath.go, takeAt:
// it is behind, or the stream has packets waiting) wait in their stream's
// queue for a server (ownstream.go). While every subscriber of the stream
// is sent to on the own send path, that server is one of a few workers
// shared by all streams, not a goroutine of the stream's own, and a worker
// takes a stream with audio waiting before any with video waiting.
//
// Why: on a saturated machine each queued packet used to ready its
// stream's goroutine, one among a thousand at N=150, each served in turn
// by Go's scheduler, which knows no priority. Audio waited for a CPU as
// long as video (the bench's forwarding delay p95 1.1-1.8 s for audio
// against 1.3-2.4 s for video at N=150, docs/performance.md), and the
// port's reader behind them all. A worker serves a stream for at most
// ownQuantum packets and then puts it at the back of its queue, so no
// stream starves another of its kind; video waits while any audio does.
// The quantum counts packets, not their cost: a stream with many
// subscribers holds a worker longer per turn.
//
// A stream with a subscriber that pion sends to (before its own path is
// taken, or over ICE-TCP) goes to its own goroutine instead: such a write
// may block, and must not hold up the pool. (Whether it does is checked
// before each packet; a subscriber going to pion between that check and
// the packet's fan-out costs one write through pion on the worker, as it
// would on the port's reader, ownStream.inline.)

// ownQuantum is how many packets a worker forwards of one stream before
// it looks for audio again: a video keyframe at a few hundred kbit/s, or
// 320 ms of audio.
const ownQuantum = 16

// ownReady is how many streams may wait for a worker in each queue; a
// stream is there at most once, and beyond it goes to its own goroutine.
const ownReady = 8192

// ownWorkers is the pool: its queues of streams with packets waiting.
type ownWorkers struct {
	audio, video chan *ownStream
	stop         chan struct{}
	done         sync.WaitGroup
}

// newOwnWorkers starts n workers.
func newOwnWorkers(n int) *ownWorkers {
	w := &ownWorkers{
		audio: make(chan *ownStream, ownReady),
		video: make(chan *ownStream, ownReady),
		stop:  make(chan struct{}),
	}
	for range n {
		w.done.Go(w.run)
	}
	return w
}

// give queues st for a worker, or reports that its queue is full.
func (w *ownWorkers) give(st *ownStream) bool {
	select {
	case <-w.stop:
		return false // closed: the stream's goroutine serves it, if any
	default:
	}
	q := w.audio
	if st.video {
		q = w.video
	}
	select {
	case q <- st:
		return true
	default:
		return false
	}
}

// run is one worker: a stream with audio waiting first, else either.
func (w *ownWorkers) run() {
	for {
		var st *ownStream
		select {
		case st = <-w.audio:
		default:
			select {
			case st = <-w.audio:
			case st = <-w.video:
			case <-w.stop:
				return
			}
		}
		st.serve(true)
	}
}

// close stops the workers once they have served what they hold. It runs
// after every stream has ended (SFU.Close): a stream still queued then is
// left with its packets, which its goroutine's end returned already.
func (w *ownWorkers) close() {
	close(w.stop)
	w.done.Wait()
}
