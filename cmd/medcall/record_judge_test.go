package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// How TestRecordFromBrowser judges a recording: one function per property a
// person notices (frames all there, true frame rate, sync, seekable).

// judgeFrames: the frames are in capture order, and every frame the sender
// encoded after the upgrade is in the file (± the frames in flight at the
// edges: encoded after the stats were read, or in flight at the hang-up).
func judgeFrames(t *testing.T, who string, frames []vframe, results []string, id string) {
	t.Helper()
	encoded, ok := resultField(results, "encoded", id, "framesEncoded")
	if !ok {
		t.Fatalf("%s: record.mjs reported no framesEncoded", who)
	}
	backwards, gaps, skipped := 0, 0, 0
	for i := 1; i < len(frames); i++ {
		switch d := frames[i].num - frames[i-1].num; {
		case d <= 0:
			backwards++
		case d > 1:
			gaps++
			skipped += d - 1
		}
	}
	missing := int(encoded) - len(frames)
	t.Logf("RESULT completeness who=%s frames_in_file=%d frames_encoded=%.0f missing=%d number_gaps=%d numbers_skipped=%d first=%d last=%d",
		who, len(frames), encoded, missing, gaps, skipped, frames[0].num, frames[len(frames)-1].num)
	if backwards > 0 {
		t.Errorf("%s: %d frames show an earlier frame number than the frame before them", who, backwards)
	}
	// Frames encoded after the stats were read (the hang-up takes a moment
	// to reach the server on a loaded machine) or in flight at the end.
	const edge = capFPS // frames in one second
	if missing > edge || missing < -edge {
		t.Errorf("%s: %d frames in the file, the sender encoded %.0f after the upgrade (tolerance ±%d at the edges)",
			who, len(frames), encoded, edge)
	}
	// The hole the issue saw: the first second or so after the upgrade
	// missing. The first 2 s hold as many frames as any 2 s (±20%).
	rate := float64(len(frames)-1) / (frames[len(frames)-1].pts - frames[0].pts)
	early, gap := 0, 0.0
	for i, f := range frames {
		if f.pts < frames[0].pts+2 {
			early++
			if i > 0 {
				gap = max(gap, f.pts-frames[i-1].pts)
			}
		}
	}
	t.Logf("RESULT upgrade_hole who=%s frames_first_2s=%d expected=%.0f longest_gap_ms=%.0f", who, early, 2*rate, gap*1000)
	if float64(early) < 0.8*2*rate {
		t.Errorf("%s: %d frames in the 2 s after the upgrade, %.0f expected: a hole (longest gap %.0f ms)", who, early, 2*rate, gap*1000)
	}
}

