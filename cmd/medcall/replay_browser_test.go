package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/signaling/token"
	"github.com/medcall/medcall/signaling/web"
)

// Fixture of the replay player test: two participants, each with a tone of
// their own and a video whose every frame carries its time as a 10-bit
// barcode (16-px columns, white = 1, least significant bit on the left),
// at 50 fps; the clinician's camera comes on at 3 s.
const (
	playerFPS        = 50
	clinicianVideoAt = 3.0 // s
	playerDuration   = 8.0 // s
)

// barcodeVideo is an ffmpeg lavfi source whose frame n shows n+first.
func barcodeVideo(first int, d float64) string {
	return "color=c=gray:s=160x120:r=50:d=" + ftoa(d) +
		",geq=lum='if(bitand(N+" + itoa(first) + "\\,pow(2\\,floor(X/16)))\\,235\\,16)':cb=128:cr=128"
}

// playerFixture has ffmpeg make the consultation WebM, tracks named as the
// recorder names them.
func playerFixture(t *testing.T) []byte {
	t.Helper()
	ff := needTool(t, "ffmpeg")
	out := filepath.Join(t.TempDir(), "consultation.webm")
	cmd := exec.Command(ff, "-v", "error",
		"-f", "lavfi", "-i", "sine=f=440:d=8:sample_rate=48000",
		"-f", "lavfi", "-i", barcodeVideo(0, playerDuration),
		"-f", "lavfi", "-i", "sine=f=2500:d=8:sample_rate=48000",
		"-itsoffset", ftoa(clinicianVideoAt), "-f", "lavfi", "-i", barcodeVideo(int(clinicianVideoAt*playerFPS), playerDuration-clinicianVideoAt),
		"-map", "0", "-map", "1", "-map", "2", "-map", "3",
		"-c:a", "libopus", "-c:v", "libvpx", "-b:v", "1M", "-g", "25", "-deadline", "realtime",
		"-metadata:s:0", "title=patient/audio", "-metadata:s:1", "title=patient/video",
		"-metadata:s:2", "title=clinician/audio", "-metadata:s:3", "title=clinician/video", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReplayPlayerInChromium plays a two-party consultation in headless
// Chromium with the demo page's replay player (signaling/web/e2e/replay.mjs)
// and judges what a person would perceive: at 10 points reached by seeking,
// both participants' tones are heard (WebAudio energy at 440 Hz and 2.5 kHz),
// each participant shows the frame of that moment (decoded from the
// barcode) within 40 ms of the other, and the clinician's tile shows the
// "Audio only" placeholder before their camera came on.
func TestReplayPlayerInChromium(t *testing.T) {
	node, err := exec.LookPath("node")
	needBrowserTool(t, err == nil, "node", "install Node.js (Debian: apt-get install -y nodejs npm)")
	_, err = os.Stat(filepath.Join(e2eDir, "node_modules", "playwright-core", "package.json"))
	needBrowserTool(t, err == nil, "signaling/web/e2e/node_modules (playwright-core)", "run: cd signaling/web/e2e && npm ci")
	_, err = os.Stat(chromiumPath())
	needBrowserTool(t, err == nil, chromiumPath(), "install it with: apt-get install -y chromium")
	body := playerFixture(t)

	// A replay API over a local store holding the signed recording, and
	// the demo page's assets, as serve mounts them.
	ctx := context.Background()
	st, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mk, err := manifest.NewKey("m1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	mkeys := &manifest.KeySet{Keys: []manifest.Key{mk}}
	rid := uuid.Must(uuid.NewV7()).String()
	webmKey, manKey, _ := store.RecordingKeys("p-1", "c-1", rid)
	info, err := st.Put(ctx, webmKey, bytes.NewReader(body), int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	stmt, err := manifest.NewStatement(manifest.Predicate{
		Consultation: "c-1", Patient: "p-1", RecordingID: rid, Started: started, Ended: started.Add(8 * time.Second),
		SizeBytes: info.Size, RecorderVersion: "test",
		Participants: []manifest.Participant{{ID: "p-1", Role: "patient", Joined: started}, {ID: "d-1", Role: "clinician", Joined: started}},
		Tracks: []manifest.Track{{Number: 1, Participant: "p-1", Kind: "audio", Codec: "opus"}, {Number: 2, Participant: "p-1", Kind: "video", Codec: "vp8"},
			{Number: 3, Participant: "d-1", Kind: "audio", Codec: "opus"}, {Number: 4, Participant: "d-1", Kind: "video", Codec: "vp8", FirstMS: 3000, LastMS: 7980}},
		Events: []manifest.Event{{Type: "upgrade", Participant: "p-1"}, {Type: "upgrade", Participant: "d-1", OffsetMS: 3000}},
	}, info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if stmt.Predicate.Chunks, _, err = manifest.ComputeChunks(bytes.NewReader(body), manifest.DefaultChunkSize); err != nil {
		t.Fatal(err)
	}
	env, err := manifest.Sign(mkeys, stmt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(ctx, manKey, bytes.NewReader(env), int64(len(env))); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	idx := &replay.Index{Store: st, Keys: mkeys.Public(), Logger: quiet}
	if err := idx.Rebuild(ctx); err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	tkeys := &token.KeySet{Keys: []token.Key{{ID: "ed1", Alg: "EdDSA", Public: priv.Public().(ed25519.PublicKey), Private: priv}}}
	audit, err := replay.OpenAudit(filepath.Join(t.TempDir(), "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer audit.Close()
	h := &replay.Handler{Verifier: &token.Verifier{Keys: tkeys.Public()}, Index: idx, Audit: audit, Logger: quiet}
	srv := httptest.NewServer(withReplay(h, web.Handler(web.Options{})))
	defer srv.Close()
	tok, err := tkeys.Mint("ed1", token.Claims{Role: token.RolePatient, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "p-1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(rctx, node, "replay.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "MEDCALL_URL="+srv.URL, "MEDCALL_CHROMIUM="+chromiumPath(),
		"MEDCALL_RECORDING="+replay.Path+"/"+rid, "MEDCALL_FPS="+itoa(playerFPS), "MEDCALL_VIDEO_AT="+ftoa(clinicianVideoAt))
	cmd.Stdin = strings.NewReader(tok + "\n") // the token never goes in an argument or the environment
	cmd.Stderr = logWriter{t, "node stderr: "}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	passed := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		passed = passed || line == "REPLAY PASS"
	}
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("replay player test failed (exit: %v); see the node output above", err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }
