package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/recorder/store/miniotest"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// TestServeStartsWithoutStore: with the object store down at start-up, serve
// answers /healthz at once, says "degraded: store unreachable" on /readyz,
// in medcall_store_up and in its log, takes a recorded call, and the
// recording lands in the store once the store is back.
func TestServeStartsWithoutStore(t *testing.T) {
	minio := miniotest.Start(t)
	minio.SetEnv(t)
	minio.Stop() // down before serve starts; the bucket does not exist yet
	storeURL := minio.URL("medcall", "&create=true")

	data := t.TempDir()
	adminAddr := freeAddr(t)
	logs := &syncBuffer{}
	started := time.Now()
	healthz := make(chan time.Duration, 1)
	go func() { // /healthz must answer within 1 s of starting serve
		for time.Since(started) < 5*time.Second {
			if resp, err := http.Get("http://" + adminAddr + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					healthz <- time.Since(started)
					return
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		close(healthz)
	}()
	addr, admin, _, _ := startServeLog(t, data, logs, "--admin-addr", adminAddr, "--store", storeURL)
	if d, ok := <-healthz; !ok || d > time.Second {
		t.Errorf("/healthz first answered 200 after %v (answered: %v), want within 1 s of start", d, ok)
	}
	if code, body := getBody(t, "http://"+admin+"/readyz"); code != 200 || !strings.Contains(body, "degraded: store unreachable") {
		t.Errorf("/readyz with the store down: %d %q, want 200 \"degraded: store unreachable\"", code, body)
	}
	if v := scrape(t, admin)["medcall_store_up"]; v != 0 {
		t.Errorf("medcall_store_up = %v with the store down, want 0", v)
	}
	if !strings.Contains(logs.String(), "object store unreachable") {
		t.Errorf("no log line says the store is unreachable; log:\n%s", logs.String())
	}

	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, true)
	if _, err := dc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 50 }); err != nil {
		t.Fatalf("no audio at the clinician while the store is down: %v", err)
	}
	if err := pc.Upgrade(ctx, signaling.PathPrenegotiated); err != nil {
		t.Fatal(err)
	}
	if _, err := dc.WaitReceived(ctx, "p-1", "video", func(s client.TrackStats) bool { return s.Keyframes >= 1 && s.Packets >= 50 }); err != nil {
		t.Fatalf("no video at the clinician while the store is down: %v", err)
	}
	_ = pc.Leave(ctx)
	_ = dc.Leave(ctx)
	waitMetric(t, admin, "medcall_recordings_finalized_total", 1, 20*time.Second)
	if v := scrape(t, admin)["medcall_uploads_pending"]; v != 1 {
		t.Errorf("medcall_uploads_pending = %v while the store is down, want 1 (waiting in the outbox)", v)
	}

	if err := minio.Restart(); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, admin, "medcall_store_up", 1, 30*time.Second)
	waitMetric(t, admin, "medcall_manifests_signed_total", 1, 60*time.Second)
	waitMetricBelow(t, admin, "medcall_uploads_pending", 1, 30*time.Second)
	if code, body := getBody(t, "http://"+admin+"/readyz"); code != 200 || strings.TrimSpace(body) != "ready" {
		t.Errorf("/readyz with the store back: %d %q, want 200 ready", code, body)
	}
	st, err := store.Open(ctx, storeURL)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := st.List(ctx, "patients/p-1/consultations/c-1/")
	if err != nil {
		t.Fatal(err)
	}
	var webm, man int
	for _, k := range keys {
		webm += b2i(strings.HasSuffix(k, ".webm"))
		man += b2i(strings.HasSuffix(k, ".manifest.json"))
	}
	if webm != 1 || man != 1 {
		t.Errorf("store holds %v under the patient's prefix, want one WebM and its manifest", keys)
	}

	// Down again while serving: the probe notices.
	minio.Stop()
	waitMetricBelow(t, admin, "medcall_store_up", 1, 3*storeProbeEvery)
	if code, body := getBody(t, "http://"+admin+"/readyz"); code != 200 || !strings.Contains(body, "degraded: store unreachable") {
		t.Errorf("/readyz after the store went down again: %d %q", code, body)
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// freeAddr returns a loopback address with a port free at the time of the call.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitMetric waits until series reaches at least want.
func waitMetric(t *testing.T, admin, series string, want float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for scrape(t, admin)[series] < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want >= %v", series, scrape(t, admin)[series], within, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitMetricBelow waits until series is below limit.
func waitMetricBelow(t *testing.T, admin, series string, limit float64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for scrape(t, admin)[series] >= limit {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want < %v", series, scrape(t, admin)[series], within, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestServeRefusesAWrongStoreAtOnce: a store that answers but refuses
// (wrong credentials, missing bucket) or a store URL that cannot work is a
// configuration mistake: serve stops at once with the reason instead of
// waiting for it.
func TestServeRefusesAWrongStoreAtOnce(t *testing.T) {
	minio := miniotest.Start(t)
	for _, c := range []struct {
		name, url, access, want string
	}{
		{"wrong credentials", minio.URL("medcall", "&create=true"), "someone-else", "Access Key Id you provided does not exist"},
		{"missing bucket", minio.URL("nosuchbucket", ""), minio.AccessKey, "does not exist"},
		{"unknown scheme", "ftp://x/y", minio.AccessKey, "unsupported store URL scheme"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("MEDCALL_S3_ACCESS_KEY", c.access)
			t.Setenv("MEDCALL_S3_SECRET_KEY", minio.SecretKey)
			start := time.Now()
			err := run(context.Background(), []string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
				"--data", t.TempDir(), "--store", c.url}, io.Discard, io.Discard)
			t.Logf("serve: %v", err)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("serve: %v, want an error naming %q", err, c.want)
			}
			if d := time.Since(start); d > storeStartWait+time.Second {
				t.Errorf("serve took %v to refuse, want at most %v", d, storeStartWait)
			}
		})
	}
}