// judgeFrameRate: ffprobe's r_frame_rate is the rate the frames really
// have: one over the typical (median) interval; capture stalls on a busy
// machine are gaps, not a slower rate.
func judgeFrameRate(t *testing.T, who, file string, idx int, frames []vframe) {
	t.Helper()
	out, err := exec.Command(needTool(t, "ffprobe"), "-v", "error", "-select_streams", fmt.Sprintf("v:%d", idx),
		"-show_entries", "stream=r_frame_rate", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	num, den, _ := strings.Cut(strings.TrimSpace(string(out)), "/")
	n, _ := strconv.ParseFloat(num, 64)
	d, _ := strconv.ParseFloat(den, 64)
	iv := make([]float64, 0, len(frames))
	for i := 1; i < len(frames); i++ {
		iv = append(iv, frames[i].pts-frames[i-1].pts)
	}
	slices.Sort(iv)
	rate := 1 / iv[len(iv)/2]
	t.Logf("RESULT framerate who=%s r_frame_rate=%s measured=%.2f", who, strings.TrimSpace(string(out)), rate)
	if d == 0 || math.Abs(n/d-rate) > 0.05*rate {
		t.Errorf("%s: ffprobe says r_frame_rate %s, the frames come at %.2f fps", who, strings.TrimSpace(string(out)), rate)
	}
}

// judgeChannels: the Opus track says the channel count the browser sends
// (mono, unless stereo was negotiated), not the SDP's fixed "opus/48000/2".
func judgeChannels(t *testing.T, who, file string, idx int) {
	t.Helper()
	out, err := exec.Command(needTool(t, "ffprobe"), "-v", "error", "-select_streams", fmt.Sprintf("a:%d", idx),
		"-show_entries", "stream=channels", "-of", "csv=p=0", file).Output()
	if err != nil {
		t.Fatal(err)
	}
	if ch := strings.TrimSpace(string(out)); ch != "1" {
		t.Errorf("%s: audio track declares %s channels; Chromium sends mono", who, ch)
	}
}

// judgeSync: each flash is as far from its click in the file as it was at
// the sender's capture (record.mjs measures that per flash): the median
// within ±20 ms, so the streams are in sync, and every flash within ±20 ms
// plus one frame (a frame captured with jitter may be moved by up to one
// frame so that decoders see one frame per slot; recorder/framerate.go).
func judgeSync(t *testing.T, who string, frames []vframe, clicks []float64, results []string, id string) {
	t.Helper()
	ref := syncReference(t, results, id)
	var errs []float64
	for i, f := range frames {
		r, ok := ref[f.num]
		if !f.flash || (i > 0 && frames[i-1].flash) || len(clicks) == 0 || !ok {
			continue
		}
		best := clicks[0]
		for _, c := range clicks {
			if math.Abs(f.pts-c) < math.Abs(f.pts-best) {
				best = c
			}
		}
		errs = append(errs, foldMS((f.pts-best)*1000-r))
	}
	t.Logf("RESULT sync who=%s flashes=%d clicks=%d error_ms %s", who, len(errs), len(clicks), percentiles(errs))
	if len(errs) < 10 {
		t.Fatalf("%s: %d flashes found in the recording", who, len(errs))
	}
	if sorted := slices.Sorted(slices.Values(errs)); math.Abs(sorted[len(sorted)/2]) > 20 {
		t.Errorf("%s: flashes are %.0f ms (median) off their clicks compared with the sender's capture (allowed ±20)", who, sorted[len(sorted)/2])
	}
	frame := 1000.0 / capFPS
	for _, e := range errs {
		if math.Abs(e) > 20+frame {
			t.Errorf("%s: a flash is %.0f ms off its click compared with the sender's capture (allowed ±20 + one frame, %.0f)", who, e, frame)
		}
	}
}

// judgeKeyframes: no stretch of video is longer than the keyframe interval
// without a keyframe.
func judgeKeyframes(t *testing.T, who string, frames []vframe, interval float64) {
	t.Helper()
	last, maxGap, keys := frames[0].pts, 0.0, 0
	for _, f := range frames {
		if f.key {
			maxGap, last, keys = max(maxGap, f.pts-last), f.pts, keys+1
		}
	}
	maxGap = max(maxGap, frames[len(frames)-1].pts-last)
	t.Logf("RESULT keyframes who=%s count=%d max_gap_s=%.2f", who, keys, maxGap)
	if !frames[0].key || maxGap > interval {
		t.Errorf("%s: first frame keyframe=%v, longest stretch without a keyframe %.2f s (interval %.0f s)", who, frames[0].key, maxGap, interval)
	}
}

// judgeSeek seeks the first video track to 20 random points with ffmpeg
// (-ss T) and with Chromium (<video> seek, requestVideoFrameCallback) and
// checks the frame shown: the one live at T or the next (ffmpeg shows the
// first frame at or after T), or the keyframe before T within interval.
func judgeSeek(t *testing.T, file string, frames []vframe, interval float64) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	first, last := frames[0].pts, frames[len(frames)-1].pts
	times := make([]float64, 20)
	strs := make([]string, len(times))
	for i := range times {
		times[i] = math.Round((first+0.5+rng.Float64()*(last-first-1))*1000) / 1000
		strs[i] = strconv.FormatFloat(times[i], 'f', 3, 64)
	}
	t.Logf("seek seed %d, times %v", seed, strs)
	byNum := map[int]int{}
	for i, f := range frames {
		byNum[f.num] = i
	}
	judge := func(tool string, T float64, num int) float64 {
		i, ok := byNum[num]
		if !ok {
			t.Errorf("%s seek to %.3f: shows frame number %d, which is not in the recording", tool, T, num)
			return math.NaN()
		}
		live := 0
		for j, f := range frames {
			if f.pts <= T+0.0005 {
				live = j
			}
		}
		key := live
		for key > 0 && !frames[key].key {
			key--
		}
		if i != live && i != live+1 && !(i == key && T-frames[key].pts <= interval) {
			t.Errorf("%s seek to %.3f: shows frame %d (at %.3f), the frame live there is %d (at %.3f)",
				tool, T, num, frames[i].pts, frames[live].num, frames[live].pts)
		}
		return (frames[i].pts - T) * 1000
	}
	var ffErrs, crErrs []float64
	for _, T := range times {
		img := grayFrames(t, file, "0:v:0", "-ss", strconv.FormatFloat(T, 'f', 3, 64))
		if len(img) == 0 {
			t.Errorf("ffmpeg -ss %.3f: no video frame", T)
			continue
		}
		ffErrs = append(ffErrs, judge("ffmpeg", T, readNumber(img[0])))
	}
	results := runE2E(t, "MEDCALL_MODE=seek", "MEDCALL_URL="+seekServer(t, file), "MEDCALL_SEEK_TIMES="+strings.Join(strs, ","))
	seen := 0
	for _, r := range results {
		var T float64
		var num int
		var mt string
		if _, err := fmt.Sscanf(r, "seek t=%g frame=%d media_time=%s", &T, &num, &mt); err != nil {
			continue
		}
		seen++
		crErrs = append(crErrs, judge("chromium", T, num))
	}
	if seen != len(times) {
		t.Errorf("chromium answered %d of %d seeks", seen, len(times))
	}
	t.Logf("RESULT seek_error_ms tool=ffmpeg %s", percentiles(ffErrs))
	t.Logf("RESULT seek_error_ms tool=chromium %s", percentiles(crErrs))
}

// syncReference parses record.mjs's "syncref who=ID flashes=N:MS,..." line:
// the sender's flash-to-click offset by flash frame number.
func syncReference(t *testing.T, results []string, id string) map[int]float64 {
	t.Helper()
	ref := map[int]float64{}
	for _, r := range results {
		list, ok := strings.CutPrefix(r, "syncref who="+id+" flashes=")
		if !ok {
			continue
		}
		for _, item := range strings.Split(list, ",") {
			n, ms, _ := strings.Cut(item, ":")
			num, err1 := strconv.Atoi(n)
			off, err2 := strconv.ParseFloat(ms, 64)
			if err1 == nil && err2 == nil {
				ref[num] = off
			}
		}
	}
	if len(ref) < 5 {
		t.Fatalf("%s: record.mjs reported %d flashes at the sender", id, len(ref))
	}
	return ref
}

// foldMS folds a millisecond offset into (-500, 500].
func foldMS(x float64) float64 {
	x = math.Mod(x, 1000)
	if x > 500 {
		x -= 1000
	} else if x <= -500 {
		x += 1000
	}
	return x
}
