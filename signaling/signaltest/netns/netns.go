// Package netns builds small network topologies out of Linux network
// namespaces for tests: namespaces, veth links with addresses, routes, NAT
// (masquerade and 1:1 DNAT/SNAT) and firewall rules through nftables, and
// processes started inside a namespace. Everything a Topology creates is
// removed when the test ends.
//
// It needs root (CAP_NET_ADMIN) and the ip and nft programs. Without them a
// test is skipped with the reason, except when CI is set, where that is a
// failure: CI must run these tests.
//
// Go code cannot reliably switch a running Go process into another network
// namespace (setns is per thread and the runtime moves goroutines between
// threads), so code that must run inside a namespace runs in a child process:
// a program through NS.Command, or a function of the test binary itself
// through Child and NS.Func.
package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Topology is a set of namespaces owned by one test. Every namespace name
// starts with the topology's prefix (e.g. "i09a-nat-") so concurrent tests
// and helpers on one machine never collide.
type Topology struct {
	t      testing.TB
	prefix string

	mu    sync.Mutex
	nss   []*NS
	procs []*exec.Cmd
	links int
}

// NS is one network namespace of a Topology.
type NS struct {
	Name string // full name, as `ip netns list` shows it
	topo *Topology
}

// Require skips the test (or fails it under CI) unless it runs as root with
// the ip and nft programs installed.
func Require(t testing.TB) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "network namespace tests need root (CAP_NET_ADMIN)"
	default:
		for _, prog := range []string{"ip", "nft"} {
			if _, err := exec.LookPath(prog); err != nil {
				why = prog + " is missing; install iproute2 and nftables (Debian: apt-get install -y iproute2 nftables)"
			}
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this fails instead of skipping)", why)
	}
	t.Skip(why)
}

// New starts an empty topology whose namespaces are named prefix+name. It
// calls Require first. Namespaces left behind by an earlier crashed run with
// the same names are removed when they are created again.
func New(t testing.TB, prefix string) *Topology {
	t.Helper()
	Require(t)
	tp := &Topology{t: t, prefix: prefix}
	t.Cleanup(tp.close)
	return tp
}

// Namespace creates a namespace with its loopback up.
func (tp *Topology) Namespace(name string) *NS {
	tp.t.Helper()
	full := tp.prefix + name
	_ = exec.Command("ip", "netns", "del", full).Run() // a stale one from a crashed run
	tp.run("ip", "netns", "add", full)
	n := &NS{Name: full, topo: tp}
	tp.mu.Lock()
	tp.nss = append(tp.nss, n)
	tp.mu.Unlock()
	n.Run("ip", "link", "set", "lo", "up")
	return n
}

