package recorder

import (
	"bytes"
	"context"
	"crypto/rand"
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
)

// One bad outbox entry never blocks another. Five finished recordings wait
// in the outbox, oldest first: a good one; one whose WebM is gone (a crash
// between the two deletions); one whose description is garbage; one the
// store refuses (its key is taken by a directory); and a good one. Both
// good ones are stored and verify; the three bad ones are moved to the
// quarantine with a reason each, counted and logged; nothing is deleted.
func TestOutboxQuarantine(t *testing.T) {
	dir := t.TempDir()
	objects := filepath.Join(dir, "objects")
	st, err := store.NewLocal(objects)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := manifest.GenerateDevKeySet(filepath.Join(dir, "keys.json"))
	if err != nil {
		t.Fatal(err)
	}
	var quarantined, failures atomic.Int64
	var logs syncLog
	outbox := filepath.Join(dir, "outbox")
	u, err := NewUploader(UploaderOptions{Store: st, Keys: keys, Outbox: outbox,
		Logger:   slog.New(slog.NewTextHandler(&logs, nil)),
		Observer: UploadObserver{Quarantined: func() { quarantined.Add(1) }, Failed: func() { failures.Add(1) }}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	names := []string{"good-1", "webm-gone", "garbage", "refused", "good-2"}
	recs := map[string]*Recording{}
	for _, name := range names {
		now := time.Now()
		rec := &Recording{ID: uuid.Must(uuid.NewV7()).String(), Consultation: "c-" + name, Patient: "p-9",
			Started: now.Add(-time.Minute), Ended: now}
		recs[name] = rec
		body := make([]byte, 64<<10)
		_, _ = rand.Read(body)
		webm := filepath.Join(dir, name+".webm")
		if err := os.WriteFile(webm, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := u.Publish(ctx, rec, webm); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond) // distinct UUIDv7 order
	}
	mustDo(t, os.Remove(filepath.Join(outbox, recs["webm-gone"].ID+".webm")))
	mustDo(t, os.WriteFile(filepath.Join(outbox, recs["garbage"].ID+".json"), []byte("{\"id\": 12, trunc"), 0o600))
	refusedKey, _, _ := store.RecordingKeys("p-9", "c-refused", recs["refused"].ID)
	mustDo(t, os.MkdirAll(filepath.Join(objects, refusedKey, "in-the-way"), 0o700))

	go u.Run(ctx)
	waitPending(t, u, 0, 20*time.Second)

	for _, name := range []string{"good-1", "good-2"} {
		rec := recs[name]
		webmKey, manKey, _ := store.RecordingKeys(rec.Patient, rec.Consultation, rec.ID)
		if err := u.verifyStored(ctx, webmKey, manKey); err != nil {
			t.Errorf("%s: not stored and verified: %v", name, err)
		}
	}
	q := filepath.Join(outbox, quarantineDir)
	for name, reason := range map[string]string{
		"webm-gone": "WebM", "garbage": "not a recording", "refused": "refused it 3 times",
	} {
		id := recs[name].ID
		note, err := os.ReadFile(filepath.Join(q, id+".reason.txt"))
		if err != nil || !strings.Contains(string(note), reason) {
			t.Errorf("%s: reason %q, want it to mention %q (%v)", name, note, reason, err)
		}
		if _, err := os.Stat(filepath.Join(q, id+".json")); err != nil {
			t.Errorf("%s: its description is not in the quarantine: %v", name, err)
		}
		if name != "webm-gone" {
			if _, err := os.Stat(filepath.Join(q, id+".webm")); err != nil {
				t.Errorf("%s: its WebM is not in the quarantine: %v", name, err)
			}
		}
		if !strings.Contains(logs.String(), id) {
			t.Errorf("%s: the quarantine is not logged", name)
		}
	}
	left, _ := filepath.Glob(filepath.Join(outbox, "*.*"))
	if len(left) != 0 {
		t.Errorf("left in the outbox: %v", left)
	}
	if quarantined.Load() != 3 || u.Quarantined() != 3 {
		t.Errorf("quarantine alarm %d, quarantined %d; want 3", quarantined.Load(), u.Quarantined())
	}
	if failures.Load() < 2+maxRejects {
		t.Errorf("%d failed attempts counted, want at least %d", failures.Load(), 2+maxRejects)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// syncLog is a log sink safe for the uploader's goroutine and the test.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncLog) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
