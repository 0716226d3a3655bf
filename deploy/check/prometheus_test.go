package check

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrometheusRules: the alert rules load, and every alert fires on its
// case and stays quiet on its near miss (promtool test rules). The queries
// themselves are run against a real Prometheus scraping a bench run by
// cmd/medcall's TestDashboardAndAlertQueriesReturnData.
func TestPrometheusRules(t *testing.T) {
	promtool := needTool(t, "promtool", "Debian package prometheus")
	for _, args := range [][]string{
		{"check", "rules", "alerts.yml"},
		{"test", "rules", "alerts_test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = filepath.Join(repo, "deploy", "prometheus")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// The compose box's Prometheus configuration, with the rules where the
	// container mounts them.
	b, err := os.ReadFile(filepath.Join(repo, "deploy", "compose", "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rules, _ := filepath.Abs(filepath.Join(repo, "deploy", "prometheus", "alerts.yml"))
	cfg := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(strings.ReplaceAll(string(b), "/etc/prometheus/alerts.yml", rules)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", cfg).CombinedOutput(); err != nil {
		t.Errorf("promtool check config deploy/compose/prometheus.yml: %v\n%s", err, out)
	}
}
