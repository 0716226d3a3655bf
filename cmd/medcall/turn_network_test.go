package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/bench"
	"github.com/medcall/medcall/sfu/turn/coturntest"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// The relay's addresses in topologies (c) and (d).
const (
	turnPublicIP  = "172.29.0.11" // (c) the built-in relay's own public IP, 1:1 NATed to turnPrivateIP
	turnPrivateIP = "10.9.1.3"    // (c) second address of the server VM
	coturnIP      = "172.31.0.2"  // (d) a coturn host on the internet
)

// only443World is the standard World whose home network lets nothing out
// but TCP to port 443 (a hospital network that only allows HTTPS). The
// server VM gets a second address with its own public IP for TURN, since
// HTTPS holds 443 on the first; a coturn host sits on the internet.
func only443World(t *testing.T, prefix string) (w *netns.World, coturnNS *netns.NS) {
	t.Helper()
	w = netns.NewWorld(t, prefix)
	w.Home.Nft(`table inet only443 {
	chain allow443 {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "lan" tcp dport 443 accept
	}
}
`)
	w.Server.Addr("eth0", turnPrivateIP+"/24")
	w.Gateway.Addr("wan", turnPublicIP+"/32")
	w.Gateway.NAT1to1(turnPublicIP, turnPrivateIP)
	coturnNS = w.Namespace("turn")
	w.Link(w.Inet, "turn", "172.31.0.1/24", coturnNS, "eth0", coturnIP+"/24")
	coturnNS.Route("default", "172.31.0.1")
	return w, coturnNS
}

// turnWorld is a running server in only443World: signaling over WSS on 443
// of the server's main address, media only through TURN over TLS on 443:
// the built-in relay on the VM's second address (builtin), else a coturn
// host on the internet. It returns the server's data directory, the test
// CA's file, coturn (nil for the built-in relay) and serve's stop.
type turnWorld struct {
	*netns.World
	data, ca string
	coturn   *coturntest.Server
	stop     func()
}

func startTURNWorld(t *testing.T, prefix string, builtin bool) *turnWorld {
	t.Helper()
	w, coturnNS := only443World(t, prefix)
	ca, cert, key := newTestCertFiles(t, 2, netns.ServerPublicIP, turnPublicIP, coturnIP)
	t.Setenv("SSL_CERT_FILE", ca.file) // the Go client's TURN/TLS (pion) trusts the system roots
	tw := &turnWorld{World: w, data: t.TempDir(), ca: ca.file}
	args := []string{"--addr", netns.ServerPrivateIP + ":443", "--admin-addr", nsAdmin, "--data", tw.data,
		"--log-level", "warn", "--udp-port", nsUDPPort, "--public-ip", netns.ServerPublicIP,
		"--tls-cert", cert, "--tls-key", key}
	if builtin {
		args = append(args, "--turn", "--turn-ip", turnPrivateIP, "--turn-host", turnPublicIP, "--turn-tls-port", "443",
			"--turn-allow-private", netns.ServerPrivateIP+"/32")
	} else {
		secret := "coturn-secret-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		tw.coturn = coturntest.Start(t, coturntest.Config{ListenIP: coturnIP, Port: 3478, TLSPort: 443, Cert: cert, Key: key,
			Secret: secret, Peers: []string{netns.ServerPublicIP}, Command: coturnNS.Command})
		args = append(args, "--turn-url", "turns:"+coturnIP+":443?transport=tcp,turn:"+coturnIP+":3478?transport=udp",
			"--turn-secret", secret)
	}
	tw.stop = nsServe(t, w.Server, args...)
	return tw
}

// checkRelayed checks the server saw the patient's publish connection
// relayed, and that the relay in use (built-in or coturn) did the relaying.
func (tw *turnWorld) checkRelayed(t *testing.T) {
	t.Helper()
	m := nsScrape(t, tw.Server, nsAdmin)
	if m[`medcall_ice_selected_pairs_total{candidate_type="relay",pc="publish",protocol="udp"}`] < 1 {
		t.Errorf("the server did not count the patient's publish connection as relayed: %v", pairSeries(m))
	}
	builtin := m[`medcall_turn_relayed_bytes_total{direction="to_sfu"}`]
	if tw.coturn == nil && builtin == 0 {
		t.Error("the built-in relay relayed nothing")
	}
	if tw.coturn != nil && (builtin != 0 || !strings.Contains(tw.coturn.Output(), "ALLOCATE processed, success")) {
		t.Errorf("coturn did not relay (its log has no allocation, or the built-in relay relayed %v bytes)", builtin)
	}
}

