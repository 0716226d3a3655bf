//go:build linux && (amd64 || arm64)

package sfu

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// portsocket_linux.go: the UDP port's socket outside Go's netpoller, where
// reads are batched (Linux on amd64 or arm64).
//
// Go registers every socket it opens with its netpoller, edge-triggered:
// each datagram the kernel queues on a socket nobody is waiting to read
// wakes the thread blocked in epoll_pwait, if there is one, and that thread
// finds no goroutine to run and blocks again. The port's reader coalesces
// its reads (ingress.go), so for most datagrams nobody is waiting: at N=50
// one-to-one consultations the server made about 9,900 epoll_pwait calls a
// second for 8,300 packets forwarded, 15 % of its CPU profile. Opened here,
// the socket is in no epoll set. Its reader blocks in poll(2) only when the
// socket is empty (ingress_linux.go reads without waiting first), and a
// write that finds the send buffer full waits in poll(2) too.
//
// A portHandle is one handle on the socket, with deadlines of its own
// (network.go, dupUDP: the mux's abort of a write sets its handle's write
// deadline, which must not fail the own send path's writes). The socket is
// closed with its last handle.

// portWaitSlice bounds each poll(2), so that a wait notices its handle's
// close, or a deadline set meanwhile. (The last handle's close wakes every
// wait at once: shutdown(2).)
const portWaitSlice = 100 * time.Millisecond

// portClock is what deadlines count from, so that they follow Go's
// monotonic clock, not the wall clock.
var portClock = time.Now()

// portSocket is the socket its handles share.
type portSocket struct {
	laddr  *net.UDPAddr
	family int
	slice  time.Duration // portWaitSlice; tests lengthen it
	open   atomic.Int32  // handles not closed
	// mu is read-held by every system call on fd, and held to close it, so
	// that a call never reaches a descriptor number reused meanwhile.
	mu sync.RWMutex
	fd int // -1 once closed
}

// portHandle is one handle on a portSocket. It implements udpSocket.
type portHandle struct {
	s      *portSocket
	closed atomic.Bool
	rdl    atomic.Int64 // read deadline, ns since portClock; 0: none
	wdl    atomic.Int64 // write deadline
}

// listenPortUDP opens the socket bound to addr, a specific address.
func listenPortUDP(addr *net.UDPAddr) (udpSocket, error) {
	fail := func(call string, err error) (udpSocket, error) {
		return nil, &net.OpError{Op: "listen", Net: "udp", Addr: addr, Err: os.NewSyscallError(call, err)}
	}
	family, sa := unix.AF_INET6, unix.Sockaddr(nil)
	if ip4 := addr.IP.To4(); ip4 != nil {
		family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte(ip4)}
	} else if ip16 := addr.IP.To16(); ip16 != nil {
		sa = &unix.SockaddrInet6{Port: addr.Port, Addr: [16]byte(ip16), ZoneId: zoneIndex(addr.Zone)}
	} else {
		return fail("bind", unix.EINVAL)
	}
	fd, err := unix.Socket(family, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return fail("socket", err)
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, sa); err != nil {
		_ = unix.Close(fd)
		return fail("bind", err)
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		_ = unix.Close(fd)
		return fail("getsockname", err)
	}
	laddr := &net.UDPAddr{} // as the kernel bound it, as Go's would be
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		laddr.IP, laddr.Port = net.IP(b.Addr[:]).To4(), b.Port
	case *unix.SockaddrInet6:
		laddr.IP, laddr.Port, laddr.Zone = net.IP(b.Addr[:]).To16(), b.Port, addr.Zone
	}
	s := &portSocket{laddr: laddr, family: family, fd: fd, slice: portWaitSlice}
	s.open.Store(1)
	return &portHandle{s: s}, nil
}

// socketKind names the socket for the start-up log.
func socketKind(conn udpSocket) string {
	if _, ok := conn.(*portHandle); ok {
		return "outside-netpoller"
	}
	return "go"
}

