package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestWebhooksForARecordedCall: a recorded call tells the booking backend
// consultation.started, consultation.ended and recording.stored, each
// signed (checked with the Standard Webhooks library), carrying only
// pseudonymous ids and the object keys and digests of what was stored.
func TestWebhooksForARecordedCall(t *testing.T) {
	const secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []struct {
		Type string          `json:"type"`
		Data json.RawMessage `json:"data"`
	}
	var bodies []string
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if err := wh.Verify(b, r.Header); err != nil {
			t.Errorf("webhook signature does not verify: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		got = append(got, struct {
			Type string          `json:"type"`
			Data json.RawMessage `json:"data"`
		}{})
		_ = json.Unmarshal(b, &got[len(got)-1])
		bodies = append(bodies, string(b))
	}))
	defer rcv.Close()
	t.Setenv("MEDCALL_WEBHOOK_SECRET", secret)

	data := t.TempDir()
	addr, admin, stop := startServe(t, data, "--webhook-url", rcv.URL+"/medcall")
	pat := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1", "--rec")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pc, dc := joinCall(t, ctx, addr, pat, doc, false)
	time.Sleep(time.Second)
	_ = pc.Leave(ctx)
	_ = dc.Leave(ctx)
	webms := waitRecordings(t, data, 1, 20*time.Second)
	waitMetric(t, admin, "medcall_webhooks_delivered_total", 3, 20*time.Second)
	_ = stop()

	mu.Lock()
	defer mu.Unlock()
	var types []string
	for _, g := range got {
		types = append(types, g.Type)
	}
	if strings.Join(types, " ") != "consultation.started consultation.ended recording.stored" {
		t.Fatalf("events %v, want started, ended, stored", types)
	}
	var start, end webhook.Consultation
	var stored webhook.Recording
	_ = json.Unmarshal(got[0].Data, &start)
	_ = json.Unmarshal(got[1].Data, &end)
	_ = json.Unmarshal(got[2].Data, &stored)
	if start.Consultation != "c-1" || start.Patient != "p-1" || !start.Recorded || start.Session == "" || end != start {
		t.Errorf("consultation events: started %+v ended %+v", start, end)
	}
	man, err := os.ReadFile(strings.TrimSuffix(webms[0], ".webm") + ".manifest.json")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(man)
	media, err := os.ReadFile(webms[0])
	if err != nil {
		t.Fatal(err)
	}
	mediaSum := sha256.Sum256(media)
	rid := strings.TrimSuffix(filepath.Base(webms[0]), ".webm")
	want := webhook.Recording{Recording: rid, Consultation: "c-1", Patient: "p-1",
		ObjectKey: "patients/p-1/consultations/c-1/" + rid + ".webm", ManifestKey: "patients/p-1/consultations/c-1/" + rid + ".manifest.json",
		ManifestSHA256: hex.EncodeToString(sum[:]), ObjectSHA256: hex.EncodeToString(mediaSum[:]), SizeBytes: int64(len(media))}
	if stored != want {
		t.Errorf("recording.stored %+v\nwant %+v", stored, want)
	}
	for _, b := range bodies {
		if strings.Contains(b, "d-1") || strings.Contains(b, "token") {
			t.Errorf("webhook body carries a participant id or a token: %s", b)
		}
	}
}
