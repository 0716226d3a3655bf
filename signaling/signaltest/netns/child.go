package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
)

// childEnv names the function a re-executed test binary runs instead of its
// tests.
const childEnv = "MEDCALL_NETNS_CHILD"

// Child runs one of funcs instead of the tests when this process is a child
// started by NS.Func, and exits with its result; otherwise it returns at
// once. Call it first thing in TestMain:
//
//	func TestMain(m *testing.M) {
//		netns.Child(map[string]func([]string) error{"patient": runPatient})
//		os.Exit(m.Run())
//	}
//
// A function reports to the test through its standard output and error.
func Child(funcs map[string]func(args []string) error) {
	name, ok := os.LookupEnv(childEnv)
	if !ok {
		return
	}
	fn := funcs[name]
	if fn == nil {
		fmt.Fprintf(os.Stderr, "netns child: no function %q registered in TestMain\n", name)
		os.Exit(2)
	}
	if err := fn(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "netns child %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Func prepares this test binary to run, inside the namespace, the function
// registered under name with Child, given args. The caller sets Stdout and
// Stderr and starts it.
func (n *NS) Func(ctx context.Context, name string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		n.topo.t.Fatalf("netns: find the test binary: %v", err)
	}
	cmd := n.Command(ctx, self, args...)
	cmd.Env = append(os.Environ(), childEnv+"="+name)
	return cmd
}
