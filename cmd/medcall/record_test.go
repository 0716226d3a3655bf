package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// needTool returns the path of an outside program, skipping the test when it
// is missing, except under CI where that is a failure.
func needTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI: %v", name, err)
		}
		t.Skipf("%s not installed: %v", name, err)
	}
	return p
}

type probe struct {
	Streams []struct {
		CodecName string `json:"codec_name"`
		CodecType string `json:"codec_type"`
		StartTime string `json:"start_time"`
		Tags      struct {
			Title string `json:"title"`
		} `json:"tags"`
	} `json:"streams"`
	Format struct {
		Duration string `json:"duration"`
	} `json:"format"`
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	out, err := exec.Command(needTool(t, "ffprobe"), "-v", "error", "-show_streams", "-show_format", "-of", "json", path).Output()
	if err != nil {
		t.Fatalf("ffprobe %s: %v", path, err)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// decodesClean runs `ffmpeg -v error -i F -f null -` and fails on anything
// it prints.
func decodesClean(t *testing.T, path string) {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(needTool(t, "ffmpeg"), "-v", "error", "-i", path, "-f", "null", "-")
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		if d := os.Getenv("KEEP_WEBM"); d != "" {
			b, _ := os.ReadFile(path)
			_ = os.WriteFile(filepath.Join(d, filepath.Base(path)), b, 0o644)
		}
		t.Errorf("ffmpeg decode of %s: %v %s", path, err, stderr.String())
	}
}

// storedRecordings lists the WebM objects in the local store that have their
// manifest beside them (the uploader stores the WebM first).
func storedRecordings(t *testing.T, data string) []string {
	t.Helper()
	var webms []string
	_ = filepath.Walk(filepath.Join(data, "objects"), func(p string, info os.FileInfo, err error) error {
		if w, ok := strings.CutSuffix(p, ".manifest.json"); ok && err == nil {
			webms = append(webms, w+".webm")
		}
		return nil
	})
	return webms
}

func waitRecordings(t *testing.T, data string, n int, within time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := storedRecordings(t, data)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d recordings stored, want %d", len(got), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func verifyCmd(t *testing.T, data, webm string) string {
	t.Helper()
	var out, errb bytes.Buffer
	man := strings.TrimSuffix(webm, ".webm") + ".manifest.json"
	if err := run(context.Background(), []string{"verify", "--data", data, man, webm}, &out, &errb); err != nil {
		t.Fatalf("medcall verify: %v %s", err, errb.String())
	}
	return out.String()
}

// TestRecordedCallIsStoredAndVerifies: a recorded audio call upgraded to video
// ends in one WebM under the patient's prefix with a manifest that verifies.
func TestRecordedCallIsStoredAndVerifies(t *testing.T) {
	data := t.TempDir()
	addr, admin, stop := startServe(t, data)
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, true)
	if dc.Joined().Recording == nil || !*dc.Joined().Recording {
		t.Error("joined reply does not say the consultation is recorded")
	}
	time.Sleep(1500 * time.Millisecond)
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	during := scrape(t, admin)
	for series, min := range map[string]float64{
		`medcall_consultations_active`:                                     1,
		`medcall_participants_active`:                                      2,
		`medcall_recordings_active`:                                        1,
		`medcall_rtp_packets_forwarded_total{kind="audio"}`:                50,
		`medcall_rtp_packets_forwarded_total{kind="video"}`:                20,
		`medcall_joins_total{outcome="ok"}`:                                2,
		`medcall_upgrades_total{outcome="completed",path="prenegotiated"}`: 1,
		`medcall_upgrade_latency_seconds_count{path="prenegotiated"}`:      1,
		`medcall_rtcp_plis_sent_total`:                                     1,
		`medcall_keyframe_requests_total{reason="upgrade"}`:                1,
		`medcall_keyframe_requests_total{reason="recorder_sync"}`:          1,
		`medcall_spool_bytes`:                                              1,
	} {
		if during[series] < min {
			t.Errorf("%s = %v during the call, want >= %v", series, during[series], min)
		}
	}
	_ = pc.Leave(ctx)
	_ = dc.Leave(ctx)
	webms := waitRecordings(t, data, 1, 20*time.Second)
	if len(webms) != 1 {
		t.Fatalf("%d recordings, want 1", len(webms))
	}
	if !strings.Contains(filepath.ToSlash(webms[0]), "/objects/patients/p-1/consultations/c-1/") {
		t.Errorf("recording stored at %s, not under the patient's prefix", webms[0])
	}
	out := verifyCmd(t, data, webms[0])
	if !strings.Contains(out, "patient p-1, consultation c-1") {
		t.Errorf("verify output: %s", out)
	}
	p := ffprobe(t, webms[0])
	titles := map[string]string{}
	for _, s := range p.Streams {
		titles[s.Tags.Title] = s.CodecName
	}
	for want, codec := range map[string]string{"patient/audio": "opus", "clinician/audio": "opus", "patient/video": "vp8"} {
		if titles[want] != codec {
			t.Errorf("track %s: codec %q, want %s (tracks %v)", want, titles[want], codec, titles)
		}
	}
	decodesClean(t, webms[0])
	after := scrape(t, admin)
	for series, want := range map[string]float64{
		`medcall_consultations_active`: 0, `medcall_participants_active`: 0, `medcall_recordings_active`: 0,
		`medcall_recordings_finalized_total`: 1, `medcall_manifests_signed_total`: 1, `medcall_uploads_pending`: 0,
		`medcall_upload_duration_seconds_count`: 1,
	} {
		if after[series] != want {
			t.Errorf("%s = %v after the call, want %v", series, after[series], want)
		}
	}
	checkReplay(t, data, addr, admin, webms[0])
	metricsDoc, _ := os.ReadFile("../../deploy/METRICS.md")
	for series := range after {
		name, _, _ := strings.Cut(series, "{")
		name = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
		if strings.HasPrefix(name, "medcall_") && !strings.Contains(string(metricsDoc), "`"+name+"`") {
			t.Errorf("%s is not documented in deploy/METRICS.md", name)
		}
	}
	_ = stop()
	// Tampering is caught by verify.
	b, _ := os.ReadFile(webms[0])
	b[len(b)/2] ^= 0xff
	_ = os.WriteFile(webms[0], b, 0o600)
	man := strings.TrimSuffix(webms[0], ".webm") + ".manifest.json"
	if err := run(context.Background(), []string{"verify", "--data", data, man, webms[0]}, io.Discard, io.Discard); err == nil {
		t.Error("verify accepted a WebM changed after signing")
	}
}

