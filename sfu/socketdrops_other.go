//go:build !linux

package sfu

import "net"

// socketDrops is read through Linux's SO_MEMINFO; elsewhere it is unknown.
func socketDrops(*net.UDPConn) (uint64, bool) { return 0, false }
