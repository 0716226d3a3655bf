package client

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// frame is one encoded media frame of a fixture.
type frame struct {
	data     []byte
	keyframe bool
}

// clip is a fixture loaded into memory, played in a loop at real-time pace.
type clip struct {
	frames   []frame
	interval time.Duration // time per frame
	samples  uint32        // RTP clock ticks per frame
}

// loadOgg reads an Ogg Opus file with one packet per page (see testdata/make-fixtures.sh).
func loadOgg(path string) (*clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, _, err := oggreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &clip{interval: 20 * time.Millisecond, samples: 960}
	for {
		page, hdr, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if hdr.GranulePosition == 0 { // OpusTags
			continue
		}
		c.frames = append(c.frames, frame{data: page, keyframe: true})
	}
	if len(c.frames) == 0 {
		return nil, fmt.Errorf("%s: no audio packets", path)
	}
	return c, nil
}

// loadIVF reads a VP8 IVF file.
func loadIVF(path string) (*clip, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, hdr, err := ivfreader.NewWith(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if hdr.FourCC != "VP80" {
		return nil, fmt.Errorf("%s: codec %q, want VP80", path, hdr.FourCC)
	}
	if hdr.TimebaseDenominator == 0 || hdr.TimebaseNumerator == 0 {
		return nil, fmt.Errorf("%s: bad time base", path)
	}
	interval := time.Duration(float64(time.Second) * float64(hdr.TimebaseNumerator) / float64(hdr.TimebaseDenominator))
	c := &clip{interval: interval, samples: uint32(90000 * interval / time.Second)}
	for {
		data, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		// VP8 frame tag: bit 0 of the first byte is 0 for a keyframe.
		c.frames = append(c.frames, frame{data: data, keyframe: len(data) > 0 && data[0]&1 == 0})
	}
	if len(c.frames) == 0 || !c.frames[0].keyframe {
		return nil, fmt.Errorf("%s: must start with a keyframe", path)
	}
	return c, nil
}

// pump sends a clip on a track at real-time pace, looping, while it is on.
// A keyframe request makes it jump back to the latest keyframe.
type pump struct {
	clip  *clip
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

func newPump(c *clip, track *webrtc.TrackLocalStaticRTP, payloader rtp.Payloader, clockRate uint32, kind string, st *sendStats) *pump {
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
func (p *pump) next() *frame {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.on {
		return nil
	}
	if p.keyframe {
		for p.pos > 0 && !p.clip.frames[p.pos].keyframe {
			p.pos--
		}
		p.keyframe = false
	}
	f := &p.clip.frames[p.pos]
	p.pos = (p.pos + 1) % len(p.clip.frames)
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
		due := int64(now.Sub(origin) / p.clip.interval)
		if due-k >= maxCatchUp {
			k = due
		}
		for ; k <= due; k++ {
			if !p.send(originTS + uint32(k)*p.clip.samples) {
				return
			}
		}
		clockOrigin, clockTS = origin, originTS
		timer.Reset(time.Until(origin.Add(time.Duration(k) * p.clip.interval)))
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
	for i, pkt := range p.pkz.Packetize(f.data, p.clip.samples) {
		pkt.Timestamp = ts
		if p.dropRate > 0 && rand.Float64() < p.dropRate {
			continue // lost on the way: never reaches pion, so it cannot be retransmitted
		}
		// Counted before the write: a client in the same process may
		// receive the packet before WriteRTP returns, and must never see
		// a packet that is not yet among the sent ones.
		p.stats.sent(pkt, p.kind == "video" && f.keyframe && i == 0, now)
		if err := p.track.WriteRTP(pkt); err != nil && !errors.Is(err, io.ErrClosedPipe) {
			return false
		}
	}
	return true
}