// secondHandle is another handle on conn's socket (network.go, dupUDP).
func secondHandle(conn udpSocket) (udpSocket, error) {
	h, ok := conn.(*portHandle)
	if !ok {
		return dupUDP(conn)
	}
	for {
		n := h.s.open.Load()
		if n == 0 {
			return nil, net.ErrClosed
		}
		if h.s.open.CompareAndSwap(n, n+1) {
			return &portHandle{s: h.s}, nil
		}
	}
}

// Close closes the handle, and the socket with its last handle: shutdown(2)
// first wakes a wait in poll(2) on any handle.
func (h *portHandle) Close() error {
	if !h.closed.CompareAndSwap(false, true) {
		return net.ErrClosed
	}
	if h.s.open.Add(-1) > 0 {
		return nil
	}
	s := h.s
	s.mu.RLock()
	_ = unix.Shutdown(s.fd, unix.SHUT_RDWR) // ENOTCONN for UDP, and readers woken all the same
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

func (h *portHandle) LocalAddr() net.Addr { return h.s.laddr }

func (h *portHandle) SetDeadline(t time.Time) error {
	h.rdl.Store(deadlineNs(t))
	h.wdl.Store(deadlineNs(t))
	return nil
}

func (h *portHandle) SetReadDeadline(t time.Time) error {
	h.rdl.Store(deadlineNs(t))
	return nil
}

func (h *portHandle) SetWriteDeadline(t time.Time) error {
	h.wdl.Store(deadlineNs(t))
	return nil
}

func deadlineNs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(int64(t.Sub(portClock)), 1)
}

func (h *portHandle) SetReadBuffer(n int) error {
	return h.control(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, n) })
}

func (h *portHandle) SetWriteBuffer(n int) error {
	return h.control(func(fd int) error { return unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, n) })
}

func (h *portHandle) control(f func(fd int) error) error {
	var err error
	if cerr := (portRawConn{h}).Control(func(fd uintptr) { err = f(int(fd)) }); cerr != nil {
		return cerr
	}
	return err
}

// SyscallConn is for setsockopt and for the batched reader (ingress_linux.go).
func (h *portHandle) SyscallConn() (syscall.RawConn, error) { return portRawConn{h}, nil }

// WriteToUDPAddrPort sends b to to. It allocates nothing.
func (h *portHandle) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	var sa unix.RawSockaddrInet6 // large enough for IPv4 too
	salen := putSockaddr(&sa, to, h.s.family)
	if salen == 0 {
		return 0, h.opError("write", to, unix.EAFNOSUPPORT)
	}
	for {
		if err := h.usable(&h.wdl); err != nil {
			return 0, h.opError("write", to, err)
		}
		h.s.mu.RLock()
		if h.s.fd < 0 {
			h.s.mu.RUnlock()
			return 0, h.opError("write", to, net.ErrClosed)
		}
		var p unsafe.Pointer
		if len(b) > 0 {
			p = unsafe.Pointer(&b[0])
		}
		_, _, e := unix.Syscall6(unix.SYS_SENDTO, uintptr(h.s.fd), uintptr(p), uintptr(len(b)), 0,
			uintptr(unsafe.Pointer(&sa)), uintptr(salen))
		if e == unix.EINTR {
			h.s.mu.RUnlock()
			continue
		}
		if e != unix.EAGAIN {
			h.s.mu.RUnlock()
			if e == unix.EPIPE && h.closed.Load() {
				return 0, h.opError("write", to, net.ErrClosed) // after the last close's shutdown
			}
			if e != 0 {
				return 0, h.opError("write", to, os.NewSyscallError("sendto", e))
			}
			return len(b), nil
		}
		err := h.wait(unix.POLLOUT, &h.wdl)
		h.s.mu.RUnlock()
		if err != nil {
			return 0, h.opError("write", to, err)
		}
	}
}

// WriteTo is WriteToUDPAddrPort for callers with a net.Addr.
func (h *portHandle) WriteTo(b []byte, addr net.Addr) (int, error) {
	u, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Source: h.s.laddr, Addr: addr, Err: unix.EINVAL}
	}
	return h.WriteToUDPAddrPort(b, u.AddrPort())
}

