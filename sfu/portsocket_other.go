//go:build !(linux && (amd64 || arm64))

package sfu

import "net"

// listenPortUDP opens the socket bound to addr: Go's own where reads are
// not batched (portsocket_linux.go says why it is not elsewhere).
func listenPortUDP(addr *net.UDPAddr) (udpSocket, error) {
	conn, err := net.ListenUDP("udp", addr)
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// socketKind names the socket for the start-up log.
func socketKind(udpSocket) string { return "go" }

// secondHandle is another handle on conn's socket (network.go, dupUDP).
func secondHandle(conn udpSocket) (udpSocket, error) { return dupUDP(conn) }
