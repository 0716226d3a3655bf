package sfu

import (
	"syscall"
	"unsafe"
)

// Linux's SO_MEMINFO and the index of the drop count in what it returns
// (include/uapi/linux/sock_diag.h); the syscall package has neither.
const (
	soMemInfo     = 55
	skMemInfoVars = 9
	skMemInfoDrop = 8
)

// socketDrops is how many datagrams the kernel dropped on conn's receive
// side (a full buffer); ok is false when it cannot be read.
func socketDrops(conn udpSocket) (drops uint64, ok bool) {
	raw, err := conn.SyscallConn()
	if err != nil {
		return 0, false
	}
	var mem [skMemInfoVars]uint32
	size := uint32(unsafe.Sizeof(mem))
	_ = raw.Control(func(fd uintptr) {
		_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.SOL_SOCKET, soMemInfo,
			uintptr(unsafe.Pointer(&mem[0])), uintptr(unsafe.Pointer(&size)), 0)
		ok = errno == 0 && size > skMemInfoDrop*4
	})
	return uint64(mem[skMemInfoDrop]), ok
}
