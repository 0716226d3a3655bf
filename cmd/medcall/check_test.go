package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// runCheckCmd runs `medcall check` and returns its output and error.
func runCheckCmd(args ...string) (string, error) {
	out := &syncBuffer{}
	err := run(context.Background(), append([]string{"check"}, args...), out, out)
	return out.String(), err
}

// checkLine finds the line a check printed for one step.
func checkLine(out, name string) string {
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == name {
			return l
		}
	}
	return ""
}

// TestCheck runs `medcall check` against a TLS server with ICE over UDP and
// TCP: one line per step, each path connecting with a round-trip time, TURN
// reported as not offered; a wrong CA, a recorded consultation's token and a
// URL carrying a query are refused with the reason.
func TestCheck(t *testing.T) {
	ca, certFile, keyFile := newTestCertFiles(t, 5, "127.0.0.1")
	data := t.TempDir()
	tcpPort, udpPort := freePort(t), freePort(t)
	addr, admin, _ := startServe(t, data, "--tls-cert", certFile, "--tls-key", keyFile,
		"--tcp-port", strconv.Itoa(tcpPort), "--udp-port", strconv.Itoa(udpPort))
	tok := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "check", "--pid", "check", "--cid", "check")

	out, err := runCheckCmd("--token", tok, "--ca", ca.file, "--timeout", "5s", "https://"+addr)
	t.Logf("medcall check:\n%s", out)
	if err != nil {
		t.Fatalf("check failed: %v", err)
	}
	for name, want := range map[string]string{
		"TLS":       `^TLS +ok +certificate for 127\.0\.0\.1 valid until \d{4}-\d\d-\d\d`,
		"WebSocket": `^WebSocket +ok +joined in \d+ ms`,
		"UDP":       `^UDP +ok +rtt \d+\.\d ms via 127\.0\.0\.1:` + strconv.Itoa(udpPort) + ` \(udp `,
		"TCP":       `^TCP +ok +rtt \d+\.\d ms via 127\.0\.0\.1:` + strconv.Itoa(tcpPort) + ` \(tcp `,
		"TURN-UDP":  `^TURN-UDP +- +not offered by server$`,
		"TURN-TLS":  `^TURN-TLS +- +not offered by server$`,
	} {
		if l := checkLine(out, name); !regexp.MustCompile(want).MatchString(l) {
			t.Errorf("%s line %q, want %s", name, l, want)
		}
	}

	// The server counted each probe's connection by its selected pair.
	m := scrape(t, admin)
	if m[`medcall_ice_selected_pairs_total{candidate_type="host",pc="publish",protocol="udp"}`] < 1 ||
		m[`medcall_ice_selected_pairs_total{candidate_type="prflx",pc="publish",protocol="tcp"}`] < 1 {
		t.Errorf("selected pairs not counted by type and protocol: %v", pairSeries(m))
	}

	// Another CA: the certificate is not trusted.
	other := newTestCA(t)
	out, err = runCheckCmd("--token", tok, "--ca", other.file, "https://"+addr)
	if err == nil || !strings.HasPrefix(checkLine(out, "TLS"), "TLS        FAIL") {
		t.Errorf("an untrusted certificate passed: %v\n%s", err, out)
	}
	// A recorded consultation's token: nothing is probed.
	rec := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "check", "--pid", "check2", "--cid", "check2", "--rec")
	out, err = runCheckCmd("--token", rec, "--ca", ca.file, "https://"+addr)
	if err == nil || !strings.Contains(err.Error(), "recorded") || checkLine(out, "UDP") != "" {
		t.Errorf("a recorded consultation was probed: %v\n%s", err, out)
	}
	// No token in URLs.
	if _, err := runCheckCmd("--token", tok, "https://"+addr+"/?token="+tok); err == nil || !strings.Contains(err.Error(), "must not carry a query") {
		t.Errorf("a URL with a query was accepted: %v", err)
	}
	if _, err := runCheckCmd("https://" + addr); err == nil || !strings.Contains(err.Error(), "token is needed") {
		t.Errorf("check without a token: %v", err)
	}

	// A server without --tcp-port offers no TCP path: "-", not FAIL.
	data2 := t.TempDir()
	addr2, _, _ := startServe(t, data2, "--tls-cert", certFile, "--tls-key", keyFile)
	tok2 := mintCmd(t, "--data", data2, "--role", "clinician", "--sub", "check", "--pid", "check", "--cid", "check")
	out, err = runCheckCmd("--token", tok2, "--ca", ca.file, "--timeout", "3s", "https://"+addr2)
	if l := checkLine(out, "TCP"); err != nil || !regexp.MustCompile(`^TCP +- +not offered by server$`).MatchString(l) {
		t.Errorf("without --tcp-port: %v, TCP line %q\n%s", err, l, out)
	}
}
