package recorder

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
)

// liveRig is the real thing end to end: pion clients -> signaling -> SFU ->
// recorder taps -> spool -> WebM -> uploader -> local store + signed manifest.
type liveRig struct {
	*signaltest.Env
	rec      *Recorder
	up       *Uploader
	keys     *manifest.KeySet
	objects  string
	spoolDir string
	cancel   context.CancelFunc
	done     chan struct{}
}

func newLiveRig(t *testing.T) *liveRig {
	t.Helper()
	needFF(t, "ffprobe")
	dir := t.TempDir()
	g := &liveRig{objects: filepath.Join(dir, "objects"), spoolDir: filepath.Join(dir, "spool"), done: make(chan struct{})}
	st, err := store.Open(context.Background(), "file://"+g.objects)
	if err != nil {
		t.Fatal(err)
	}
	if g.keys, err = manifest.GenerateDevKeySet(filepath.Join(dir, "keys.json")); err != nil {
		t.Fatal(err)
	}
	log := discardLogger()
	if g.up, err = NewUploader(UploaderOptions{Store: st, Keys: g.keys, Outbox: filepath.Join(dir, "outbox"), Logger: log}); err != nil {
		t.Fatal(err)
	}
	if g.rec, err = New(Options{SpoolDir: g.spoolDir, Publisher: g.up, Logger: log}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() {
		defer close(g.done)
		g.up.Run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-g.done })
	g.Env = signaltest.Start(t, sfu.Config{Taps: g.rec.Open})
	return g
}