var turnTopologies = []struct {
	name, prefix string
	builtin      bool
}{
	{"c-only-443-builtin-turn", "i09b-c-", true},
	{"d-only-443-coturn", "i09b-d-", false},
}

// TestTopologiesTURN holds a recorded call whose patient sits behind a
// firewall that only lets TCP to port 443 out: no UDP, no ICE-TCP port, so
// the only way for media is TURN over TLS on 443, with signaling over WSS on
// 443 of the server's main address.
//
//	(c) the built-in relay on its own IP (--turn-ip), port 443, sharing the
//	    server's certificate;
//	(d) an operator's coturn on another host, port 443, credentials minted
//	    with --turn-url/--turn-secret.
//
// Go clients (the clinician on the internet); audio both ways, upgraded by
// both paths, recording complete. MEDCALL_TURN_JOINS=N adds N more joins to
// measure join-to-first-audio.
func TestTopologiesTURN(t *testing.T) {
	for _, tc := range turnTopologies {
		t.Run(tc.name, func(t *testing.T) {
			tw := startTURNWorld(t, tc.prefix, tc.builtin)
			url := "wss://" + netns.ServerPublicIP + ":443/v1/signal"
			cid := "c-" + tc.prefix[5:6]
			r := callAt(t, tw.World, tw.data, url, tw.ca, cid, false)
			t.Logf("patient's selected pair %v; join to first audio %v; upgrade prenegotiated %v, renegotiate %v",
				r.pair, r.joinToFirstAudio, r.upgradePre, r.upgradeReneg)
			if len(r.pair) != 3 || r.pair[0] != "relay" {
				t.Errorf("patient's selected pair %v, want a relay candidate", r.pair)
			}
			tw.checkRelayed(t)
			if n, _ := strconv.Atoi(os.Getenv("MEDCALL_TURN_JOINS")); n > 0 {
				measureJoins(t, tw.World, tw.data, url, tw.ca, n, tc.prefix)
			}
			tw.stop()
			checkNetRecording(t, tw.data, cid)
		})
	}
}

// TestTopologiesTURNBrowser is TestTopologiesTURN with the patient in real
// headless Chromium on the demo page (signaling/web/e2e/netns.mjs): the page
// takes joined.iceServers and relays over TURN/TLS on 443; audio energy in
// what the patient hears, both upgrade paths, recording complete.
func TestTopologiesTURNBrowser(t *testing.T) {
	node := needBrowser(t)
	for _, tc := range turnTopologies {
		t.Run(tc.name, func(t *testing.T) {
			tw := startTURNWorld(t, tc.prefix+"b", tc.builtin)
			cid := "c-b" + tc.prefix[5:6]
			base := "https://" + netns.ServerPublicIP + ":443"
			pat := mintCmd(t, "--data", tw.data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid, "--rec")
			doc := mintCmd(t, "--data", tw.data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid, "--rec")
			dc, _ := startPeer(t, tw.Inet, "clinician", peerConfig{URL: "wss://" + netns.ServerPublicIP + ":443/v1/signal", Token: doc, Peer: "p-1", Video: true, CA: tw.ca})
			results := browserPatient(t, tw.Client, node, base, pat, dc, 1)
			t.Logf("Chromium patient, %s: %v", tc.name, results)
			pairs := strings.Fields(results["pairs"])
			if len(pairs) == 0 {
				t.Error("the browser reported no selected candidate pair")
			}
			for _, p := range pairs {
				if !strings.HasPrefix(p, "relay/") {
					t.Errorf("the browser's selected pair %s, want a relay candidate", p)
				}
			}
			tw.checkRelayed(t)
			if n, _ := strconv.Atoi(os.Getenv("MEDCALL_TURN_JOINS")); n > 1 {
				measureBrowserJoins(t, tw, node, base, n)
			}
			tw.stop()
			checkNetRecording(t, tw.data, cid)
		})
	}
}

