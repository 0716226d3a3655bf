package recorder

import "testing"

// Opus packet durations from the TOC byte (RFC 6716 §3.1).
func TestOpusDurationMS(t *testing.T) {
	for _, c := range []struct {
		name string
		p    []byte
		want int64
	}{
		{"empty", nil, 0},
		{"SILK 20 ms, one frame (WebRTC's usual)", []byte{1<<3 | 0}, 20},
		{"SILK 60 ms", []byte{3<<3 | 0}, 60},
		{"hybrid 10 ms, two frames", []byte{12<<3 | 1}, 20},
		{"CELT 20 ms, two frames of different size", []byte{31<<3 | 2}, 40},
		{"CELT 2.5 ms", []byte{16<<3 | 0}, 2},
		{"CELT 20 ms, 3 frames (code 3)", []byte{31<<3 | 3, 3}, 60},
	} {
		if got := opusDurationMS(c.p); got != c.want {
			t.Errorf("%s: %d ms, want %d", c.name, got, c.want)
		}
	}
}
