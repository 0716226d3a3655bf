package sfu

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// maxSDP bounds a session description; a real one is a few kilobytes.
const maxSDP = 32 << 10

// sendingMedia parses an offer and returns the mids of the audio and video
// m-lines the client sends on. More than one of a kind is refused: a
// participant publishes at most one microphone and one camera.
func sendingMedia(raw string) (map[string]Kind, error) {
	if len(raw) > maxSDP {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrBadSDP, maxSDP)
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	out := map[string]Kind{}
	count := map[Kind]int{}
	for _, md := range sd.MediaDescriptions {
		kind := Kind(md.MediaName.Media)
		if kind != KindAudio && kind != KindVideo {
			continue
		}
		mid, ok := md.Attribute("mid")
		if !ok || mid == "" {
			return nil, fmt.Errorf("%w: m-line without a mid", ErrBadSDP)
		}
		if md.MediaName.Port.Value == 0 {
			continue
		}
		if _, recvonly := md.Attribute("recvonly"); recvonly {
			continue
		}
		if _, inactive := md.Attribute("inactive"); inactive {
			continue
		}
		count[kind]++
		if count[kind] > 1 {
			return nil, fmt.Errorf("%w: more than one sending %s m-line", ErrBadSDP, kind)
		}
		out[mid] = kind
	}
	return out, nil
}

// answeredCodecs maps each accepted m-line of our answer to its first codec,
// the one the publisher will send.
func answeredCodecs(raw string) (map[string]webrtc.RTPCodecCapability, error) {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return nil, fmt.Errorf("sfu: parse own answer: %w", err)
	}
	out := map[string]webrtc.RTPCodecCapability{}
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute("mid")
		if md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		pt, err := strconv.ParseUint(md.MediaName.Formats[0], 10, 8)
		if err != nil {
			continue
		}
		c, err := sd.GetCodecForPayloadType(uint8(pt))
		if err != nil {
			continue
		}
		out[mid] = webrtc.RTPCodecCapability{
			MimeType:  md.MediaName.Media + "/" + c.Name,
			ClockRate: c.ClockRate,
		}
		if strings.EqualFold(c.Name, "opus") {
			out[mid] = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}
		}
	}
	return out, nil
}
