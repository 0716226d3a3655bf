//go:build linux && (amd64 || arm64)

package sfu

import (
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmsghdr is the kernel's struct mmsghdr: one message of recvmmsg. The
// layout (64 bytes, the padding explicit) is that of 64-bit Linux, which is
// why this file builds only there.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// batched says reads take up to ingressBatch datagrams with their receive times.
const batched = true

// timestampSpace is the control buffer one SCM_TIMESTAMPNS needs.
var timestampSpace = unix.CmsgSpace(int(unsafe.Sizeof(unix.Timespec{})))

// batchReader reads up to ingressBatch datagrams per recvmmsg, each with the
// kernel's receive time (SO_TIMESTAMPNS). Its arrays, results and the
// function RawConn.Read calls are made once, so a read allocates nothing.
type batchReader struct {
	raw   syscall.RawConn
	recv  func(fd uintptr) bool // one recvmmsg, setting got and errno
	got   int
	errno syscall.Errno
	hdrs  [ingressBatch]mmsghdr
	iovs  [ingressBatch]unix.Iovec
	names [ingressBatch]unix.RawSockaddrInet6 // large enough for IPv4 too
	ctl   [ingressBatch][64]byte
}

func (r *batchReader) init(conn udpSocket, msgs []ingressMsg) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	r.raw = raw
	// Without receive timestamps (a kernel refusing the option) datagrams
	// are still read, their wait unknown: receiveTime finds no message.
	if err := raw.Control(func(fd uintptr) {
		_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1)
	}); err != nil {
		return err
	}
	for i := range r.hdrs {
		r.iovs[i].Base = &msgs[i].buf[0]
		r.iovs[i].SetLen(len(msgs[i].buf))
		h := &r.hdrs[i].hdr
		h.Name = (*byte)(unsafe.Pointer(&r.names[i]))
		h.Iov = &r.iovs[i]
		h.SetIovlen(1)
		h.Control = &r.ctl[i][0]
	}
	r.recv = func(fd uintptr) bool {
		for {
			got, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.hdrs[0])), ingressBatch, unix.MSG_DONTWAIT, 0, 0)
			switch e {
			case unix.EINTR:
				continue
			case unix.EAGAIN:
				return false // wait until readable
			}
			r.got, r.errno = int(got), e
			return true
		}
	}
	return nil
}

// read blocks until at least one datagram is queued and returns how many of
// msgs it filled.
func (r *batchReader) read(msgs []ingressMsg) (int, error) {
	for i := range r.hdrs {
		h := &r.hdrs[i].hdr
		h.Namelen = uint32(unsafe.Sizeof(r.names[i]))
		h.SetControllen(len(r.ctl[i]))
		h.Flags = 0
	}
	if err := r.raw.Read(r.recv); err != nil {
		return 0, err
	}
	if r.errno != 0 {
		return 0, os.NewSyscallError("recvmmsg", r.errno)
	}
	n := r.got
	for i := 0; i < n; i++ {
		m, h := &msgs[i], &r.hdrs[i]
		m.n = int(h.len)
		m.from = sockaddrAddrPort(&r.names[i])
		m.arrived = receiveTime(r.ctl[i][:h.hdr.Controllen])
	}
	return n, nil
}

// sockaddrAddrPort reads the sender's address recvmmsg filled in.
func sockaddrAddrPort(sa *unix.RawSockaddrInet6) netip.AddrPort {
	switch sa.Family {
	case unix.AF_INET:
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), ntohs(sa4.Port))
	case unix.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return netip.AddrPortFrom(a, ntohs(sa.Port))
	}
	return netip.AddrPort{}
}

// ntohs reads a port as the kernel stores it, in network byte order.
func ntohs(p uint16) uint16 {
	b := (*[2]byte)(unsafe.Pointer(&p))
	return uint16(b[0])<<8 | uint16(b[1])
}

// receiveTime reads the SCM_TIMESTAMPNS control message; zero without one.
func receiveTime(ctl []byte) time.Time {
	if len(ctl) < timestampSpace {
		return time.Time{}
	}
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ctl[0]))
	if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS || int(h.Len) < unix.CmsgLen(int(unsafe.Sizeof(unix.Timespec{}))) {
		return time.Time{}
	}
	ts := (*unix.Timespec)(unsafe.Pointer(&ctl[unix.CmsgLen(0)]))
	return time.Unix(ts.Sec, ts.Nsec)
}

// putSockaddr writes to into sa as the kernel takes it and returns its
// length; 0 for an invalid address.
func putSockaddr(sa *unix.RawSockaddrInet6, to netip.AddrPort, family int) uintptr {
	a := to.Addr()
	if family == unix.AF_INET {
		a = a.Unmap()
	}
	port := to.Port()
	if a.Is4() {
		sa4 := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.As4()}
		p := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		p[0], p[1] = byte(port>>8), byte(port)
		return unix.SizeofSockaddrInet4
	}
	if !a.Is6() {
		return 0
	}
	*sa = unix.RawSockaddrInet6{Family: unix.AF_INET6, Addr: a.As16()}
	sa.Scope_id = zoneIndex(a.Zone())
	p := (*[2]byte)(unsafe.Pointer(&sa.Port))
	p[0], p[1] = byte(port>>8), byte(port)
	return unix.SizeofSockaddrInet6
}

// zoneIndex is the interface index of an IPv6 zone, a name or a number.
func zoneIndex(zone string) uint32 {
	if zone == "" {
		return 0
	}
	if n, err := strconv.ParseUint(zone, 10, 32); err == nil {
		return uint32(n)
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return uint32(ifi.Index)
	}
	return 0
}
