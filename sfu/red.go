package sfu

import (
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// Audio RED (RFC 2198) to subscribers that negotiate it (Chromium offers
// red/48000/2 for Opus): each audio packet the SFU sends such a subscriber
// carries, besides its own Opus frame, a copy of the one before it, so a
// single lost packet costs no audio at all (the next one brings it back)
// where Opus FEC only softens it. The SFU adds the redundancy itself, on
// the way to each subscriber, where the loss happens: publishers keep
// sending plain Opus (their connections do not negotiate RED), so the
// recorder and subscribers without RED (the Go client) get plain Opus as
// before. RED costs the subscriber's link one more Opus frame per packet
// (~32 kbit/s), for which the rate control reserves a second audio share
// (subscriptionCounts).

// RED's MIME type (pion has no constant for it) and its payload type in
// subscribe offers (Chromium's).
const (
	mimeTypeRED    = "audio/red"
	redPayloadType = 63
)

// registerRED registers RED for Opus (payload type 111, sfu.go), after
// Opus so that Opus stays the first audio codec offered.
func registerRED(m *webrtc.MediaEngine) error {
	return m.RegisterCodec(webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeTypeRED, ClockRate: 48000, Channels: 2, SDPFmtpLine: "111/111"},
		PayloadType:        redPayloadType,
	}, webrtc.RTPCodecTypeAudio)
}

// redFor returns the negotiated RED codec that carries mime (Opus), and
// the payload type of the Opus inside it; ok is false when the subscriber
// did not negotiate RED for it.
func redFor(mime string, negotiated []webrtc.RTPCodecParameters) (red webrtc.RTPCodecParameters, primary uint8, ok bool) {
	if !strings.EqualFold(mime, webrtc.MimeTypeOpus) {
		return red, 0, false
	}
	opus := map[uint8]bool{}
	for _, c := range negotiated {
		if strings.EqualFold(c.MimeType, webrtc.MimeTypeOpus) {
			opus[uint8(c.PayloadType)] = true
		}
	}
	for _, c := range negotiated {
		if !strings.EqualFold(c.MimeType, mimeTypeRED) {
			continue
		}
		// The fmtp lists the payload type of each block: "111/111".
		pt, err := strconv.ParseUint(strings.Split(c.SDPFmtpLine, "/")[0], 10, 7)
		if err == nil && opus[uint8(pt)] {
			return c, uint8(pt), true
		}
	}
	return red, 0, false
}

// redEncoder wraps one downtrack's Opus packets in RED with the previous
// packet as the redundant block. Forwarding goroutine only.
type redEncoder struct {
	pt      uint8 // Opus inside RED
	prev    []byte
	prevTS  uint32
	prevSeq uint16
	have    bool
	out     []byte
}

func newREDEncoder(primary uint8) *redEncoder { return &redEncoder{pt: primary} }

// encode returns pkt's payload as RED: the previous packet's frame first
// when it directly precedes pkt (by sequence number, within RED's 14-bit
// timestamp offset and 10-bit length), then pkt's own. The result is valid
// until the next call.
func (e *redEncoder) encode(pkt *rtp.Packet) []byte {
	off := pkt.Timestamp - e.prevTS
	withPrev := e.have && pkt.SequenceNumber == e.prevSeq+1 && off > 0 && off < 1<<14 && len(e.prev) < 1<<10
	e.out = e.out[:0]
	if withPrev {
		var h [4]byte
		binary.BigEndian.PutUint32(h[:], 1<<31|uint32(e.pt)<<24|off<<10|uint32(len(e.prev)))
		e.out = append(e.out, h[:]...)
	}
	e.out = append(e.out, e.pt) // the primary block's header: F=0
	if withPrev {
		e.out = append(e.out, e.prev...)
	}
	e.out = append(e.out, pkt.Payload...)
	e.prev = append(e.prev[:0], pkt.Payload...)
	e.prevTS, e.prevSeq, e.have = pkt.Timestamp, pkt.SequenceNumber, true
	return e.out
}
