//go:build !linux

package sfu

// socketDrops is read through Linux's SO_MEMINFO; elsewhere it is unknown.
func socketDrops(udpSocket) (uint64, bool) { return 0, false }