// TestKill9ThenRestartRecovers kills a real server process mid-call and
// restarts it: the recording is recovered into a valid WebM holding media up
// to at most 2 s before the kill.
func TestKill9ThenRestartRecovers(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	needTool(t, "ffprobe")
	dir := t.TempDir()
	bin := filepath.Join(dir, "medcall")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	data := filepath.Join(dir, "data")
	start := func() (*exec.Cmd, string) {
		cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data", data)
		out := &syncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			if m := servingLine.FindStringSubmatch(out.String()); m != nil {
				return cmd, m[1]
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("server did not start: %s", out.String())
		return nil, ""
	}
	srv, addr := start()
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-9", "--pid", "p-9", "--cid", "c-9", "--rec")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-9", "--pid", "p-9", "--cid", "c-9", "--rec")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, true)
	if _, err := dc.WaitReceived(ctx, "p-9", "audio", func(s client.TrackStats) bool { return s.Packets > 0 }); err != nil {
		t.Fatal(err)
	}
	first, _ := pc.Sent("audio")
	time.Sleep(2 * time.Second)
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := srv.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	_ = srv.Wait()
	if got := storedRecordings(t, data); len(got) != 0 {
		t.Fatalf("a recording was stored before the restart: %v", got)
	}

	start() // recovers at start-up
	webms := waitRecordings(t, data, 1, 30*time.Second)
	out := verifyCmd(t, data, webms[0])
	if !strings.Contains(out, "recovered true") {
		t.Errorf("recovered recording not marked recovered: %s", out)
	}
	p := ffprobe(t, webms[0])
	dur, err := strconv.ParseFloat(p.Format.Duration, 64)
	if err != nil {
		t.Fatalf("no duration: %v", err)
	}
	want := killedAt.Sub(first.FirstPacket).Seconds() - 2
	t.Logf("call ran %.2f s before the kill; recovered file holds %.2f s", killedAt.Sub(first.FirstPacket).Seconds(), dur)
	if dur < want {
		t.Errorf("recovered %.2f s of media, want at least %.2f s (all but the last 2 s before the kill)", dur, want)
	}
	hasVideo := false
	for _, s := range p.Streams {
		hasVideo = hasVideo || s.CodecName == "vp8"
	}
	if !hasVideo {
		t.Error("recovered file lost the video")
	}
	decodesClean(t, webms[0])
}

