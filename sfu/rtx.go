package sfu

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// RTX (RFC 4588): a subscriber that negotiates it (Chromium does) gets the
// packets it NACKs resent on a stream of their own, with their own SSRC and
// sequence numbers, so its loss, jitter and bandwidth statistics are not
// confused by old packets arriving late on the media stream. medcall's NACK
// responder (nackresponder.go) sends them once the subscriber's answer carries rtx (the
// offers the SFU makes on subscribe connections always propose it); a
// subscriber without it (the Go client) gets retransmissions on the media
// stream, as before.
//
// Publish connections do not negotiate RTX: pion hands RTX-repaired
// packets to the track reader without passing them through the media
// stream's interceptors, so its NACK generator would never learn that a
// lost packet was repaired and would NACK it again every 100 ms until it
// left the receive log (a retransmission storm from the publisher).
// Browsers resend on the media stream when RTX is not negotiated.

// rtxPayloadTypes maps each video codec's payload type (sfu.go) to its RTX
// payload type.
var rtxPayloadTypes = map[uint8]uint8{96: 97, 98: 99}

// registerRTX registers an RTX payload type for each video codec. Call it
// after the codecs' feedback is registered: RTX carries none.
func registerRTX(m *webrtc.MediaEngine) error {
	for apt, pt := range rtxPayloadTypes {
		c := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: fmt.Sprintf("apt=%d", apt)},
			PayloadType:        webrtc.PayloadType(pt),
		}
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return fmt.Errorf("sfu: register RTX for payload type %d: %w", apt, err)
		}
	}
	return nil
}
