package sfu

import (
	"strings"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// IsKeyframeStart reports whether pkt is the first packet of a keyframe, for
// VP8 (RFC 7741) and VP9 (draft-ietf-payload-vp9). Other codecs report false.
func IsKeyframeStart(mime string, pkt *rtp.Packet) bool {
	p := pkt.Payload
	switch {
	case strings.EqualFold(mime, webrtc.MimeTypeVP8):
		return vp8Keyframe(p)
	case strings.EqualFold(mime, webrtc.MimeTypeVP9):
		return vp9Keyframe(p)
	}
	return false
}

// DetectsKeyframes reports whether IsKeyframeStart can tell mime's keyframes.
func DetectsKeyframes(mime string) bool {
	return strings.EqualFold(mime, webrtc.MimeTypeVP8) || strings.EqualFold(mime, webrtc.MimeTypeVP9)
}

func vp8Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	// S bit set and partition index 0: this packet starts a frame.
	if p[0]&0x10 == 0 || p[0]&0x0f != 0 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte follows
		if len(p) < 2 {
			return false
		}
		x := p[1]
		i = 2
		if x&0x80 != 0 { // I: picture id, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i++
			}
			i++
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	// VP8 payload header: P bit (bit 0) is 0 for a keyframe.
	return p[i]&0x01 == 0
}

func vp9Keyframe(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	// Flexible-mode-agnostic: P (inter-picture predicted) clear and B (start of frame) set.
	const bitP, bitB = 0x40, 0x08
	return p[0]&bitP == 0 && p[0]&bitB != 0
}
