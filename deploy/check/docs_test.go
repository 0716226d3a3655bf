package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestDocsLinkOnlyIntoTheRepository: README.md and docs/*.md link to files
// that exist in the repository (or to web pages), never outside it, and
// every alert's runbook_url names a section of docs/operations.md.
func TestDocsLinkOnlyIntoTheRepository(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	files = append(files, filepath.Join(repo, "README.md"))
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "../shared") {
			t.Errorf("%s points outside the repository (../shared)", f)
		}
		for _, m := range link.FindAllStringSubmatch(string(b), -1) {
			target := m[1]
			if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
				continue
			}
			p := filepath.Join(filepath.Dir(f), target)
			abs, _ := filepath.Abs(p)
			root, _ := filepath.Abs(repo)
			if !strings.HasPrefix(abs, root+string(filepath.Separator)) {
				t.Errorf("%s links outside the repository: %s", f, target)
			} else if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links to a missing file: %s", f, target)
			}
		}
	}
	ops, err := os.ReadFile(filepath.Join(repo, "docs", "operations.md"))
	if err != nil {
		t.Fatal(err)
	}
	rules, err := os.ReadFile(filepath.Join(repo, "deploy", "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`runbook_url: docs/operations.md#(\S+)`).FindAllStringSubmatch(string(rules), -1) {
		found := false
		for _, line := range strings.Split(string(ops), "\n") {
			if h, ok := strings.CutPrefix(line, "## "); ok && strings.ToLower(strings.TrimSpace(h)) == m[1] {
				found = true
			}
		}
		if !found {
			t.Errorf("alert runbook #%s has no section in docs/operations.md", m[1])
		}
	}
}
