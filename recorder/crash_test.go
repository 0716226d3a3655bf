package recorder

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
)

// A crash leaves a spool whose last record is torn. Recover cuts the tail
// and publishes a valid WebM marked recovered, with every whole frame.
func TestRecoverTornSpool(t *testing.T) {
	needFF(t, "ffprobe")
	g := newRig(t)
	s := newSession(t, g.clock)
	tap := g.rec.Open(binding)
	audio := opusPackets(t, fixture(t, "audio.ogg"))[:150]
	video := ivfFrames(t, fixture(t, "video.ivf"))[:60]
	var keyReqs atomic.Int64
	var a, v sfu.TrackSink
	s.at(0, func() { a = tap.OnTrack(audioInfo("p-7", "patient")) })
	s.at(time.Second, func() {
		tap.OnEvent(sfu.Event{Type: sfu.EventUpgrade, Participant: "p-7", Role: "patient"})
		v = tap.OnTrack(videoInfo("p-7", "patient", &keyReqs))
	})
	s.sendOpus(stream{sink: &a, rate: 48000, seq0: 1, ts0: 1, delay: 10 * time.Millisecond}, audio)
	s.sendVP8(stream{sink: &v, rate: 90000, seq0: 1, ts0: 1, sendStart: time.Second, delay: 10 * time.Millisecond}, video, 30)
	s.run()

	// Let the track goroutines drain, then sync as the interval timer would.
	rec := tap.(*recording)
	waitFor(t, func() bool {
		return spooledFrames(rec) == len(audio)+len(video)
	})
	if err := rec.spool.sync(); err != nil {
		t.Fatal(err)
	}
	// The crash: copy the spool as it is on disk and tear its last record.
	crashed := t.TempDir()
	b, err := os.ReadFile(rec.path)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := readSpool(rec.path)
	if err != nil {
		t.Fatal(err)
	}
	if sc.end != nil {
		t.Fatal("a spool in progress has an end record")
	}
	whole := len(sc.frames)
	spoolPath := filepath.Join(crashed, filepath.Base(rec.path))
	if err := os.WriteFile(spoolPath, b[:len(b)-7], 0o640); err != nil {
		t.Fatal(err)
	}
	tap.Close()

	pub := &capturePublisher{LocalPublisher: LocalPublisher{Dir: t.TempDir()}}
	r2, err := New(Options{SpoolDir: crashed, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := r2.Recover(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || len(pub.all()) != 1 {
		t.Fatalf("recovered %d, published %d; want 1", len(recs), len(pub.all()))
	}
	got := recs[0]
	if !got.Recovered || got.Failed || got.Err != nil {
		t.Fatalf("recovered=%v failed=%v err=%v", got.Recovered, got.Failed, got.Err)
	}
	if got.Patient != binding.Patient || got.Consultation != binding.Consultation || got.ID != rec.id {
		t.Errorf("recovered recording %s for %s/%s", got.ID, got.Patient, got.Consultation)
	}
	frames := 0
	for _, tr := range got.Tracks {
		frames += tr.Frames
	}
	if frames != whole-1 {
		t.Errorf("%d frames recovered; %d were whole before the tear", frames, whole-1)
	}
	path := pub.objectPath(got)
	keep(t, path)
	decodeClean(t, path)
	p := ffprobe(t, path)
	if len(p.Streams) != 2 {
		t.Errorf("%d streams", len(p.Streams))
	}
	if v := p.byTitle(t, "patient/video"); !near(v.start(t), 1, 0.040) {
		t.Errorf("video starts at %.3f", v.start(t))
	}
	if l := readLayout(t, path); l.Segment.Info.Duration <= 0 || len(l.Segment.Cues.CuePoint) == 0 {
		t.Errorf("Duration %.0f, %d cue points", l.Segment.Info.Duration, len(l.Segment.Cues.CuePoint))
	}
	sidecar, err := os.ReadFile(strings.TrimSuffix(path, ".webm") + ".recording.json")
	if err != nil || !strings.Contains(string(sidecar), `"recovered": true`) {
		t.Errorf("sidecar %s: %v", sidecar, err)
	}
	if _, err := os.Stat(spoolPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("spool still there after recovery: %v", err)
	}
	if st := r2.Stats(); st.Recovered != 1 || st.Completed != 1 {
		t.Errorf("stats %+v", st)
	}
}

// spooledFrames counts the frames a recording in progress has written.
func spooledFrames(rec *recording) int {
	rec.spool.mu.Lock()
	defer rec.spool.mu.Unlock()
	rec.spool.bw.Flush()
	sc, err := readSpool(rec.path)
	if err != nil {
		return 0
	}
	return len(sc.frames)
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// failingFile is a spool file on a disk that fills up after n bytes.
type failingFile struct {
	*os.File
	left atomic.Int64
}

func (f *failingFile) Write(p []byte) (int, error) {
	left := f.left.Load()
	if int64(len(p)) > left {
		n, _ := f.File.Write(p[:max(left, 0)])
		f.left.Store(0)
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	f.left.Add(-int64(len(p)))
	return f.File.Write(p)
}

// A full disk stops that one recording, loudly: what was spooled until then
// is kept as a recording marked partial (a clean WebM), no spool is left
// behind, and the process and the taps carry on.
func TestSpoolWriteFailure(t *testing.T) {
	t.Run("disk full mid-call", func(t *testing.T) {
		g := newRig(t)
		g.rec.openSpool = func(path string) (spoolFile, error) {
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
			if err != nil {
				return nil, err
			}
			ff := &failingFile{File: f}
			ff.left.Store(20_000)
			return ff, nil
		}
		// The logger is swapped before any track runs: the recording logs
		// from its track goroutines.
		var logs bytes.Buffer
		g.rec.log = slog.New(slog.NewTextHandler(&logs, nil))
		s := newSession(t, g.clock)
		tap := g.rec.Open(binding)
		var keyReqs atomic.Int64
		var a, v sfu.TrackSink
		s.at(0, func() {
			a = tap.OnTrack(audioInfo("p-7", "patient"))
			v = tap.OnTrack(videoInfo("p-7", "patient", &keyReqs))
		})
		s.sendOpus(stream{sink: &a, rate: 48000, seq0: 1, ts0: 1}, opusPackets(t, fixture(t, "audio.ogg"))[:150])
		s.sendVP8(stream{sink: &v, rate: 90000, seq0: 1, ts0: 1}, ivfFrames(t, fixture(t, "video.ivf"))[:90], 30)
		s.run()
		got := g.finish(t, tap)
		if got.Failed || !got.Partial || len(got.Tracks) == 0 || got.Tracks[0].Frames == 0 {
			t.Fatalf("failed=%v partial=%v tracks=%d err=%v; want a partial recording with what was spooled", got.Failed, got.Partial, len(got.Tracks), got.Err)
		}
		if !strings.Contains(logs.String(), "no space left on device") || !strings.Contains(logs.String(), "partial") {
			t.Errorf("the log does not say what stopped the recording: %s", logs.String())
		}
		if st := g.rec.Stats(); st.Failed != 0 || st.Completed != 0 || st.Partial != 1 || st.SpoolBytes != 0 {
			t.Errorf("stats %+v; want one partial, nothing failed or complete, an empty spool", st)
		}
		webm := g.pub.objectPath(got)
		decodeClean(t, webm)
		sidecar, err := os.ReadFile(strings.TrimSuffix(webm, ".webm") + ".recording.json")
		if err != nil || !strings.Contains(string(sidecar), `"partial": true`) {
			t.Errorf("partial not on record: %s %v", sidecar, err)
		}
		left, _ := filepath.Glob(filepath.Join(g.spool, "*"))
		if len(left) != 0 {
			t.Errorf("files left in the spool directory: %v", left)
		}
		// The sinks still take packets without blocking after the failure.
		a.WriteRTP(rtpPacket(1))
		v.WriteRTP(rtpPacket(2))
	})
	t.Run("spool directory unusable", func(t *testing.T) {
		g := newRig(t)
		if err := os.RemoveAll(g.spool); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(g.spool, []byte("not a directory"), 0o640); err != nil {
			t.Fatal(err)
		}
		if tap := g.rec.Open(binding); tap != nil {
			t.Fatal("Open returned a tap without a spool")
		}
		if err := g.rec.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
		recs := g.pub.all()
		if len(recs) != 1 || !recs[0].Failed || recs[0].Err == nil {
			t.Fatalf("published %+v; want one failed recording", recs)
		}
		if st := g.rec.Stats(); st.Failed != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
