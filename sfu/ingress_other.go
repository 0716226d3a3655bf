//go:build !linux

package sfu

import "net"

// batchReader reads one datagram at a time where recvmmsg and receive
// timestamps are not available: nothing is shed.
type batchReader struct{ conn *net.UDPConn }

func (r *batchReader) init(conn *net.UDPConn, _ []ingressMsg) error {
	r.conn = conn
	return nil
}

func (r *batchReader) read(msgs []ingressMsg) (int, error) {
	n, from, err := r.conn.ReadFromUDPAddrPort(msgs[0].buf)
	if err != nil {
		return 0, err
	}
	msgs[0].n, msgs[0].from = n, from
	return 1, nil
}
