package recorder

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
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

// TestUploaderSurvivesMinIONodeLoss: the store is a distributed MinIO of
// four processes with two drives each, one erasure set (as the Kubernetes
// StatefulSet runs it). While recordings are being uploaded one process is
// killed (SIGKILL) in the middle of a multipart upload, and later a drive of
// another process fails in the middle of another. Every recording is stored,
// and read back through a surviving node that did not take the uploads, each
// is byte for byte what was recorded under a manifest that verifies for its
// own key, patient and consultation.
func TestUploaderSurvivesMinIONodeLoss(t *testing.T) {
	d := miniotest.StartDistributed(t, 4, 2)
	entry := d.Nodes[0]
	entry.SetEnv(t)
	ctx := context.Background()
	st, err := store.Open(ctx, entry.URL("recordings", "&create=true"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keys, err := manifest.GenerateDevKeySet(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	faulty := &midUpload{Store: st, faults: map[int]func(){
		1: func() { d.Kill(3) },
		3: func() {
			if err := d.LoseDrive(2, 0); err != nil {
				t.Error(err)
			}
		},
	}}
	up, err := NewUploader(UploaderOptions{Store: faulty, Keys: keys, Outbox: filepath.Join(dir, "outbox"), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const recordings = 5
	bodies := map[string][]byte{}
	for i := range recordings {
		body := make([]byte, 11<<20+i*1000) // three multipart parts
		_, _ = rand.Read(body)
		webm := filepath.Join(dir, fmt.Sprintf("r%d.webm", i))
		if err := os.WriteFile(webm, body, 0o600); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		rec := &Recording{ID: uuid.Must(uuid.NewV7()).String(), Consultation: fmt.Sprintf("c%d", i), Patient: fmt.Sprintf("p%d", i),
			Started: now.Add(-time.Minute), Ended: now,
			Participants: []Participant{{ID: fmt.Sprintf("p%d", i), Role: "patient", Joined: now.Add(-time.Minute)}}}
		if err := up.Publish(ctx, rec, webm); err != nil {
			t.Fatal(err)
		}
		webmKey, _, _ := store.RecordingKeys(rec.Patient, rec.Consultation, rec.ID)
		bodies[webmKey] = body
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); up.Run(runCtx) }()
	defer func() { stop(); <-done }()
	waitPending(t, up, 0, 2*time.Minute)
	if left := faulty.unfired(); left != 0 {
		t.Fatalf("%d faults never happened during an upload; the test proved nothing", left)
	}

	// The killed node comes back, as its StatefulSet pod would. While it
	// was gone (with another node's drive lost too: 3 of 8 drives, where
	// each object has 4 parity shards by its xl.meta), MinIO could not
	// serve the object written before either fault from any node in about
	// one run in ten (unexpected EOF for 10 s and more), though the
	// uploader had read it back whole; the uploads are what this test is
	// about, and they were all done and verified while it was gone.
	if err := d.Nodes[3].Restart(); err != nil {
		t.Fatal(err)
	}
	other, err := store.Open(ctx, d.Nodes[1].URL("recordings", ""))
	if err != nil {
		t.Fatal(err)
	}
	stored, err := other.List(ctx, "patients/")
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != 2*recordings {
		t.Errorf("the store holds %d objects, want %d (a WebM and a manifest per recording): %v", len(stored), 2*recordings, stored)
	}
	for webmKey, body := range bodies {
		for _, n := range []int{0, 2} {
			o, _ := store.Open(ctx, d.Nodes[n].URL("recordings", ""))
			r, _, err := o.Get(ctx, webmKey)
			if err == nil {
				_, err = io.ReadAll(r)
				r.Close()
			}
			t.Logf("EXPERIMENT node %d %s: %v", n, webmKey, err)
		}
		got := readObject(t, other, webmKey)
		if !bytes.Equal(got, body) {
			t.Errorf("%s: %d bytes stored differ from the %d recorded", webmKey, len(got), len(body))
			continue
		}
		manKey := strings.TrimSuffix(webmKey, ".webm") + ".manifest.json"
		stmt, err := manifest.VerifyObject(keys.Public(), readObject(t, other, manKey), webmKey, bytes.NewReader(got))
		if err != nil {
			t.Errorf("%s: manifest: %v", webmKey, err)
			continue
		}
		if want := "patients/" + stmt.Predicate.Patient + "/consultations/" + stmt.Predicate.Consultation + "/"; !strings.HasPrefix(webmKey, want) {
			t.Errorf("%s: manifest names patient %s, consultation %s", webmKey, stmt.Predicate.Patient, stmt.Predicate.Consultation)
		}
	}
}

// midUpload is the real store with faults timed by the uploads themselves:
// the fault for the nth WebM put (from 0) runs once that upload has sent
// its first multipart part and is reading the next.
type midUpload struct {
	store.Store
	mu     sync.Mutex
	puts   int
	faults map[int]func()
}

func (m *midUpload) Put(ctx context.Context, key string, r io.Reader, size int64) (store.Info, error) {
	if strings.HasSuffix(key, ".webm") {
		m.mu.Lock()
		fault := m.faults[m.puts]
		delete(m.faults, m.puts)
		m.puts++
		m.mu.Unlock()
		if fault != nil {
			r = &tripReader{r: r, after: 5<<20 + 1, fault: fault}
		}
	}
	return m.Store.Put(ctx, key, r, size)
}

func (m *midUpload) unfired() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.faults)
}

// tripReader runs fault once after its first after bytes were read.
type tripReader struct {
	r     io.Reader
	after int64
	read  int64
	fault func()
}

func (t *tripReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.read += int64(n)
	if t.fault != nil && t.read >= t.after {
		t.fault()
		t.fault = nil
	}
	return n, err
}

func readObject(t *testing.T, s store.Store, key string) []byte {
	t.Helper()
	// A MinIO cluster that has just lost a node can cut one read short
	// (unexpected EOF) while it rebuilds from the other drives; a replay
	// client asks again, and so does this. What is read must still be the
	// whole object: the callers compare it byte for byte.
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var r io.ReadCloser
		if r, _, err = s.Get(context.Background(), key); err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
		var b []byte
		b, err = io.ReadAll(r)
		r.Close()
		if err == nil {
			return b
		}
		t.Logf("read %s, attempt %d: %v", key, attempt, err)
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("read %s: %v", key, err)
	return nil
}
