package replay_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/replay"
)

// readAuditLines parses every line of the audit log at path, failing the
// test on any line that is not one complete JSON object.
func readAuditLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("audit line %d is not JSON: %q: %v", len(out)+1, sc.Text(), err)
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAuditAppendsSyncedLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dir", "replay-audit.jsonl")
	a, err := replay.OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	var counted sync.Map // "action/outcome" -> *atomic.Int64
	a.OnRecord = func(action, outcome string) {
		c, _ := counted.LoadOrStore(action+"/"+outcome, new(atomic.Int64))
		c.(*atomic.Int64).Add(1)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %o, want 600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(path)); di.Mode().Perm()&0o077 != 0 {
		t.Errorf("audit log directory mode %o is open to others", di.Mode().Perm())
	}

	const writers, each = 16, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ev := replay.AuditEvent{Sub: fmt.Sprintf("p%02d", w), Role: "patient", Action: replay.AuditView,
					Recording: fmt.Sprintf("%02d-%03d", w, i), Outcome: replay.OutcomeOK}
				if i%5 == 0 {
					ev.Action, ev.Outcome, ev.Reason = replay.AuditRefuse, replay.OutcomeRefused, "not_visible"
				}
				if err := a.Record(ev); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readAuditLines(t, path)
	if len(lines) != writers*each {
		t.Fatalf("%d audit lines, want %d", len(lines), writers*each)
	}
	seen := map[string]bool{}
	for _, l := range lines {
		rec, _ := l["recording"].(string)
		if seen[rec] {
			t.Errorf("recording %s audited twice", rec)
		}
		seen[rec] = true
		ts, _ := l["time"].(string)
		if at, err := time.Parse(time.RFC3339Nano, ts); err != nil || time.Since(at) > time.Minute || !strings.HasSuffix(ts, "Z") {
			t.Errorf("line %v: time %q is not a recent UTC RFC 3339 time", l, ts)
		}
		if _, ok := l["token"]; ok {
			t.Errorf("audit line carries a token: %v", l)
		}
	}
	wantCounts := map[string]int64{"view/ok": writers * each * 4 / 5, "refuse/refused": writers * each / 5}
	for k, want := range wantCounts {
		c, ok := counted.Load(k)
		if !ok || c.(*atomic.Int64).Load() != want {
			t.Errorf("OnRecord %s counted %v, want %d", k, c, want)
		}
	}

	// Reopening appends; nothing earlier is lost or rewritten.
	a2, err := replay.OpenAudit(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := a2.Record(replay.AuditEvent{Action: replay.AuditList, Outcome: replay.OutcomeOK, Sub: "later"}); err != nil {
		t.Fatal(err)
	}
	a2.Close()
	if err := a2.Record(replay.AuditEvent{Action: replay.AuditList, Outcome: replay.OutcomeOK}); err == nil {
		t.Error("Record after Close succeeded; want an error")
	}
	lines = readAuditLines(t, path)
	if len(lines) != writers*each+1 || lines[len(lines)-1]["sub"] != "later" {
		t.Errorf("after reopen: %d lines, last %v", len(lines), lines[len(lines)-1])
	}
}

func TestOpenAuditRefusesBadPaths(t *testing.T) {
	if _, err := replay.OpenAudit(""); err == nil {
		t.Error("OpenAudit(\"\") succeeded")
	}
	// A path whose parent is a file cannot hold a log.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := replay.OpenAudit(filepath.Join(file, "audit.jsonl")); err == nil {
		t.Error("OpenAudit under a regular file succeeded")
	}
}