// Link joins a and b with a veth pair: aIf in a with aAddr, bIf in b with
// bAddr (addresses in CIDR form, e.g. "10.9.1.1/24"; empty for none). Both
// ends are brought up. Interface names live inside their namespaces, so
// they only need to be unique there.
func (tp *Topology) Link(a *NS, aIf, aAddr string, b *NS, bIf, bAddr string) {
	tp.t.Helper()
	tp.run("ip", "link", "add", aIf, "netns", a.Name, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, e := range []struct {
		n         *NS
		ifc, addr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.addr != "" {
			e.n.Addr(e.ifc, e.addr)
		}
		e.n.Run("ip", "link", "set", e.ifc, "up")
	}
}

// Addr adds an address (CIDR form) to an interface; IPv6 addresses skip
// duplicate address detection so they are usable at once.
func (n *NS) Addr(ifc, cidr string) {
	n.topo.t.Helper()
	if strings.Contains(cidr, ":") {
		n.Run("ip", "-6", "addr", "add", cidr, "dev", ifc, "nodad")
		return
	}
	n.Run("ip", "addr", "add", cidr, "dev", ifc)
}

// Route adds a route to dst ("default" or a CIDR) via a gateway address.
func (n *NS) Route(dst, via string) {
	n.topo.t.Helper()
	if strings.Contains(via, ":") {
		n.Run("ip", "-6", "route", "add", dst, "via", via)
		return
	}
	n.Run("ip", "route", "add", dst, "via", via)
}

// Forward turns the namespace into a router (IPv4 and IPv6 forwarding).
func (n *NS) Forward() {
	n.topo.t.Helper()
	// /proc/sys/net is the namespace's own; sh is on every machine, sysctl
	// (procps) not always.
	n.Run("sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward && echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
}

// Nft loads an nftables script into the namespace (`nft -f -`). Rulesets
// are per namespace, so tables need no unique names.
func (n *NS) Nft(script string) {
	n.topo.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", n.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.topo.t.Fatalf("netns %s: nft: %v: %s\nscript:\n%s", n.Name, err, out, script)
	}
}

// Masquerade makes the namespace a home router: traffic leaving through
// outIf gets outIf's address (source NAT with port rewriting), and only
// replies come back in. It also turns forwarding on.
func (n *NS) Masquerade(outIf string) {
	n.topo.t.Helper()
	n.Forward()
	n.Nft(fmt.Sprintf(`table ip masq {
	chain nat_post { type nat hook postrouting priority srcnat; oifname %q masquerade; }
	chain filter_fwd {
		type filter hook forward priority filter; policy accept;
		iifname %q ct state established,related accept
		iifname %q drop
	}
}
`, outIf, outIf, outIf))
}

// NAT1to1 maps a public address to a private one, as a cloud VM's 1:1 NAT
// does: packets to public are sent on to private (DNAT) and packets from
// private leave as public (SNAT), ports unchanged. The public address must
// be assigned to or routed to this namespace. It also turns forwarding on.
func (n *NS) NAT1to1(public, private string) {
	n.topo.t.Helper()
	n.Forward()
	fam := "ip"
	if strings.Contains(public, ":") {
		fam = "ip6"
	}
	n.Nft(fmt.Sprintf(`table %[1]s one2one {
	chain nat_pre { type nat hook prerouting priority dstnat; %[1]s daddr %[2]s dnat to %[3]s; }
	chain nat_out { type nat hook output priority -100; %[1]s daddr %[2]s dnat to %[3]s; }
	chain nat_post { type nat hook postrouting priority srcnat; %[1]s saddr %[3]s snat to %[2]s; }
}
`, fam, public, private))
}

// DropForwardedUDP makes the namespace a firewall that forwards no UDP at
// all (both directions), as networks that block UDP do.
func (n *NS) DropForwardedUDP() {
	n.topo.t.Helper()
	n.Nft(`table inet noudp {
	chain filter_fwd { type filter hook forward priority filter - 1; policy accept; meta l4proto udp drop; }
}
`)
}

// Run runs a command inside the namespace and fails the test when it fails.
// It returns the command's standard output.
func (n *NS) Run(name string, args ...string) string {
	n.topo.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		n.topo.t.Fatalf("netns %s: %s %s: %v: %s", n.Name, name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Command prepares a program to run inside the namespace. The caller starts
// it; if it is still running when the test ends it is killed then (before
// the namespaces are removed).
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
	cmd.WaitDelay = 5 * time.Second
	n.topo.mu.Lock()
	n.topo.procs = append(n.topo.procs, cmd)
	n.topo.mu.Unlock()
	return cmd
}

func (tp *Topology) run(name string, args ...string) {
	tp.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		tp.t.Fatalf("netns: %s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// close kills what is still running inside the namespaces, then deletes
// them (which removes their veths, addresses and rules with them).
func (tp *Topology) close() {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, p := range tp.procs {
		if p.Process != nil && p.ProcessState == nil {
			_ = p.Process.Kill()
		}
	}
	for _, n := range tp.nss {
		// Anything a test started some other way in the namespace is its
		// own; the namespace goes once its last process exits.
		if out, err := exec.Command("ip", "netns", "del", n.Name).CombinedOutput(); err != nil {
			tp.t.Logf("netns: delete %s: %v: %s", n.Name, err, out)
		}
	}
}
