package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var servingLine = regexp.MustCompile(`serving on https?://([0-9.:]+) .* admin on http://([0-9.:]+)`)

// startServe runs `medcall serve` in-process on ephemeral ports and returns
// its addresses and a stop function that returns serve's error.
func startServe(t *testing.T, data string, extra ...string) (addr, admin string, stop func() error) {
	t.Helper()
	addr, admin, stop, _ = startServeOut(t, data, extra...)
	return addr, admin, stop
}

// startServeOut is startServe that also returns what serve prints.
func startServeOut(t *testing.T, data string, extra ...string) (addr, admin string, stop func() error, out *syncBuffer) {
	t.Helper()
	return startServeLog(t, data, io.Discard, append([]string{"--admin-addr", "127.0.0.1:0"}, extra...)...)
}

// startServeLog is startServeOut with serve's log going to logw; extra must
// include --admin-addr.
func startServeLog(t *testing.T, data string, logw io.Writer, extra ...string) (addr, admin string, stop func() error, out *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out = &syncBuffer{}
	done := make(chan error, 1)
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--data", data, "--log-level", "warn"}, extra...)
	go func() { done <- run(ctx, args, out, logw) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := servingLine.FindStringSubmatch(out.String()); m != nil {
			addr, admin = m[1], m[2]
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("serve exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("serve did not start; output: %s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "medcall token") {
		t.Errorf("serve does not say how to mint tokens: %s", out.String())
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return addr, admin, stop, out
}

func get(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func mintCmd(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), append([]string{"token"}, args...), &out, io.Discard); err != nil {
		t.Fatalf("token %v: %v", args, err)
	}
	return strings.TrimSpace(out.String())
}

// TestServeDefaultsCallAndShutdown is the new user's path: serve on the
// embedded defaults, mint two tokens with `medcall token`, hold an audio call
// upgraded to video, stop with a signal (context cancel), restart with the
// same dev key.
func TestServeDefaultsCallAndShutdown(t *testing.T) {
	data := t.TempDir()
	addr, admin, stop := startServe(t, data)
	if code := get(t, "http://"+admin+"/healthz"); code != 200 {
		t.Errorf("/healthz: %d", code)
	}
	if code := get(t, "http://"+admin+"/readyz"); code != 200 {
		t.Errorf("/readyz: %d", code)
	}
	keyFile := filepath.Join(data, "keys", "token-dev.json")
	key1, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("dev key not generated: %v", err)
	}
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, true)
	if _, err := dc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 25 }); err != nil {
		t.Fatalf("no audio: %v", err)
	}
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.WaitReceived(ctx, "p-1", "video", func(s client.TrackStats) bool { return s.Keyframes > 0 }); err != nil {
		t.Fatalf("no video after upgrade: %v", err)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v on shutdown", err)
	}
	if _, err := dc.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye && m.Reason == "shutdown" }); err != nil {
		t.Errorf("no bye on shutdown: %v", err)
	}

	// Second start reuses the dev key, so tokens minted before still verify.
	_, _, stop2 := startServe(t, data)
	// While it runs, nothing else may work on the same data directory.
	if err := run(context.Background(), []string{"recover", "--data", data}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("recover on a live data directory: %v", err)
	}
	key2, _ := os.ReadFile(keyFile)
	if !bytes.Equal(key1, key2) {
		t.Error("dev key regenerated on the second start")
	}
	_ = stop2()
}

func TestServeUDPPortAndEnv(t *testing.T) {
	data := t.TempDir()
	t.Setenv("MEDCALL_UDP_PORT", "0") // the environment is read...
	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	port := udp.LocalAddr().(*net.UDPAddr).Port
	udp.Close()
	addr, _, _ := startServe(t, data, "--udp-port", strconv.Itoa(port)) // ...but the command line wins
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, false)
	if _, err := dc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 25 }); err != nil {
		t.Fatalf("no audio over the single UDP port: %v", err)
	}
	// Every server candidate is on that one port.
	for _, c := range append(pc.ServerCandidates(), dc.ServerCandidates()...) {
		if f := strings.Fields(c); len(f) < 6 || f[5] != strconv.Itoa(port) {
			t.Errorf("server candidate %q is not on port %d", c, port)
		}
	}
	if len(pc.ServerCandidates()) == 0 {
		t.Error("no server candidates seen")
	}
	// And the server holds the port.
	if c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}); err == nil {
		c.Close()
		t.Errorf("UDP port %d is not held by the server", port)
	}
}

