package recorder

import (
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"

	"github.com/medcall/medcall/sfu"
)

// paddedSink stands for the SFU in front of a sink: after every third
// packet a padding-only probe goes by, which the SFU hands on with an empty
// payload (see sfu.TrackSink), so sequence numbers stay continuous.
type paddedSink struct {
	sfu.TrackSink
	n, shift uint16
}

func (p *paddedSink) WriteRTP(pkt *rtp.Packet) {
	pkt.SequenceNumber += p.shift
	p.TrackSink.WriteRTP(pkt)
	if p.n++; p.n%3 == 0 {
		pad := &rtp.Packet{Header: pkt.Header}
		pad.SequenceNumber++
		pad.Marker = false
		p.shift++
		p.TrackSink.WriteRTP(pad)
	}
}

func (p *paddedSink) OnRTCP(sr *rtcp.SenderReport) { p.TrackSink.OnRTCP(sr) }

// Padding is not loss: a video track interleaved with padding probes is
// recorded frame for frame, with no keyframe asked for beyond the first
// (the 2 s call is inside the keyframe interval); the same packets really
// lost do cost frames and a keyframe request.
func TestPaddingIsNotLoss(t *testing.T) {
	needFF(t, "ffprobe")
	frames := ivfFrames(t, fixture(t, "video.ivf"))[:60] // 2 s at 30 fps, keyframe first
	for _, c := range []struct {
		name      string
		lose      bool
		wantAll   bool
		maxKeyReq int64
	}{
		{"padding", false, true, 1},
		{"real loss", true, false, 100},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newRig(t)
			s := newSession(t, g.clock)
			tap := g.rec.Open(binding)
			var keyReqs atomic.Int64
			var v sfu.TrackSink
			s.at(0, func() {
				v = &paddedSink{TrackSink: tap.OnTrack(videoInfo("p-7", "patient", &keyReqs))}
				if c.lose {
					v = v.(*paddedSink).TrackSink // the gaps below are real
				}
			})
			var lose func(int) bool
			if c.lose {
				lose = func(i int) bool { return i > 10 && i%20 == 0 }
			}
			s.sendVP8(stream{sink: &v, rate: 90000, seq0: 65500, ts0: 1, delay: 10e6, lose: lose}, frames, 30)
			s.run()
			rec := g.finish(t, tap)
			got := ffprobe(t, g.pub.objectPath(rec)).byTitle(t, "patient/video").packets(t)
			if all := got == len(frames); all != c.wantAll {
				t.Errorf("%d of %d frames recorded", got, len(frames))
			}
			if n := keyReqs.Load(); n > c.maxKeyReq || (c.lose && n < 2) {
				t.Errorf("%d keyframe requests", n)
			}
		})
	}
}

// The recorder asks for a keyframe once per need and says why; the SFU
// throttles and retries. A publisher that ignores the requests (no keyframe
// after the first): the track asks when it starts (recorder_sync), when the
// keyframe interval is nearly up (recorder_interval, at 4 s of 5), and
// again a whole interval later as the need is still open (9 s). With the
// fixture's keyframe every 2 s and one packet lost, it asks at the start and
// at the loss, and never for the cadence.
func TestKeyframeAskedOncePerNeed(t *testing.T) {
	frames := ivfFrames(t, fixture(t, "video.ivf")) // a keyframe every 60 frames
	noKeys := [][]byte{frames[0]}
	for len(noKeys) < 12*30 {
		noKeys = append(noKeys, frames[1:60]...)
	}
	for _, c := range []struct {
		name   string
		frames [][]byte
		lose   func(int) bool
		want   []sfu.KeyframeReason
	}{
		{"publisher ignores requests", noKeys[:12*30], nil,
			[]sfu.KeyframeReason{sfu.KeyframeRecorderSync, sfu.KeyframeRecorderInterval, sfu.KeyframeRecorderInterval}},
		{"a keyframe every 2 s, one loss", frames[:min(len(frames), 12*30)], func(i int) bool { return i == 100 },
			[]sfu.KeyframeReason{sfu.KeyframeRecorderSync, sfu.KeyframeRecorderSync}},
	} {
		t.Run(c.name, func(t *testing.T) {
			g := newRig(t)
			s := newSession(t, g.clock)
			tap := g.rec.Open(binding)
			var mu sync.Mutex
			var asked []sfu.KeyframeReason
			info := videoInfo("p-7", "patient", new(atomic.Int64))
			info.RequestKeyframe = func(r sfu.KeyframeReason) {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, r)
			}
			var v sfu.TrackSink
			s.at(0, func() { v = tap.OnTrack(info) })
			s.sendVP8(stream{sink: &v, rate: 90000, seq0: 100, ts0: 1, delay: 10 * time.Millisecond, lose: c.lose}, c.frames, 30)
			s.run()
			g.finish(t, tap)
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(asked, c.want) {
				t.Errorf("asked for keyframes %v, want %v", asked, c.want)
			}
		})
	}
}
