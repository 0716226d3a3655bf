package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// playerFixture has ffmpeg make the part [from, from+d) s of the
// consultation as a WebM of its own (time 0 at from), tracks named as the
// recorder names them.
func playerFixture(t *testing.T, from, d float64) []byte {
	t.Helper()
	ff := needTool(t, "ffmpeg")
	out := filepath.Join(t.TempDir(), "consultation.webm")
	camAt := max(clinicianVideoAt, from) // the clinician's camera, on from 3 s
	cmd := exec.Command(ff, "-v", "error",
		"-f", "lavfi", "-i", "sine=f=440:d="+ftoa(d)+":sample_rate=48000",
		"-f", "lavfi", "-i", barcodeVideo(int(from*playerFPS), d),
		"-f", "lavfi", "-i", "sine=f=2500:d="+ftoa(d)+":sample_rate=48000",
		"-itsoffset", ftoa(camAt-from), "-f", "lavfi", "-i", barcodeVideo(int(camAt*playerFPS), from+d-camAt),
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
// and judges what a person would perceive: at 10 points reached by seeking
// (and 3 paused seeks), both participants' tones are heard (WebAudio energy
// at 440 Hz and 2.5 kHz), each participant shows the frame the recording
// holds at that moment (read from its barcode; ffmpeg says which frame is
// where), the two within 40 ms of each other, and the clinician's tile
// shows the "Audio only" placeholder before their camera came on.
//
// "in two segments": the same consultation recorded as a cluster records
// one that moved to another node at 4 s (two recordings, 3 s apart, the
// second naming the first) plays exactly alike, the frames continuing
// across the join on one clock, and the page notes the interruption.
func TestReplayPlayerInChromium(t *testing.T) {
	needPlayerTools(t)
	for _, c := range []struct {
		name  string
		parts [][2]float64 // from, duration (s)
	}{
		{"one recording", [][2]float64{{0, playerDuration}}},
		{"in two segments", [][2]float64{{0, 4}, {4, playerDuration - 4}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			base, tok, rid := playerServer(t, c.parts)
			if len(c.parts) > 1 {
				checkJoinedFrames(t, base, tok, rid)
			}
			out := runReplayScript(t, base, tok, map[string]string{"MEDCALL_RECORDING": replay.Path + "/" + rid})
			note := fmt.Sprintf("RESULT segments %d ", len(c.parts))
			if len(c.parts) > 1 {
				note += "Recorded in 2 parts: the call was interrupted at 0:04 (3 s not recorded)."
			}
			if !strings.Contains(out, note) {
				t.Errorf("the player did not say %q", note)
			}
			parts := ""
			if len(c.parts) > 1 {
				parts = " (recorded in 2 parts)"
			}
			if !regexp.MustCompile(`RESULT list 1 Consultation c-1, [^|\n]* — 8 s` + regexp.QuoteMeta(parts) + `\n`).MatchString(out) {
				t.Errorf("the recordings list does not show the consultation once, 8 s%s", parts)
			}
		})
	}
}

// playerServer serves a replay API, as serve mounts it, over a local store
// holding the consultation recorded in parts (each a signed recording naming
// the one before it, recorded 3 s after it ended), and the demo page's
// assets. It returns the server's URL, the patient's replay token and the
// first recording's id.
func playerServer(t *testing.T, parts [][2]float64) (base, tok, rid string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	mk, err := manifest.NewKey("m1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	mkeys := &manifest.KeySet{Keys: []manifest.Key{mk}}
	started := time.Now().Add(-time.Hour).UTC().Truncate(time.Millisecond)
	prev := ""
	for i, part := range parts {
		body := playerFixture(t, part[0], part[1])
		id := uuid.Must(uuid.NewV7()).String()
		if i == 0 {
			rid = id
		}
		webmKey, manKey, _ := store.RecordingKeys("p-1", "c-1", id)
		info, err := st.Put(ctx, webmKey, bytes.NewReader(body), int64(len(body)))
		if err != nil {
			t.Fatal(err)
		}
		at := started.Add(time.Duration((part[0] + 3*float64(i)) * float64(time.Second)))
		durMS, camMS := int64(part[1]*1000), int64(max(clinicianVideoAt-part[0], 0)*1000)
		stmt, err := manifest.NewStatement(manifest.Predicate{
			Consultation: "c-1", Patient: "p-1", RecordingID: id, Previous: prev, Started: at, Ended: at.Add(time.Duration(durMS) * time.Millisecond),
			SizeBytes: info.Size, RecorderVersion: "test",
			Participants: []manifest.Participant{{ID: "p-1", Role: "patient", Joined: at}, {ID: "d-1", Role: "clinician", Joined: at}},
			Tracks: []manifest.Track{{Number: 1, Participant: "p-1", Kind: "audio", Codec: "opus"}, {Number: 2, Participant: "p-1", Kind: "video", Codec: "vp8"},
				{Number: 3, Participant: "d-1", Kind: "audio", Codec: "opus"}, {Number: 4, Participant: "d-1", Kind: "video", Codec: "vp8", FirstMS: camMS, LastMS: durMS - 20}},
			Events: []manifest.Event{{Type: "upgrade", Participant: "p-1"}, {Type: "upgrade", Participant: "d-1", OffsetMS: camMS}},
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
		prev = id
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
	t.Cleanup(func() { audit.Close() })
	h := &replay.Handler{Verifier: &token.Verifier{Keys: tkeys.Public()}, Index: idx, Audit: audit, Logger: quiet}
	srv := httptest.NewServer(withReplay(h, web.Handler(web.Options{})))
	t.Cleanup(srv.Close)
	tok, err = tkeys.Mint("ed1", token.Claims{Role: token.RolePatient, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "p-1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	return srv.URL, tok, rid
}

// checkJoinedFrames: in each participant's stream of a consultation
// recorded in parts, as the API serves it, the frames run on one clock:
// from each frame to the next, the barcode advances by the time between
// them at 50 fps, across the join too (no frame lost, repeated or shifted).
func checkJoinedFrames(t *testing.T, base, tok, rid string) {
	t.Helper()
	b, err := os.ReadFile(frameMap(t, base, tok, rid))
	if err != nil {
		t.Fatal(err)
	}
	var frames map[string][][2]float64
	if err := json.Unmarshal(b, &frames); err != nil {
		t.Fatal(err)
	}
	for label, fs := range frames {
		var wrong []string
		for i := 1; i < len(fs); i++ {
			if step := math.Round((fs[i][0] - fs[i-1][0]) * playerFPS); fs[i][1]-fs[i-1][1] != step {
				wrong = append(wrong, fmt.Sprintf("%v after %v", fs[i], fs[i-1]))
			}
		}
		if len(fs) < 100 || len(wrong) > 0 {
			t.Errorf("%s's joined stream: %d frames; off the clock: %v", label, len(fs), wrong)
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// TestReplayOfAChromiumRecording: the recording is made by real Chromium
// (two browsers, each with its own fake camera and microphone files: a
// distinct tone and barcoded frames, made by ffmpeg) on `medcall serve
// --dev`, patient on video from 1.5 s, clinician 2.5 s later; then the
// patient's player is judged as in TestReplayPlayerInChromium: both tones
// heard at 10 points after seeks, each shown frame the one the recording
// holds at that time, the two within 40 ms of each other, placeholders
// while a camera was off.
func TestReplayOfAChromiumRecording(t *testing.T) {
	needPlayerTools(t)
	ff := needTool(t, "ffmpeg")
	dir := t.TempDir()
	for _, p := range []struct {
		name  string
		first int
		tone  string
	}{{"patient", 0, "440"}, {"clinician", 512, "2500"}} {
		// 20 s at 25 fps: frames first..first+499, within the 10-bit barcode.
		video := "color=c=gray:s=320x240:r=25:d=20,geq=lum='if(bitand(N+" + itoa(p.first) + "\\,pow(2\\,floor(X/32)))\\,235\\,16)':cb=128:cr=128"
		for _, args := range [][]string{
			{"-f", "lavfi", "-i", video, "-pix_fmt", "yuv420p", filepath.Join(dir, p.name+".y4m")},
			{"-f", "lavfi", "-i", "sine=f=" + p.tone + ":d=20:sample_rate=48000", "-ac", "1", filepath.Join(dir, p.name+".wav")},
		} {
			if out, err := exec.Command(ff, append([]string{"-v", "error", "-y"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("ffmpeg %v: %v\n%s", args, err, out)
			}
		}
	}
	data := t.TempDir()
	addr, _, _, _ := startServeOut(t, data, "--dev")
	tok := mintCmd(t, "--data", data, "--replay", "--role", "patient", "--sub", "p-1")
	runReplayScript(t, "http://"+addr, tok, map[string]string{"MEDCALL_RECORD": "1", "MEDCALL_FAKE_DIR": dir})
}

// needPlayerTools skips (fails under CI) without node, the Playwright
// package or Chromium.
func needPlayerTools(t *testing.T) {
	t.Helper()
	needBrowser(t)
}

// runReplayScript runs signaling/web/e2e/replay.mjs against the server at
// base with the patient's replay token tok (on stdin: never in an argument
// or the environment) and extra environment, answering its checkpoints:
// "CHECKPOINT frames RID" asks which frame each participant's stream holds
// when (decoded by ffmpeg from the streams the API serves), answered with the
// path of a JSON file. It returns what the script printed.
func runReplayScript(t *testing.T, base, tok string, env map[string]string) (output string) {
	t.Helper()
	node, _ := exec.LookPath("node")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "replay.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "MEDCALL_URL="+base, "MEDCALL_CHROMIUM="+chromiumPath(), "MEDCALL_FPS="+itoa(playerFPS))
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = logWriter{t, "node stderr: "}
	stdin, stdout := startPiped(t, cmd)
	fmt.Fprintln(stdin, tok)
	passed := false
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		t.Log(line)
		out.WriteString(line + "\n")
		if rid, ok := strings.CutPrefix(line, "CHECKPOINT frames "); ok {
			fmt.Fprintln(stdin, frameMap(t, base, tok, rid))
		}
		passed = passed || line == "REPLAY PASS"
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("replay player test failed (exit: %v); see the node output above", err)
	}
	return out.String()
}

// frameMap decodes every participant stream of recording rid, as the API
// serves it, with ffmpeg and writes {label: [[pts_s, barcode], ...]} to a
// JSON file whose path it returns: what the player must show at each time.
func frameMap(t *testing.T, base, tok, rid string) string {
	t.Helper()
	get := func(path string) []byte {
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return b
	}
	var tl replay.Timeline
	if err := json.Unmarshal(get(replay.Path+"/"+rid+"/timeline"), &tl); err != nil {
		t.Fatal(err)
	}
	out := map[string][][2]float64{}
	dir := t.TempDir()
	for _, p := range tl.Participants {
		if !p.Video {
			continue
		}
		in := filepath.Join(dir, p.Label+".webm")
		if err := os.WriteFile(in, get(p.Stream), 0o600); err != nil {
			t.Fatal(err)
		}
		out[p.Label] = barcodes(t, in)
	}
	b, _ := json.Marshal(out)
	path := filepath.Join(dir, "frames.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

var (
	ptsTime  = regexp.MustCompile(`pts_time:\s*(-?[0-9.]+)`)
	keyFrame = regexp.MustCompile(`pts_time:\s*(-?[0-9.]+)[^\n]*iskey:1`)
)

// barcodes decodes the video of the WebM at path with ffmpeg, every frame as
// stored (no frame-rate conversion), and reads each frame's barcode.
func barcodes(t *testing.T, path string) [][2]float64 {
	t.Helper()
	var raw, info bytes.Buffer
	cmd := exec.Command(needTool(t, "ffmpeg"), "-v", "info", "-i", path, "-an", "-fps_mode", "passthrough",
		"-vf", "scale=160:120,format=gray,showinfo", "-f", "rawvideo", "-")
	cmd.Stdout, cmd.Stderr = &raw, &info
	if err := cmd.Run(); err != nil {
		t.Fatalf("ffmpeg decoding %s: %v\n%s", path, err, info.String())
	}
	pts := ptsTime.FindAllStringSubmatch(info.String(), -1)
	const size = 160 * 120
	if len(pts) != raw.Len()/size {
		t.Fatalf("%s: %d frames decoded, %d timestamps", path, raw.Len()/size, len(pts))
	}
	var keys []string
	for _, m := range keyFrame.FindAllStringSubmatch(info.String(), -1) {
		keys = append(keys, m[1])
	}
	t.Logf("%s: %d frames, keyframes at %v s", filepath.Base(path), len(pts), keys)
	frames := make([][2]float64, len(pts))
	for i, m := range pts {
		at, _ := strconv.ParseFloat(m[1], 64)
		row := raw.Bytes()[i*size+60*160:]
		n := 0
		for b := range 10 {
			if row[b*16+8] > 128 {
				n |= 1 << b
			}
		}
		frames[i] = [2]float64{at, float64(n)}
	}
	return frames
}
