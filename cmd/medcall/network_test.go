package main

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

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
func natWorld(t *testing.T, prefix string, noUDP bool, extra ...string) (w *netns.World, data string, stop func()) {
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

// goCall holds a recorded call between a patient (Go client, in the
// patient's namespace) and a clinician (Go client, on the internet): audio
// both ways, then the patient upgrades by the pre-negotiated path and the
// clinician by renegotiation, each seeing the other's video; both leave.
// It returns the patient's selected pair and the timings.
type callResult struct {
	pair                     []string
	joinToFirstAudio         time.Duration
	upgradePre, upgradeReneg time.Duration
}

func goCall(t *testing.T, w *netns.World, data, scheme, ca string, cid string, patientTCP bool) callResult {
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
	}{
		{"a-nat-udp", "i09a-a-", false, "udp"},
		{"b-udp-blocked-tcp", "i09a-b-", true, "tcp"},
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