// measureBrowserJoins has the Chromium patient join and hang up n times in
// one page (netns.mjs's bench mode) and logs join-to-first-audio p50/p95.
func measureBrowserJoins(t *testing.T, tw *turnWorld, node, base string, n int) {
	t.Helper()
	pat := mintCmd(t, "--data", tw.data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "m-browser")
	doc := mintCmd(t, "--data", tw.data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "m-browser")
	dc, _ := startPeer(t, tw.Inet, "clinician", peerConfig{URL: "wss://" + netns.ServerPublicIP + ":443/v1/signal", Token: doc, Peer: "p-1", CA: tw.ca})
	var ds []time.Duration
	for _, v := range strings.Fields(browserPatient(t, tw.Client, node, base, pat, dc, n)["join_to_first_audio"]) {
		ms, _ := strconv.Atoi(strings.TrimPrefix(v, "ms="))
		ds = append(ds, time.Duration(ms)*time.Millisecond)
	}
	slices.Sort(ds)
	t.Logf("Chromium join to first audio over %d joins: p50 %v p95 %v (min %v max %v)", len(ds),
		bench.Percentile(ds, 50), bench.Percentile(ds, 95), ds[0], ds[len(ds)-1])
}

// callAt holds a recorded call through the server's signaling URL url: the
// patient (in w.Client) and the clinician (on the internet) hear each other
// (the first packet, then two seconds' worth), then upgrade by the
// pre-negotiated path and by renegotiation, and leave.
func callAt(t testing.TB, w *netns.World, data, url, ca, cid string, patientTCP bool) callResult {
	t.Helper()
	pat := mintTB(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid, "--rec")
	doc := mintTB(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid, "--rec")
	dc, _ := startPeer(t, w.Inet, "clinician", peerConfig{URL: url, Token: doc, Peer: "p-1", Video: true, CA: ca})
	pc, joined := startPeer(t, w.Client, "patient", peerConfig{URL: url, Token: pat, Peer: "d-1", Video: true, Prenegotiate: true, ICETCP: patientTCP, CA: ca})
	var r callResult
	first := pc.do("wait audio 1")
	r.joinToFirstAudio = nsDiff(joined[0], first[0])
	pc.do("wait audio 100")
	dc.do("wait audio 100")
	r.pair = pc.do("pair")
	up := pc.do("upgrade " + signaling.PathPrenegotiated)
	got := dc.do("wait video 30")
	r.upgradePre = nsDiff(up[0], got[1])
	up = dc.do("upgrade " + signaling.PathRenegotiate)
	got = pc.do("wait video 30")
	r.upgradeReneg = nsDiff(up[0], got[1])
	pc.do("leave")
	dc.do("leave")
	return r
}

// measureJoins holds n more (unrecorded) calls and logs the patient's
// join-to-first-audio p50/p95.
func measureJoins(t *testing.T, w *netns.World, data, url, ca string, n int, prefix string) {
	t.Helper()
	var joins []time.Duration
	for i := 0; i < n; i++ {
		cid := "m-" + prefix[5:6] + "-" + strconv.Itoa(i)
		pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid)
		doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid)
		dc, _ := startPeer(t, w.Inet, "clinician", peerConfig{URL: url, Token: doc, Peer: "p-1", CA: ca})
		pc, joined := startPeer(t, w.Client, "patient", peerConfig{URL: url, Token: pat, Peer: "d-1", CA: ca})
		first := pc.do("wait audio 1")
		joins = append(joins, nsDiff(joined[0], first[0]))
		dc.do("wait audio 1")
		pc.do("leave")
		dc.do("leave")
	}
	slices.Sort(joins)
	t.Logf("join to first audio over %d joins: p50 %v p95 %v (min %v max %v)", n,
		bench.Percentile(joins, 50), bench.Percentile(joins, 95), joins[0], joins[len(joins)-1])
}
