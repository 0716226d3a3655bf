package recorder

import (
	"strings"

	"github.com/pion/rtp/codecs"
	"github.com/pion/rtp/codecs/vp9"
)

// codec is a media codec the recorder can write to WebM.
type codec uint8

const (
	codecUnknown codec = iota
	codecOpus
	codecVP8
	codecVP9
)

func codecFromMime(mime string) codec {
	switch strings.ToLower(mime) {
	case "audio/opus":
		return codecOpus
	case "video/vp8":
		return codecVP8
	case "video/vp9":
		return codecVP9
	}
	return codecUnknown
}

func (c codec) String() string {
	switch c {
	case codecOpus:
		return "opus"
	case codecVP8:
		return "vp8"
	case codecVP9:
		return "vp9"
	}
	return "unknown"
}

func (c codec) video() bool { return c == codecVP8 || c == codecVP9 }

// assembled is one complete media frame. data is valid until the next call
// into the depacketizer.
type assembled struct {
	data          []byte
	extTS         int64
	keyframe      bool
	width, height int // from a video keyframe; 0 otherwise
}

// depacketizer turns in-order RTP payloads into frames. For video it drops
// every frame that cannot be decoded — a frame with a lost packet, and every
// frame after it until the next keyframe — so the file never holds a frame
// whose references are missing. needKey tells the caller to ask for a keyframe.
type depacketizer struct {
	codec   codec
	buf     []byte
	ts      int64
	inFrame bool
	needKey bool
	dropped uint64 // video frames discarded while waiting for a keyframe
	vp8     codecs.VP8Packet
	vp9     codecs.VP9Packet
}

func newDepacketizer(c codec) *depacketizer {
	return &depacketizer{codec: c, needKey: c.video()}
}

// lost tells the depacketizer that packets are missing before the next one.
func (d *depacketizer) lost() {
	if !d.codec.video() {
		return // an Opus frame is one packet: a loss costs that frame only
	}
	if d.inFrame {
		d.inFrame = false
		d.dropped++
	}
	d.needKey = true
}

// push adds one payload. It returns a complete frame when one ends here.
// Empty payloads (padding-only packets, sent between frames for bandwidth
// probing) carry no media and are skipped.
func (d *depacketizer) push(extTS int64, marker bool, payload []byte) (assembled, bool) {
	if len(payload) == 0 {
		return assembled{}, false
	}
	switch d.codec {
	case codecOpus:
		return assembled{data: payload, extTS: extTS, keyframe: true}, true
	case codecVP8:
		body, err := d.vp8.Unmarshal(payload)
		if err != nil {
			d.lost()
			return assembled{}, false
		}
		head := d.vp8.S == 1 && d.vp8.PID == 0
		return d.add(extTS, head, marker, body)
	case codecVP9:
		body, err := d.vp9.Unmarshal(payload)
		if err != nil {
			d.lost()
			return assembled{}, false
		}
		return d.add(extTS, d.vp9.B, marker || d.vp9.E, body)
	}
	return assembled{}, false
}

func (d *depacketizer) add(extTS int64, head, end bool, body []byte) (assembled, bool) {
	if d.inFrame && extTS != d.ts {
		// The previous frame never saw its last packet.
		d.lost()
	}
	if !d.inFrame {
		if !head {
			d.needKey = true // the middle of a frame whose start is gone
			return assembled{}, false
		}
		d.inFrame, d.ts, d.buf = true, extTS, d.buf[:0]
	}
	d.buf = append(d.buf, body...)
	if !end {
		return assembled{}, false
	}
	d.inFrame = false
	f := assembled{data: d.buf, extTS: extTS}
	switch d.codec {
	case codecVP8:
		f.keyframe, f.width, f.height = vp8Keyframe(d.buf)
	case codecVP9:
		f.keyframe, f.width, f.height = vp9Keyframe(d.buf)
	}
	if !f.keyframe && d.needKey {
		d.dropped++
		return assembled{}, false
	}
	if f.keyframe {
		d.needKey = false
	}
	return f, true
}

// vp8Keyframe reads the VP8 frame tag (RFC 6386 §9.1): bit 0 clear means a
// keyframe, which carries the start code and the frame size.
func vp8Keyframe(b []byte) (key bool, w, h int) {
	if len(b) < 10 || b[0]&0x01 != 0 {
		return false, 0, 0
	}
	if b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a {
		return false, 0, 0
	}
	w = int(b[6]) | int(b[7]&0x3f)<<8
	h = int(b[8]) | int(b[9]&0x3f)<<8
	return true, w, h
}

// vp9Keyframe parses the VP9 uncompressed header of the frame's first layer.
func vp9Keyframe(b []byte) (key bool, w, h int) {
	var hdr vp9.Header
	if err := hdr.Unmarshal(b); err != nil || hdr.NonKeyFrame || hdr.ShowExistingFrame {
		return false, 0, 0
	}
	return true, int(hdr.Width()), int(hdr.Height())
}
