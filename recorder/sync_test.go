package recorder

import (
	"bytes"
	"math"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
)

// A click in the audio and a flash in the video, simultaneous at the
// sender, are within 20 ms of each other in the recording — although the
// video reaches the SFU 120 ms later than the audio, which only the sender
// reports can correct.
//
// Method: the fixtures (testdata/recorder/make-fixtures.sh) put a 50 ms
// 1 kHz click at 2.000 s of an otherwise silent Opus stream, and white
// frames from 1.000 s of a black VP8 stream that the test starts 1 s after
// the audio. ffmpeg decodes the recording with -copyts (file timestamps, no
// start-time shift) and finds the click as the end of the leading silence
// (silencedetect, -30 dB, per sample) and the flash as the first frame whose
// mean luma (signalstats YAVG) is above mid-grey.
func TestRecordAVSync(t *testing.T) {
	ffmpeg := needFF(t, "ffmpeg")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	audio := opusPackets(t, fixture(t, "recorder/sync-click.ogg"))
	video := ivfFrames(t, fixture(t, "recorder/sync-flash.ivf"))
	var a, v sfu.TrackSink
	var keyReqs = new(atomicCounter)
	s.at(0, func() { a = tap.OnTrack(audioInfo("u-1", "clinician")) })
	s.at(time.Second, func() { v = tap.OnTrack(videoInfo("u-1", "clinician", &keyReqs.Int64)) })
	s.sendOpus(stream{sink: &a, rate: 48000, seq0: 300, ts0: 4_000_000_000, delay: 20 * time.Millisecond,
		srEvery: 500 * time.Millisecond, srFirst: 100 * time.Millisecond}, audio)
	// The video's first report is sent with its first frame (RTP timestamp
	// extrapolated 1 ms back), as a sender does once it has one to send.
	s.sendVP8(stream{sink: &v, rate: 90000, seq0: 7, ts0: 99, sendStart: time.Second, delay: 140 * time.Millisecond,
		srEvery: 500 * time.Millisecond, srFirst: -time.Millisecond}, video, 30)
	s.run()
	rec := g.finish(t, tap)
	if rec.Failed {
		t.Fatal(rec.Err)
	}
	path := g.pub.objectPath(rec)
	keep(t, path)

	out, err := exec.Command(ffmpeg, "-hide_banner", "-nostats", "-copyts", "-i", path, "-map", "0:a:0",
		"-af", "silencedetect=n=-30dB:d=0.5", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("silencedetect: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`silence_end: (-?[0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no click found:\n%s", out)
	}
	click, _ := strconv.ParseFloat(string(m[1]), 64)

	out, err = exec.Command(ffmpeg, "-hide_banner", "-nostats", "-copyts", "-i", path, "-map", "0:v:0",
		"-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG", "-f", "null", "-").CombinedOutput()
	if err != nil {
		t.Fatalf("signalstats: %v\n%s", err, out)
	}
	flash := math.NaN()
	frameRe := regexp.MustCompile(`pts_time:(-?[0-9.]+)`)
	yRe := regexp.MustCompile(`YAVG=([0-9.]+)`)
	var pts float64
	for _, line := range bytes.Split(out, []byte("\n")) {
		if m := frameRe.FindSubmatch(line); m != nil {
			pts, _ = strconv.ParseFloat(string(m[1]), 64)
		}
		if m := yRe.FindSubmatch(line); m != nil {
			if y, _ := strconv.ParseFloat(string(m[1]), 64); y > 128 {
				flash = pts
				break
			}
		}
	}
	if math.IsNaN(flash) {
		t.Fatalf("no flash found:\n%s", out)
	}
	t.Logf("click at %.4f s, flash at %.4f s", click, flash)
	if d := flash - click; math.Abs(d) > 0.020 {
		t.Errorf("flash - click = %.1f ms, want within ±20 ms", d*1000)
	}
	if !near(click, 2.0, 0.040) {
		t.Errorf("click at %.3f s, want 2.0 s into the recording", click)
	}
}

// RTP sequence numbers and timestamps that wrap during the call change
// nothing: every frame is there, evenly spaced, at the right time.
func TestRecordWrap(t *testing.T) {
	needFF(t, "ffprobe")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	audio := opusPackets(t, fixture(t, "audio.ogg"))[:150]
	video := ivfFrames(t, fixture(t, "video.ivf"))[:90]
	var keyReqs = new(atomicCounter)
	var a, v sfu.TrackSink
	s.at(0, func() {
		a = tap.OnTrack(audioInfo("p-7", "patient"))
		v = tap.OnTrack(videoInfo("p-7", "patient", &keyReqs.Int64))
	})
	sent := s.sendOpus(stream{sink: &a, rate: 48000, seq0: 65480, ts0: math.MaxUint32 - 48000 + 1,
		delay: 10 * time.Millisecond, srEvery: 700 * time.Millisecond}, audio)
	s.sendVP8(stream{sink: &v, rate: 90000, seq0: 65530, ts0: math.MaxUint32 - 45000 + 1,
		delay: 10 * time.Millisecond, srEvery: 700 * time.Millisecond, srFirst: 300 * time.Millisecond}, video, 30)
	s.run()
	rec := g.finish(t, tap)
	if rec.Failed {
		t.Fatal(rec.Err)
	}
	path := g.pub.objectPath(rec)
	keep(t, path)
	decodeClean(t, path)
	p := ffprobe(t, path)
	if got := p.byTitle(t, "patient/audio").packets(t); got != sent {
		t.Errorf("audio: %d frames, %d sent", got, sent)
	}
	if got := p.byTitle(t, "patient/video").packets(t); got != len(video) {
		t.Errorf("video: %d frames, %d sent", got, len(video))
	}
	for _, c := range []struct {
		stream string
		step   float64
	}{{"a", 0.020}, {"v", 1.0 / 30}} {
		times := packetTimes(t, path, c.stream)
		for i := 1; i < len(times); i++ {
			if d := times[i] - times[i-1]; !near(d, c.step, 0.002) {
				t.Fatalf("stream %s: packet %d at %.3f, %.1f ms after the one before; want %.1f",
					c.stream, i, times[i], d*1000, c.step*1000)
			}
		}
	}
}

func packetTimes(t testing.TB, path, sel string) []float64 {
	out, err := exec.Command(needFF(t, "ffprobe"), "-v", "error", "-select_streams", sel,
		"-show_entries", "packet=pts_time", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var ts []float64
	for _, f := range bytes.Fields(out) {
		v, err := strconv.ParseFloat(string(f), 64)
		if err != nil {
			t.Fatalf("pts %q", f)
		}
		ts = append(ts, v)
	}
	return ts
}
