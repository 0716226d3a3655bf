package check

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repo is the repository root, relative to this package.
const repo = "../.."

// medcallBin is a medcall binary built from this checkout for the tests.
var medcallBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "medcall-deploy-check")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	medcallBin = filepath.Join(dir, "medcall")
	// The flags of deploy/image/build.sh, so that its build finds every
	// package already compiled.
	build := exec.Command("go", "build", "-trimpath", "-tags", "timetzdata", "-ldflags=-s -w -buildid=", "-o", medcallBin, "./cmd/medcall")
	build.Dir = repo
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build ./cmd/medcall: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// needTool returns the path of an outside program, skipping the test when
// it is missing, except under CI where that is a failure.
func needTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is required under CI (%s): %v", name, install, err)
		}
		t.Skipf("%s not installed (%s)", name, install)
	}
	return p
}

var flagName = regexp.MustCompile(`(?m)^  --([a-z0-9-]+)$`)

// serveFlags is the set of flags `medcall serve --help` lists.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	out, _ := exec.Command(medcallBin, "serve", "--help").CombinedOutput()
	flags := map[string]bool{}
	for _, m := range flagName.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) < 10 {
		t.Fatalf("medcall serve --help lists %d flags: %s", len(flags), out)
	}
	return flags
}

// checkServeArgs fails t for any --flag in args (after "serve") that serve
// does not know, and for any MEDCALL_* variable that names no flag.
func checkServeArgs(t *testing.T, where string, args []string, env []string) {
	t.Helper()
	flags := serveFlags(t)
	for _, a := range args {
		if name, ok := strings.CutPrefix(a, "--"); ok {
			name, _, _ = strings.Cut(name, "=")
			if !flags[name] {
				t.Errorf("%s: medcall serve has no flag --%s", where, name)
			}
		}
	}
	for _, e := range env {
		name, ok := strings.CutPrefix(e, "MEDCALL_")
		if !ok || name == "S3_ACCESS_KEY" || name == "S3_SECRET_KEY" {
			continue
		}
		if f := strings.ReplaceAll(strings.ToLower(name), "_", "-"); !flags[f] {
			t.Errorf("%s: %s sets no flag of medcall serve", where, e)
		}
	}
}
