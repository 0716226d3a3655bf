package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRecordFromBrowser: two real Chromium participants on `serve --dev`
// hold a recorded call, both switch to video and send it for 60 s from fake
// capture files whose every frame shows its number. The one WebM is then
// judged as people use it: it decodes with no complaint and ffprobe shows the
// true frame rate; every frame the sender's encoder produced after the
// upgrade is in the file; each participant's flash and click are in sync as
// the sender captured them; and seeking to random points with ffmpeg and with
// Chromium's <video> shows the frame that was live there (or, at most one
// keyframe interval back, the keyframe before it).
func TestRecordFromBrowser(t *testing.T) {
	seconds := 60
	if s := os.Getenv("MEDCALL_RECORD_SECONDS"); s != "" {
		seconds, _ = strconv.Atoi(s)
	}
	keyInterval := 5.0
	dir, data := t.TempDir(), t.TempDir()
	y4m, wav := makeCapture(t, dir)
	addr, admin, stop, _ := startServeOut(t, data, "--dev")
	results := runE2E(t, "MEDCALL_URL=http://"+addr, "MEDCALL_Y4M="+y4m, "MEDCALL_WAV="+wav,
		"MEDCALL_SECONDS="+strconv.Itoa(seconds))
	webm := waitRecordings(t, data, 1, 30*time.Second)[0]
	m := scrape(t, admin)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if m["medcall_recorder_queue_drops_total"] > 0 {
		t.Logf("recorder queue drops: %v", m["medcall_recorder_queue_drops_total"])
	}
	for _, r := range []string{"upgrade", "subscriber", "subscriber_bind", "loss_recovery", "recorder_sync", "recorder_interval"} {
		t.Logf("RESULT keyframe_requests reason=%s asked=%v throttled=%v", r,
			m[`medcall_keyframe_requests_total{reason="`+r+`"}`], m[`medcall_keyframe_requests_throttled_total{reason="`+r+`"}`])
	}
	t.Logf("RESULT plis_sent=%v plis_received=%v", m["medcall_rtcp_plis_sent_total"], m["medcall_rtcp_plis_received_total"])
	if d := os.Getenv("KEEP_WEBM"); d != "" {
		b, _ := os.ReadFile(webm)
		_ = os.WriteFile(filepath.Join(d, "browser.webm"), b, 0o644)
	}

	// Clean for every decoder, with the true frame rate.
	var stderr bytes.Buffer
	cmd := exec.Command(needTool(t, "ffmpeg"), "-v", "error", "-i", webm, "-f", "null", "-")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("ffmpeg -v error -i F -f null - : %v\n%s", err, stderr.String())
	}
	p := ffprobe(t, webm)
	for _, who := range []struct{ id, role string }{{"p-rec", "patient"}, {"d-rec", "clinician"}} {
		vi, ai := streamIndex(p, "video", who.role+"/video"), streamIndex(p, "audio", who.role+"/audio")
		if vi < 0 || ai < 0 {
			t.Fatalf("%s: no video or audio track in %+v", who.role, p.Streams)
		}
		frames := decodeVideo(t, webm, vi)
		judgeFrames(t, who.role, frames, results, who.id)
		judgeFrameRate(t, who.role, webm, vi, frames)
		judgeChannels(t, who.role, webm, ai)
		judgeSync(t, who.role, frames, clickTimes(t, webm, ai), results, who.id)
		judgeKeyframes(t, who.role, frames, keyInterval)
		if vi == 0 {
			judgeSeek(t, webm, frames, keyInterval)
		}
	}
}

// Fake capture geometry, shared with signaling/web/e2e/record.mjs: frame
// number bit i is the block x = 16i..16i+15, y < 24.
const (
	capW, capH, capFPS = 256, 144, 15
	capBits            = 12
	capSeconds         = 75 // longer than any call in the test: the capture never loops
)

