package sfu

import (
	"encoding/binary"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/transport/v5/replaydetector"
)

// ownopen.go: how a stream's forwarding goroutine on the own receive path
// (ownpath.go, ownconn.go) opens what the ingress queued.

// ownOpener is a stream's SRTP context and replay window on the own path.
type ownOpener struct {
	oc     *ownConn
	st     *ownStream
	ssrc   uint32
	m      *Metrics
	ctx    *srtp.Context // this stream's alone, made at its first packet from the ingress
	hdr    rtp.Header
	replay replaydetector.ReplayDetector
	failed int // in a row
}

// open returns p's RTP packet in plain (a packet pion decrypted as it is),
// or nil for one that does not authenticate or was seen before.
func (o *ownOpener) open(p *ownPacket, plain []byte) []byte {
	raw := p.buf[:p.n]
	if p.encrypted {
		if o.ctx == nil {
			if k := o.oc.keys.Load(); k != nil {
				_, o.ctx, _ = k.receiver()
			}
			if o.ctx == nil {
				return nil
			}
		}
		out, err := o.ctx.DecryptRTP(plain[:0], raw, &o.hdr)
		if err != nil || len(out) == 0 || &out[0] != &plain[0] { // not one of ours, or larger than any
			o.m.OwnPathDecryptErrors.Add(1)
			if o.failed++; o.failed >= ownFailLimit {
				o.oc.release(o.ssrc, o.st) // pion knows the rollover counter
			}
			return nil
		}
		o.failed, raw = 0, out
	}
	if len(raw) < 4 {
		return nil
	}
	accept, ok := o.replay.Check(uint64(binary.BigEndian.Uint16(raw[2:4])))
	if !ok {
		o.m.OwnPathDuplicates.Add(1)
		return nil
	}
	accept()
	return raw
}
