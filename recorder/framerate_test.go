package recorder

import "testing"

// Frames captured with jitter get one frame slot each (whole milliseconds
// at the measured rate); only the frames near the jitter move, by less
// than a slot; gaps stay gaps and nothing drifts.
func TestVideoTiming(t *testing.T) {
	var frames []frameRef
	at := func(ms ...int64) {
		for _, m := range ms {
			frames = append(frames, frameRef{track: 2, tsMS: m})
		}
	}
	// 15 fps from capture times (66/67 ms), then a late frame and one
	// right behind it, a 5 s gap (downgrade), 15 fps again.
	ms := int64(1000)
	for i := 0; i < 300; i++ {
		at(ms)
		ms += 66 + int64(i%3)/2
	}
	late := frames[len(frames)-1].tsMS
	at(late+111, late+130)
	at(late + 5000)
	for i := 1; i < 60; i++ {
		at(late + 5000 + int64(i)*200/3)
	}
	orig := make([]int64, len(frames))
	for i, f := range frames {
		orig[i] = f.tsMS
	}
	rates := videoTiming(frames, []spoolTrack{{ID: 2, Codec: "vp8"}})
	if r := rates[2]; r < 15 || r > 15.8 {
		t.Errorf("rate %.3f, want 15 (the typical interval) to 5%% above", r)
	}
	slot := int64(1000 / rates[2])
	for i := 1; i < len(frames); i++ {
		if d := frames[i].tsMS - frames[i-1].tsMS; d < slot {
			t.Errorf("frames %d and %d are %d ms apart, less than a slot (%d)", i-1, i, d, slot)
		}
	}
	for _, i := range []int{300, 301} {
		if d := frames[i].tsMS - orig[i]; d < -slot || d > slot {
			t.Errorf("frame %d moved %d ms, more than a slot", i, d)
		}
	}
	for i := range frames {
		if frames[i].tsMS != orig[i] && (i < 290 || i > 305) {
			t.Errorf("frame %d moved from %d to %d, far from the jitter", i, orig[i], frames[i].tsMS)
		}
	}
	if got := frames[302].tsMS; got != late+5000 {
		t.Errorf("after the gap a frame moved to %d, want %d", got, late+5000)
	}
	if got, want := frames[len(frames)-1].tsMS, late+5000+59*200/3; got != want {
		t.Errorf("last frame at %d, want %d (no drift)", got, want)
	}
}
