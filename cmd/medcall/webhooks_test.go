package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/signaling/webhook"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const hookSecret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"

// hookEvent is one webhook as the receiver decoded it.
type hookEvent struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// hookReceiver is a booking backend that checks every signature with the
// Standard Webhooks library.
type hookReceiver struct {
	url    string
	mu     sync.Mutex
	got    []hookEvent
	bodies []string
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(hookSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		if err := wh.Verify(b, req.Header); err != nil {
			t.Errorf("webhook signature does not verify: %v", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var ev hookEvent
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Errorf("webhook body is not JSON: %v", err)
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.got = append(r.got, ev)
		r.bodies = append(r.bodies, string(b))
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/medcall"
	return r
}

func (r *hookReceiver) events() ([]hookEvent, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hookEvent(nil), r.got...), append([]string(nil), r.bodies...)
}

// TestWebhooksForARecordedCall: a recorded call tells the booking backend
// consultation.started, consultation.ended and recording.stored, each
// signed (checked with the Standard Webhooks library), carrying only
// pseudonymous ids and the object keys and digests of what was stored.
func TestWebhooksForARecordedCall(t *testing.T) {
	rcv := newHookReceiver(t)
	t.Setenv("MEDCALL_WEBHOOK_SECRET", hookSecret)

	data := t.TempDir()
	addr, admin, stop := startServe(t, data, "--webhook-url", rcv.url)
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

	got, bodies := rcv.events()
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

// TestWebhookRecordingFailed: a recording that failed is reported as
// recording.failed with its ids, through the uploader's hook.
func TestWebhookRecordingFailed(t *testing.T) {
	rcv := newHookReceiver(t)
	data := t.TempDir()
	cfg := &serveConfig{recordConfig: recordConfig{data: data}, webhookURL: rcv.url, webhookSecret: hookSecret}
	hooks, err := openWebhooks(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go hooks.Run(ctx)
	rec, err := openRecording(ctx, &cfg.recordConfig, slog.New(slog.DiscardHandler), recordingEvents(recorder.UploadObserver{}, hooks, slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	failed := &recorder.Recording{ID: "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", Consultation: "c-9", Patient: "p-9", Failed: true, Err: errors.New("spool write: no space left on device")}
	if err := rec.uploader.Publish(ctx, failed, ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for hooks.Delivered() < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got, bodies := rcv.events()
	var r webhook.Recording
	if len(got) != 1 || got[0].Type != webhook.RecordingFailed || json.Unmarshal(got[0].Data, &r) != nil ||
		r != (webhook.Recording{Recording: failed.ID, Consultation: "c-9", Patient: "p-9"}) {
		t.Fatalf("events %v, want one recording.failed for %s", bodies, failed.ID)
	}
	if strings.Contains(bodies[0], "no space") {
		t.Errorf("recording.failed carries the error text: %s", bodies[0])
	}
}
