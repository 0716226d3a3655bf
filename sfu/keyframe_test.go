package sfu

import (
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

func TestIsKeyframeStart(t *testing.T) {
	cases := []struct {
		name    string
		mime    string
		payload []byte
		want    bool
	}{
		{"vp8 keyframe, no extension", webrtc.MimeTypeVP8, []byte{0x10, 0x00}, true},
		{"vp8 interframe", webrtc.MimeTypeVP8, []byte{0x10, 0x01}, false},
		{"vp8 continuation", webrtc.MimeTypeVP8, []byte{0x00, 0x00}, false},
		{"vp8 keyframe, 15-bit picture id", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x81, 0x23, 0x00}, true},
		{"vp8 interframe, 7-bit picture id", webrtc.MimeTypeVP8, []byte{0x90, 0x80, 0x05, 0x01}, false},
		{"vp8 keyframe, tl0picidx and tid", webrtc.MimeTypeVP8, []byte{0x90, 0x60, 0x01, 0x02, 0x00}, true},
		{"vp8 truncated", webrtc.MimeTypeVP8, []byte{0x90, 0x80}, false},
		{"vp8 empty", webrtc.MimeTypeVP8, nil, false},
		{"vp9 keyframe start", webrtc.MimeTypeVP9, []byte{0x08}, true},
		{"vp9 predicted", webrtc.MimeTypeVP9, []byte{0x48}, false},
		{"vp9 not frame start", webrtc.MimeTypeVP9, []byte{0x00}, false},
		{"opus", webrtc.MimeTypeOpus, []byte{0x10, 0x00}, false},
	}
	for _, tc := range cases {
		if got := IsKeyframeStart(tc.mime, &rtp.Packet{Payload: tc.payload}); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}
