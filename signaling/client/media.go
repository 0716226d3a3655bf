package client

import (
	"errors"
	"github.com/medcall/medcall/signaling/client/fixture"
	"github.com/pion/interceptor"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
)

// pump sends a clip on a track at real-time pace, looping, while it is on.
// A keyframe request makes it jump back to the latest keyframe.
type pump struct {
	clip  *fixture.Clip
	track *webrtc.TrackLocalStaticRTP
	pkz   rtp.Packetizer
	kind  string
	stats *sendStats

	clockRate uint32

	dropRate float64 // fraction of packets not sent, to simulate loss

	mu       sync.Mutex
	on       bool
	pos      int
	keyframe bool // jump to a keyframe before the next frame
	wake     chan struct{}
}

func newPump(c *fixture.Clip, track *webrtc.TrackLocalStaticRTP, payloader rtp.Payloader, clockRate uint32, kind string, st *sendStats) *pump {
	return &pump{
		clip: c, track: track, kind: kind, stats: st, clockRate: clockRate,
		pkz:  rtp.NewPacketizer(1200, 0, 0, payloader, rtp.NewRandomSequencer(), clockRate),
		wake: make(chan struct{}, 1),
	}
}

func opusPayloader() rtp.Payloader { return &codecs.OpusPayloader{} }
func vp8Payloader() rtp.Payloader  { return &codecs.VP8Payloader{EnablePictureID: true} }

// setOn starts or pauses the pump; starting always begins at a keyframe.
func (p *pump) setOn(on bool) {
	p.mu.Lock()
	if on && !p.on {
		p.keyframe = true
	}
	p.on = on
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pump) requestKeyframe() {
	p.mu.Lock()
	p.keyframe = true
	p.mu.Unlock()
}

// next returns the frame to send now, or nil when paused.
func (p *pump) next() *fixture.Frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return nil
	}
	if p.keyframe {
		for p.pos > 0 && !p.clip.Frames[p.pos].Keyframe {
			p.pos--
		}
		p.keyframe = false
	}
	f := &p.clip.Frames[p.pos]
	p.pos = (p.pos + 1) % len(p.clip.Frames)
	return f
}

// maxCatchUp bounds the frames a pump sends at once after it was held up;
// beyond it the frames are skipped, as a capture device drops them.
const maxCatchUp = 10

// run sends frames on a grid that follows the wall clock, as a capture
// device does: frame k of a run of frames is due at origin+k*interval and
// carries originTS+k*samples, and a late wake-up sends the frames it
// missed. So the RTP clock never drifts from wall time, however the
// scheduler delays the pump, and a sender report describes every frame.
// While paused the clock keeps running: resuming starts a new run at the
// RTP time of that moment, and its first frame goes out at once.
func (p *pump) run(done <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	rate := float64(p.clockRate)
	clockOrigin, clockTS := time.Now(), rand.Uint32()
	var origin time.Time
	var originTS uint32
	var k int64
	running := false
	for {
		select {
		case <-done:
			return
		case <-p.wake:
		case <-timer.C:
		}
		now := time.Now()
		if !p.isOn() {
			running = false
			timer.Stop()
			continue
		}
		if !running {
			running = true
			origin, k = now, 0
			originTS = clockTS + uint32(now.Sub(clockOrigin).Seconds()*rate)
		}
		due := int64(now.Sub(origin) / p.clip.Interval)
		if due-k >= maxCatchUp {
			k = due
		}
		for ; k <= due; k++ {
			if !p.send(originTS + uint32(k)*p.clip.Samples) {
				return
			}
		}
		clockOrigin, clockTS = origin, originTS
		timer.Reset(time.Until(origin.Add(time.Duration(k) * p.clip.Interval)))
	}
}

func (p *pump) isOn() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.on
}

// send sends the next frame with RTP timestamp ts; false once the track is gone.
func (p *pump) send(ts uint32) bool {
	f := p.next()
	if f == nil {
		return true
	}
	now := time.Now()
	for i, pkt := range p.pkz.Packetize(f.Data, p.clip.Samples) {
		pkt.Timestamp = ts
		if p.dropRate > 0 && rand.Float64() < p.dropRate {
			continue // lost on the way: never reaches pion, so it cannot be retransmitted
		}
		// Counted before the write: a client in the same process may
		// receive the packet before WriteRTP returns, and must never see
		// a packet that is not yet among the sent ones.
		p.stats.sent(pkt, p.kind == "video" && f.Keyframe && i == 0, now)
		if err := p.track.WriteRTP(pkt); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return false
		}
	}
	return true
}

// dropIncoming drops a fraction of the RTP that arrives (Options.ReceiveDropRate).
type dropIncoming struct {
	interceptor.NoOp
	rate float64
}

func (d *dropIncoming) NewInterceptor(string) (interceptor.Interceptor, error) { return d, nil }

func (d *dropIncoming) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, a2, err := r.Read(b, a)
			if err != nil || rand.Float64() >= d.rate {
				return n, a2, err
			}
		}
	})
}
