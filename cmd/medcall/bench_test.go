package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/bench"
)

// TestBenchInProcess runs a short bench against a child server built from
// this package and checks the result has sane figures: both consultations
// joined and upgraded, media flowed with little loss, the server's own CPU
// and memory were read, and both recordings were stored and verified.
func TestBenchInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs a 6 s bench")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "medcall")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	out := filepath.Join(dir, "result.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := runBench(ctx, []string{"--inprocess", "--server-bin", bin,
		"--n", "2", "--duration", "6s", "--upgrade-after", "2s", "--path", "mix", "--join-rate", "10/s",
		"--audio", "../../testdata/audio.ogg", "--video", "../../testdata/video.ivf", "--out", out}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	t.Log(stdout.String())
	if stderr.Len() > 0 {
		t.Errorf("a non-terminal stderr got output: %q", stderr.String())
	}
	r, err := bench.ReadResult(out)
	if err != nil {
		t.Fatal(err)
	}
	c := r.Consultations
	if c.Planned != 2 || c.Joined != 2 || c.Upgraded != 2 || c.Ended != 2 {
		t.Errorf("consultations %+v, want all 2 joined, upgraded and ended", c)
	}
	if len(r.Errors) != 0 {
		t.Errorf("errors %v: %v", r.Errors, r.ErrorSamples)
	}
	if r.Join.Count != 4 || r.Join.P50 <= 0 || r.Join.Max > 10000 {
		t.Errorf("join %+v", r.Join)
	}
	for _, p := range []string{"all", "prenegotiated", "renegotiate"} {
		if u := r.Upgrade[p]; u.Count == 0 || u.P50 <= 0 || u.Max > 10000 {
			t.Errorf("upgrade %s: %+v", p, u)
		}
	}
	for _, k := range []string{"audio", "video"} {
		l := r.Loss[k]
		if l.Streams != 4 || l.Expected < 20 || l.Fraction > 0.2 {
			t.Errorf("%s loss %+v", k, l)
		}
		if d := r.Delay[k]; d.Count == 0 || d.P50 <= 0 || d.P50 > 1000 {
			t.Errorf("%s delay %+v", k, d)
		}
		if j := r.Jitter[k]; j.Count != 4 || j.Max > 1000 {
			t.Errorf("%s jitter %+v", k, j)
		}
	}
	if r.SendPace.Min < 0.5 || r.SendPace.Mean > 1.1 {
		t.Errorf("send pace %+v, want about 1 (real time)", r.SendPace)
	}
	s := r.Server
	if s.PacketsForwarded <= 0 || s.CPUSeconds <= 0 || s.CPUMicrosPerPacket <= 0 || s.RSSLoadBytes <= 0 {
		t.Errorf("server figures %+v", s)
	}
	rec := r.Recordings
	if rec.Expected != 2 || rec.Verified != 2 || rec.StoreTime.Count != 2 {
		t.Errorf("recordings %+v", rec)
	}
	if !strings.Contains(stdout.String(), "CPU per forwarded packet") {
		t.Errorf("no table on stdout: %s", stdout.String())
	}

	// --compare of a result with itself: every ratio 1.00 or "=".
	stdout.Reset()
	if err := runBench(ctx, []string{"--compare", out, out}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n")[1:] {
		f := strings.Fields(line)
		if last := f[len(f)-1]; last != "1.00" && last != "=" {
			t.Errorf("self-compare ratio %q in %q", last, line)
		}
	}
}

// TestBenchFailsWhenNothingWasMeasured: a bench whose every join is refused
// (tokens minted from another server's key, a wrong --data) still prints
// its table, but exits with an error rather than as a run with figures;
// and a missing fixture is refused before anything starts.
func TestBenchFailsWhenNothingWasMeasured(t *testing.T) {
	other := t.TempDir()
	_, _, stopOther := startServe(t, other) // only to make a dev key under other
	_ = stopOther()
	addr, admin, stop := startServe(t, t.TempDir())
	defer func() { _ = stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	err := runBench(ctx, []string{"--url", "ws://" + addr + "/v1/signal", "--admin", "http://" + admin, "--data", other,
		"--n", "1", "--duration", "3s", "--upgrade-after", "1s", "--out", "",
		"--audio", "../../testdata/audio.ogg", "--video", "../../testdata/video.ivf"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "none of the 1 consultations joined") {
		t.Errorf("every join refused: err %v, want 'none of the 1 consultations joined'\n%s", err, stdout.String())
	}
	t.Log(stdout.String())
	if !strings.Contains(stdout.String(), "joined 0") {
		t.Errorf("the table was not printed before the error:\n%s", stdout.String())
	}
	err = runBench(ctx, []string{"--url", "ws://" + addr + "/v1/signal", "--admin", "http://" + admin, "--data", other,
		"--audio", filepath.Join(t.TempDir(), "missing.ogg")}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--audio") || !strings.Contains(err.Error(), "run the bench from its root") {
		t.Errorf("a missing fixture: err %v, want one naming --audio and where the defaults are", err)
	}
}

// TestBenchCountsServerFullApart: against a server capped at one
// consultation (--max-consultations 1), a bench of two serves one and
// reports the other as refused with server_full, not as a failed join,
// and --client-log names it.
func TestBenchCountsServerFullApart(t *testing.T) {
	data := t.TempDir()
	addr, admin, stop := startServe(t, data, "--max-consultations", "1")
	defer func() { _ = stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, clog := filepath.Join(t.TempDir(), "result.json"), filepath.Join(t.TempDir(), "clients.log")
	var stdout, stderr bytes.Buffer
	err := runBench(ctx, []string{"--url", "ws://" + addr + "/v1/signal", "--admin", "http://" + admin, "--data", data,
		"--n", "2", "--duration", "3s", "--upgrade-after", "1s", "--out", out, "--client-log", clog,
		"--audio", "../../testdata/audio.ogg", "--video", "../../testdata/video.ivf"}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr.String())
	}
	t.Log(stdout.String())
	r, err := bench.ReadResult(out)
	if err != nil {
		t.Fatal(err)
	}
	if c := r.Consultations; c.Joined != 1 || c.Ended != 1 {
		t.Errorf("consultations %+v, want 1 joined and ended", c)
	}
	if len(r.Errors) != 1 || r.Errors["join_refused_server_full"] != 1 {
		t.Errorf("errors %v, want only join_refused_server_full 1", r.Errors)
	}
	if !strings.Contains(stdout.String(), "join_refused_server_full 1") {
		t.Error("the table does not list the refusal")
	}
	// The client log names the refused participant's call and role.
	b, err := os.ReadFile(clog)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`msg="join failed" call=[01] role=patient err=.*server_full`).Match(b) {
		t.Errorf("--client-log has no line for the refused join:\n%s", b)
	}
}
