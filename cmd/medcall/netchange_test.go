package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/bench"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// netChanges is how many times the network-change test moves the patient:
// MEDCALL_NETCHANGE_N (deploy/netchange.sh sets 10) or 3 in CI.
func netChanges() int {
	if n, err := strconv.Atoi(os.Getenv("MEDCALL_NETCHANGE_N")); err == nil && n > 0 {
		return n
	}
	return 3
}

// moveClient gives the patient's machine a new address, as a phone moving
// from one network to another does: the old address is deleted (every
// 5-tuple using it is dead, the home router maps the new one to a new
// public port) and the default route is put back through the new one.
func moveClient(t *testing.T, w *netns.World, from, to string) {
	t.Helper()
	w.Client.Run("sh", "-c", fmt.Sprintf("ip addr del %s/24 dev eth0 && ip addr add %s/24 dev eth0 && ip route replace default via 10.9.2.1", from, to))
}

// TestNetworkChangeGoClient holds a recorded call between a patient (Go
// client behind a home router) and a clinician (Go client on the internet)
// and changes the patient's address netChanges() times mid-call. Each time
// the patient notices by itself, resumes on a new signaling socket and
// restarts ICE; the test asserts that each side hears the other again (the
// decoded level of the second after media came back, not packet counts),
// that the clinician never saw the patient leave or join, that the server
// counted the restarts, and that the recording is one file whose signed
// manifest notes every restart. It logs how long media took to come back
// (p50/p95; deploy/netchange.sh runs 10 changes).
func TestNetworkChangeGoClient(t *testing.T) {
	w, data, stop := natWorld(t, "h13i-a-", false)
	url := "ws://" + netns.ServerPublicIP + ":" + nsHTTPPort + "/v1/signal"
	cid := "c-nc"
	pat := mintTB(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid, "--rec")
	doc := mintTB(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid, "--rec")
	dc, _ := startPeer(t, w.Inet, "clinician", peerConfig{URL: url, Token: doc, Peer: "p-1", KeepAudio: true})
	pc, _ := startPeer(t, w.Client, "patient", peerConfig{URL: url, Token: pat, Peer: "d-1", KeepAudio: true})
	pc.do("wait audio 100")
	dc.do("wait audio 100")

	n := netChanges()
	var back []time.Duration
	addr := netns.ClientIP
	for i := range n {
		time.Sleep(2 * time.Second) // a steady call before each change
		next := fmt.Sprintf("10.9.2.%d", 10+i)
		at := time.Now()
		moveClient(t, w, addr, next)
		addr = next
		for _, who := range []*peerProc{dc, pc} {
			h := who.do(fmt.Sprintf("heard %d", at.UnixNano()))
			d := nsDiff(strconv.FormatInt(at.UnixNano(), 10), h[0])
			after, _ := strconv.ParseFloat(h[1], 64)
			before, _ := strconv.ParseFloat(h[2], 64)
			silence := time.Duration(atoi(h[3])) * time.Millisecond
			t.Logf("change %d: %s heard nothing for %v, until %v after the change; level %.1f dBFS after, %.1f dBFS before",
				i+1, who.name, silence, d.Round(time.Millisecond), after, before)
			if after < before-6 || after < -45 {
				t.Errorf("change %d: %s hears %.1f dBFS after the change, %.1f dBFS before: the other's audio did not come back", i+1, who.name, after, before)
			}
			back = append(back, silence)
		}
	}
	// The clinician joined first: it saw the patient join once, and never leave.
	if got := dc.do("churn"); got[0] != "1" || got[1] != "0" {
		t.Errorf("the clinician saw the patient join %s times and leave %s times, want 1 and 0", got[0], got[1])
	}
	if got := pc.do("restarts"); atoi(got[0]) < n || atoi(got[1]) < n {
		t.Errorf("the patient made %s ICE restarts and %s resumes for %d changes of address", got[0], got[1], n)
	}
	m := nsScrape(t, w.Server, nsAdmin)
	for _, series := range []string{`medcall_ice_restarts_total{pc="publish"}`, `medcall_ice_restarts_total{pc="subscribe"}`} {
		if m[series] < float64(n) {
			t.Errorf("%s = %v, want at least %d", series, m[series], n)
		}
	}
	slices.Sort(back)
	t.Logf("silence at the listener across a change of address (media back after), both directions, %d samples: p50 %v p95 %v max %v", len(back),
		bench.Percentile(back, 50).Round(time.Millisecond), bench.Percentile(back, 95).Round(time.Millisecond), back[len(back)-1].Round(time.Millisecond))
	pc.do("leave")
	dc.do("leave")
	stop()
	checkNetChangeRecording(t, data, cid, n)
}

