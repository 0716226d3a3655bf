package sfu

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func openBindings(t *testing.T, dir string, retention time.Duration, clock *fakeClock) *FileBindings {
	t.Helper()
	f, err := openFileBindings(dir, retention, clock.now)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func mustBind(t *testing.T, s Bindings, b Binding, want error) {
	t.Helper()
	if err := s.Bind(b); !errors.Is(err, want) {
		t.Fatalf("Bind(%+v) = %v, want %v", b, err, want)
	}
}

// TestFileBindingsSurviveReopen: a binding written by one process is
// enforced by the next one opening the same directory.
func TestFileBindingsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	c1p1 := Binding{Consultation: "c-1", Patient: "p-1", Record: true}
	s := openBindings(t, dir, time.Hour, clock)
	mustBind(t, s, c1p1, nil)
	mustBind(t, s, c1p1, nil)
	if err := s.Finished("c-1", clock.t); err != nil {
		t.Fatal(err)
	}

	s = openBindings(t, dir, time.Hour, clock) // a restart
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-2", Record: true}, ErrBindingMismatch)
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-1", Record: false}, ErrBindingMismatch)
	mustBind(t, s, c1p1, nil)
	mustBind(t, s, Binding{Consultation: "c-2", Patient: "p-2"}, nil)
	if n := s.Len(); n != 2 {
		t.Fatalf("%d bindings, want 2", n)
	}
	// No temporary files are left behind; one file per consultation.
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("directory holds %d entries, want c-1.json and c-2.json", len(entries))
	}
}

// TestBindingsExpireAfterRetention: a finished consultation's binding holds
// for the retention period and is then forgotten (in memory and on disk); a
// consultation in use never expires, and rejoining restarts the clock.
func TestBindingsExpireAfterRetention(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	const retention = 24 * time.Hour
	s := openBindings(t, dir, retention, clock)
	old := Binding{Consultation: "c-old", Patient: "p-1"}
	live := Binding{Consultation: "c-live", Patient: "p-1"}
	again := Binding{Consultation: "c-again", Patient: "p-1"}
	for _, b := range []Binding{old, live, again} {
		mustBind(t, s, b, nil)
	}
	for _, cid := range []string{old.Consultation, again.Consultation} {
		if err := s.Finished(cid, clock.t); err != nil {
			t.Fatal(err)
		}
	}
	clock.t = clock.t.Add(retention - time.Second)
	mustBind(t, s, again, nil) // rejoined: in use again
	mustBind(t, s, Binding{Consultation: "c-old", Patient: "p-2"}, ErrBindingMismatch)

	clock.t = clock.t.Add(2 * time.Second) // c-old's retention has passed
	mustBind(t, s, Binding{Consultation: "c-old", Patient: "p-2"}, nil)
	clock.t = clock.t.Add(10 * retention) // in use: no expiry
	mustBind(t, s, Binding{Consultation: "c-live", Patient: "p-2"}, ErrBindingMismatch)
	mustBind(t, s, Binding{Consultation: "c-again", Patient: "p-2"}, ErrBindingMismatch)

	// Finished sweeps what has expired, from memory and from disk.
	if err := s.Finished("c-live", clock.t); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(retention)
	if err := s.Finished("c-again", clock.t); err != nil {
		t.Fatal(err)
	}
	if n := s.Len(); n != 2 { // c-again (just finished) and c-old (in use)
		t.Fatalf("%d bindings after the sweep, want 2", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "c-live.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("expired binding still on disk: %v", err)
	}
	s = openBindings(t, dir, retention, clock)
	mustBind(t, s, Binding{Consultation: "c-old", Patient: "p-1"}, ErrBindingMismatch) // rebound to p-2 above
	mustBind(t, s, Binding{Consultation: "c-live", Patient: "p-2"}, nil)
}

// TestFileBindingsRefuseCorruptFiles: a binding file that cannot be read
// stops the server from starting rather than silently unbinding.
func TestFileBindingsRefuseCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c-1.json"), []byte(`{"consultation":"c-9","patient":"p-1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileBindings(dir, 0); err == nil {
		t.Fatal("a binding file naming another consultation was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "c-1.json"), []byte(`{`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileBindings(dir, 0); err == nil {
		t.Fatal("a truncated binding file was accepted")
	}
}

// TestMemoryBindingsDefault: the SFU's default store enforces bindings and
// lets finished ones expire.
func TestMemoryBindingsDefault(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := &MemoryBindings{Retention: time.Minute, Now: clock.now}
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-1"}, nil)
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-2"}, ErrBindingMismatch)
	if err := s.Finished("c-1", clock.t); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(time.Minute)
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-2"}, nil)
}

// TestFileBindingsInUseAtStartExpire: a binding still marked in use when
// the process ended (a crash) starts its retention at the next start rather
// than never expiring.
func TestFileBindingsInUseAtStartExpire(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 0)}
	s := openBindings(t, dir, time.Hour, clock)
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-1"}, nil) // never Finished: the process died

	clock.t = clock.t.Add(10 * time.Hour)
	s = openBindings(t, dir, time.Hour, clock) // restart: still bound
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-2"}, ErrBindingMismatch)
	clock.t = clock.t.Add(time.Hour)
	s = openBindings(t, dir, time.Hour, clock) // a retention after that restart: forgotten
	mustBind(t, s, Binding{Consultation: "c-1", Patient: "p-2"}, nil)
}
