package sfu

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// Resending what the subscriber's feedback reports lost. A browser's
// subscribe connection only receives, so libwebrtc has no round trip for it
// and repeats a NACK only every 100 ms (its default round trip). When the
// NACK or the resend it asked for is lost (about one in ten at 5 % loss each
// way) the frame waits those 100 ms, and two in a row is a visible freeze:
// traced, every stall over ~180 ms in the random-loss scenario was that
// (docs/quality.md). The subscriber's transport-cc feedback, every ~60 ms
// there, reports each packet that did not arrive, retransmissions included. So
// the SFU resends a lost video packet on that evidence, through the NACK
// responder's rules (once per round trip, the retransmission budget), when
// no resend of it has started since the lost copy was sent and a NACK for
// it would still be answered (nackguard.go).
//
// A feedback that reports more than heavyLoss of its packets lost is a
// queue overflowing, not random loss: resending on it would add to the
// queue, so that is left to the subscriber's NACKs and the rate control.

// sentCopiesSize is how many transport-wide sequence numbers a subscribe
// connection remembers: 2 s of packets at the bitrate ceiling, where the
// feedback reporting them comes within 0.1 s.
const sentCopiesSize = 512

// sentCopy is one packet a connection sent, by its transport-wide number.
type sentCopy struct {
	at   int64 // unix nanos it was sent; 0 for none
	ssrc uint32
	tseq uint16
	seq  uint16 // the media sequence number (an RTX copy's original)
}

// sentCopies remembers the stream and sequence number behind the last
// sentCopiesSize transport-wide sequence numbers of NACKable streams.
type sentCopies struct {
	mu sync.Mutex
	c  [sentCopiesSize]sentCopy
}

func (s *sentCopies) note(c sentCopy) {
	s.mu.Lock()
	s.c[c.tseq%sentCopiesSize] = c
	s.mu.Unlock()
}

// take returns the copy sent as tseq, once.
func (s *sentCopies) take(tseq uint16) (sentCopy, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &s.c[tseq%sentCopiesSize]
	if c.at == 0 || c.tseq != tseq {
		return sentCopy{}, false
	}
	got := *c
	c.at = 0
	return got, true
}

// twccID is the transport-cc header extension's id in a stream, 0 if none.
func twccID(info *interceptor.StreamInfo) uint8 {
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			return uint8(e.ID)
		}
	}
	return 0
}

// noteCopy records a packet of a NACKable stream being sent, if it carries
// a transport-wide number. A packet on the RTX stream (rtx.go) carries its
// original sequence number first in its payload.
func (s *sentCopies) noteCopy(info *interceptor.StreamInfo, id uint8, h *rtp.Header, payload []byte, now int64) {
	if id == 0 {
		return
	}
	ext := h.GetExtension(id)
	if len(ext) < 2 {
		return
	}
	seq := h.SequenceNumber
	if h.SSRC != info.SSRC {
		if len(payload) < rtxHeader {
			return
		}
		seq = binary.BigEndian.Uint16(payload)
	}
	s.note(sentCopy{at: now, ssrc: info.SSRC, tseq: binary.BigEndian.Uint16(ext), seq: seq})
}

// walkFeedback calls f with each transport-wide sequence number fb reports
// and whether it arrived; the last chunk's symbols past PacketStatusCount
// are padding.
func walkFeedback(fb *rtcp.TransportLayerCC, f func(tseq uint16, arrived bool)) {
	seq, left := fb.BaseSequenceNumber, int(fb.PacketStatusCount)
	add := func(symbol uint16) {
		if left > 0 {
			f(seq, symbol != rtcp.TypeTCCPacketNotReceived)
			seq++
			left--
		}
	}
	for _, c := range fb.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range min(int(c.RunLength), left) {
				add(c.PacketStatusSymbol)
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList {
				add(s)
			}
		}
	}
}

// resendReported resends what the transport-cc feedback among pkts reports
// lost (see above).
func (o *linkObserver) resendReported(pkts []rtcp.Packet, now time.Time) {
	resend := o.l.resendLost.Load()
	if resend == nil {
		return
	}
	for _, p := range pkts {
		fb, ok := p.(*rtcp.TransportLayerCC)
		if !ok {
			continue
		}
		received, lost := countFeedback(fb)
		if lost == 0 || float64(lost) > heavyLoss*float64(received+lost) {
			continue
		}
		since := o.l.nackSince.Load()
		walkFeedback(fb, func(tseq uint16, arrived bool) {
			if arrived {
				return
			}
			c, ok := o.copies.take(tseq)
			if !ok {
				return
			}
			if log, ok := o.logs.Load(c.ssrc); ok && log.(*sentLog).fresh(c.seq, now.UnixNano(), since, maxNackAge) &&
				(*resend)(c.ssrc, c.seq, c.at, now) {
				o.m.FeedbackResends.Add(1)
			}
		})
	}
}

// resendLost resends seq of the stream ssrc, whose copy sent at copyAt the
// subscriber's feedback reports lost, unless a resend of it has started
// since; it reports whether it resent.
func (n *nackResponder) resendLost(ssrc uint32, seq uint16, copyAt int64, now time.Time) bool {
	h := n.stream(ssrc)
	if h == nil {
		return false
	}
	bps := n.budget.GetTargetBitrate()
	return h.resendLost(seq, copyAt, now.UnixNano(), func(size int) bool { return n.rate.allow(now, size, bps) })
}
