package recorder

import (
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
)

func audioInfo(participant, role string) sfu.TrackInfo {
	return sfu.TrackInfo{Participant: participant, Role: role, Kind: sfu.KindAudio,
		MimeType: "audio/opus", ClockRate: 48000, Channels: 2, SSRC: 1}
}

func videoInfo(participant, role string, keyframes *atomic.Int64) sfu.TrackInfo {
	return sfu.TrackInfo{Participant: participant, Role: role, Kind: sfu.KindVideo,
		MimeType: "video/VP8", ClockRate: 90000, SSRC: 2,
		RequestKeyframe: func(sfu.KeyframeReason) { keyframes.Add(1) }}
}

var binding = sfu.Binding{Consultation: "c-42", Patient: "p-7", Record: true}

// An audio consultation between patient and clinician, upgraded to video at
// 4 s and ended at 10 s, is one seekable WebM: Opus from 0, VP8 from 4 s,
// every frame that was sent, decodable from start and from the middle.
func TestRecordUpgradeSession(t *testing.T) {
	needFF(t, "ffprobe")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	if tap == nil {
		t.Fatal("Open returned nil for a recorded consultation")
	}
	if g.rec.Open(sfu.Binding{Consultation: "c-1", Patient: "p-1"}) != nil {
		t.Fatal("Open returned a tap for a consultation that is not recorded")
	}
	audio := opusPackets(t, fixture(t, "audio.ogg"))
	video := ivfFrames(t, fixture(t, "video.ivf"))
	var keyReqs atomic.Int64

	s.at(0, func() {
		tap.OnEvent(sfu.Event{Type: sfu.EventJoined, Participant: "p-7", Role: "patient"})
		tap.OnEvent(sfu.Event{Type: sfu.EventJoined, Participant: "u-1", Role: "clinician"})
	})
	var pa, ca sfu.TrackSink
	s.at(0, func() {
		pa = tap.OnTrack(audioInfo("p-7", "patient"))
		ca = tap.OnTrack(audioInfo("u-1", "clinician"))
	})
	sentP := s.sendOpus(stream{sink: &pa, rate: 48000, seq0: 1000, ts0: 5000, delay: 30 * time.Millisecond,
		srEvery: time.Second, srFirst: 500 * time.Millisecond}, audio)
	sentC := s.sendOpus(stream{sink: &ca, rate: 48000, seq0: 20, ts0: 777777, delay: 45 * time.Millisecond,
		srEvery: time.Second, srFirst: 700 * time.Millisecond}, audio)
	var cv sfu.TrackSink
	s.at(4*time.Second, func() {
		tap.OnEvent(sfu.Event{Type: sfu.EventUpgrade, Participant: "u-1", Role: "clinician", Path: "prenegotiated"})
		cv = tap.OnTrack(videoInfo("u-1", "clinician", &keyReqs))
	})
	s.sendVP8(stream{sink: &cv, rate: 90000, seq0: 65000, ts0: 123, sendStart: 4 * time.Second,
		delay: 45 * time.Millisecond, srEvery: time.Second}, video, 30)
	s.run()
	rec := g.finish(t, tap)

	if rec.Failed || rec.Recovered || rec.Err != nil {
		t.Fatalf("recording failed=%v recovered=%v err=%v", rec.Failed, rec.Recovered, rec.Err)
	}
	if rec.Patient != "p-7" || rec.Consultation != "c-42" {
		t.Fatalf("recording bound to %s/%s", rec.Patient, rec.Consultation)
	}
	if keyReqs.Load() < 1 {
		t.Error("no keyframe requested when video started")
	}
	if d := g.rec.Stats().QueueDrops; d != 0 {
		t.Fatalf("%d packets dropped by the queue", d)
	}
	path := g.pub.objectPath(rec)
	keep(t, path)
	p := ffprobe(t, path)
	if !strings.Contains(p.Format.FormatName, "webm") {
		t.Errorf("format %q, want webm", p.Format.FormatName)
	}
	if len(p.Streams) != 3 {
		t.Fatalf("%d streams, want 3: %+v", len(p.Streams), p.Streams)
	}
	// ffprobe shows an Opus track's start less its CodecDelay (the encoder's
	// look-ahead, 6.5 ms). The clinician's media travels 15 ms longer than
	// the patient's, whose first packet is the file's 0.
	opusShown := -float64(opusCodecDelay) / 1e9
	for _, c := range []struct {
		title, codec string
		start        float64
		packets      int
	}{
		{"patient/audio", "opus", 0 + opusShown, sentP},
		{"clinician/audio", "opus", 0.015 + opusShown, sentC},
		{"clinician/video", "vp8", 4.015, len(video)},
	} {
		st := p.byTitle(t, c.title)
		if st.CodecName != c.codec {
			t.Errorf("%s: codec %s, want %s", c.title, st.CodecName, c.codec)
		}
		if got := st.start(t); !near(got, c.start, 0.040) {
			t.Errorf("%s: starts at %.3f s, want %.3f ±0.040", c.title, got, c.start)
		}
		if got := st.packets(t); got != c.packets {
			t.Errorf("%s: %d frames in file, %d sent", c.title, got, c.packets)
		}
	}
	if v := p.byTitle(t, "clinician/video"); v.Width != 320 || v.Height != 240 {
		t.Errorf("video %dx%d, want 320x240", v.Width, v.Height)
	}
	l := readLayout(t, path)
	if l.Header.DocType != "webm" {
		t.Errorf("DocType %q", l.Header.DocType)
	}
	if d := l.Segment.Info.Duration; !near(d, 10000, 100) {
		t.Errorf("Segment Duration %.0f ms, want about 10000", d)
	}
	if len(l.Segment.Cues.CuePoint) < 5 {
		t.Errorf("%d cue points, want a seekable file", len(l.Segment.Cues.CuePoint))
	}
	for _, e := range l.Segment.Tracks.TrackEntry {
		if e.CodecID == "A_OPUS" && (e.CodecDelay != opusCodecDelay || e.SeekPreRoll != opusSeekPreRoll ||
			len(e.CodecPrivate) != 19 || string(e.CodecPrivate[:8]) != "OpusHead") {
			t.Errorf("Opus track %q: CodecDelay %d SeekPreRoll %d CodecPrivate %x", e.Name, e.CodecDelay, e.SeekPreRoll, e.CodecPrivate)
		}
	}
	decodeClean(t, path)
	decodeClean(t, path, "-ss", "5")
	// Seeking lands in the middle: 5 s in, less than 5 s of video remains.
	out, err := exec.Command(needFF(t, "ffprobe"), "-v", "error", "-read_intervals", "5%+1",
		"-select_streams", "v", "-show_entries", "packet=pts_time", "-of", "csv=p=0", path).Output()
	if err != nil || len(strings.TrimSpace(string(out))) == 0 {
		t.Errorf("reading from 5 s: %v %q", err, out)
	}

	// The summary agrees with the file.
	if len(rec.Tracks) != 3 {
		t.Fatalf("summary has %d tracks", len(rec.Tracks))
	}
	for _, tr := range rec.Tracks {
		st := p.byTitle(t, tr.Name)
		if st.packets(t) != tr.Frames {
			t.Errorf("%s: summary says %d frames, file has %d", tr.Name, tr.Frames, st.packets(t))
		}
	}
	var up *EventSummary
	for i := range rec.Events {
		if rec.Events[i].Type == string(sfu.EventUpgrade) {
			up = &rec.Events[i]
		}
	}
	if up == nil || !near(float64(up.OffsetMS), 4000, 60) {
		t.Errorf("upgrade event %+v, want at about 4000 ms", up)
	}
	if len(rec.Participants) != 2 {
		t.Errorf("participants %+v", rec.Participants)
	}
	if st := g.rec.Stats(); st.Completed != 1 || st.Failed != 0 {
		t.Errorf("stats %+v", st)
	}
}
