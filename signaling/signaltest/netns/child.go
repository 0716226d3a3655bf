package netns

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"testing"
)

// The environment of a re-executed test binary: which function to run and
// its arguments.
const (
	childEnv     = "MEDCALL_NETNS_CHILD"
	childArgsEnv = "MEDCALL_NETNS_ARGS"
	// ChildTest is the name of the test function that must call Child.
	ChildTest = "TestNetnsChild"
)

// Child runs one of funcs when this test binary was started by NS.Func,
// and skips otherwise. Each package that uses NS.Func has one test named
// ChildTest that calls it:
//
//	func TestNetnsChild(t *testing.T) {
//		netns.Child(t, map[string]func([]string) error{"patient": runPatient})
//	}
//
// A function reports to its parent through standard output (lines it
// prints; the testing package adds its own PASS/FAIL lines) and fails the
// child test by returning an error.
func Child(t *testing.T, funcs map[string]func(args []string) error) {
	name, ok := os.LookupEnv(childEnv)
	if !ok {
		t.Skip("runs only inside a network namespace, started by a netns test")
	}
	fn := funcs[name]
	if fn == nil {
		t.Fatalf("netns child: no function %q", name)
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv(childArgsEnv)), &args); err != nil {
		t.Fatalf("netns child %s: arguments: %v", name, err)
	}
	if err := fn(args); err != nil {
		t.Fatalf("netns child %s: %v", name, err)
	}
}

// Func prepares this test binary to run, inside the namespace, the function
// registered under name with Child, given args. The caller sets Stdout and
// Stderr and starts it.
func (n *NS) Func(ctx context.Context, name string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		n.topo.t.Fatalf("netns: find the test binary: %v", err)
	}
	b, _ := json.Marshal(args)
	cmd := n.Command(ctx, self, "-test.run=^"+ChildTest+"$", "-test.count=1", "-test.timeout=10m")
	cmd.Env = append(os.Environ(), childEnv+"="+name, childArgsEnv+"="+string(b))
	return cmd
}
