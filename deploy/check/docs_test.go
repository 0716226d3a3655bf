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

// testRef is a backticked test reference in a doc: `path/x_test.go:TestName`,
// or a bare `TestName` (or Benchmark) that continues the last file named in
// the same table cell.
var testRef = regexp.MustCompile("`(?:([A-Za-z0-9_./-]+_test\\.go):)?((?:Test|Benchmark)[A-Za-z0-9_]+)`")

// TestDocsCiteTestsThatExist: every test README.md, signaling/PROTOCOL.md and
// docs/*.md cite as proof exists. `path/x_test.go:TestName` must name a file
// of the repository holding `func TestName(`; a bare `TestName` after it in
// the same table cell must be in that file too; a bare one anywhere else
// must be a test or benchmark of some *_test.go in the repository.
func TestDocsCiteTestsThatExist(t *testing.T) {
	docs, _ := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	docs = append(docs, filepath.Join(repo, "README.md"), filepath.Join(repo, "signaling", "PROTOCOL.md"))
	sources := map[string]string{} // repository-relative path -> text of a *_test.go
	err := filepath.WalkDir(repo, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, "_test.go") {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(repo, p)
			sources[filepath.ToSlash(rel)] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defines := func(src, name string) bool {
		return strings.Contains(src, "\nfunc "+name+"(")
	}
	definedAnywhere := func(name string) bool {
		for _, src := range sources {
			if defines(src, name) {
				return true
			}
		}
		return false
	}
	cited := 0
	for _, doc := range docs {
		b, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(doc)
		for n, line := range strings.Split(string(b), "\n") {
			cells := []string{line}
			if strings.HasPrefix(line, "|") {
				cells = strings.Split(line, "|")
			}
			for _, cell := range cells {
				file := "" // the last file named in this cell
				for _, m := range testRef.FindAllStringSubmatch(cell, -1) {
					cited++
					if m[1] != "" {
						file = m[1]
						if _, ok := sources[file]; !ok {
							t.Errorf("%s:%d cites %s:%s, but there is no %s", name, n+1, m[1], m[2], file)
							continue
						}
					}
					switch {
					case file != "" && !defines(sources[file], m[2]):
						t.Errorf("%s:%d cites %s in %s, which has no func %s(", name, n+1, m[2], file, m[2])
					case file == "" && !definedAnywhere(m[2]):
						t.Errorf("%s:%d cites %s, which no *_test.go in the repository defines", name, n+1, m[2])
					}
				}
			}
		}
	}
	if cited < 20 {
		t.Errorf("found only %d cited tests in the docs; is the pattern still right?", cited)
	}
}