func TestFlagsAndEnv(t *testing.T) {
	t.Setenv("MEDCALL_MAX_PARTICIPANTS", "7")
	cfg, parseArgs := serveFlags(io.Discard)
	if err := parseArgs([]string{"--rate", "9"}); err != nil {
		t.Fatal(err)
	}
	if cfg.maxParticipants != 7 || cfg.rate != 9 || cfg.addr != "127.0.0.1:8080" {
		t.Errorf("config %+v", cfg)
	}
	t.Setenv("MEDCALL_UDP_PORT", "not-a-number")
	_, parseArgs = serveFlags(io.Discard)
	if err := parseArgs(nil); err == nil || !strings.Contains(err.Error(), "MEDCALL_UDP_PORT") {
		t.Errorf("bad env value: %v", err)
	}
	var help bytes.Buffer
	_, parseArgs = serveFlags(&help)
	_ = parseArgs([]string{"--help"})
	for _, want := range []string{"--udp-port", "MEDCALL_UDP_PORT", "default 127.0.0.1:8080"} {
		if !strings.Contains(help.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if err := run(context.Background(), []string{"token", "--role", "patient"}, io.Discard, io.Discard); err == nil {
		t.Error("token without --sub accepted")
	}
	if err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard); err == nil {
		t.Error("unknown command accepted")
	}
}

// TestServeDevPrintsLinksAndServesDemo: --dev prints two ready links (with no
// token in them), serves the demo page and mints tokens for loopback callers.
func TestServeDevPrintsLinksAndServesDemo(t *testing.T) {
	addr, _, _, out := startServeOut(t, t.TempDir(), "--dev")
	links := regexp.MustCompile(`(?m)^\s+(patient|clinician):\s+(http://\S+)$`).FindAllStringSubmatch(out.String(), -1)
	if len(links) != 2 {
		t.Fatalf("want two links, got: %s", out.String())
	}
	for _, l := range links {
		if strings.Contains(l[2], "token") || strings.Contains(l[2], "eyJ") {
			t.Errorf("link carries a token: %s", l[2])
		}
		if code := get(t, l[2]); code != 200 {
			t.Errorf("GET %s: %d", l[2], code)
		}
	}
	resp, err := http.Post("http://"+addr+"/dev/token", "application/json",
		strings.NewReader(`{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != 200 || strings.Count(body.Token, ".") != 2 {
		t.Errorf("dev token: %d %q", resp.StatusCode, body.Token)
	}
}

// joinCall dials a patient (with a camera, pre-negotiated, when video) and a
// clinician (audio only) into the server at addr; both close with the test.
func joinCall(t *testing.T, ctx context.Context, addr, patTok, docTok string, video bool) (pc, dc *client.Client) {
	t.Helper()
	url := "ws://" + addr + "/v1/signal"
	o := client.Options{URL: url, Token: patTok, AudioFile: "../../testdata/audio.ogg"}
	if video {
		o.VideoFile, o.Prenegotiate = "../../testdata/video.ivf", true
	}
	pc, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pc.Close)
	dc, err = client.Dial(ctx, client.Options{URL: url, Token: docTok, AudioFile: "../../testdata/audio.ogg"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dc.Close)
	return pc, dc
}

// TestServeRefusesOutOfRangeLimits: a negative cap or CPU wait is a
// mistake, not "off", and so is a UDP coalescing wait below 0 or above
// 10 ms: serve stops with an error naming the option.
func TestServeRefusesOutOfRangeLimits(t *testing.T) {
	for _, arg := range [][2]string{{"--max-consultations", "-1"}, {"--admit-cpu-wait", "-1ms"}, {"--udp-coalesce", "-1ms"}, {"--udp-coalesce", "11ms"}} {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"serve", arg[0], arg[1], "--data", t.TempDir()}, &stdout, &stderr)
		if err == nil || !strings.Contains(err.Error(), arg[0]+" "+arg[1]) {
			t.Errorf("serve %s %s: %v, want an error naming it", arg[0], arg[1], err)
		}
	}
}

// TestServeAdmitCPUWaitRefusesNewConsultations: with a CPU wait no server
// meets (--admit-cpu-wait 1ns), serve reports itself starved once its
// watcher has a window and refuses a join that would start a consultation
// with server_full.
func TestServeAdmitCPUWaitRefusesNewConsultations(t *testing.T) {
	data := t.TempDir()
	addr, admin, stop := startServe(t, data, "--admit-cpu-wait", "1ns")
	defer func() { _ = stop() }()
	deadline := time.Now().Add(20 * time.Second)
	for scrape(t, admin)["medcall_admission_cpu_starved"] != 1 {
		if time.Now().After(deadline) {
			t.Fatal("medcall_admission_cpu_starved never became 1")
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := joinOnce(ctx, addr, mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1"))
	var pe *client.ProtocolError
	if !errors.As(err, &pe) || pe.Code != signaling.CodeServerFull {
		t.Fatalf("join while starved: %v, want %s", err, signaling.CodeServerFull)
	}
}
