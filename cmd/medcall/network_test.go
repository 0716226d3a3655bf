package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/bench"
	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// The server's ports inside the test topologies.
const (
	nsHTTPPort = "8443"
	nsUDPPort  = "50000"
	nsTCPPort  = "50001"
	nsAdmin    = "127.0.0.1:9090"
)

// natWorld builds the standard topology (patient behind a home NAT, server
// behind 1:1 NAT announcing its public address) and starts a server in it
// bound to its private address. With noUDP the home router drops all UDP.
func natWorld(t testing.TB, prefix string, noUDP bool, extra ...string) (w *netns.World, data string, stop func()) {
	t.Helper()
	w = netns.NewWorld(t, prefix)
	if noUDP {
		w.Home.DropForwardedUDP()
	}
	data = t.TempDir()
	args := append([]string{"--addr", netns.ServerPrivateIP + ":" + nsHTTPPort, "--admin-addr", nsAdmin, "--data", data,
		"--log-level", "warn", "--udp-port", nsUDPPort, "--tcp-port", nsTCPPort, "--public-ip", netns.ServerPublicIP}, extra...)
	stop = nsServe(t, w.Server, args...)
	return w, data, stop
}

// callResult is what one call scenario measured: the patient's selected
// candidate pair and the timings.
type callResult struct {
	pair                     []string
	joinToFirstAudio         time.Duration
	upgradePre, upgradeReneg time.Duration
}

// goCall holds a recorded call between a patient (Go client, in the
// patient's namespace) and a clinician (Go client, on the internet) through
// the server's public address: audio both ways, then the patient upgrades by
// the pre-negotiated path and the clinician by renegotiation, each seeing the
// other's video; both leave.
func goCall(t testing.TB, w *netns.World, data, scheme, ca string, cid string, patientTCP bool) callResult {
	t.Helper()
	return callAt(t, w, data, scheme+"://"+netns.ServerPublicIP+":"+nsHTTPPort+"/v1/signal", ca, cid, patientTCP)
}

// nsDiff is b - a for two Unix-nanosecond fields (the namespaces share the
// machine's clock).
func nsDiff(a, b string) time.Duration {
	x, _ := strconv.ParseInt(a, 10, 64)
	y, _ := strconv.ParseInt(b, 10, 64)
	return time.Duration(y - x)
}

// checkNetRecording waits for the call's recording and judges it with
// ffprobe and ffmpeg: both participants' audio and video, decoding clean.
func checkNetRecording(t *testing.T, data, cid string) {
	t.Helper()
	webms := waitRecordings(t, data, 1, 30*time.Second)
	if len(webms) != 1 || !strings.Contains(filepath.ToSlash(webms[0]), "/patients/p-1/consultations/"+cid+"/") {
		t.Fatalf("recordings %v, want one under the patient's prefix", webms)
	}
	titles := map[string]string{}
	for _, s := range ffprobe(t, webms[0]).Streams {
		titles[s.Tags.Title] = s.CodecName
	}
	for want, codec := range map[string]string{"patient/audio": "opus", "clinician/audio": "opus", "patient/video": "vp8", "clinician/video": "vp8"} {
		if titles[want] != codec {
			t.Errorf("recording track %s: codec %q, want %s (tracks %v)", want, titles[want], codec, titles)
		}
	}
	decodesClean(t, webms[0])
	verifyCmd(t, data, webms[0])
}

