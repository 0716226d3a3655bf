package signaling_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// A test binary started with these variables is a client (nsClientMain).
const (
	nsClientURL   = "MEDCALL_NS_CLIENT_URL"
	nsClientToken = "MEDCALL_NS_CLIENT_TOKEN"
)

// nsClientMain joins with the Go client, publishes audio, prints "joined",
// then waits; if the server removes it, it prints "bye REASON". It runs in
// its own process so that every socket it opens (WebSocket and ICE) lives in
// the network namespace it was started in.
func nsClientMain(url, tok string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: url, Token: tok, AudioFile: audioFile})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer c.Close()
	fmt.Println("joined")
	if m, err := c.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye }); err == nil {
		fmt.Println("bye", m.Reason)
	}
	<-ctx.Done()
	return 0
}

// needNetAdmin skips without root, ip or nft, except under CI where that is
// a failure.
func needNetAdmin(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (network namespaces)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("needs %s (Debian: apt-get install -y iproute2 nftables; run as root)", strings.Join(missing, ", "))
	if os.Getenv("CI") != "" {
		t.Fatal(msg + "; CI is set, so this fails instead of skipping")
	}
	t.Skip(msg)
}

// netns is a network namespace joined to this one by a veth pair.
type netns struct {
	t            *testing.T
	name         string
	hostIP, nsIP string
	hostIf, nsIf string
	clientLines  chan string // what the namespace's client prints
}

func sh(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNetns builds namespace i12-lv-XXXX with 10.112.N.2/24, reachable from
// here at 10.112.N.1; both go when the test ends.
func newNetns(t *testing.T) *netns {
	needNetAdmin(t)
	var b [2]byte
	_, _ = rand.Read(b[:])
	r := binary.BigEndian.Uint16(b[:])
	n := &netns{
		t:      t,
		name:   fmt.Sprintf("i12-lv-%04x", r),
		hostIf: fmt.Sprintf("i12h%04x", r),
		nsIf:   fmt.Sprintf("i12n%04x", r),
		hostIP: fmt.Sprintf("10.112.%d.1", 1+r%250),
		nsIP:   fmt.Sprintf("10.112.%d.2", 1+r%250),
	}
	sh(t, "ip", "netns", "add", n.name)
	t.Cleanup(func() {
		_ = exec.Command("ip", "link", "del", n.hostIf).Run()
		_ = exec.Command("ip", "netns", "del", n.name).Run()
	})
	sh(t, "ip", "link", "add", n.hostIf, "type", "veth", "peer", "name", n.nsIf, "netns", n.name)
	sh(t, "ip", "addr", "add", n.hostIP+"/24", "dev", n.hostIf)
	sh(t, "ip", "link", "set", n.hostIf, "up")
	sh(t, "ip", "netns", "exec", n.name, "ip", "addr", "add", n.nsIP+"/24", "dev", n.nsIf)
	sh(t, "ip", "netns", "exec", n.name, "ip", "link", "set", n.nsIf, "up")
	sh(t, "ip", "netns", "exec", n.name, "ip", "link", "set", "lo", "up")
	return n
}

// serve makes e's signaling reachable from the namespace, on the host end
// of the veth, and returns its WebSocket URL.
func (n *netns) serve(e *env) string {
	ln, err := net.Listen("tcp", n.hostIP+":0")
	if err != nil {
		n.t.Fatal(err)
	}
	srv := &http.Server{Handler: e.Mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	n.t.Cleanup(func() { _ = srv.Close() })
	return "ws://" + ln.Addr().String() + "/v1/signal"
}

// startClient runs a client (nsClientMain) inside the namespace and waits
// until it has joined.
func (n *netns) startClient(ctx context.Context, url, tok string) {
	n.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		n.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", n.name, exe)
	cmd.Env = append(os.Environ(), nsClientURL+"="+url, nsClientToken+"="+tok)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		n.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	n.clientLines = make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			n.clientLines <- sc.Text()
		}
		close(n.clientLines)
	}()
	if line := n.clientLine(ctx); line != "joined" {
		n.t.Fatalf("client in the namespace: %q", line)
	}
}

// clientLine is the next line the namespace's client printed.
func (n *netns) clientLine(ctx context.Context) string {
	select {
	case l, ok := <-n.clientLines:
		if !ok {
			return "(exited)"
		}
		return l
	case <-ctx.Done():
		return "(nothing: " + ctx.Err().Error() + ")"
	}
}

// drop makes the namespace drop every packet (all), or only UDP (ICE and
// media), in both directions, without telling either end: TCP connections
// through it become half-open.
func (n *netns) drop(onlyUDP bool) {
	n.t.Helper()
	rule := ""
	if onlyUDP {
		rule = " meta l4proto udp drop;"
	}
	policy := "drop"
	if onlyUDP {
		policy = "accept"
	}
	ruleset := fmt.Sprintf("table inet i12drop {\n chain in { type filter hook input priority 0; policy %s;%s }\n chain out { type filter hook output priority 0; policy %s;%s }\n}\n", policy, rule, policy, rule)
	cmd := exec.Command("ip", "netns", "exec", n.name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		n.t.Fatalf("nft: %v: %s", err, out)
	}
}

// linkDown takes the namespace's end of the veth down: nothing reaches the
// client any more, and nothing tells the server.
func (n *netns) linkDown() {
	n.t.Helper()
	sh(n.t, "ip", "netns", "exec", n.name, "ip", "link", "set", n.nsIf, "down")
}
