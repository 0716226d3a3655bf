package sfu

import (
	"log/slog"
	"syscall"
)

// DefaultUDPSocketBuffer is the kernel buffer asked for each way on the one
// UDP port. Every consultation's media shares that socket: with Linux's
// default of about 208 KiB, a burst of keyframes from a few publishers, or a
// moment in which the reader goroutine does not get a core, overflows it
// and the kernel drops packets of every consultation alike. The kernel
// charges each datagram about 0.8 KiB (an Opus packet) to 2.3 KiB (a video
// packet) against the buffer, so 150 consultations' media costs some
// 26 MB/s of it: 16 MiB rides out a stall of about a second (4 MiB, a
// quarter). Past net.core.rmem_max it needs CAP_NET_ADMIN (udpbuffers.go
// asks with SO_RCVBUFFORCE) or the sysctl raised.
const DefaultUDPSocketBuffer = 16 << 20

// socketBuffer is the configured UDP socket buffer size.
func (s *SFU) socketBuffer() int {
	if s.cfg.UDPSocketBuffer == 0 {
		return DefaultUDPSocketBuffer
	}
	return s.cfg.UDPSocketBuffer
}

// UDPReceiveDrops is how many datagrams the kernel dropped on the UDP
// port's socket because its receive buffer was full: media lost before
// medcall could read it, for every consultation alike. ok is false when it
// cannot be read: no --udp-port, the port bound on every interface (one
// socket per address, opened by pion), or not Linux.
func (s *SFU) UDPReceiveDrops() (drops uint64, ok bool) {
	if s.udpConn == nil {
		return 0, false
	}
	return socketDrops(s.udpConn)
}

// setSocketBuffers asks for size bytes of receive and send buffer on conn. The kernel caps the request at
// net.core.rmem_max and wmem_max; what it granted is logged when it is less,
// with the sysctl that raises it.
func setSocketBuffers(conn udpSocket, size int, log *slog.Logger) {
	if err := conn.SetReadBuffer(size); err != nil {
		log.Warn("UDP receive buffer not set", "bytes", size, "err", err)
	}
	if err := conn.SetWriteBuffer(size); err != nil {
		log.Warn("UDP send buffer not set", "bytes", size, "err", err)
	}
	rcv, snd := socketBuffers(conn)
	// Linux reports twice what was granted (the other half is its bookkeeping).
	if rcv >= 0 && rcv/2 < size || snd >= 0 && snd/2 < size {
		forceSocketBuffers(conn, size)
		rcv, snd = socketBuffers(conn)
	}
	if rcv >= 0 && rcv/2 < size || snd >= 0 && snd/2 < size {
		log.Warn("UDP socket buffers smaller than asked; raise net.core.rmem_max and net.core.wmem_max (sysctl) to let bursts through",
			"asked", size, "receive", rcv/2, "send", snd/2)
	}
}

// socketBuffers reads the socket's SO_RCVBUF and SO_SNDBUF as the kernel
// reports them; -1 when they cannot be read.
func socketBuffers(conn udpSocket) (rcv, snd int) {
	rcv, snd = -1, -1
	raw, err := conn.SyscallConn()
	if err != nil {
		return rcv, snd
	}
	_ = raw.Control(func(fd uintptr) {
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF); err == nil {
			rcv = v
		}
		if v, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF); err == nil {
			snd = v
		}
	})
	return rcv, snd
}
