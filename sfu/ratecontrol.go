package sfu

import (
	"time"

	"github.com/pion/rtcp"
)

// Rate control: each published video track is told (by REMB, which browsers
// apply as a cap on their own send-side estimate) the bitrate the most
// constrained of its subscribers can take. Without simulcast or SVC one
// stream serves every subscriber, so the policy is "the slowest subscriber
// sets the pace, within a floor and a ceiling": a well-connected subscriber
// gets the same (lower) quality rather than the constrained one getting no
// decodable video at all. The recorder is an in-process subscriber with no
// downlink; it is represented by the ceiling.
const (
	// DefaultMaxVideoBitrate is the ceiling of a published video track when
	// Config.MaxVideoBitrate is zero.
	DefaultMaxVideoBitrate = 1_500_000
	// minVideoBitrate is the floor: below it a clinician sees nothing
	// useful, so a subscriber whose link cannot take even this much is
	// left to lose video rather than starve everyone else of it.
	minVideoBitrate = 150_000
	// audioReserve is set aside per audio track, on every link, before video
	// gets a share: Opus at its usual rate with RTP, SRTP and UDP overhead.
	// Audio always goes first.
	audioReserve = 48_000
	// rateInterval is how often each publisher's target is worked out; a
	// REMB goes out when it moved by more than rembChange, else at the
	// first tick rembRefresh after the last (a browser keeps the last REMB
	// as its cap). Writing one
	// every rateInterval was 6 % of the server's CPU at N=50 (an SRTCP
	// write each, 1,000 a second).
	rateInterval = 100 * time.Millisecond
	rembRefresh  = time.Second
	rembChange   = 0.05
)

// rembDue says whether a REMB for target goes out now, the last one
// (sent, zero for none) having gone out age ago.
func rembDue(target, sent uint64, age time.Duration) bool {
	if sent == 0 || age >= rembRefresh {
		return true
	}
	d := float64(target) - float64(sent)
	return d > rembChange*float64(sent) || -d > rembChange*float64(sent)
}

// videoShare is what a subscriber link of linkBps leaves for each of the
// videoTracks it receives, once its audioTracks are reserved for.
func videoShare(linkBps uint64, audioTracks, videoTracks int) uint64 {
	reserved := uint64(audioTracks) * audioReserve
	if linkBps <= reserved {
		return 0
	}
	return (linkBps - reserved) / uint64(max(videoTracks, 1))
}

// videoTarget is the bitrate to ask of a publisher's video: the smallest of
// its subscribers' shares, within [floor, ceiling]. With no shares (no
// subscriber reports feedback) it is the ceiling.
func videoTarget(shares []uint64, floor, ceiling uint64) uint64 {
	t := ceiling
	for _, s := range shares {
		t = min(t, s)
	}
	return max(t, floor)
}

// controlRate works out the target of a video track's publisher every
// rateInterval, and tells the publisher when rembDue says so, until stop
// closes. The REMB carries the target plus the
// publisher's own audio reserve: a browser shares one estimate between its
// tracks and serves audio first.
func (r *Receiver) controlRate(stop <-chan struct{}) {
	s := r.owner.c.s
	ceiling := uint64(s.cfg.MaxVideoBitrate)
	tick := time.NewTicker(rateInterval)
	defer tick.Stop()
	var shares []uint64
	var last, sent uint64
	var sentAt time.Time
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		now := time.Now()
		shares = shares[:0]
		for _, d := range *r.downs.Load() {
			if d.bound.Load() == nil {
				continue
			}
			est, ok := d.sub.link.estimate(now)
			if !ok {
				continue
			}
			if f := s.cfg.Metrics.OnBandwidthEstimate; f != nil {
				f(DirectionDown, est)
			}
			audio, video := d.sub.subscriptionCounts()
			shares = append(shares, videoShare(est, audio, video))
		}
		target := videoTarget(shares, minVideoBitrate, ceiling)
		if f := s.cfg.Metrics.OnBandwidthEstimate; f != nil {
			f(DirectionUpTarget, target)
		}
		if target > last+last/10 || target < last-last/10 {
			s.log.Debug("video target", "publisher", r.owner.id, "bps", target, "shares", shares)
			last = target
		}
		if !rembDue(target, sent, now.Sub(sentAt)) {
			continue
		}
		sent, sentAt = target, now
		remb := &rtcp.ReceiverEstimatedMaximumBitrate{Bitrate: float32(target + audioReserve), SSRCs: []uint32{r.ssrc.Load()}}
		_ = r.owner.pub.WriteRTCP([]rtcp.Packet{remb})
	}
}

