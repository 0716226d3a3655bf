package sfu

import (
	"syscall"
)

// forceSocketBuffers asks again past net.core.rmem_max and wmem_max
// (SO_RCVBUFFORCE, SO_SNDBUFFORCE), which the kernel allows a process with
// CAP_NET_ADMIN; without it the request fails and the buffers stay as they were.
func forceSocketBuffers(conn udpSocket, size int) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, size)
		_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUFFORCE, size)
	})
}
