package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// joinOnce joins consultation tok's cid on the server at addr and leaves;
// a refusal is returned as the *client.ProtocolError.
func joinOnce(ctx context.Context, addr, tok string) error {
	c, err := client.Dial(ctx, client.Options{URL: "ws://" + addr + "/v1/signal", Token: tok})
	if err != nil {
		return err
	}
	return c.Leave(ctx)
}

// joinAudit reads --data/audit/join.jsonl.
func joinAudit(t *testing.T, data string) []signaling.JoinAudit {
	t.Helper()
	f, err := os.Open(filepath.Join(data, "audit", "join.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []signaling.JoinAudit
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev signaling.JoinAudit
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, ev)
	}
	return out
}

// TestBindingSurvivesRestart: c-1 is bound to p-1 by a join; after the
// server process is restarted on the same data directory a token binding
// c-1 to p-2 is refused with binding_mismatch and audited, while p-1's
// consultation still admits its own people. Once the binding of the
// finished consultation is older than --binding-retention it is forgotten.
func TestBindingSurvivesRestart(t *testing.T) {
	data := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	addr, _, stop := startServe(t, data)
	patient := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	if err := joinOnce(ctx, addr, patient); err != nil {
		t.Fatalf("first join: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	addr, _, stop = startServe(t, data)
	other := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-9", "--pid", "p-2", "--cid", "c-1")
	var pe *client.ProtocolError
	if err := joinOnce(ctx, addr, other); !errors.As(err, &pe) || pe.Code != signaling.CodeBindingMismatch {
		t.Fatalf("after a restart, c-1 for patient p-2: %v, want %s", err, signaling.CodeBindingMismatch)
	}
	audit := joinAudit(t, data)
	if len(audit) != 1 {
		t.Fatalf("%d join audit lines, want 1: %+v", len(audit), audit)
	}
	if a := audit[0]; a.Consultation != "c-1" || a.Sub != "d-9" || a.Reason != signaling.CodeBindingMismatch || a.Outcome != "refused" {
		t.Errorf("audit line %+v", a)
	}
	if b, _ := os.ReadFile(filepath.Join(data, "audit", "join.jsonl")); strings.Contains(string(b), other) {
		t.Error("the audit log holds the token")
	}
	doc := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-1", "--pid", "p-1", "--cid", "c-1")
	if err := joinOnce(ctx, addr, doc); err != nil {
		t.Fatalf("c-1's own clinician after the restart: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}

	// A short retention: the finished consultation's binding is gone at start-up.
	time.Sleep(50 * time.Millisecond)
	addr, _, _ = startServe(t, data, "--binding-retention", "10ms")
	if err := joinOnce(ctx, addr, other); err != nil {
		t.Fatalf("after the retention, c-1 for patient p-2: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "bindings", "c-1.json")); err != nil {
		t.Fatalf("the new binding is not on disk: %v", err)
	}
}
