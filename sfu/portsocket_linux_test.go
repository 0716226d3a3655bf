//go:build linux && (amd64 || arm64)

package sfu

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// epollWatched lists the descriptors registered in this process's epoll
// sets (Go's netpoller), from /proc/self/fdinfo.
func epollWatched(t *testing.T) map[int]bool {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	watched := map[int]bool{}
	polls := 0
	for _, e := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l != "anon_inode:[eventpoll]" {
			continue
		}
		polls++
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(info), "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[0] == "tfd:" {
				if n, err := strconv.Atoi(f[1]); err == nil {
					watched[n] = true
				}
			}
		}
	}
	if polls == 0 {
		t.Skip("no epoll set in this process to look at")
	}
	return watched
}

func socketFd(t *testing.T, conn udpSocket) int {
	t.Helper()
	raw, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// The port's socket is in no epoll set, so a datagram queued while its
// reader sleeps to coalesce wakes no thread (portsocket_linux.go). Go's
// own socket, for comparison, is in one: the test can tell.
func TestPortSocketIsOutsideTheNetpoller(t *testing.T) {
	goConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer goConn.Close()
	conn, err := listenPortUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	watched := epollWatched(t)
	if !watched[socketFd(t, goConn)] {
		t.Fatalf("Go's socket is not in the netpoller's set %v: the check cannot tell", watched)
	}
	if fd := socketFd(t, conn); watched[fd] {
		t.Fatalf("the port's socket (fd %d) is in an epoll set", fd)
	}
}

// A datagram goes both ways through the port's socket, on IPv4 and IPv6,
// and a write allocates nothing (it is every packet the own path sends).
func TestPortSocketSendsAndReceives(t *testing.T) {
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback} {
		conn, err := listenPortUDP(&net.UDPAddr{IP: ip})
		if err != nil {
			if ip.To4() == nil {
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			}
			t.Fatal(err)
		}
		defer conn.Close()
		peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: ip})
		if err != nil {
			t.Fatal(err)
		}
		defer peer.Close()
		port := conn.LocalAddr().(*net.UDPAddr).Port
		if port == 0 {
			t.Fatalf("%v: bound port not reported", ip)
		}
		to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
		if _, err := conn.WriteToUDPAddrPort([]byte("out"), to); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 16)
		_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := peer.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "out" || int(from.Port()) != port {
			t.Fatalf("%v: peer got %q from %v (%v)", ip, buf[:n], from, err)
		}
		if _, err := peer.WriteToUDPAddrPort([]byte("in"), netip.AddrPortFrom(to.Addr(), uint16(port))); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err = conn.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != "in" || from.Port() != to.Port() {
			t.Fatalf("%v: port got %q from %v (%v)", ip, buf[:n], from, err)
		}
		// The fewest of three tries: AllocsPerRun counts the whole
		// process's allocations, an earlier test's goroutines winding down
		// included.
		allocs := 1e9
		for range 3 {
			allocs = min(allocs, testing.AllocsPerRun(100, func() { _, _ = conn.WriteToUDPAddrPort(buf[:2], to) }))
		}
		if allocs != 0 {
			t.Errorf("%v: a write allocates %.1f times", ip, allocs)
		}
	}
}

