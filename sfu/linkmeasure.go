package sfu

import (
	"sync/atomic"
	"time"

	"github.com/pion/rtcp"
)

// feedbackLoss counts the packets a subscriber's transport-cc feedback
// reports received and lost, as they come. GCC's own loss figure is an
// average that reads low for a second after a link starts dropping and
// high for a second after it stops; measuring the link by it cut the
// first time above a 500 kbit/s link (video froze until the second cut)
// and the second time far below it. The counts of the feedback since the
// cap's last step are what the link did in that step.
type feedbackLoss struct {
	received, lost atomic.Uint64
}

// note adds what one feedback reports.
func (f *feedbackLoss) note(fb *rtcp.TransportLayerCC) {
	recv, lost := countFeedback(fb)
	f.received.Add(recv)
	f.lost.Add(lost)
}

// take returns how many packets were reported received and lost since
// the last take.
func (f *feedbackLoss) take() (received, lost uint64) {
	return f.received.Swap(0), f.lost.Swap(0)
}

// lossWindow is the share of packets lost over a link's last lossSteps
// steps (about 400 ms, 50-100 packets of a video call): one step holds too
// few packets to tell 5 % random loss (a Wi-Fi link, repaired by NACKs)
// from a queue that overflows (half of everything, answered by a cut).
type lossWindow struct {
	received, lost [lossSteps]uint64
	i              int
}

const lossSteps = 4

// add records one step's counts and returns the loss over the window, and
// whether any packet was reported in it.
func (w *lossWindow) add(received, lost uint64) (loss float64, ok bool) {
	w.received[w.i], w.lost[w.i] = received, lost
	w.i = (w.i + 1) % lossSteps
	var r, l uint64
	for k := range lossSteps {
		r, l = r+w.received[k], l+w.lost[k]
	}
	if r+l == 0 {
		return 0, false
	}
	return float64(l) / float64(r+l), true
}

// A link overflows when its last two steps each lost more than
// overflowLoss of what they carried, with at least overflowPackets between
// them. Random loss does not do that: at 5 % loss, two steps of ~18
// packets each losing 8 happen about once in 10^11 steps.
const (
	overflowLoss    = 0.4
	overflowPackets = 16
)

// overflowing reports whether the last two steps both lost more than
// overflowLoss of their packets, and the loss over those two steps (what
// the link carries now, without the steps before it filled).
func (w *lossWindow) overflowing() (loss float64, ok bool) {
	a, b := (w.i+lossSteps-1)%lossSteps, (w.i+lossSteps-2)%lossSteps
	over := func(k int) bool {
		return w.lost[k] > 0 && float64(w.lost[k]) > overflowLoss*float64(w.received[k]+w.lost[k])
	}
	r, l := w.received[a]+w.received[b], w.lost[a]+w.lost[b]
	if r+l < overflowPackets || !over(a) || !over(b) {
		return 0, false
	}
	return float64(l) / float64(r+l), true
}

// countFeedback is how many of the packets fb reports arrived and how many
// did not (walkFeedback, lossresend.go).
func countFeedback(fb *rtcp.TransportLayerCC) (received, lost uint64) {
	walkFeedback(fb, func(_ uint16, arrived bool) {
		if arrived {
			received++
		} else {
			lost++
		}
	})
	return received, lost
}

// rateWindow is how far back the link's sending rate is measured. One step
// (100 ms) is too short: a keyframe or a burst of retransmissions reads as
// three times the stream's rate, and a cut measured on it lands far above
// the link.
const rateWindow = time.Second

// sendHistory is what a link had sent at each of its last steps.
type sendHistory struct {
	at   [16]time.Time
	sent [16]uint64
	n    int // steps recorded
}

// add records that sent bytes had been sent by now and returns the rate in
// bits/s over the oldest recorded step within rateWindow (the last step's
// rate while there is no older one; zero for the first).
func (h *sendHistory) add(now time.Time, sent uint64) float64 {
	size := len(h.at)
	var from int = -1
	for k := 1; k <= min(h.n, size); k++ {
		i := (h.n - k) % size
		if now.Sub(h.at[i]) > rateWindow && from >= 0 {
			break
		}
		from = i
	}
	h.at[h.n%size], h.sent[h.n%size] = now, sent
	h.n++
	if from < 0 {
		return 0
	}
	dt := now.Sub(h.at[from]).Seconds()
	if dt <= 0 {
		return 0
	}
	return float64(sent-h.sent[from]) * 8 / dt
}

// linkTarget is the link's bandwidth as measured now: GCC's delay-based
// target (85% of what the subscriber acknowledged receiving, lost packets
// excluded) on delay overuse, and on loss the smaller of that and 85% of
// what got through of what was sent. GCC's target alone is no measure on
// loss without overuse: between overuses it grows by 8%/s whatever gets
// through. GCC's loss-based part, without a pacer, halves again and again
// down to the floor, so it is not used.
func linkTarget(overuse bool, delayTarget int, loss, sentBps float64) uint64 {
	if overuse && delayTarget > 0 {
		return uint64(delayTarget)
	}
	through := uint64(max(0.85*sentBps*(1-min(max(loss, 0), 1)), 0))
	if delayTarget > 0 {
		return min(through, uint64(delayTarget))
	}
	return through
}