func (g *liveRig) dial(t *testing.T, ctx context.Context, tok string, video, prenegotiate bool) *client.Client {
	t.Helper()
	o := client.Options{URL: g.URL, Token: tok, AudioFile: "../testdata/audio.ogg", Prenegotiate: prenegotiate, Fingerprint: true, Logger: discardLogger()}
	if video {
		o.VideoFile = "../testdata/video.ivf"
	}
	c, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// stored waits until n recordings are stored with their manifests and returns the WebM paths.
func (g *liveRig) stored(t *testing.T, ctx context.Context, n int) []string {
	t.Helper()
	// The consultation ends, and its tap closes, once the last forwarding loop stops.
	for g.rec.Stats().Active > 0 || g.SFU.Stats().Consultations > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("recording still active: %+v", g.rec.Stats())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := g.rec.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	for g.up.Pending() > 0 {
		select {
		case <-ctx.Done():
			t.Fatalf("%d uploads pending", g.up.Pending())
		case <-time.After(20 * time.Millisecond):
		}
	}
	var webms []string
	_ = filepath.Walk(g.objects, func(p string, _ os.FileInfo, err error) error {
		if w, ok := strings.CutSuffix(p, ".manifest.json"); ok && err == nil {
			webms = append(webms, w+".webm")
		}
		return nil
	})
	if len(webms) != n {
		failed, _ := os.ReadDir(filepath.Join(filepath.Dir(g.objects), "outbox", "failed"))
		for _, f := range failed {
			b, _ := os.ReadFile(filepath.Join(filepath.Dir(g.objects), "outbox", "failed", f.Name()))
			t.Logf("failed recording: %s", b)
		}
		t.Fatalf("%d recordings stored, want %d (recorder %+v)", len(webms), n, g.rec.Stats())
	}
	return webms
}

// TestLiveUpgradeBothPaths: a real call through the SFU, audio from the start,
// video from an upgrade ~3 s in; each path gives one WebM of the same shape,
// video at its true offset, every frame sent present.
func TestLiveUpgradeBothPaths(t *testing.T) {
	for _, path := range []string{signaling.PathPrenegotiated, signaling.PathRenegotiate} {
		t.Run(path, func(t *testing.T) {
			g := newLiveRig(t)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			pat := g.dial(t, ctx, g.Patient("p1", "c1", true), true, path == signaling.PathPrenegotiated)
			doc := g.dial(t, ctx, g.Clinician("d1", "p1", "c1", true), false, false)
			time.Sleep(3 * time.Second)
			if err := pat.Upgrade(ctx, path); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			pat.StopSending()
			doc.StopSending()
			time.Sleep(300 * time.Millisecond) // let in-flight packets land
			_ = pat.Leave(ctx)
			_ = doc.Leave(ctx)
			webm := g.stored(t, ctx, 1)[0]
			if !strings.Contains(filepath.ToSlash(webm), "/patients/p1/consultations/c1/") {
				t.Errorf("stored at %s", webm)
			}
			p := ffprobe(t, webm)
			pa, da, pv := p.byTitle(t, "patient/audio"), p.byTitle(t, "clinician/audio"), p.byTitle(t, "patient/video")
			if pa.CodecName != "opus" || da.CodecName != "opus" || pv.CodecName != "vp8" {
				t.Errorf("codecs %s %s %s", pa.CodecName, da.CodecName, pv.CodecName)
			}
			pAudio, _ := pat.Sent("audio")
			dAudio, _ := doc.Sent("audio")
			pVideo, videoPrints := pat.Sent("video")
			_, patPrints := pat.Sent("audio")
			_, docPrints := doc.Sent("audio")
			t0 := pAudio.FirstPacket
			if dAudio.FirstPacket.Before(t0) {
				t0 = dAudio.FirstPacket
			}
			wantVideo := pVideo.FirstPacket.Sub(t0).Seconds()
			// Opus starts at -0.0065 s: ffprobe subtracts the codec delay.
			if s := pa.start(t); !near(s, pAudio.FirstPacket.Sub(t0).Seconds(), 0.04) {
				t.Errorf("patient audio starts at %.3f s, want %.3f", s, pAudio.FirstPacket.Sub(t0).Seconds())
			}
			if s := pv.start(t); !near(s, wantVideo, 0.04) {
				t.Errorf("video starts at %.3f s, want the upgrade offset %.3f s (±40 ms)", s, wantVideo)
			}
			for _, c := range []struct {
				name string
				got  int
				sent int
			}{{"patient/video", pv.packets(t), len(videoPrints)}, {"patient/audio", pa.packets(t), len(patPrints)}, {"clinician/audio", da.packets(t), len(docPrints)}} {
				if c.got != c.sent {
					t.Errorf("%s: %d frames in the file, %d sent", c.name, c.got, c.sent)
				}
			}
			l := readLayout(t, webm)
			if l.Segment.Info.Duration == 0 || len(l.Segment.Cues.CuePoint) == 0 {
				t.Errorf("not seekable: duration %v, %d cues", l.Segment.Info.Duration, len(l.Segment.Cues.CuePoint))
			}
			decodeClean(t, webm)
			decodeClean(t, webm, "-ss", "3")
			noOverlap(t, webm, pa.Index, 20)
			noOverlap(t, webm, da.Index, 20)
		})
	}
}

// TestLiveFivePercentLoss: 5% of the patient's packets never reach the SFU;
// the recording still decodes without a single error.
func TestLiveFivePercentLoss(t *testing.T) {
	g := newLiveRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pat, err := client.Dial(ctx, client.Options{URL: g.URL, Token: g.Patient("p1", "c1", true), AudioFile: "../testdata/audio.ogg",
		VideoFile: "../testdata/video.ivf", Prenegotiate: true, DropRate: 0.05, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pat.Close()
	doc := g.dial(t, ctx, g.Clinician("d1", "p1", "c1", true), false, false)
	time.Sleep(time.Second)
	if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	_ = pat.Leave(ctx)
	_ = doc.Leave(ctx)
	webm := g.stored(t, ctx, 1)[0]
	p := ffprobe(t, webm)
	if v := p.byTitle(t, "patient/video"); v.packets(t) < 30 {
		t.Errorf("only %d video frames survived 5%% loss", v.packets(t))
	}
	decodeClean(t, webm)
	decodeClean(t, webm, "-ss", "2")
}

// TestLiveNoRecordingWithoutRec: rec false means no spool, no file, nothing.
func TestLiveNoRecordingWithoutRec(t *testing.T) {
	g := newLiveRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pat := g.dial(t, ctx, g.Patient("p1", "c1", false), true, true)
	doc := g.dial(t, ctx, g.Clinician("d1", "p1", "c1", false), false, false)
	if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	if _, err := doc.WaitReceived(ctx, "p1", "video", func(s client.TrackStats) bool { return s.Packets > 30 }); err != nil {
		t.Fatal(err)
	}
	if n := g.rec.Stats().Active; n != 0 {
		t.Errorf("%d recordings active for a rec:false consultation", n)
	}
	entries, _ := os.ReadDir(g.spoolDir)
	if len(entries) != 0 {
		t.Errorf("spool directory holds %d entries", len(entries))
	}
	_ = pat.Leave(ctx)
	_ = doc.Leave(ctx)
	g.stored(t, ctx, 0)
}

// TestLiveSpoolFailureKeepsCallGoing: the spool directory becomes unusable;
// the call goes on, the recording is counted failed, nothing is stored as
// complete and the process lives.
func TestLiveSpoolFailureKeepsCallGoing(t *testing.T) {
	g := newLiveRig(t)
	// A regular file where the spool directory should be: every spool open fails.
	if err := os.RemoveAll(g.spoolDir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(g.spoolDir, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pat := g.dial(t, ctx, g.Patient("p1", "c1", true), false, false)
	doc := g.dial(t, ctx, g.Clinician("d1", "p1", "c1", true), false, false)
	if _, err := doc.WaitReceived(ctx, "p1", "audio", func(s client.TrackStats) bool { return s.Packets > 100 }); err != nil {
		t.Fatalf("call did not go on: %v", err)
	}
	if _, err := pat.WaitReceived(ctx, "d1", "audio", func(s client.TrackStats) bool { return s.Packets > 100 }); err != nil {
		t.Fatalf("call did not go on: %v", err)
	}
	if st := g.rec.Stats(); st.Failed == 0 || st.Completed != 0 {
		t.Errorf("recorder stats %+v: want the recording failed, none complete", st)
	}
	_ = pat.Leave(ctx)
	_ = doc.Leave(ctx)
	g.stored(t, ctx, 0)
}

// TestLiveFiftyRecordedConsultations: fifty recorded consultations at once,
// each upgraded from audio to video, each patient speaking with a different
// tone (distinct Opus packets). Every recording lands under its own
// patient's prefix with a manifest that verifies and names that patient, and
// every file holds only its own consultation's media, checked by ffmpeg's
// packet hashes against each source file.
func TestLiveFiftyRecordedConsultations(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 50
	g := newLiveRig(t)
	ffmpeg := needFF(t, "ffmpeg")
	dir := t.TempDir()
	src := make([]string, n)
	for i := range n {
		src[i] = filepath.Join(dir, fmt.Sprintf("tone%d.ogg", i))
		out, err := runCmd(ffmpeg, "-v", "error", "-f", "lavfi", "-i", fmt.Sprintf("sine=frequency=%d:sample_rate=48000:duration=4", 300+37*i),
			"-ac", "2", "-c:a", "libopus", "-b:a", "24k", "-frame_duration", "20", "-page_duration", "20000", src[i])
		if err != nil {
			t.Fatalf("ffmpeg: %v %s", err, out)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Joins ten a second, as a clinic's would come, not all one
			// hundred in one instant.
			time.Sleep(time.Duration(i) * 100 * time.Millisecond)
			logs := &callLog{}
			pid, cid := fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)
			pat, err := client.Dial(ctx, client.Options{URL: g.URL, Token: g.Patient(pid, cid, true), AudioFile: src[i], VideoFile: "../testdata/video.ivf", Prenegotiate: true, Logger: logs.logger("patient")})
			if err != nil {
				t.Errorf("c%d: patient: %v\n%s", i, err, logs.tail())
				return
			}
			defer pat.Close()
			doc, err := client.Dial(ctx, client.Options{URL: g.URL, Token: g.Clinician("d"+pid, pid, cid, true), AudioFile: "../testdata/audio.ogg", Logger: logs.logger("clinician")})
			if err != nil {
				t.Errorf("c%d: clinician: %v\n%s", i, err, logs.tail())
				return
			}
			defer doc.Close()
			// Wait for what the recording must hold rather than for a fixed
			// time: on a loaded machine a second may not be enough for the
			// call to carry audio, or for the upgrade's keyframe to arrive.
			if _, err := doc.WaitReceived(ctx, pid, "audio", func(s client.TrackStats) bool { return s.Packets >= 25 }); err != nil {
				t.Errorf("c%d: no audio at the clinician: %v\n%s\n%s", i, err, callState(pat, doc, pid), logs.tail())
				return
			}
			if err := pat.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
				t.Error(err)
			}
			if _, err := doc.WaitReceived(ctx, pid, "video", func(s client.TrackStats) bool { return s.Keyframes > 0 }); err != nil {
				t.Errorf("c%d: no video at the clinician after the upgrade: %v\n%s\n%s", i, err, callState(pat, doc, pid), logs.tail())
				return
			}
			time.Sleep(2 * time.Second)
			_ = pat.Leave(ctx)
			_ = doc.Leave(ctx)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	webms := g.stored(t, ctx, n)
	hashes := make([]map[string]bool, n)
	for i := range n {
		hashes[i] = packetHashes(t, src[i], "0:a")
	}
	for _, w := range webms {
		var i int
		if _, err := fmt.Sscanf(filepath.Base(filepath.Dir(w)), "c%d", &i); err != nil {
			t.Fatalf("unexpected path %s", w)
		}
		if !strings.Contains(filepath.ToSlash(w), fmt.Sprintf("/patients/p%d/consultations/c%d/", i, i)) {
			t.Errorf("c%d stored under %s", i, w)
		}
		env, err := os.ReadFile(strings.TrimSuffix(w, ".webm") + ".manifest.json")
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Open(w)
		if err != nil {
			t.Fatal(err)
		}
		key, _ := filepath.Rel(g.objects, w)
		stmt, err := manifest.VerifyObject(g.keys.Public(), env, filepath.ToSlash(key), f)
		f.Close()
		if err != nil {
			t.Errorf("c%d: manifest: %v", i, err)
		} else if stmt.Predicate.Patient != fmt.Sprintf("p%d", i) || stmt.Predicate.Consultation != fmt.Sprintf("c%d", i) {
			t.Errorf("c%d: manifest names patient %s, consultation %s", i, stmt.Predicate.Patient, stmt.Predicate.Consultation)
		}
		p := ffprobe(t, w)
		if p.byTitle(t, "patient/video").CodecName != "vp8" {
			t.Errorf("c%d: no upgraded video", i)
		}
		idx := p.byTitle(t, "patient/audio").Index
		got := packetHashes(t, w, fmt.Sprintf("0:%d", idx))
		own := 0
		for h := range got {
			if hashes[i][h] {
				own++
			}
			for j := range n {
				if j != i && hashes[j][h] {
					t.Errorf("c%d's recording holds audio of c%d's patient", i, j)
				}
			}
		}
		if own == 0 || own < len(got)*9/10 {
			t.Errorf("c%d: only %d of %d patient audio packets are its patient's", i, own, len(got))
		}
		decodeClean(t, w)
	}
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

// packetHashes returns the MD5 of every packet of one stream, copied as is
// (ffmpeg's framemd5 with -c copy hashes the raw Opus packets).
func packetHashes(t *testing.T, path, stream string) map[string]bool {
	t.Helper()
	out, err := exec.Command(needFF(t, "ffmpeg"), "-v", "error", "-i", path, "-map", stream, "-c", "copy", "-f", "framemd5", "-").Output()
	if err != nil {
		t.Fatalf("framemd5 %s: %v", path, err)
	}
	set := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, ",")
		set[strings.TrimSpace(f[len(f)-1])] = true
	}
	return set
}

// noOverlap checks that no frame of a stream starts before the previous one
// has ended (frameMS long): sender reports move the timeline by a few ms,
// which must never squeeze audio frames into each other.
func noOverlap(t *testing.T, path string, stream, frameMS int) {
	t.Helper()
	out, err := exec.Command(needFF(t, "ffprobe"), "-v", "error", "-select_streams", strconv.Itoa(stream),
		"-show_entries", "packet=pts", "-of", "csv=p=0", path).Output()
	if err != nil {
		t.Fatal(err)
	}
	prev, first := 0, true
	for _, line := range strings.Fields(string(out)) {
		pts, err := strconv.Atoi(strings.TrimSuffix(line, ","))
		if err != nil {
			t.Fatalf("pts %q", line)
		}
		if !first && pts-prev < frameMS {
			t.Errorf("stream %d: a frame at %d ms overlaps the one at %d ms", stream, pts, prev)
			return
		}
		prev, first = pts, false
	}
}
