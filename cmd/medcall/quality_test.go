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
// sends faster than linkKbps, so an impairment applied next is felt.
func qualityCall(t *testing.T, prefix string, linkKbps float64) (w *netns.World, pub, watch *qualityPage) {
	t.Helper()
	node := needQualityTools(t)
	video := noisyCamera(t)
	_, cert, key := newTestCertFiles(t, 1, netns.ServerPublicIP)
	w, data, _ := natWorld(t, prefix, false, "--tls-cert", cert, "--tls-key", key)
	base := "https://" + netns.ServerPublicIP + ":" + nsHTTPPort
	cid := "c-" + prefix
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", cid)
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", cid)
	watch = startQualityPage(t, w.Client, node, "patient", base, pat, "watch", "")
	pub = startQualityPage(t, w.Inet, node, "clinician", base, doc, "publish", video)
	deadline := time.Now().Add(60 * time.Second)
	for {
		now := float64(time.Now().UnixMilli())
		sent, ok := between(pub.snapshot(), now-2000, now)
		seen, ok2 := between(watch.snapshot(), now-2000, now)
		if ok && ok2 && sent.sentKbps() > linkKbps*1.4 && seen.rate("framesDecoded") > 20 {
			t.Logf("warmed up: clinician sends %.0f kbit/s, patient decodes %.1f fps", sent.sentKbps(), seen.rate("framesDecoded"))
			return w, pub, watch
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
func TestQualityConstrainedDownlink(t *testing.T) {
	const link = 500
	w, pub, watch := qualityCall(t, "i13-q1-", link)
	t0 := float64(time.Now().UnixMilli())
	w.Home.Shape("lan", link, 200)
	time.Sleep(5*time.Second + qualityDuration())
	end := float64(time.Now().UnixMilli())
	pub.stop()
	watch.stop()

	ps := pub.snapshot()
	t.Logf("clinician's send rate, kbit/s per second from the limit: %s", bitrateSeries(ps, t0))
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
	seen, ok := between(watch.snapshot(), fell, end)
	if !ok {
		t.Fatal("no samples from the patient after the rate fell")
	}
	p := seen.perceived()
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
}
