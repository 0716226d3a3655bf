package netns

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// in runs fn on an OS thread switched into the namespace, then switches the
// thread back. A file descriptor fn opens (a socket, a TUN device) belongs
// to the namespace for its whole life, whichever thread later uses it, so a
// test can hold sockets in several namespaces at once without a child
// process. fn must not start goroutines that open descriptors: they may run
// on other threads. If the thread cannot be switched back it stays locked
// and dies with its goroutine, so no other goroutine runs in the namespace
// by accident.
func (n *NS) in(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: open this thread's namespace: %w", n.Name, err)
			return
		}
		defer self.Close()
		target, err := os.Open("/var/run/netns/" + n.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: open: %w", n.Name, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: enter: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("netns %s: leave: %w", n.Name, err) // the thread stays locked and exits
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// ListenUDP opens a UDP socket inside the namespace, on addr ("IP:port",
// port 0 for any), for the test process itself to use. It is closed when
// the test ends.
func (n *NS) ListenUDP(addr string) *net.UDPConn {
	n.topo.t.Helper()
	var c *net.UDPConn
	err := n.in(func() error {
		a, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", a)
		return err
	})
	if err != nil {
		n.topo.t.Fatalf("netns %s: listen on udp %s: %v", n.Name, addr, err)
	}
	n.topo.t.Cleanup(func() { c.Close() })
	return c
}
