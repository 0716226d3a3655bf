package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// e2eDir holds the Playwright script and its npm packages.
const e2eDir = "../../signaling/web/e2e"

func chromiumPath() string {
	if p := os.Getenv("MEDCALL_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// startPiped starts cmd with pipes for the checkpoint dialogue of a test
// script: its stdin (the test's answers) and its stdout (RESULT and
// CHECKPOINT lines).
func startPiped(t testing.TB, cmd *exec.Cmd) (io.WriteCloser, io.ReadCloser) {
	t.Helper()
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return in, out
}

// needBrowserTool skips when a browser-test prerequisite is missing, except
// under CI where that is a failure.
func needBrowserTool(t *testing.T, ok bool, what, install string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing (CI is set, so this fails instead of skipping); %s", what, install)
	}
	t.Skipf("%s is missing; %s", what, install)
}

// audioStates are the states of a call in which run.mjs must have measured
// that a listener hears the other side (RESULT audio_energy who=...): both
// sides audio-only, then after each upgrade path, a downgrade and a reconnect,
// in a page that joined without a user gesture (autoplay policy), and
// in an app that follows only medcall.js's doc comment.
var audioStates = []string{
	"patient-audio-only", "clinician-audio-only", "clinician-upgraded", "patient-upgraded",
	"clinician-downgraded", "clinician-after-reconnect", "patient-after-reconnect",
	"clinician-c2-audio-only", "patient2-audio-only", "clinician-c2-renegotiated", "clinician-c2-downgraded",
	"patient3-no-gesture", "app-audio-only", "app-receiving-video",
}

// needBrowser returns node's path, or skips (fails under CI) without node,
// Playwright or Chromium.
func needBrowser(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	needBrowserTool(t, err == nil, "node", "install Node.js (Debian: apt-get install -y nodejs npm)")
	_, err = os.Stat(filepath.Join(e2eDir, "node_modules", "playwright-core", "package.json"))
	needBrowserTool(t, err == nil, "signaling/web/e2e/node_modules (playwright-core)", "run: cd signaling/web/e2e && npm ci")
	_, err = os.Stat(chromiumPath())
	needBrowserTool(t, err == nil, chromiumPath(), "install it with: apt-get install -y chromium")
	return node
}

// TestBrowser runs signaling/web/e2e/run.mjs (Playwright, headless Chromium
// with a fake camera and each side's microphone playing its own tone) against
// `medcall serve --dev` exactly as a new user runs it: a phone and a desktop
// hold a recorded audio call in which each hears the other's tone where it is
// played (inbound-rtp totalAudioEnergy and a WebAudio analyser on the playing
// element), upgrade by both paths, downgrade, reconnect, hang up; the demo
// page's states (roles, call ended, the other side left, rejoining a recorded
// consultation) are checked at 390x844 and desktop size and by axe-core
// (WCAG 2 A/AA); then the patient's
// replay list shows both recordings newest first and plays one, and another
// patient's list is empty. Every signaling frame is checked against
// signaling/protocol.schema.json.
func TestBrowser(t *testing.T) {
	node := needBrowser(t)
	ffmpeg, err := exec.LookPath("ffmpeg")
	needBrowserTool(t, err == nil, "ffmpeg (makes each side's microphone tone)", "install it with: apt-get install -y ffmpeg")

	// The server runs on one UDP port, and so with the own receive path, so
	// this test (which listens at each side) covers it with a real browser;
	// the other browser tests run pion's receive path (ephemeral ports).
	addr, admin, _, _ := startServeOut(t, t.TempDir(), "--dev", "--udp-port", strconv.Itoa(freeUDPPort(t)))
	artifacts := os.Getenv("MEDCALL_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "medcall-artifacts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "run.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "MEDCALL_URL=http://"+addr, "MEDCALL_ARTIFACTS="+artifacts,
		"MEDCALL_CHROMIUM="+chromiumPath(), "MEDCALL_FFMPEG="+ffmpeg, "MEDCALL_E2E_REPLAY=1")
	cmd.Stderr = logWriter{t, "node stderr: "}
	stdin, stdout := startPiped(t, cmd)
	passed, replayed, schema := false, false, false
	heard := map[string]bool{}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "CHECKPOINT stats "):
			// The page asks the server's metrics to be back to these numbers.
			answer := "ok"
			if err := waitActive(t, admin, strings.Fields(line)[2:]); err != nil {
				answer = "fail " + err.Error()
				t.Errorf("checkpoint %q: %v", line, err)
			}
			_, _ = fmt.Fprintln(stdin, answer)
		case strings.HasPrefix(line, "RESULT click_to_first_frame "):
			t.Logf("click-to-first-frame: %s", strings.TrimPrefix(line, "RESULT click_to_first_frame "))
		case strings.HasPrefix(line, "RESULT audio_energy who="):
			heard[strings.Fields(strings.TrimPrefix(line, "RESULT audio_energy who="))[0]] = true
			t.Log(line)
		case strings.HasPrefix(line, "RESULT schema ") && strings.HasSuffix(line, " faults=0"):
			schema = true
			t.Log(line)
		case strings.HasPrefix(line, "RESULT replay ok=1"):
			replayed = true
			t.Log(line)
		case line == "E2E PASS":
			passed = true
			t.Log(line)
		default:
			t.Log(line)
		}
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("browser test failed (exit: %v); see the node output above and screenshots in %s", err, artifacts)
	}
	if !replayed {
		t.Error("the replay part of the browser test did not run")
	}
	for _, s := range audioStates {
		if !heard[s] {
			t.Errorf("the browser test did not show that audio is heard in state %s", s)
		}
	}
	if !schema {
		t.Error("the browser test did not check the signaling frames against the schema")
	}
	ownPathTookNearlyAll(t, nil, scrape(t, admin))
}

