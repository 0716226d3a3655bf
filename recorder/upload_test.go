package recorder

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/recorder/store/miniotest"
)

func waitPending(t *testing.T, u *Uploader, want int64, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for u.Pending() != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d uploads pending, want %d", u.Pending(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestUploaderSurvivesOutageAndRestart: the store (a real MinIO) is down when
// a recording finishes; the upload keeps failing and stays pending; the
// server restarts with it still pending; the store comes back; the recording
// arrives whole, once, with a manifest that verifies, and the local copy goes.
// During the outage the failed attempts are counted from the first one, and
// the store's retries are logged through the server's logger.
func TestUploaderSurvivesOutageAndRestart(t *testing.T) {
	srv := miniotest.Start(t)
	srv.SetEnv(t)
	ctx := context.Background()
	var storeLog syncLog
	st, err := store.OpenLogged(ctx, srv.URL("recordings", "&create=true"), slog.New(slog.NewTextHandler(&storeLog, nil)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys, err := manifest.GenerateDevKeySet(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 12<<20) // several multipart parts
	_, _ = rand.Read(body)
	webm := filepath.Join(dir, "finished.webm")
	if err := os.WriteFile(webm, body, 0o600); err != nil {
		t.Fatal(err)
	}
	rid := uuid.Must(uuid.NewV7()).String()
	now := time.Now()
	rec := &Recording{ID: rid, Consultation: "c1", Patient: "p1", Started: now.Add(-time.Minute), Ended: now,
		Participants: []Participant{{ID: "p1", Role: "patient", Joined: now.Add(-time.Minute)}}}
	outbox := filepath.Join(dir, "outbox")
	var failures atomic.Int64
	opts := UploaderOptions{Store: st, Keys: keys, Outbox: outbox, Logger: discardLogger(),
		Observer: UploadObserver{Failed: func() { failures.Add(1) }}}

	srv.Stop() // the outage
	up1, err := NewUploader(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx1, stop1 := context.WithCancel(ctx)
	done1 := make(chan struct{})
	go func() { defer close(done1); up1.Run(ctx1) }()
	if err := up1.Publish(ctx, rec, webm); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the store's own retries are riding the outage out
	if up1.Pending() != 1 {
		t.Fatalf("during the outage %d uploads pending, want 1", up1.Pending())
	}
	// The store is still retrying its first upload (10 attempts take ~50 s),
	// yet the failures already show.
	if failures.Load() == 0 {
		t.Error("2 s into the outage no failed upload attempt is counted")
	}
	if !strings.Contains(storeLog.String(), "transient failure, retrying") {
		t.Errorf("the store's retries are not in the server's log: %q", storeLog.String())
	}
	stop1() // the server stops with the upload pending
	<-done1

	up2, err := NewUploader(opts)
	if err != nil {
		t.Fatal(err)
	}
	if up2.Pending() != 1 {
		t.Fatalf("after the restart %d uploads pending, want 1", up2.Pending())
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan struct{})
	go func() { defer close(done2); up2.Run(ctx2) }()
	defer func() { stop2(); <-done2 }()
	waitPending(t, up2, 0, 90*time.Second) // backoff is at most 30 s

	webmKey, manKey, _ := store.RecordingKeys("p1", "c1", rid)
	keysIn, err := st.List(ctx, "patients/")
	if err != nil {
		t.Fatal(err)
	}
	if len(keysIn) != 2 || keysIn[0] != webmKey && keysIn[1] != webmKey {
		t.Fatalf("store holds %v, want exactly %s and %s", keysIn, webmKey, manKey)
	}
	r, _, err := st.Get(ctx, webmKey)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, body) {
		t.Fatalf("stored %d bytes, differing from the %d recorded", len(got), len(body))
	}
	mr, _, err := st.Get(ctx, manKey)
	if err != nil {
		t.Fatal(err)
	}
	env, _ := io.ReadAll(mr)
	mr.Close()
	stmt, err := manifest.VerifyObject(keys.Public(), env, webmKey, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("manifest: %v", err)
	}
	if stmt.Predicate.Patient != "p1" || stmt.Predicate.Consultation != "c1" {
		t.Errorf("manifest names %s/%s", stmt.Predicate.Patient, stmt.Predicate.Consultation)
	}
	left, _ := os.ReadDir(outbox)
	for _, e := range left {
		if !e.IsDir() {
			t.Errorf("outbox still holds %s", e.Name())
		}
	}
}

// TestUploaderNeverSignsAFailure: a failed recording is set down as failed,
// never uploaded or signed.
func TestUploaderNeverSignsAFailure(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(context.Background(), "file://"+filepath.Join(dir, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	keys, _ := manifest.GenerateDevKeySet(filepath.Join(dir, "keys.json"))
	up, err := NewUploader(UploaderOptions{Store: st, Keys: keys, Outbox: filepath.Join(dir, "outbox"), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	rid := uuid.Must(uuid.NewV7()).String()
	if err := up.Publish(context.Background(), &Recording{ID: rid, Consultation: "c1", Patient: "p1", Failed: true}, ""); err != nil {
		t.Fatal(err)
	}
	if up.Pending() != 0 {
		t.Error("a failed recording is queued for upload")
	}
	if _, err := os.Stat(filepath.Join(dir, "outbox", "failed", rid+".json")); err != nil {
		t.Errorf("failure not set down: %v", err)
	}
	if keys, _ := st.List(context.Background(), "patients/"); len(keys) != 0 {
		t.Errorf("store holds %v", keys)
	}
}
