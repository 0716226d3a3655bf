package check

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
)

// TestComposeFile: the compose file loads with the Compose specification's
// own loader (schema, interpolation, references), with the variables of
// env.example; every file it mounts exists; medcall runs `serve` with
// flags serve knows, on the host's network, read-only and without
// capabilities.
func TestComposeFile(t *testing.T) {
	dir, _ := filepath.Abs(filepath.Join(repo, "deploy", "compose"))
	opts, err := cli.NewProjectOptions([]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir), cli.WithEnvFiles(filepath.Join(dir, "env.example")), cli.WithDotEnv)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for _, want := range []string{"medcall", "minio", "prometheus", "grafana"} {
		if _, ok := p.Services[want]; !ok {
			t.Errorf("no service %s", want)
		}
	}
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != "bind" {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s mounts %s: %v", name, v.Source, err)
			}
		}
	}
	m := p.Services["medcall"]
	var env []string
	for k := range m.Environment {
		env = append(env, k)
	}
	checkServeArgs(t, "deploy/compose/compose.yaml", m.Command, env)
	if len(m.Command) == 0 || m.Command[0] != "serve" || m.NetworkMode != "host" || !m.ReadOnly ||
		len(m.CapDrop) != 1 || m.CapDrop[0] != "ALL" || !strings.HasPrefix(m.Image, "localhost/medcall") {
		t.Errorf("medcall service: command %v network %q read-only %v cap_drop %v image %s", m.Command, m.NetworkMode, m.ReadOnly, m.CapDrop, m.Image)
	}
}