// ownPathTookNearlyAll checks, between two scrapes of a server on one UDP
// port (before may be nil: from the start), that the own receive path took
// nearly all the RTP the server received, and the own send path sent nearly
// all it forwarded. (What is forwarded before a subscribe connection's
// DTLS handshake is over, pion drops.)
func ownPathTookNearlyAll(t *testing.T, before, m map[string]float64) {
	t.Helper()
	d := func(keys ...string) (v float64) {
		for _, k := range keys {
			v += m[k] - before[k]
		}
		return v
	}
	own, in := d("medcall_own_path_packets_total"), d(`medcall_rtp_packets_received_total{kind="audio"}`, `medcall_rtp_packets_received_total{kind="video"}`)
	sent, out := d("medcall_own_path_sent_packets_total"), d(`medcall_rtp_packets_forwarded_total{kind="audio"}`, `medcall_rtp_packets_forwarded_total{kind="video"}`)
	t.Logf("own receive path: %.0f of %.0f RTP packets received; own send path: %.0f sent, %.0f forwarded", own, in, sent, out)
	if own < 0.9*in || in == 0 {
		t.Errorf("the own receive path took %.0f of %.0f RTP packets received; want nearly all", own, in)
	}
	if sent < 0.9*out || out == 0 {
		t.Errorf("the own send path sent %.0f packets, %.0f were forwarded; want nearly all", sent, out)
	}
}

// waitActive waits until medcall_consultations_active and
// medcall_participants_active equal want.
func waitActive(t *testing.T, admin string, want []string) error {
	if len(want) != 2 {
		return fmt.Errorf("checkpoint wants two numbers, got %v", want)
	}
	c, err1 := strconv.ParseFloat(want[0], 64)
	p, err2 := strconv.ParseFloat(want[1], 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("checkpoint numbers %v are not integers", want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := scrape(t, admin)
		gc, gp := m["medcall_consultations_active"], m["medcall_participants_active"]
		if gc == c && gp == p {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("metrics say %v consultations and %v participants, want %v and %v", gc, gp, c, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logWriter logs each write through t.Log with a prefix.
type logWriter struct {
	t      *testing.T
	prefix string
}

func (w logWriter) Write(b []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.t.Log(w.prefix + l)
	}
	return len(b), nil
}
