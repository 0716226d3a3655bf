package recorder

import (
	"math/rand/v2"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtp/codecs"

	"github.com/medcall/medcall/sfu"
)

// Video switched off and on again, at another resolution the second time and
// on a renegotiated track the third, stays in one file and one video track
// with every frame that was sent.
func TestRecordDowngradeUpgradeResolution(t *testing.T) {
	needFF(t, "ffprobe")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	audio := opusPackets(t, fixture(t, "audio.ogg"))[:400] // 8 s
	big := ivfFrames(t, fixture(t, "video.ivf"))[:60]      // 2 s, 320x240, keyframe first
	small := ivfFrames(t, fixture(t, "recorder/video-160x120.ivf"))
	var keyReqs atomic.Int64
	var pa, v1, v2 sfu.TrackSink
	s.at(0, func() { pa = tap.OnTrack(audioInfo("p-7", "patient")) })
	s.sendOpus(stream{sink: &pa, rate: 48000, seq0: 9, ts0: 1, delay: 20 * time.Millisecond}, audio)

	s.at(time.Second, func() {
		tap.OnEvent(sfu.Event{Type: sfu.EventUpgrade, Participant: "p-7", Role: "patient"})
		v1 = tap.OnTrack(videoInfo("p-7", "patient", &keyReqs))
	})
	// 1-3 s: 320x240. Downgrade at 3 s; the same sender (pre-negotiated
	// transceiver) resumes at 4 s with 160x120, sequence numbers continuing
	// and the RTP clock having run on.
	n1 := s.sendVP8(stream{sink: &v1, rate: 90000, seq0: 100, ts0: 5000, sendStart: time.Second, delay: 20 * time.Millisecond}, big, 30)
	s.at(3*time.Second, func() { tap.OnEvent(sfu.Event{Type: sfu.EventDowngrade, Participant: "p-7", Role: "patient"}) })
	s.at(4*time.Second, func() { tap.OnEvent(sfu.Event{Type: sfu.EventUpgrade, Participant: "p-7", Role: "patient"}) })
	seqAfter := uint16(100 + n1)
	s.sendVP8(stream{sink: &v1, rate: 90000, seq0: seqAfter, ts0: 5000 + 3*90000, sendStart: 4 * time.Second, delay: 20 * time.Millisecond}, small, 30)
	// 6 s: renegotiated: a new track, new SSRC, new sequence and timestamps.
	s.at(6*time.Second, func() {
		v1.Close()
		v2 = tap.OnTrack(videoInfo("p-7", "patient", &keyReqs))
	})
	s.sendVP8(stream{sink: &v2, rate: 90000, seq0: 40000, ts0: 3_000_000_000, sendStart: 6 * time.Second, delay: 20 * time.Millisecond}, big, 30)
	s.run()
	rec := g.finish(t, tap)
	if rec.Failed {
		t.Fatal(rec.Err)
	}
	path := g.pub.objectPath(rec)
	keep(t, path)
	p := ffprobe(t, path)
	if len(p.Streams) != 2 {
		t.Fatalf("%d streams, want 2 (audio, video)", len(p.Streams))
	}
	v := p.byTitle(t, "patient/video")
	if want := 2*len(big) + len(small); v.packets(t) != want {
		t.Errorf("%d video frames in file, %d sent", v.packets(t), want)
	}
	if got := v.start(t); !near(got, 1, 0.040) {
		t.Errorf("video starts at %.3f, want 1.000", got)
	}
	decodeClean(t, path)

	// Frame sizes and times, as decoded.
	out, err := exec.Command(needFF(t, "ffprobe"), "-v", "error", "-select_streams", "v",
		"-show_entries", "frame=pts_time,width,height", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	var sizes []string
	var times []float64
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, ",")
		if len(f) != 3 {
			t.Fatalf("ffprobe line %q", line)
		}
		ts, _ := strconv.ParseFloat(f[0], 64)
		times = append(times, ts)
		size := f[1] + "x" + f[2]
		if len(sizes) == 0 || sizes[len(sizes)-1] != size {
			sizes = append(sizes, size)
		}
	}
	if strings.Join(sizes, " ") != "320x240 160x120 320x240" {
		t.Errorf("resolutions in order: %v", sizes)
	}
	// The gaps stay gaps: nothing after the downgrade moved earlier.
	for i, want := range map[int]float64{0: 1, 60: 4, 120: 6} {
		if !near(times[i], want, 0.040) {
			t.Errorf("video frame %d at %.3f s, want %.3f", i, times[i], want)
		}
	}
}

// 5% packet loss and some reordering: the file still decodes without errors,
// keyframes are asked for, and audio keeps the frames that arrived.
func TestRecordPacketLoss(t *testing.T) {
	needFF(t, "ffprobe")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	audio := opusPackets(t, fixture(t, "audio.ogg"))[:300]
	video := ivfFrames(t, fixture(t, "video.ivf"))
	rnd := rand.New(rand.NewPCG(7, 42))
	lose := func(int) bool { return rnd.Float64() < 0.05 }
	swap := func(int) bool { return rnd.Float64() < 0.02 }
	var keyReqs atomic.Int64
	var a, v sfu.TrackSink
	s.at(0, func() {
		a = tap.OnTrack(audioInfo("p-7", "patient"))
		v = tap.OnTrack(videoInfo("p-7", "patient", &keyReqs))
	})
	sent := s.sendOpus(stream{sink: &a, rate: 48000, seq0: 65500, ts0: 1, delay: 20 * time.Millisecond, lose: lose, swap: swap}, audio)
	s.sendVP8(stream{sink: &v, rate: 90000, seq0: 65000, ts0: 1, delay: 20 * time.Millisecond, lose: lose, swap: swap}, video[:180], 30)
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
		t.Errorf("audio: %d frames in file, %d arrived", got, sent)
	}
	vf := p.byTitle(t, "patient/video").packets(t)
	if vf == 0 || vf >= len(video) {
		t.Errorf("video: %d of %d frames in file; want some, not all", vf, len(video))
	}
	if keyReqs.Load() < 2 {
		t.Errorf("%d keyframe requests; loss should have asked for more than the first", keyReqs.Load())
	}
}

// VP9 is recorded like VP8: keyframe size in the header, every frame there.
func TestRecordVP9(t *testing.T) {
	needFF(t, "ffprobe")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	video := ivfFrames(t, fixture(t, "recorder/video-vp9.ivf"))
	var keyReqs atomic.Int64
	var v sfu.TrackSink
	info := videoInfo("u-1", "clinician", &keyReqs)
	info.MimeType = "video/VP9"
	s.at(0, func() { v = tap.OnTrack(info) })
	s.sendVideo(stream{sink: &v, rate: 90000, seq0: 65500, ts0: 42, delay: 5 * time.Millisecond},
		video, 30, &codecs.VP9Payloader{InitialPictureIDFn: func() uint16 { return 5 }})
	s.run()
	rec := g.finish(t, tap)
	if rec.Failed {
		t.Fatal(rec.Err)
	}
	path := g.pub.objectPath(rec)
	keep(t, path)
	decodeClean(t, path)
	p := ffprobe(t, path)
	st := p.byTitle(t, "clinician/video")
	if st.CodecName != "vp9" || st.Width != 160 || st.Height != 120 || st.packets(t) != len(video) {
		t.Errorf("VP9 stream %+v; want vp9 160x120 with %d frames", st, len(video))
	}
}