// ReadFromUDPAddrPort reads one datagram. (The port's reader reads batches,
// ingress_linux.go.)
func (h *portHandle) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	var n int
	var from netip.AddrPort
	var rerr error
	err := (portRawConn{h}).Read(func(fd uintptr) bool {
		var sa unix.Sockaddr
		n, sa, rerr = unix.Recvfrom(int(fd), b, unix.MSG_DONTWAIT)
		if rerr == unix.EAGAIN || rerr == unix.EINTR {
			return false
		}
		switch a := sa.(type) {
		case *unix.SockaddrInet4:
			from = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		case *unix.SockaddrInet6:
			from = netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		}
		return true
	})
	if err == nil && rerr != nil {
		err = os.NewSyscallError("recvfrom", rerr)
	}
	if err != nil {
		return 0, from, &net.OpError{Op: "read", Net: "udp", Addr: h.s.laddr, Err: err}
	}
	return n, from, nil
}

// ReadFrom is ReadFromUDPAddrPort for callers wanting a net.Addr.
func (h *portHandle) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := h.ReadFromUDPAddrPort(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

func (h *portHandle) opError(op string, to netip.AddrPort, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: h.s.laddr, Addr: net.UDPAddrFromAddrPort(to), Err: err}
}

// usable says why the handle cannot be used now: closed, or past the
// deadline dl.
func (h *portHandle) usable(dl *atomic.Int64) error {
	if h.closed.Load() {
		return net.ErrClosed
	}
	if d := dl.Load(); d != 0 && int64(time.Since(portClock)) >= d {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait blocks in poll(2), with s.mu read-held, until the socket is ready
// for events, the deadline dl passes, or a slice of portWaitSlice is over;
// the caller then checks the handle and tries again.
func (h *portHandle) wait(events int16, dl *atomic.Int64) error {
	timeout := h.s.slice
	if d := dl.Load(); d != 0 {
		left := time.Duration(d - int64(time.Since(portClock)))
		if left <= 0 {
			return os.ErrDeadlineExceeded
		}
		timeout = min(timeout, left)
	}
	fds := [1]unix.PollFd{{Fd: int32(h.s.fd), Events: events}}
	ms := int((timeout + time.Millisecond - 1) / time.Millisecond)
	if _, err := unix.Poll(fds[:], ms); err != nil && err != unix.EINTR {
		return os.NewSyscallError("poll", err)
	}
	return nil
}

// portRawConn is a handle's syscall.RawConn.
type portRawConn struct{ h *portHandle }

func (c portRawConn) Control(f func(fd uintptr)) error {
	if c.h.closed.Load() {
		return net.ErrClosed
	}
	c.h.s.mu.RLock()
	defer c.h.s.mu.RUnlock()
	if c.h.s.fd < 0 {
		return net.ErrClosed
	}
	f(uintptr(c.h.s.fd))
	return nil
}

// Read calls f until it returns true, waiting in poll(2) until the socket
// is readable each time it returns false.
func (c portRawConn) Read(f func(fd uintptr) bool) error { return c.loop(f, unix.POLLIN, &c.h.rdl) }

// Write is Read for writability.
func (c portRawConn) Write(f func(fd uintptr) bool) error { return c.loop(f, unix.POLLOUT, &c.h.wdl) }

func (c portRawConn) loop(f func(fd uintptr) bool, events int16, dl *atomic.Int64) error {
	h := c.h
	yielded := false
	for {
		if err := h.usable(dl); err != nil {
			return err
		}
		h.s.mu.RLock()
		if h.s.fd < 0 {
			h.s.mu.RUnlock()
			return net.ErrClosed
		}
		if f(uintptr(h.s.fd)) {
			h.s.mu.RUnlock()
			return nil
		}
		if !yielded {
			// poll(2) blocks holding the goroutine's P, where Go's
			// netpoller would park it and run what it readied (the
			// goroutines of the datagrams it just read): let them run
			// first, and try once more.
			h.s.mu.RUnlock()
			yielded = true
			runtime.Gosched()
			continue
		}
		err := h.wait(events, dl)
		h.s.mu.RUnlock()
		if err != nil {
			return err
		}
	}
}
