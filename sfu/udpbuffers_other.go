//go:build !linux

package sfu

// forceSocketBuffers is Linux's way past the sysctl ceilings; elsewhere the
// buffers stay as granted.
func forceSocketBuffers(udpSocket, int) {}