// A handle's deadlines are its own; a read past its deadline, and one on a
// handle closed while it waits, return as Go's sockets' would; the socket
// lives until its last handle closes.
func TestPortSocketHandles(t *testing.T) {
	conn, err := listenPortUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	second, err := secondHandle(conn)
	if err != nil {
		t.Fatal(err)
	}
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	to := peer.LocalAddr().(*net.UDPAddr).AddrPort()

	_ = conn.SetWriteDeadline(time.Now())
	if _, err := conn.WriteToUDPAddrPort([]byte("x"), to); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write past the deadline: %v", err)
	}
	if _, err := second.WriteToUDPAddrPort([]byte("x"), to); err != nil {
		t.Fatalf("the other handle's write failed under the first's deadline: %v", err)
	}
	_ = conn.SetWriteDeadline(time.Time{})

	_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, _, err := conn.ReadFromUDPAddrPort(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	var ne net.Error
	if _, _, err := conn.ReadFromUDPAddrPort(make([]byte, 8)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("a deadline's error is not a net.Error timeout: %v", err)
	}
	_ = conn.SetReadDeadline(time.Time{})

	// A read waiting in poll(2) returns when its handle closes (at the
	// end of its slice of the wait, portWaitSlice).
	closeWakesRead(t, conn, "its handle closed")
	if err := conn.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second close: %v", err)
	}
	if _, err := second.WriteToUDPAddrPort([]byte("still"), to); err != nil {
		t.Fatalf("the socket closed with a handle open: %v", err)
	}

	// The last close wakes a read waiting on the socket at once, not at
	// the end of a slice (here an hour), and the descriptor is closed.
	second.(*portHandle).s.slice = time.Hour
	fd, port := socketFd(t, second), second.LocalAddr().(*net.UDPAddr).Port
	closeWakesRead(t, second, "the last close")
	if sa, err := syscall.Getsockname(fd); err == nil {
		if in4, ok := sa.(*syscall.SockaddrInet4); ok && in4.Port == port {
			t.Errorf("fd %d is still the port's socket after the last handle closed", fd)
		}
	}
	if _, err := secondHandle(second); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a handle on a closed socket: %v", err)
	}
}

// A port in use is refused with the address and the kernel's reason.
func TestPortSocketBindError(t *testing.T) {
	conn, err := listenPortUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	addr := conn.LocalAddr().(*net.UDPAddr)
	_, err = listenPortUDP(addr)
	_, goErr := net.ListenUDP("udp", addr)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || goErr == nil || err.Error() != goErr.Error() {
		t.Fatalf("second bind: %v, want Go's %v", err, goErr)
	}
	if got := addr.AddrPort().Addr(); !got.Is4() {
		t.Errorf("LocalAddr is %v, not IPv4 as Go's", got)
	}
}

// closeWakesRead closes h while a read waits on it; the read must return
// net.ErrClosed.
func closeWakesRead(t *testing.T, h udpSocket, what string) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, _, err := h.ReadFromUDPAddrPort(make([]byte, 8))
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }() // the last close waits for the read
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("the waiting read returned %v after %s, want net.ErrClosed", err, what)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("the waiting read did not return after %s", what)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// An IPv4-mapped IPv6 destination is sent to on the IPv4 socket, as Go's
// socket does.
func TestPortSocketSendsToMappedAddresses(t *testing.T) {
	conn, err := listenPortUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	p := peer.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := netip.AddrPortFrom(netip.AddrFrom16(p.Addr().As16()), p.Port())
	if _, err := conn.WriteToUDPAddrPort([]byte("m"), mapped); err != nil {
		t.Fatalf("to %v: %v", mapped, err)
	}
	buf := make([]byte, 4)
	_ = peer.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "m" {
		t.Fatalf("peer got %q (%v)", buf[:n], err)
	}
}

// Writers racing the close of both handles (run under -race) end with
// net.ErrClosed, not a kernel error, and the batched reader over the
// socket returns net.ErrClosed too.
func TestPortSocketCloseUnderLoad(t *testing.T) {
	conn, err := listenPortUDP(&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	second, err := secondHandle(conn)
	if err != nil {
		t.Fatal(err)
	}
	in, err := newIngressConn(conn, nil, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	to := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(conn.LocalAddr().(*net.UDPAddr).Port))
	errs := make(chan error, 5)
	for _, h := range []udpSocket{conn, second, conn, second} {
		go func() {
			for {
				if _, err := h.WriteToUDPAddrPort([]byte("load"), to); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	go func() {
		buf := make([]byte, ingressMTU)
		for {
			if _, _, err := in.ReadFromAddrPort(buf); err != nil {
				errs <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	_ = in.Close()
	_ = second.Close()
	for range 5 {
		select {
		case err := <-errs:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ended with %v, want net.ErrClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a writer or the reader did not end after the close")
		}
	}
}
