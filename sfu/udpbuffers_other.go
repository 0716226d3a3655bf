//go:build !linux

package sfu

import "net"

// forceSocketBuffers is Linux's way past the sysctl ceilings; elsewhere the
// buffers stay as granted.
func forceSocketBuffers(*net.UDPConn, int) {}
