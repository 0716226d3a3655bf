package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestSystemdUnit: the unit passes systemd-analyze verify with a real
// binary in place, runs `serve` with flags serve knows, and its sandbox
// rates "OK" or better in systemd-analyze security (offline).
func TestSystemdUnit(t *testing.T) {
	analyze := needTool(t, "systemd-analyze", "Debian package systemd")
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "systemd", "medcall.service"))
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	for _, want := range []string{"ProtectSystem=strict", "DynamicUser=yes", "ReadWritePaths=/var/lib/medcall", "NoNewPrivileges=yes", "CapabilityBoundingSet=\n"} {
		if !strings.Contains(unit, want) {
			t.Errorf("unit lacks %q", strings.TrimSpace(want))
		}
	}
	exec0 := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/medcall (.*)$`).FindStringSubmatch(unit)
	if exec0 == nil {
		t.Fatal("no ExecStart=/usr/local/bin/medcall ...")
	}
	checkServeArgs(t, "deploy/systemd/medcall.service", strings.Fields(exec0[1])[1:], nil)

	dir := t.TempDir()
	path := filepath.Join(dir, "medcall.service")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(unit, "/usr/local/bin/medcall", medcallBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(analyze, "verify", path).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command(analyze, "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for medcall.service: ([0-9.]+) (\S+)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	if score, _ := strconv.ParseFloat(m[1], 64); score > 3 {
		t.Errorf("exposure %s %s; want at most 3 (OK):\n%s", m[1], m[2], out)
	}
	t.Logf("systemd-analyze security: exposure %s %s", m[1], m[2])
}