// checkNetChangeRecording: the call is one recording that decodes clean,
// and its signed manifest has the patient join and leave once and an
// ice_restart event for each change.
func checkNetChangeRecording(t *testing.T, data, cid string, changes int) {
	t.Helper()
	webms := waitRecordings(t, data, 1, 30*time.Second)
	if len(webms) != 1 || !strings.Contains(filepath.ToSlash(webms[0]), "/consultations/"+cid+"/") {
		t.Fatalf("recordings %v, want one for %s", webms, cid)
	}
	decodesClean(t, webms[0])
	verifyCmd(t, data, webms[0])
	ks, err := manifest.LoadKeySet(filepath.Join(data, "keys", "manifest-dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(strings.TrimSuffix(webms[0], ".webm") + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	st, err := manifest.Verify(ks.Public(), env)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	var offsets []int64
	for _, e := range st.Predicate.Events {
		if e.Participant == "p-1" {
			count[e.Type]++
			if e.Type == string(sfu.EventICERestart) {
				offsets = append(offsets, e.OffsetMS)
			}
		}
	}
	t.Logf("the manifest notes the patient's ICE restarts at %v ms", offsets)
	if count["joined"] != 1 || count["left"] != 1 || count[string(sfu.EventICERestart)] != changes {
		t.Errorf("the patient's events in the manifest: %v; want joined 1, left 1, ice_restart %d", count, changes)
	}
}

// netChangeCommand answers the network-change test's participant commands
// (see runParticipant):
//
//	heard T   waits until the peer's audio flows again after Unix ns T and
//	          answers "heard BACK LEVEL BEFORE GAP": BACK the Unix ns the
//	          flow came back (the end of the longest silence since T),
//	          LEVEL the decoded RMS level (dBFS) of the second from BACK,
//	          BEFORE that of [T-1.5 s, T-0.5 s), GAP that silence in ms
//	churn     answers "churn J L": joined and left events about the peer
//	restarts  answers "restarts R S": ICE restarts and resumes made
func netChangeCommand(ctx context.Context, c *client.Client, peer string, f []string) (string, error) {
	switch {
	case f[0] == "heard" && len(f) == 2:
		ns, _ := strconv.ParseInt(f[1], 10, 64)
		at := time.Unix(0, ns)
		backAt, gap, err := audioBack(ctx, c, peer, at)
		if err != nil {
			return "", err
		}
		after, err := heardLevel(c, peer, backAt, backAt.Add(time.Second))
		if err != nil {
			return "", err
		}
		before, err := heardLevel(c, peer, at.Add(-1500*time.Millisecond), at.Add(-500*time.Millisecond))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("heard %d %.1f %.1f %d", backAt.UnixNano(), after, before, gap.Milliseconds()), nil
	case f[0] == "churn":
		done, cancel := context.WithCancel(ctx)
		cancel() // look at the events so far, do not wait
		n := map[string]int{}
		_, _ = c.WaitEvent(done, func(m signaling.Message) bool {
			if m.Type == signaling.TypeParticipant && m.Participant != nil && m.Participant.ID == peer {
				n[m.Event]++
			}
			return false
		})
		return fmt.Sprintf("churn %d %d", n["joined"], n["left"]), nil
	case f[0] == "restarts":
		r, s := c.Restarts()
		return fmt.Sprintf("restarts %d %d", r, s), nil
	}
	return "", fmt.Errorf("unknown command %q", strings.Join(f, " "))
}

// outageWindow is how long after a change the longest silence is looked
// for: a restart that takes longer is found anyway (its silence is longer
// than any jitter), and jitter later in the call is not taken for it.
const outageWindow = 2500 * time.Millisecond

// audioBack waits (up to 20 s) until the peer's audio has flowed steadily
// (45 packets or more a second) after the longest silence between the last
// packet before at and at+outageWindow, and returns when that silence
// ended and how long it was: how long the listener heard nothing.
func audioBack(ctx context.Context, c *client.Client, peer string, at time.Time) (time.Time, time.Duration, error) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		arr := c.AudioArrivals(peer)
		start := 0
		for start < len(arr) && arr[start].Before(at) {
			start++
		}
		start = max(start-1, 0)
		j, gap := -1, time.Duration(0)
		for k := start + 1; k < len(arr) && arr[k-1].Before(at.Add(outageWindow)); k++ {
			if d := arr[k].Sub(arr[k-1]); d > gap {
				j, gap = k, d
			}
		}
		if j >= 0 && time.Since(at) > outageWindow && arr[len(arr)-1].Sub(arr[j]) >= time.Second {
			steady := 0
			for k := j; k < len(arr) && arr[k].Sub(arr[j]) <= time.Second; k++ {
				steady++
			}
			if steady >= 45 {
				return arr[j], gap, nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Time{}, 0, fmt.Errorf("audio from %s did not flow again steadily within 20 s of the change", peer)
}

// heardLevel decodes (ffmpeg) the peer's audio that arrived in [from, to)
// and returns its RMS level in dBFS.
func heardLevel(c *client.Client, peer string, from, to time.Time) (float64, error) {
	var ogg bytes.Buffer
	if _, err := c.AudioOgg(&ogg, peer, from, to); err != nil {
		return 0, err
	}
	cmd := exec.Command("ffmpeg", "-v", "error", "-f", "ogg", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", "48000", "pipe:1")
	cmd.Stdin = &ogg
	var pcm, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &pcm, &errb
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("ffmpeg: decode the received audio: %v: %s", err, errb.String())
	}
	n := pcm.Len() / 2
	if n == 0 {
		return 0, fmt.Errorf("ffmpeg decoded no samples")
	}
	var sum float64
	for i := range n {
		v := float64(int16(binary.LittleEndian.Uint16(pcm.Bytes()[2*i:]))) / 32768
		sum += v * v
	}
	return 10 * math.Log10(sum/float64(n)+1e-12), nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}
