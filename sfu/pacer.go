package sfu

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
)

// Pacing. A publisher sends a keyframe as one burst of tens of kilobytes;
// on a subscriber link the SFU found congested (it has a cap, bwe.go), the
// bottleneck's buffer (a few hundred milliseconds of a slow link) drops
// much of it, the NACK budget cannot repair it all, and the subscriber
// waits for yet another keyframe: a freeze that feeds itself. So on a
// capped link the SFU queues video and sends it at pacingFactor times the
// cap, a keyframe spread over a second rather than lost. Audio is never
// queued (audio first), retransmissions on the RTX stream go ahead of
// queued video (a repair waiting behind a second of video would arrive
// after the subscriber gave up on it), and an uncapped link is not paced
// at all: packets go straight through, as before.
//
// linkPacer is the pacer pion's GCC sends every packet of a subscribe
// connection through (gcc.Pacer).
const (
	pacingFactor = 1.25
	// pacingBurst is how much of the rate may go back to back.
	pacingBurst = 20 * time.Millisecond
	// pacingMaxDelay is the longest a packet waits, a large keyframe at the
	// floor: one older is dropped rather than delay all after it further.
	pacingMaxDelay = 2 * time.Second
)

type linkPacer struct {
	l       atomic.Pointer[link]
	dropped atomic.Uint64 // packets that waited longer than pacingMaxDelay

	mu      sync.Mutex
	writers map[uint32]interceptor.RTPWriter
	audio   map[uint32]bool
	rtx     map[uint32]bool
	q, rtxQ []paced // video; retransmissions, sent first
	budget  float64 // bytes that may be sent now
	at      time.Time
	running bool
	wake    chan struct{}
	done    chan struct{}
	closed  bool
}

// paced is a queued packet: copies, since the writer's buffers are reused.
type paced struct {
	h       rtp.Header
	payload []byte
	w       interceptor.RTPWriter
	at      time.Time
}

func newLinkPacer() *linkPacer {
	return &linkPacer{writers: map[uint32]interceptor.RTPWriter{}, audio: map[uint32]bool{}, rtx: map[uint32]bool{},
		wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// AddStream registers where packets of ssrc go.
func (p *linkPacer) AddStream(ssrc uint32, w interceptor.RTPWriter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.writers[ssrc] = w
}

// setAudio marks ssrc as audio: never queued.
func (p *linkPacer) setAudio(ssrc uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.audio[ssrc] = true
}

// setRTX marks ssrc as an RTX stream: its packets go ahead of queued video.
func (p *linkPacer) setRTX(ssrc uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rtx[ssrc] = true
}

// SetTargetBitrate ignores GCC's target: the SFU never probes, so it is no
// measure of the link (bwe.go); the pace follows the link's cap.
func (p *linkPacer) SetTargetBitrate(int) {}

// rate is the pace in bits/s, 0 for none.
func (p *linkPacer) rate() float64 {
	l := p.l.Load()
	if l == nil {
		return 0
	}
	return pacingFactor * float64(l.capBps.Load())
}

// Write sends a packet now, or queues it when the link is paced.
func (p *linkPacer) Write(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
	p.mu.Lock()
	w, ok := p.writers[h.SSRC]
	if !ok {
		p.mu.Unlock()
		return 0, fmt.Errorf("sfu: pacer: no stream with SSRC %d", h.SSRC)
	}
	if p.closed || p.audio[h.SSRC] || (len(p.q)+len(p.rtxQ) == 0 && p.rate() == 0) {
		p.mu.Unlock()
		return w.Write(h, payload, a)
	}
	pkt := paced{h: h.Clone(), payload: append([]byte(nil), payload...), w: w, at: time.Now()}
	if p.rtx[h.SSRC] {
		p.rtxQ = append(p.rtxQ, pkt)
	} else {
		p.q = append(p.q, pkt)
	}
	if !p.running {
		p.running = true
		p.at = time.Now()
		go p.run()
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return h.MarshalSize() + len(payload), nil
}

// run sends queued packets at the pace until the pacer closes.
func (p *linkPacer) run() {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var out []paced
	for {
		p.mu.Lock()
		now := time.Now()
		rate := p.rate()
		p.budget += now.Sub(p.at).Seconds() * rate / 8
		p.at = now
		burst := pacingBurst.Seconds() * rate / 8
		p.budget = min(p.budget, max(burst, 1500))
		out = out[:0]
		for len(p.q)+len(p.rtxQ) > 0 && (rate == 0 || p.budget > 0) {
			next := p.pop()
			if now.Sub(next.at) > pacingMaxDelay {
				p.dropped.Add(1)
				continue
			}
			p.budget -= float64(next.h.MarshalSize() + len(next.payload))
			out = append(out, next)
		}
		wait := time.Hour
		if len(p.q)+len(p.rtxQ) > 0 {
			wait = time.Duration(-p.budget * 8 / rate * float64(time.Second))
		}
		p.mu.Unlock()
		for i := range out {
			_, _ = out[i].w.Write(&out[i].h, out[i].payload, nil)
		}
		timer.Reset(max(wait, time.Millisecond))
		select {
		case <-p.done:
			return
		case <-p.wake:
		case <-timer.C:
		}
	}
}

// pop takes the next packet to send: a retransmission if one waits.
// Called locked.
func (p *linkPacer) pop() paced {
	q := &p.q
	if len(p.rtxQ) > 0 {
		q = &p.rtxQ
	}
	next := (*q)[0]
	(*q)[0] = paced{}
	*q = (*q)[1:]
	return next
}

// Close stops pacing; what is queued is dropped with the connection.
func (p *linkPacer) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
	return nil
}

// AddStream registers an outgoing stream with GCC and the pacer, with its
// RTX stream (rtx.go): pion's GCC hands the pacer only the SSRCs it was
// given, and a packet of any other would be refused, so without this every
// retransmission on the RTX stream would fail. Audio streams are marked so
// the pacer never queues them, RTX streams so it sends them first.
func (b *nackBudget) AddStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	if info.SSRCRetransmission != 0 {
		rtx := *info
		rtx.SSRC = info.SSRCRetransmission
		b.SendSideBWE.AddStream(&rtx, w)
		if b.pacer != nil {
			b.pacer.setRTX(rtx.SSRC)
		}
	}
	if b.pacer != nil && strings.HasPrefix(strings.ToLower(info.MimeType), "audio/") {
		b.pacer.setAudio(info.SSRC)
	}
	return b.SendSideBWE.AddStream(info, w)
}
