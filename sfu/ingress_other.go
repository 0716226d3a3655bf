//go:build !(linux && (amd64 || arm64))

package sfu

// batched says reads take up to ingressBatch datagrams with their receive times.
const batched = false

// batchReader reads one datagram at a time where recvmmsg and receive
// timestamps are not available: no queue delay is observed.
type batchReader struct{ conn udpSocket }

func (r *batchReader) init(conn udpSocket, _ []ingressMsg) error {
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
