package recorder

import (
	"cmp"
	"io"
	"slices"
)

// rateWindow is the number of consecutive frame intervals over which a
// video track's fastest sustained frame rate is measured.
const rateWindow = 15

// videoTiming measures each video track's frame rate (for DefaultDuration,
// which is where tools read a WebM's frame rate) and moves the few frames
// that come less than one frame at that rate after the previous one.
//
// Why: a browser stamps each frame with its capture time, so the intervals
// jitter (a late frame 111 ms after the previous one, the next 19 ms after
// it). Decoders that work on a frame grid at the stream's rate (ffmpeg's
// default output does) would see two frames in one slot and report a
// non-monotonic timestamp. So frames closer than one slot are spread apart
// (spaceOut).
//
// The rate is the typical one (from the median interval), unless the
// track is markedly faster for a while (a variable-rate camera): then the
// fastest sustained rate, so that moved frames never pile up.
//
// frames are in spool order; their tsMS are changed in place. It returns frames per second by spool track id.
func videoTiming(frames []frameRef, tracks []spoolTrack) map[uint16]float64 {
	video := map[uint16]bool{}
	for _, t := range tracks {
		if c := codecFromMime("video/" + t.Codec); c.video() {
			video[t.ID] = true
		}
	}
	byTrack := map[uint16][]int{}
	for i, f := range frames {
		if video[f.track] {
			byTrack[f.track] = append(byTrack[f.track], i)
		}
	}
	rates := map[uint16]float64{}
	for id, idx := range byTrack {
		// Two track objects can share an id (video renegotiated after a
		// downgrade), and their goroutines write the spool in any order.
		slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(frames[a].tsMS, frames[b].tsMS) })
		r := frameRate(frames, idx)
		if r <= 0 {
			continue
		}
		// A whole number of milliseconds (the file's timestamp unit), so
		// frames at least one slot apart are in different slots whatever the
		// grid's phase; at least 1% shorter than the typical interval, so
		// the frames' average spacing leaves room and the rare moves
		// (spaceOut) are absorbed within a few frames. Tools read this as
		// the frame rate: 30.3 fps for 30, 15.15 for 15. It cannot be exact
		// with millisecond timestamps and a camera's jitter: a slot of
		// exactly one frame interval leaves no room, and ffmpeg's decoding
		// grid then puts two frames in one slot ("non monotonically
		// increasing dts"), which Chromium's own MediaRecorder files show.
		slot := max(int64(0.99*1000/r+1e-9), 1)
		rates[id] = 1000 / float64(slot)
		spaceOut(frames, idx, slot)
	}
	return rates
}

// spaceOut moves the few frames at idx (in time order) that come less than
// slot ms after the previous one, so that each is at least a slot after
// it. A frame that close usually follows a late one (captured late, sent
// late; the next is on time): the late frame moves back into the room its
// lateness left behind it, and only what is still missing pushes the
// other forward. Each move is less than a slot, and only frames around the
// jitter move, so sync (which is measured on every frame) is kept.
func spaceOut(frames []frameRef, idx []int, slot int64) {
	for k := 1; k < len(idx); k++ {
		prev, cur := &frames[idx[k-1]], &frames[idx[k]]
		need := slot - (cur.tsMS - prev.tsMS)
		if need <= 0 {
			continue
		}
		var room int64
		if k >= 2 {
			room = max(prev.tsMS-frames[idx[k-2]].tsMS-slot, 0)
		}
		back := min(need, room)
		prev.tsMS -= back
		cur.tsMS += need - back
	}
}

// frameRate is the rate of the frames at idx: the typical rate (from the
// mean of the intervals near the median), or the fastest sustained over
// rateWindow intervals when that is more than 15% faster. 0 with fewer
// than two frames.
func frameRate(frames []frameRef, idx []int) float64 {
	if len(idx) < 2 {
		return 0
	}
	iv := make([]int64, 0, len(idx)-1)
	for k := 1; k < len(idx); k++ {
		iv = append(iv, max(frames[idx[k]].tsMS-frames[idx[k-1]].tsMS, 1))
	}
	sorted := slices.Clone(iv)
	slices.Sort(sorted)
	med := sorted[len(sorted)/2]
	var typical, typicalN int64
	fastest, sum, n := 0.0, int64(0), 0
	for k, d := range iv {
		if 2*d >= med && 2*d <= 3*med {
			typical, typicalN = typical+d, typicalN+1
		}
		if d > 5*med/2 { // a gap (loss, downgrade): not a rate
			sum, n = 0, 0
			continue
		}
		sum, n = sum+d, n+1
		if n > rateWindow {
			sum, n = sum-iv[k-rateWindow], n-1
		}
		if n == rateWindow {
			fastest = max(fastest, 1000*float64(n)/float64(sum))
		}
	}
	rate := 1000 * float64(typicalN) / float64(max(typical, 1))
	if fastest > 1.15*rate {
		rate = fastest
	}
	return min(rate, 240)
}

// opusChannels reads the stereo flag of the TOC byte (RFC 6716 §3.1) of a
// track's first Opus frame: WebRTC always negotiates opus/48000/2, but a
// browser sends mono unless asked for stereo, and a decoder told "2
// channels" for a mono stream plays it as two.
func opusChannels(src io.ReaderAt, frames []frameRef, track uint16) int {
	for _, f := range frames {
		if f.track != track || f.size < 1 {
			continue
		}
		var toc [1]byte
		if _, err := src.ReadAt(toc[:], f.off); err != nil {
			return 2
		}
		if toc[0]&0x04 != 0 {
			return 2
		}
		return 1
	}
	return 2
}