// scrape reads the admin /metrics page into series -> value, and checks no
// label carries a participant, patient or consultation id.
func scrape(t *testing.T, admin string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := line[:i]
		for _, id := range []string{"p-1", "d-1", "c-1"} {
			if strings.Contains(series, `"`+id+`"`) {
				t.Errorf("metric %s carries the id %s", series, id)
			}
		}
		out[series] = v
	}
	return out
}

func replayGet(t *testing.T, url, tok string) (int, []byte) {
	t.Helper()
	return replayDo(t, url, "Authorization", "Bearer "+tok)
}

// checkReplay: the patient lists and plays their recording through the
// served API, another patient sees nothing, the operator switch works at
// once, and everything is audited.
func checkReplay(t *testing.T, data, addr, admin, webm string) {
	t.Helper()
	mine := mintCmd(t, "--data", data, "--replay", "--role", "patient", "--sub", "p-1")
	other := mintCmd(t, "--data", data, "--replay", "--role", "patient", "--sub", "p-2")
	base := "http://" + addr + "/v1/recordings"
	code, body := replayGet(t, base, mine)
	var list struct {
		Recordings []struct{ ID, URL string } `json:"recordings"`
	}
	if err := json.Unmarshal(body, &list); code != 200 || err != nil || len(list.Recordings) != 1 {
		t.Fatalf("patient's list: %d %s", code, body)
	}
	rid := list.Recordings[0].ID
	code, got := replayGet(t, base+"/"+rid, mine)
	want, _ := os.ReadFile(webm)
	if code != 200 || !bytes.Equal(got, want) {
		t.Errorf("patient's recording: %d, %d bytes (want %d)", code, len(got), len(want))
	}
	if code, body := replayGet(t, base, other); code != 200 || strings.Contains(string(body), rid) {
		t.Errorf("another patient's list: %d %s", code, body)
	}
	code, refused := replayGet(t, base+"/"+rid, other)
	_, missing := replayGet(t, base+"/00000000-0000-7000-8000-000000000000", other)
	if code != 404 || !bytes.Equal(refused, missing) {
		t.Errorf("another patient asking for it: %d %s, want the same 404 as a missing recording (%s)", code, refused, missing)
	}
	setReplay := func(state string) {
		req, _ := http.NewRequest(http.MethodPut, "http://"+admin+"/replay", strings.NewReader(state))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("switch replay %s: %v", state, err)
		}
		resp.Body.Close()
	}
	setReplay("off")
	if code, _ := replayGet(t, base+"/"+rid, mine); code == 200 {
		t.Error("replay switched off still serves")
	}
	setReplay("on")
	if code, _ := replayGet(t, base+"/"+rid, mine); code != 200 {
		t.Errorf("replay switched on again: %d", code)
	}
	audit, err := os.ReadFile(filepath.Join(data, "audit", "replay.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Count(string(audit), "\n")
	if lines != 7 || !strings.Contains(string(audit), "replay_off") {
		t.Errorf("audit log has %d lines: %s", lines, audit)
	}
	if strings.Contains(string(audit), mine) {
		t.Error("audit log holds a token")
	}
}

// TestShutdownMidCallRecording: the server is stopped (SIGTERM: context
// cancel) while a recorded video call is going on. The recording is
// finalized, stored and verifies, decodes with no complaint from ffmpeg
// and is not marked recovered or partial.
func TestShutdownMidCallRecording(t *testing.T) {
	data := t.TempDir()
	addr, _, stop := startServe(t, data)
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-5", "--pid", "p-5", "--cid", "c-5", "--rec")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-5", "--pid", "p-5", "--cid", "c-5", "--rec")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, _ := joinCall(t, ctx, addr, pat, doc, true)
	time.Sleep(time.Second)
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	webms := storedRecordings(t, data)
	if len(webms) != 1 {
		// Stored at the next start if the store was slower than the shutdown.
		_, _, stop2 := startServe(t, data)
		webms = waitRecordings(t, data, 1, 20*time.Second)
		_ = stop2()
	}
	out := verifyCmd(t, data, webms[0])
	if strings.Contains(out, "recovered true") || strings.Contains(out, "partial true") {
		t.Errorf("a clean shutdown's recording says: %s", out)
	}
	decodesClean(t, webms[0])
	p := ffprobe(t, webms[0])
	if len(p.Streams) < 3 {
		t.Errorf("%d streams, want both audio tracks and the patient's video", len(p.Streams))
	}
}
