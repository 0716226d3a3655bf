package recorder

import (
	"sync"
	"time"
)

// ntpEpochOffset is the number of seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix).
const ntpEpochOffset = 2208988800

// ntpToUnixNanos converts a 64-bit NTP timestamp to Unix nanoseconds.
func ntpToUnixNanos(ntp uint64) int64 {
	sec := int64(ntp>>32) - ntpEpochOffset
	frac := int64((ntp & 0xffffffff) * 1e9 >> 32)
	return sec*1e9 + frac
}

// timeline is the one clock of a recording. Every track maps its RTP
// timestamps onto local wall-clock nanoseconds:
//
//   - before its first sender report, through the arrival time of its first
//     packet (the best local estimate there is);
//   - from a sender report on, through the report's NTP/RTP pair. A sender's
//     NTP clock is not ours, so each participant has one offset (local
//     arrival minus NTP) shared by all of its tracks: audio and video of one
//     person stay in the sync their sender reports describe, whatever the
//     network or the sender's pacing did to either stream. The offset is
//     taken from the participant's first report and kept: a later, faster
//     report cannot move frames already placed (a frame never starts before
//     the previous one ends), so a track re-anchored on a smaller offset
//     would drift from the tracks placed on the first one. A slow first
//     report shifts the person as a whole, never their lips from their voice.
type timeline struct {
	mu      sync.Mutex
	offsets map[string]int64 // participant -> local ns - sender NTP ns
}

// observe records a sender report of participant that arrived at arrival
// and returns the participant's offset.
func (t *timeline) observe(participant string, ntp uint64, arrival time.Time) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if off, ok := t.offsets[participant]; ok {
		return off
	}
	if t.offsets == nil {
		t.offsets = make(map[string]int64)
	}
	off := arrival.UnixNano() - ntpToUnixNanos(ntp)
	t.offsets[participant] = off
	return off
}

// trackClock maps one track's RTP timestamps onto the timeline. Each frame is
// mapped from its own timestamp, so gaps (loss, DTX, downgrade) never shift
// later media. Used by the track goroutine only.
type trackClock struct {
	rate        int64
	ts          unwrap32
	anchored    bool
	fromSR      bool
	anchorTS    int64 // extended RTP timestamp
	anchorNanos int64 // local Unix ns at anchorTS
}

func newTrackClock(rate uint32) *trackClock {
	if rate == 0 {
		rate = 90000
	}
	return &trackClock{rate: int64(rate)}
}

// packet unwraps a packet's timestamp and anchors the clock on the first one.
func (c *trackClock) packet(ts uint32, arrival time.Time) int64 {
	ext := c.ts.unwrap(ts)
	if !c.anchored {
		c.anchored = true
		c.anchorTS, c.anchorNanos = ext, arrival.UnixNano()
	}
	return ext
}

// senderReport re-anchors the clock on a sender report; off is the
// participant's offset from timeline.observe.
func (c *trackClock) senderReport(ntp uint64, rtpTS uint32, off int64) {
	ntpNanos := ntpToUnixNanos(ntp)
	var ext int64
	if c.ts.started {
		ext = c.ts.peek(rtpTS)
	} else {
		ext = c.ts.unwrap(rtpTS)
	}
	c.anchored, c.fromSR = true, true
	c.anchorTS, c.anchorNanos = ext, ntpNanos+off
}

// wall returns the local Unix nanoseconds of extended RTP timestamp ext.
func (c *trackClock) wall(ext int64) int64 {
	d := ext - c.anchorTS
	sec, rem := d/c.rate, d%c.rate
	return c.anchorNanos + sec*1e9 + rem*1e9/c.rate
}