// TestTopologiesGoClient holds a recorded call with Go clients across two
// real topologies (see netns.World). The server is bound to a private
// address behind 1:1 NAT and announces its public address with --public-ip.
//
//	(a) the patient sits behind a home router that masquerades: the call
//	    goes over UDP, the server seeing the patient's NATed address as a
//	    peer-reflexive candidate;
//	(b) the patient's network also drops all UDP: the call goes over the
//	    server's ICE-TCP port.
//
// Each: audio both ways, upgraded by both paths, recording complete.
func TestTopologiesGoClient(t *testing.T) {
	for _, tc := range []struct {
		name, prefix string
		noUDP        bool
		protocol     string
		checkUDP     string // what `medcall check` from the patient's network says of UDP
	}{
		{"a-nat-udp", "i09a-a-", false, "udp", "ok"},
		{"b-udp-blocked-tcp", "i09a-b-", true, "tcp", "FAIL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w, data, stop := natWorld(t, tc.prefix, tc.noUDP)
			r := goCall(t, w, data, "ws", "", "c-"+tc.prefix[5:6], tc.noUDP)
			t.Logf("patient's selected pair %v; join to first audio %v; upgrade prenegotiated %v, renegotiate %v", r.pair, r.joinToFirstAudio, r.upgradePre, r.upgradeReneg)
			if len(r.pair) != 3 || r.pair[2] != tc.protocol {
				t.Errorf("patient's selected pair %v, want %s", r.pair, tc.protocol)
			}
			m := nsScrape(t, w.Server, nsAdmin)
			want := `medcall_ice_selected_pairs_total{candidate_type="prflx",pc="publish",protocol="` + tc.protocol + `"}`
			if m[want] < 1 {
				t.Errorf("the server did not count the patient's publish connection as %s (the NATed address learnt from its checks): %v", want, pairSeries(m))
			}

			// medcall check from the patient's network tells the same story.
			tok := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "check", "--pid", "check", "--cid", "check")
			out, err := w.Client.Func(context.Background(), "check", "--token", tok, "--timeout", "3s", "http://"+netns.ServerPublicIP+":"+nsHTTPPort).Output()
			if err != nil {
				t.Fatalf("check: %v\n%s", err, out)
			}
			t.Logf("medcall check from the patient's network:\n%s", out)
			if l := checkLine(string(out), "UDP"); !strings.HasPrefix(l, "UDP        "+tc.checkUDP) {
				t.Errorf("check's UDP line %q, want %s", l, tc.checkUDP)
			}
			if l := checkLine(string(out), "TCP"); !strings.HasPrefix(l, "TCP        ok") || !strings.Contains(l, netns.ServerPublicIP+":"+nsTCPPort) {
				t.Errorf("check's TCP line %q, want ok via the public address", l)
			}
			stop()
			checkNetRecording(t, data, "c-"+tc.prefix[5:6])
		})
	}
}

