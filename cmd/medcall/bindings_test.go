package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// buildMedcall builds this package's binary into a temporary directory (a
// short test run skips).
func buildMedcall(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := filepath.Join(t.TempDir(), "medcall")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v %s", err, out)
	}
	return bin
}

// serveProcess is a `medcall serve` child process.
type serveProcess struct {
	cmd  *exec.Cmd
	addr string
}

// startServeProcess runs bin as `medcall serve` on data and waits until it
// says where it serves.
func startServeProcess(t *testing.T, bin, data string, extra ...string) *serveProcess {
	t.Helper()
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data", data, "--log-level", "warn"}, extra...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("medcall serve logged:\n%s", logs.String())
		}
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return &serveProcess{cmd: cmd, addr: m[1]}
		}
	}
	t.Fatalf("medcall serve exited before serving: %v", cmd.Wait())
	return nil
}

// stop ends the process as an operator's SIGTERM does and waits for it.
func (p *serveProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("medcall serve after SIGTERM: %v", err)
	}
}

// TestBindingSurvivesRestart: c-1 is bound to p-1 by a join; after the
// `medcall serve` process is restarted on the same data directory a token
// binding c-1 to p-2 is refused with binding_mismatch and audited, while
// p-1's consultation still admits its own people. Once the binding of the
// finished consultation is older than --binding-retention it is forgotten.
func TestBindingSurvivesRestart(t *testing.T) {
	bin := buildMedcall(t)
	data := filepath.Join(t.TempDir(), "data")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	srv := startServeProcess(t, bin, data)
	patient := mintCmd(t, "--data", data, "--role", "patient", "--sub", "p-1", "--pid", "p-1", "--cid", "c-1")
	if err := joinOnce(ctx, srv.addr, patient); err != nil {
		t.Fatalf("first join: %v", err)
	}
	srv.stop(t)

	srv = startServeProcess(t, bin, data)
	other := mintCmd(t, "--data", data, "--role", "clinician", "--sub", "d-9", "--pid", "p-2", "--cid", "c-1")
	var pe *client.ProtocolError
	if err := joinOnce(ctx, srv.addr, other); !errors.As(err, &pe) || pe.Code != signaling.CodeBindingMismatch {
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
	if err := joinOnce(ctx, srv.addr, doc); err != nil {
		t.Fatalf("c-1's own clinician after the restart: %v", err)
	}
	srv.stop(t)

	// A short retention: the finished consultation's binding is gone at start-up.
	time.Sleep(50 * time.Millisecond)
	srv = startServeProcess(t, bin, data, "--binding-retention", "10ms")
	if err := joinOnce(ctx, srv.addr, other); err != nil {
		t.Fatalf("after the retention, c-1 for patient p-2: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "bindings", "c-1.json")); err != nil {
		t.Fatalf("the new binding is not on disk: %v", err)
	}
}
