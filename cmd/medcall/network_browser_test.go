package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/bench"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// TestTopologiesBrowser is TestTopologiesGoClient with the patient in real
// headless Chromium (fake camera and microphone) on the demo page, served
// over HTTPS: signaling/web/e2e/netns.mjs runs inside the patient's
// namespace; the clinician is a Go client on the internet. Audio both ways
// (energy in what the patient's browser hears), the patient upgrades by the
// pre-negotiated path and the clinician by renegotiation, each seeing the
// other's video; the recording is complete.
func TestTopologiesBrowser(t *testing.T) {
	node := needBrowser(t)
	for _, tc := range []struct {
		name, prefix string
		noUDP        bool
		protocol     string
	}{
		{"a-nat-udp", "i09a-ca-", false, "udp"},
		{"b-udp-blocked-tcp", "i09a-cb-", true, "tcp"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, cert, key := newTestCertFiles(t, 1, netns.ServerPublicIP)
			w, data, stop := natWorld(t, tc.prefix, tc.noUDP, "--tls-cert", cert, "--tls-key", key)
			cid := "c-" + tc.prefix[5:7]
			base := "https://" + netns.ServerPublicIP + ":" + nsHTTPPort
			pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid, "--rec")
			doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid, "--rec")
			dc, _ := startPeer(t, w.Inet, "clinician", peerConfig{URL: "wss" + strings.TrimPrefix(base, "https") + "/v1/signal", Token: doc, Peer: "p-1", Video: true, CA: ca.file})
			results := browserPatient(t, w.Client, node, base, pat, dc, 1)
			t.Logf("Chromium patient, %s: %v", tc.name, results)
			for _, p := range strings.Fields(results["pairs"]) {
				if !strings.HasSuffix(p, "/"+tc.protocol) {
					t.Errorf("the browser's selected pair %s, want %s", p, tc.protocol)
				}
			}
			if results["pairs"] == "" {
				t.Error("the browser reported no selected candidate pair")
			}
			stop()
			checkNetRecording(t, data, cid)
		})
	}
}

// browserPatient runs netns.mjs inside ns and does the clinician's part of
// each checkpoint with dc. It returns the script's RESULT lines by name.
//
// With joins > 1 the script only joins and hangs up that many times; the
// results are then the join_to_first_audio of each, space-separated.
func browserPatient(t testing.TB, ns *netns.NS, node, base, token string, dc *peerProc, joins int) map[string]string {
	t.Helper()
	artifacts := os.Getenv("MEDCALL_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join(os.TempDir(), "medcall-artifacts")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := ns.Command(ctx, node, "netns.mjs")
	cmd.Dir = e2eDir
	cmd.Env = append(os.Environ(), "MEDCALL_URL="+base, "MEDCALL_TOKEN="+token,
		"MEDCALL_CHROMIUM="+chromiumPath(), "MEDCALL_ARTIFACTS="+artifacts, fmt.Sprintf("MEDCALL_JOINS=%d", joins))
	cmd.Stderr = tbLog{t, "node stderr: "}
	stdin, stdout := startPiped(t, cmd)
	results := map[string]string{}
	passed := false
	heard := uint64(0)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "CHECKPOINT":
			answer := "ok"
			switch f[1] {
			case "hear_patient": // the clinician receives 100 more packets of the patient's audio
				got := dc.do(fmt.Sprintf("wait audio %d", heard+100))
				heard, _ = strconv.ParseUint(got[2], 10, 64)
			case "see_patient_video":
				got := dc.do("wait video 30")
				answer += " " + nsToMs(got[1])
			case "clinician_upgrade":
				answer += " " + nsToMs(dc.do("upgrade " + signaling.PathRenegotiate)[0])
			case "leave":
				dc.do("leave")
			default:
				answer = "fail unknown checkpoint " + f[1]
			}
			_, _ = fmt.Fprintln(stdin, answer)
		case len(f) >= 2 && f[0] == "RESULT" && results[f[1]] != "":
			results[f[1]] += " " + strings.Join(f[2:], " ")
		case len(f) >= 2 && f[0] == "RESULT":
			results[f[1]] = strings.Join(f[2:], " ")
		case line == "E2E PASS":
			passed = true
		default:
			t.Log("node: " + line)
		}
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil || !passed {
		t.Fatalf("the browser patient failed (exit: %v); see the node output above and %s", err, artifacts)
	}
	return results
}

// nsToMs turns Unix nanoseconds into the page's Date.now() milliseconds.
func nsToMs(ns string) string {
	n, _ := strconv.ParseInt(ns, 10, 64)
	return strconv.FormatFloat(float64(n)/1e6, 'f', 3, 64)
}

// BenchmarkTopologyBrowserJoin measures a Chromium patient's join to first
// audio (the click on Join to the first audio packet from the clinician, a
// Go client) across topologies (a) and (b), over b.N joins in one page,
// reported as p50/p95:
//
//	go test -run XXX -bench TopologyBrowserJoin -benchtime 20x ./cmd/medcall/
func BenchmarkTopologyBrowserJoin(b *testing.B) {
	node, err := exec.LookPath("node")
	if err != nil {
		b.Skip("node is missing")
	}
	for _, tc := range []struct {
		name, prefix string
		noUDP        bool
	}{{"a-nat-udp", "i09a-bc-", false}, {"b-udp-blocked-tcp", "i09a-bd-", true}} {
		b.Run(tc.name, func(b *testing.B) {
			ca, cert, key := newTestCertFiles(b, 1, netns.ServerPublicIP)
			w, data, _ := natWorld(b, tc.prefix, tc.noUDP, "--tls-cert", cert, "--tls-key", key)
			base := "https://" + netns.ServerPublicIP + ":" + nsHTTPPort
			pat := mintTB(b, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-bench")
			doc := mintTB(b, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-bench")
			dc, _ := startPeer(b, w.Inet, "clinician", peerConfig{URL: "wss" + strings.TrimPrefix(base, "https") + "/v1/signal", Token: doc, Peer: "p-1", CA: ca.file})
			b.ResetTimer()
			var ds []time.Duration
			for _, v := range strings.Fields(browserPatient(b, w.Client, node, base, pat, dc, max(b.N, 2))["join_to_first_audio"]) {
				ms, _ := strconv.Atoi(strings.TrimPrefix(v, "ms="))
				ds = append(ds, time.Duration(ms)*time.Millisecond)
			}
			slices.Sort(ds)
			p50, p95 := bench.Percentile(ds, 50), bench.Percentile(ds, 95)
			b.ReportMetric(float64(p50.Milliseconds()), "join_to_first_audio_p50_ms")
			b.ReportMetric(float64(p95.Milliseconds()), "join_to_first_audio_p95_ms")
			b.Logf("Chromium join to first audio over %d joins: p50 %v, p95 %v", len(ds), p50, p95)
		})
	}
}