func pairSeries(m map[string]float64) []string {
	var out []string
	for k, v := range m {
		if strings.HasPrefix(k, "medcall_ice_selected_pairs_total") {
			out = append(out, k+"="+strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	return out
}

// BenchmarkTopologyJoin measures, across topologies (a) and (b) with Go
// clients, the patient's join to first audio heard (Dial to the first packet
// of the clinician's audio) and the upgrade latency by each path (the
// upgrade call to the first keyframe at the other side), one whole recorded
// call per iteration, reported as p50/p95:
//
//	go test -run XXX -bench TopologyJoin -benchtime 20x ./cmd/medcall/
func BenchmarkTopologyJoin(b *testing.B) {
	for _, tc := range []struct {
		name, prefix string
		noUDP        bool
	}{{"a-nat-udp", "i09a-ba-", false}, {"b-udp-blocked-tcp", "i09a-bb-", true}} {
		b.Run(tc.name, func(b *testing.B) {
			w, data, _ := natWorld(b, tc.prefix, tc.noUDP)
			var join, pre, reneg []time.Duration
			for i := 0; b.Loop(); i++ {
				r := goCall(b, w, data, "ws", "", fmt.Sprintf("c-bench-%d", i), tc.noUDP)
				join, pre, reneg = append(join, r.joinToFirstAudio), append(pre, r.upgradePre), append(reneg, r.upgradeReneg)
			}
			for _, m := range []struct {
				name string
				d    []time.Duration
			}{{"join_to_first_audio", join}, {"upgrade_prenegotiated", pre}, {"upgrade_renegotiate", reneg}} {
				slices.Sort(m.d)
				p50, p95 := bench.Percentile(m.d, 50), bench.Percentile(m.d, 95)
				b.ReportMetric(float64(p50.Microseconds())/1000, m.name+"_p50_ms")
				b.ReportMetric(float64(p95.Microseconds())/1000, m.name+"_p95_ms")
				b.Logf("%s over %d calls: p50 %v, p95 %v", m.name, len(m.d), p50, p95)
			}
		})
	}
}

// TestSTUNDiscovery: a server behind 1:1 NAT given no --public-ip but a
// STUN server on the internet (a real coturn) learns its public address at
// start-up and announces it: the patient behind the home NAT holds a call.
func TestSTUNDiscovery(t *testing.T) {
	turnserver := needTool(t, "turnserver")
	w := netns.NewWorld(t, "i09a-stun-")
	dir := t.TempDir()
	stun := w.Inet.Command(context.Background(), turnserver, "--stun-only", "--listening-ip", netns.InetIP, "--listening-port", "3478",
		"--no-cli", "--no-tls", "--no-dtls", "-c", "/dev/null", "--pidfile", filepath.Join(dir, "turn.pid"),
		"--db", filepath.Join(dir, "turndb"), "--log-file", "stdout", "--simple-log")
	stun.Stdout = tbLog{t, "coturn: "}
	if err := stun.Start(); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	nsServe(t, w.Server, "--addr", netns.ServerPrivateIP+":"+nsHTTPPort, "--admin-addr", nsAdmin, "--data", data,
		"--log-level", "warn", "--udp-port", nsUDPPort, "--stun", netns.InetIP+":3478")
	r := goCall(t, w, data, "ws", "", "c-stun", false)
	if len(r.pair) != 3 || r.pair[2] != "udp" {
		t.Errorf("patient's selected pair %v, want UDP", r.pair)
	}
}

// TestICEInterfaces: with --ice-interfaces the SFU gathers only on the
// allowed interfaces; without it, on every interface. The server has a
// second interface (eth1, 10.77.0.1, to a side network) that must not be
// announced.
func TestICEInterfaces(t *testing.T) {
	w := netns.NewWorld(t, "i09a-if-")
	w.Link(w.Server, "eth1", "10.77.0.1/24", w.Namespace("side"), "eth0", "10.77.0.2/24")
	for _, tc := range []struct {
		allow      []string
		wantDummy  bool
		wantServer bool
	}{{nil, true, true}, {[]string{"--ice-interfaces", "eth0"}, false, true}} {
		data := t.TempDir()
		stop := nsServe(t, w.Server, append([]string{"--addr", "0.0.0.0:" + nsHTTPPort, "--admin-addr", nsAdmin, "--data", data,
			"--log-level", "error", "--udp-port", nsUDPPort, "--tcp-port", nsTCPPort}, tc.allow...)...)
		tok := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")
		// The observer sits beside the server, where every address is reachable.
		p, _ := startPeer(t, w.Server, "observer", peerConfig{URL: "ws://" + netns.ServerPrivateIP + ":" + nsHTTPPort + "/v1/signal", Token: tok})
		cands := strings.Join(p.do("candidates"), " ")
		t.Logf("with %v the server announced %s", tc.allow, cands)
		if strings.Contains(cands, "10.77.0.1") != tc.wantDummy || strings.Contains(cands, netns.ServerPrivateIP) != tc.wantServer {
			t.Errorf("with %v the server announced %q; want the dummy interface: %v, eth0: %v", tc.allow, cands, tc.wantDummy, tc.wantServer)
		}
		p.do("leave")
		stop()
	}
}

// TestPublicIPv6: --public-ip takes an IPv6 address beside the IPv4 one,
// each mapping its own family. The patient's home drops IPv4 UDP, so media
// over UDP can only use IPv6, to the server's public IPv6 address through
// its 1:1 NAT; `medcall check` from the patient's network shows it.
func TestPublicIPv6(t *testing.T) {
	w := netns.NewWorld(t, "i09a-v6-")
	w.EnableIPv6()
	w.Home.Nft(`table ip noudp4 {
	chain filter_fwd { type filter hook forward priority filter - 1; policy accept; meta l4proto udp drop; }
}
`)
	data := t.TempDir()
	nsServe(t, w.Server, "--addr", "0.0.0.0:"+nsHTTPPort, "--admin-addr", nsAdmin, "--data", data, "--log-level", "error",
		"--udp-port", nsUDPPort, "--tcp-port", nsTCPPort, "--public-ip", netns.ServerPublicIP+","+netns.ServerPublicIPv6)
	tok := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "check", "--pid", "check", "--cid", "check")
	out, err := w.Client.Func(context.Background(), "check", "--token", tok, "--timeout", "5s", "http://"+netns.ServerPublicIP+":"+nsHTTPPort).Output()
	if err != nil {
		t.Fatalf("check: %v\n%s", err, out)
	}
	t.Logf("medcall check from the patient's network:\n%s", out)
	if l := checkLine(string(out), "UDP"); !strings.HasPrefix(l, "UDP        ok") || !strings.Contains(l, "["+netns.ServerPublicIPv6+"]:"+nsUDPPort) {
		t.Errorf("check's UDP line %q, want ok via [%s]:%s", l, netns.ServerPublicIPv6, nsUDPPort)
	}
}