// makeCapture writes the fake camera (y4m: frame number in blocks and digits,
// a full-frame flash every second) and microphone (wav: a 30 ms 1 kHz click
// at every whole second) files into dir.
func makeCapture(t *testing.T, dir string) (y4m, wav string) {
	t.Helper()
	ffmpeg := needTool(t, "ffmpeg")
	y4m, wav = filepath.Join(dir, "capture.y4m"), filepath.Join(dir, "capture.wav")
	video := fmt.Sprintf("color=c=0x606060:s=%dx%d:r=%d:d=%d,format=gray,"+
		"drawtext=text='%%{frame_num}':x=80:y=70:fontsize=40:fontcolor=white,"+
		"geq=lum='if(lt(Y\\,24)\\,255*mod(floor(N/pow(2\\,floor(X/16)))\\,2)\\,if(eq(mod(N\\,%d)\\,0)\\,235\\,lum(X\\,Y)))',"+
		"format=yuv420p", capW, capH, capFPS, capSeconds, capFPS)
	audio := fmt.Sprintf("aevalsrc=exprs='if(lt(mod(t\\,1)\\,0.03)\\,0.7*sin(2*PI*1000*t)\\,0)':s=48000:d=%d", capSeconds)
	for _, args := range [][]string{
		{"-f", "lavfi", "-i", video, "-pix_fmt", "yuv420p", y4m},
		{"-f", "lavfi", "-i", audio, "-ac", "1", wav},
	} {
		if out, err := exec.Command(ffmpeg, append([]string{"-v", "error", "-y"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("making the fake capture: %v %s", err, out)
		}
	}
	return y4m, wav
}

// runE2E runs record.mjs with env and returns its RESULT lines.
func runE2E(t *testing.T, env ...string) []string {
	t.Helper()
	node := needBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "record.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(append(os.Environ(), "MEDCALL_CHROMIUM="+chromiumPath()), env...)
	cmd.Stderr = logWriter{t, "node stderr: "}
	out, err := cmd.Output()
	var results []string
	passed := false
	for _, l := range strings.Split(string(out), "\n") {
		if r, ok := strings.CutPrefix(l, "RESULT "); ok {
			results = append(results, r)
		}
		passed = passed || l == "E2E PASS"
		if l != "" {
			t.Log(l)
		}
	}
	if err != nil || !passed {
		t.Fatalf("record.mjs failed (exit: %v); see its output above", err)
	}
	return results
}

// resultField reads key=value from the RESULT lines named name with who=who
// (who "" matches any).
func resultField(results []string, name, who, key string) (float64, bool) {
	for _, r := range results {
		f := strings.Fields(r)
		if len(f) == 0 || f[0] != name || (who != "" && !slices.Contains(f, "who="+who)) {
			continue
		}
		for _, kv := range f[1:] {
			if v, ok := strings.CutPrefix(kv, key+"="); ok {
				x, err := strconv.ParseFloat(v, 64)
				return x, err == nil
			}
		}
	}
	return 0, false
}

// vframe is one decoded video frame of a recording.
type vframe struct {
	pts   float64 // seconds, file timeline
	key   bool
	num   int  // the frame number it shows
	flash bool // the once-a-second full-frame flash
}

// readNumber reads the frame number blocks of one gray capW x capH image.
func readNumber(img []byte) int {
	n := 0
	for i := range capBits {
		sum := 0
		for dy := 10; dy < 14; dy++ {
			for dx := 6; dx < 10; dx++ {
				sum += int(img[dy*capW+16*i+dx])
			}
		}
		if sum/16 > 128 {
			n |= 1 << i
		}
	}
	return n
}

// decodeVideo decodes video stream idx of file completely.
func decodeVideo(t *testing.T, file string, idx int) []vframe {
	t.Helper()
	out, err := exec.Command(needTool(t, "ffprobe"), "-v", "error", "-select_streams", fmt.Sprintf("v:%d", idx),
		"-show_entries", "frame=best_effort_timestamp_time,key_frame", "-of", "json", file).Output()
	if err != nil {
		t.Fatalf("ffprobe frames of %s: %v", file, err)
	}
	var p struct {
		Frames []struct {
			Key int    `json:"key_frame"`
			PTS string `json:"best_effort_timestamp_time"`
		} `json:"frames"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	raw := grayFrames(t, file, fmt.Sprintf("0:v:%d", idx))
	if len(raw) != len(p.Frames) {
		t.Fatalf("%s v:%d: ffprobe lists %d frames, ffmpeg decodes %d", file, idx, len(p.Frames), len(raw))
	}
	frames := make([]vframe, len(raw))
	for i, img := range raw {
		pts, _ := strconv.ParseFloat(p.Frames[i].PTS, 64)
		sum := 0
		for _, b := range img[capW*capH/2:] {
			sum += int(b)
		}
		frames[i] = vframe{pts: pts, key: p.Frames[i].Key == 1, num: readNumber(img), flash: sum/(capW*capH/2) > 180}
	}
	return frames
}

// grayFrames decodes the video stream selected by mapping, with extra input
// options before -i, to capW x capH gray images.
func grayFrames(t *testing.T, file, mapping string, inputOpts ...string) [][]byte {
	t.Helper()
	args := append(append([]string{"-v", "error"}, inputOpts...), "-i", file, "-map", mapping, "-fps_mode", "passthrough",
		"-vf", fmt.Sprintf("scale=%d:%d", capW, capH), "-f", "rawvideo", "-pix_fmt", "gray", "-")
	if slices.Contains(inputOpts, "-ss") {
		args = append(args[:len(args)-1], "-frames:v", "1", "-")
	}
	out, err := exec.Command(needTool(t, "ffmpeg"), args...).Output()
	if err != nil {
		t.Errorf("ffmpeg %v: %v", args, err) // a seek that finds no frame is reported with the others
		return nil
	}
	var frames [][]byte
	for len(out) >= capW*capH {
		frames, out = append(frames, out[:capW*capH]), out[capW*capH:]
	}
	return frames
}

// clickTimes decodes audio stream idx of file on the file's timeline and
// returns the onsets of clicks (seconds).
func clickTimes(t *testing.T, file string, idx int) []float64 {
	t.Helper()
	out, err := exec.Command(needTool(t, "ffmpeg"), "-v", "error", "-copyts", "-i", file, "-map", fmt.Sprintf("0:a:%d", idx),
		"-af", "aresample=async=1:first_pts=0", "-f", "s16le", "-ac", "1", "-ar", "48000", "-").Output()
	if err != nil {
		t.Fatalf("decoding audio %d of %s: %v", idx, file, err)
	}
	var clicks []float64
	quietUntil := -1
	for i := 0; i+1 < len(out); i += 2 {
		s := int16(uint16(out[i]) | uint16(out[i+1])<<8)
		if n := i / 2; (s > 3277 || s < -3277) && n > quietUntil {
			clicks = append(clicks, float64(n)/48000)
			quietUntil = n + 24000
		}
	}
	return clicks
}

// percentiles formats min/median/p90/max of xs.
func percentiles(xs []float64) string {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return "none"
	}
	at := func(q float64) float64 { return s[int(q*float64(len(s)-1))] }
	return fmt.Sprintf("min=%.0f median=%.0f p90=%.0f max=%.0f", at(0), at(0.5), at(0.9), at(1))
}

// streamIndex returns the index among streams of kind of the stream titled title.
func streamIndex(p probe, kind, title string) int {
	i := 0
	for _, s := range p.Streams {
		if s.CodecType != kind {
			continue
		}
		if s.Tags.Title == title {
			return i
		}
		i++
	}
	return -1
}

// seekServer serves file as /rec.webm (with Range) and an empty page at /.
func seekServer(t *testing.T, file string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/rec.webm" {
			http.ServeFile(w, r, file)
			return
		}
		fmt.Fprint(w, "<!doctype html><title>seek</title>")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
