package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/at-wat/ebml-go"
	"github.com/at-wat/ebml-go/webm"
	"github.com/pion/rtp"
)

// capturePublisher publishes like LocalPublisher and remembers what it got.
type capturePublisher struct {
	LocalPublisher
	mu   sync.Mutex
	recs []*Recording
}

func (p *capturePublisher) Publish(ctx context.Context, rec *Recording, webmPath string) error {
	if err := p.LocalPublisher.Publish(ctx, rec, webmPath); err != nil {
		return err
	}
	p.mu.Lock()
	p.recs = append(p.recs, rec)
	p.mu.Unlock()
	return nil
}

func (p *capturePublisher) all() []*Recording {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*Recording(nil), p.recs...)
}

// objectPath is where LocalPublisher put a recording's WebM.
func (p *capturePublisher) objectPath(rec *Recording) string {
	return filepath.Join(p.Dir, "objects", "patients", rec.Patient, "consultations", rec.Consultation, rec.ID+".webm")
}

type testRig struct {
	rec   *Recorder
	pub   *capturePublisher
	clock *fakeClock
	spool string
}

func newRig(t testing.TB) *testRig {
	t.Helper()
	dir := t.TempDir()
	clock := &fakeClock{}
	pub := &capturePublisher{LocalPublisher: LocalPublisher{Dir: filepath.Join(dir, "data")}}
	r, err := New(Options{
		Logger:       slog.New(slog.NewTextHandler(testLog{t}, nil)),
		SpoolDir:     filepath.Join(dir, "spool"),
		Publisher:    pub,
		QueueSize:    1 << 16, // the scheduler delivers a whole session at once
		Clock:        clock.Now,
		SyncInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return &testRig{rec: r, pub: pub, clock: clock, spool: filepath.Join(dir, "spool")}
}

// finish closes the tap and waits for the single published recording.
func (g *testRig) finish(t testing.TB, tap interface{ Close() }) *Recording {
	t.Helper()
	tap.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.rec.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	recs := g.pub.all()
	if len(recs) != 1 {
		t.Fatalf("published %d recordings, want 1", len(recs))
	}
	return recs[0]
}

type probeStream struct {
	Index     int               `json:"index"`
	CodecName string            `json:"codec_name"`
	CodecType string            `json:"codec_type"`
	StartTime string            `json:"start_time"`
	Packets   string            `json:"nb_read_packets"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Tags      map[string]string `json:"tags"`
}

type probeResult struct {
	Streams []probeStream `json:"streams"`
	Format  struct {
		Duration   string `json:"duration"`
		FormatName string `json:"format_name"`
	} `json:"format"`
}

func (s probeStream) start(t testing.TB) float64 {
	v, err := strconv.ParseFloat(s.StartTime, 64)
	if err != nil {
		t.Fatalf("stream %d start_time %q: %v", s.Index, s.StartTime, err)
	}
	return v
}

func (s probeStream) packets(t testing.TB) int {
	v, err := strconv.Atoi(s.Packets)
	if err != nil {
		t.Fatalf("stream %d nb_read_packets %q: %v", s.Index, s.Packets, err)
	}
	return v
}

func (p probeResult) byTitle(t testing.TB, title string) probeStream {
	t.Helper()
	for _, s := range p.Streams {
		if s.Tags["title"] == title {
			return s
		}
	}
	t.Fatalf("no stream titled %q in %+v", title, p.Streams)
	return probeStream{}
}

func ffprobe(t testing.TB, path string) probeResult {
	t.Helper()
	out, err := exec.Command(needFF(t, "ffprobe"), "-v", "error", "-count_packets",
		"-show_streams", "-show_format", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p probeResult
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// decodeClean decodes with ffmpeg's default null output (which works on a
// frame grid at the stream's frame rate) and fails on any error output.
func decodeClean(t testing.TB, path string, args ...string) {
	t.Helper()
	a := append([]string{"-v", "error"}, args...)
	a = append(a, "-i", path, "-f", "null", "-")
	cmd := exec.Command(needFF(t, "ffmpeg"), a...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		keep(t, path)
		t.Fatalf("ffmpeg %v: %v\n%s", a, err, stderr.String())
	}
}

// webmLayout reads what ffprobe does not show: Segment Duration and Cues.
type webmLayout struct {
	Header  webm.EBMLHeader `ebml:"EBML"`
	Segment struct {
		Info webm.Info `ebml:"Info"`
		Cues struct {
			CuePoint []struct {
				CueTime uint64 `ebml:"CueTime"`
			} `ebml:"CuePoint"`
		} `ebml:"Cues"`
		Tracks webm.Tracks `ebml:"Tracks"`
	} `ebml:"Segment"`
}

func readLayout(t testing.TB, path string) webmLayout {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var l webmLayout
	if err := ebml.Unmarshal(f, &l); err != nil {
		t.Fatalf("parse %s: %v", path, err)
	}
	return l
}

func near(got, want, tol float64) bool { return got >= want-tol && got <= want+tol }

// keep copies an output file to $RECORDER_KEEP (a directory) for inspection.
func keep(t testing.TB, path string) {
	dir := os.Getenv("RECORDER_KEEP")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, t.Name()+".webm"), b, 0o644)
	}
	if err != nil {
		t.Logf("keep: %v", err)
	}
}

type atomicCounter struct{ atomic.Int64 }

func rtpPacket(seq uint16) *rtp.Packet {
	return &rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: seq, Timestamp: uint32(seq) * 960}, Payload: []byte{0xfc, 0xff, 0xfe}}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLog sends the recorder's log to the test's log.
type testLog struct{ t testing.TB }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