// Directions of a bandwidth observation (Metrics.OnBandwidthEstimate).
const (
	// DirectionDown is the estimated bandwidth of a subscriber's downlink.
	DirectionDown = "down"
	// DirectionUpTarget is the video bitrate asked of a publisher.
	DirectionUpTarget = "up_target"
)

// subscriptionCounts is how many audio reserves p's subscriptions take (one
// per audio track, two for one wrapped in RED) and how many video tracks it
// receives that are flowing.
func (p *Participant) subscriptionCounts() (audio, video int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r, d := range p.subs {
		if r.kind == KindVideo {
			if r.up.forwarding() {
				video++
			}
		} else {
			audio++
			if d.red.Load() != nil {
				audio++ // RED carries each Opus frame twice (red.go)
			}
		}
	}
	return audio, video
}

// overflowKeyframeDelay is how long after a deep cut the keyframe that
// resumes a paused video is asked for: the REMB that tells the publisher the
// lower rate goes out within rateInterval, and a keyframe encoded before the
// encoder has the new rate is as large as the stream was.
const overflowKeyframeDelay = 2 * rateInterval

// pauseVideoForKeyframe stops forwarding the video p receives until its
// next keyframe and asks for that keyframe once the publisher has been told
// the lower rate. Its link was just cut far below what it carried
// (bwe.go): frames queued or on their way will overflow it and be lost, and
// every frame after a lost one is undecodable until a keyframe anyway.
// Forwarding them only keeps the queue full, so the audio behind them is
// lost too and the keyframe that ends the freeze arrives late or broken.
// Sequence numbers stay continuous (DownTrack.requestResync), so the
// subscriber asks for nothing that was never sent.
//
// Until the ask no keyframe is asked for on p's behalf (keyframesHeld): the
// NACKs the cut refuses and the subscriber's own PLIs would ask at once,
// for a keyframe encoded at the old rate, and in instrumented runs Chromium
// then answered the one asked for at the right time only 0.9-1.5 s later
// (a freeze of 2 s instead of under 1).
func (p *Participant) pauseVideoForKeyframe() {
	p.keyframesHeldUntil.Store(time.Now().Add(overflowKeyframeDelay).UnixNano())
	p.videoReceivers(true)
	time.AfterFunc(overflowKeyframeDelay, func() {
		// Again: a keyframe the publisher sent in between was encoded at
		// the old rate, was lost in the overflowing queue, and must not
		// resume the video.
		for _, r := range p.videoReceivers(true) {
			r.RequestKeyframe(KeyframeLossRecovery)
		}
	})
}

// keyframesHeld reports whether keyframes for p wait for the ask of an
// overflow pause (pauseVideoForKeyframe).
func (p *Participant) keyframesHeld() bool {
	return time.Now().UnixNano() < p.keyframesHeldUntil.Load()
}

// videoReceivers returns the receivers of the video p subscribes to; with
// resync, each of its downtracks first waits for a keyframe.
func (p *Participant) videoReceivers(resync bool) []*Receiver {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rs []*Receiver
	for r, d := range p.subs {
		if r.kind == KindVideo {
			if resync {
				d.requestResync()
			}
			rs = append(rs, r)
		}
	}
	return rs
}

// keyframesForAll asks for a keyframe for every video p receives: its link
// overflowed and has drained (bwe.go), so frames were lost and a keyframe
// now gets through. It asks at once rather than when the subscriber's
// NACKs for the lost frames grow stale, and after the keyframes asked for
// while the link still overflowed were lost with everything else.
func (p *Participant) keyframesForAll() {
	if p.keyframesHeld() {
		return
	}
	for _, r := range p.videoReceivers(false) {
		r.RequestKeyframe(KeyframeLossRecovery)
	}
}

// keyframeFor asks for a keyframe for the downtrack p receives as ssrc: its
// subscriber lost packets that can no longer be resent (nackguard.go).
func (p *Participant) keyframeFor(ssrc uint32) {
	if r := p.receiverToAsk(ssrc); r != nil {
		r.RequestKeyframe(KeyframeLossRecovery)
	}
}

// receiverToAsk is the Receiver of the downtrack p receives as ssrc, to
// ask for a keyframe on p's behalf; nil if there is none, or while p's
// keyframes are held (pauseVideoForKeyframe).
func (p *Participant) receiverToAsk(ssrc uint32) *Receiver {
	if p.keyframesHeld() {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, d := range p.subs {
		if b := d.bound.Load(); b != nil && b.ssrc == ssrc {
			return d.recv
		}
	}
	return nil
}
