package main

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/signaltest/netns"
)

// qualityDuration is how long a quality scenario runs once impaired:
// MEDCALL_QUALITY_SECONDS (the soak script sets minutes) or 15 s in CI.
func qualityDuration() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("MEDCALL_QUALITY_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 15 * time.Second
}

// qualityCall is a call between two real Chromium pages in the standard
// World: the clinician on the internet publishes noisy 640x480 video (about
// 1 Mbit/s and more when allowed) and the patient, behind its home router,
// watches. It returns once video is decoded at the patient and the clinician
// sends faster than linkKbps, so an impairment applied next is felt. With
// second, a second clinician (a Go client on the internet, unimpaired)
// watches too.
func qualityCall(t *testing.T, prefix string, linkKbps float64, second bool) (w *netns.World, pub, watch *qualityPage, nurse *peerProc) {
	t.Helper()
	return qualityCallWith(t, prefix, linkKbps, second, nil)
}

// qualityCallWith is qualityCall with impair applied to the World before
// anyone joins, so the whole call, its upgrade included, crosses it.
func qualityCallWith(t *testing.T, prefix string, linkKbps float64, second bool, impair func(*netns.World)) (w *netns.World, pub, watch *qualityPage, nurse *peerProc) {
	t.Helper()
	node := needQualityTools(t)
	video := noisyCamera(t)
	ca, cert, key := newTestCertFiles(t, 1, netns.ServerPublicIP)
	w, data, _ := natWorld(t, prefix, false, "--tls-cert", cert, "--tls-key", key, "--log-level", "debug")
	if impair != nil {
		impair(w)
	}
	base := "https://" + netns.ServerPublicIP + ":" + nsHTTPPort
	cid := "c-" + prefix
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid)
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid)
	watch = startQualityPage(t, w.Client, node, "patient", base, pat, "watch", "")
	if second {
		tok := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-2", "--pid", "p-1", "--cid", cid)
		nurse, _ = startPeer(t, w.Inet, "second clinician", peerConfig{URL: "wss" + base[len("https"):] + "/v1/signal", Token: tok, Peer: "d-1", CA: ca.file})
	}
	pub = startQualityPage(t, w.Inet, node, "clinician", base, doc, "publish", video)
	began := time.Now()
	deadline := began.Add(60 * time.Second)
	for {
		now := float64(time.Now().UnixMilli())
		sent, ok := between(pub.snapshot(), now-2000, now)
		seen, ok2 := between(watch.snapshot(), now-2000, now)
		if ok && ok2 && sent.sentKbps() > linkKbps*1.2 && seen.rate("framesDecoded") > 20 {
			t.Logf("warmed up after %.1fs: clinician sends %.0f kbit/s, patient decodes %.1f fps; from the start: %s",
				time.Since(began).Seconds(), sent.sentKbps(), seen.rate("framesDecoded"), bitrateSeries(pub.snapshot(), float64(began.UnixMilli())))
			return w, pub, watch, nurse
		}
		if time.Now().After(deadline) {
			t.Fatalf("no warm call within 60s: clinician %s; patient decoding %v",
				bitrateSeries(pub.snapshot(), pub.snapshot()[0]["t"]), seen.rate("framesDecoded"))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// TestQualityConstrainedDownlink: the patient's downlink drops to 500
// kbit/s while the clinician sends well over that. Within 5 s the
// clinician's browser sends below the link (the SFU's estimate of the
// patient's downlink reaches it as REMB), and from then on the patient sees
// smooth video (≥ 20 decoded fps, < 5% frozen) and hears the clinician
// (< 1% audio lost).
//
// Without simulcast or SVC one stream serves every subscriber, and the
// policy is that the slowest sets the pace (sfu/ratecontrol.go): a second,
// unconstrained clinician receives the same lowered rate, without loss.
func TestQualityConstrainedDownlink(t *testing.T) {
	const link = 500
	w, pub, watch, nurse := qualityCall(t, "i13-q1-", link, true)
	t0 := float64(time.Now().UnixMilli())
	t.Logf("limit at %s", time.Now().UTC().Format("15:04:05.000"))
	w.Home.Shape("lan", link, 200)
	time.Sleep(5 * time.Second)
	r0 := nurse.do("received video")
	time.Sleep(qualityDuration())
	r1 := nurse.do("received video")
	end := float64(time.Now().UnixMilli())
	pub.stop()
	watch.stop()

	ps := pub.snapshot()
	t.Logf("clinician's send rate, kbit/s per second from the limit: %s", bitrateSeries(ps, t0))
	t.Logf("clinician's encoded fps/frame width per second from the limit: %s", encodedSeries(ps, t0))
	t.Logf("patient's decoded fps/frozen share/keyframes/PLIs sent per second from the limit: %s", perceivedSeries(watch.snapshot(), t0))
	m := nsScrape(t, w.Server, nsAdmin)
	t.Logf("server: NACKed packets %v, stale %v, retransmissions %v, PLI received %v sent %v, FIR %v", m["medcall_nack_packets_total"],
		m["medcall_nack_packets_stale_total"], m["medcall_retransmissions_total"], m["medcall_rtcp_plis_received_total"], m["medcall_rtcp_plis_sent_total"], m["medcall_rtcp_firs_received_total"])
	fell := 0.0
	for s := t0; s+1000 <= end; s += 500 {
		if w, ok := between(ps, s, s+1000); ok && w.sentKbps() < link {
			fell = w.b["t"]
			break
		}
	}
	if fell == 0 || fell-t0 > 5000 {
		t.Fatalf("the clinician's send rate did not fall below the %d kbit/s link within 5 s of the limit (fell at %+.1fs)", link, (fell-t0)/1000)
	}
	after, _ := between(ps, fell, end)
	seen, _ := between(watch.snapshot(), fell, end)
	p, ok := perceivedBetween(watch.snapshot(), fell, end)
	if !ok {
		t.Fatal("no samples from the patient after the rate fell")
	}
	t.Logf("below the link %.1fs after the limit; from then on (%.0fs): clinician sends %.0f kbit/s; patient: %s",
		(fell-t0)/1000, seen.seconds(), after.sentKbps(), p)
	if p.fps < 20 {
		t.Errorf("the patient decoded %.1f fps, want at least 20", p.fps)
	}
	if p.freezePct >= 5 {
		t.Errorf("the patient's video was frozen %.1f%% of the time, want under 5%%", p.freezePct)
	}
	if p.audioLossPct >= 1 {
		t.Errorf("the patient lost %.2f%% of the clinician's audio packets, want under 1%%", p.audioLossPct)
	}

	// The unconstrained clinician gets the constrained patient's pace, whole.
	n := func(f []string, i int) float64 { v, _ := strconv.ParseFloat(f[i], 64); return v }
	kbps := (n(r1, 2) - n(r0, 2)) * 8 / (n(r1, 0) - n(r0, 0))
	lost := (n(r1, 3) - n(r0, 3)) - (n(r1, 1) - n(r0, 1))
	t.Logf("second clinician (unconstrained) receives the video at %.0f kbit/s, %.0f packets lost", kbps, lost)
	if kbps >= link || kbps < 100 {
		t.Errorf("the unconstrained clinician receives %.0f kbit/s; the policy is the slowest subscriber's pace (under %d, above the floor)", kbps, link)
	}
	if lost > 0.01*(n(r1, 3)-n(r0, 3)) {
		t.Errorf("the unconstrained clinician lost %.0f of %.0f video packets", lost, n(r1, 3)-n(r0, 3))
	}
}

// TestQualityRandomLoss: 5% of the packets between the patient and the
// internet are lost, both ways. The patient hears the clinician with under
// 5% of the audio concealed and sees video frozen under 5% of the time, and
// the server resends at most 1.5 packets per packet lost on the way to the
// patient (no storm).
func TestQualityRandomLoss(t *testing.T) {
	w, pub, watch, _ := qualityCall(t, "i13-q2-", 500, false)
	before := nsScrape(t, w.Server, nsAdmin)
	t0 := float64(time.Now().UnixMilli())
	w.Home.Lose("lan", 5)
	time.Sleep(qualityDuration())
	end := float64(time.Now().UnixMilli())
	lostDown, lostUp := w.Home.Lost()
	after := nsScrape(t, w.Server, nsAdmin)
	pub.stop()
	watch.stop()

	ps, ws := pub.snapshot(), watch.snapshot()
	t.Logf("clinician's send rate, kbit/s per second from the loss: %s", bitrateSeries(ps, t0))
	t.Logf("clinician's encoded fps/frame width per second from the loss: %s", encodedSeries(ps, t0))
	t.Logf("patient's decoded fps/frozen share/keyframes/PLIs sent per second: %s", perceivedSeries(ws, t0))
	p, ok := perceivedBetween(ws, t0, end)
	if !ok {
		t.Fatal("no samples from the patient")
	}
	resent := after["medcall_retransmissions_total"] - before["medcall_retransmissions_total"]
	asked := after["medcall_nack_packets_total"] - before["medcall_nack_packets_total"]
	stale := after["medcall_nack_packets_stale_total"] - before["medcall_nack_packets_stale_total"]
	onFeedback := after["medcall_retransmissions_on_feedback_total"] - before["medcall_retransmissions_on_feedback_total"]
	sent, _ := between(ps, t0, end)
	seen, _ := between(ws, t0, end)
	t.Logf("5%% loss both ways (%d packets lost towards the patient, %d from): clinician sends %.0f kbit/s; patient: %s; NACKed %.0f, stale %.0f, resent %.0f (%.0f of them on transport-cc feedback; %.2f per lost packet; the patient counted %.0f retransmissions received)",
		lostDown, lostUp, sent.sentKbps(), p, asked, stale, resent, onFeedback, resent/float64(max(lostDown, 1)), seen.delta("rtxReceived"))
	if lostDown == 0 {
		t.Fatal("the impairment lost nothing")
	}
	if p.concealedPct >= 5 {
		t.Errorf("%.2f%% of the clinician's audio was concealed at the patient, want under 5%%", p.concealedPct)
	}
	if p.freezePct >= 5 {
		t.Errorf("the patient's video was frozen %.1f%% of the time, want under 5%%", p.freezePct)
	}
	if resent > 1.5*float64(lostDown) {
		t.Errorf("the server resent %.0f packets for %d lost towards the patient, want at most 1.5 per lost packet", resent, lostDown)
	}
}

// TestQualityDelayJitter: the patient's network adds 100 ms ± 30 ms each
// way (a 200 ms round trip, ±30 ms jitter, packets in order; netns.Impair)
// from before the call starts. The clinician's upgrade reaches the patient's
// screen, and from then on the patient sees video with no freeze at all,
// at ≥ 20 decoded fps, and hears the clinician with under 5% of the audio
// concealed (the loss scenario's bar: the receiver's jitter buffer
// stretches audio while it adapts to the jitter, 0-1.5% in the runs). The upgrade's latency (the clinician's click to the patient's
// first decoded frame, and the server's notice-to-keyframe) is reported.
func TestQualityDelayJitter(t *testing.T) {
	leg := netns.Impairment{Delay: 100 * time.Millisecond, Jitter: 30 * time.Millisecond}
	var im *netns.Impairer
	w, pub, watch, _ := qualityCallWith(t, "h13n-q3-", 500, false, func(w *netns.World) { im = w.Inet.Impair("home", leg, leg) })
	t0 := float64(time.Now().UnixMilli())
	time.Sleep(qualityDuration())
	end := float64(time.Now().UnixMilli())
	pub.stop()
	watch.stop()

	ps, ws := pub.snapshot(), watch.snapshot()
	up, down := im.Stats()
	m := nsScrape(t, w.Server, nsAdmin)
	click, first := pub.mark("UPGRADE"), watch.mark("FIRSTFRAME")
	srv := m[`medcall_upgrade_latency_seconds_sum{path="prenegotiated"}`] / max(m[`medcall_upgrade_latency_seconds_count{path="prenegotiated"}`], 1)
	t.Logf("upgrade under 200 ms RTT ± 30 ms: click to the patient's first decoded frame %.0f ms; server (notice to keyframe forwarded) %.0f ms", first-click, 1000*srv)
	t.Logf("clinician's send rate, kbit/s per second: %s", bitrateSeries(ps, t0))
	t.Logf("patient's decoded fps/frozen share/keyframes/PLIs sent per second: %s", perceivedSeries(ws, t0))
	p, ok := perceivedBetween(ws, t0, end)
	if !ok {
		t.Fatal("no samples from the patient")
	}
	seen, _ := between(ws, t0, end)
	sent, _ := between(ps, t0, end)
	t.Logf("200 ms RTT ± 30 ms: clinician sends %.0f kbit/s; patient: %s, %.0f freezes, %.0f NACKs; impairer to the patient %+v, from %+v",
		sent.sentKbps(), p, seen.delta("freezeCount"), seen.delta("nackSent"), down, up)
	if down.Forwarded == 0 || up.Forwarded == 0 {
		t.Fatal("no packet crossed the impairer: the patient's traffic does not take the impaired path")
	}
	if click == 0 || first == 0 || first < click {
		t.Errorf("no upgrade seen: clicked at %.0f, first frame at %.0f", click, first)
	}
	if n := seen.delta("freezeCount"); n > 0 {
		t.Errorf("the patient's video froze %.0f times (%.1f%% of the time), want no freeze", n, p.freezePct)
	}
	if p.fps < 20 {
		t.Errorf("the patient decoded %.1f fps, want at least 20", p.fps)
	}
	if p.concealedPct >= 5 {
		t.Errorf("%.2f%% of the clinician's audio was concealed at the patient, want under 5%%", p.concealedPct)
	}
}
