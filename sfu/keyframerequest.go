package sfu

import (
	"sync"
	"time"
)

// KeyframeReason says why a keyframe was asked of a publisher. It is the
// reason label of medcall_keyframe_requests_total, so the set is small and
// fixed: no ids, nothing a client can choose.
type KeyframeReason uint8

// Reasons for a keyframe request.
const (
	// KeyframeSubscriber is a subscriber's own PLI or FIR, relayed.
	KeyframeSubscriber KeyframeReason = iota
	// KeyframeSubscriberBind is a subscriber's sender starting: a new
	// subscriber, or a video track added to a subscriber by an upgrade.
	KeyframeSubscriberBind
	// KeyframeUpgrade is video starting or resuming: its first RTP, or
	// video turned on again after a downgrade.
	KeyframeUpgrade
	// KeyframeLossRecovery is a subscriber that lost packets too old to
	// resend (nackguard.go).
	KeyframeLossRecovery
	// KeyframeRecorderSync is the recorder unable to go on without one: its
	// track starting, or a loss it cannot repair.
	KeyframeRecorderSync
	// KeyframeRecorderInterval is the recorder's cadence (--keyframe-interval),
	// so that a seek lands close to a keyframe.
	KeyframeRecorderInterval
	// NumKeyframeReasons is the number of reasons, for arrays indexed by one.
	NumKeyframeReasons
)

var keyframeReasonNames = [NumKeyframeReasons]string{
	"subscriber", "subscriber_bind", "upgrade", "loss_recovery", "recorder_sync", "recorder_interval",
}

// String is the reason's metric label.
func (r KeyframeReason) String() string {
	if r < NumKeyframeReasons {
		return keyframeReasonNames[r]
	}
	return "unknown"
}

// keyframeRetries is how many more PLIs one open request may send, one per
// interval, while no keyframe answers it: an RTCP packet lost on the
// publisher's uplink must not leave a subscriber frozen.
const keyframeRetries = 4

// keyframeRequester owns every keyframe request for one published video
// track: each call site (subscriber feedback, a new subscriber, the upgrade,
// loss recovery, the recorder) asks it, and it alone decides when a PLI goes
// to the publisher.
//
//   - Throttle: at most one PLI per interval, except for KeyframeUpgrade,
//     which goes at once (the upgrade's latency is the keyframe's).
//   - Coalescing: a request is open until a keyframe is forwarded. Requests
//     made while one is open join it; one made within the interval after a
//     PLI is answered by a PLI when the interval ends, unless a keyframe
//     arrives first and answers it.
//   - Retry: an open request with no keyframe by the end of the interval
//     sends another PLI, at most keyframeRetries times.
//   - Counting: every request is counted by reason, as sent at once or
//     throttled (answered by a PLI already asked for, or a later one).
//
// When the codec's keyframes cannot be detected (detects false), every PLI
// sent answers every request made before it, and nothing is retried.
//
// Its zero value is inactive and ignores requests; the Receiver activates it
// while media is forwarded (upgrade.go). Safe for concurrent use; the PLI is
// written outside the lock.
type keyframeRequester struct {
	interval time.Duration
	send     func()                               // writes one PLI
	count    func(r KeyframeReason, sentNow bool) // may be nil
	// clock, if set, replaces time.Now and time.AfterFunc (tests).
	clock keyframeClock

	mu      sync.Mutex
	active  bool
	detects bool
	last    time.Time // last PLI sent
	open    bool      // asked for since the last keyframe forwarded
	tries   int       // PLIs sent for the open request
	timer   interface{ Stop() bool }
	gen     uint64 // the running timer's; a stale timer's due does nothing
}

// keyframeClock is the time a keyframeRequester runs on.
type keyframeClock interface {
	Now() time.Time
	AfterFunc(d time.Duration, f func()) interface{ Stop() bool }
}

func (k *keyframeRequester) now() time.Time {
	if k.clock != nil {
		return k.clock.Now()
	}
	return time.Now()
}

// activate starts taking requests. detects says whether keyframe will be
// called for the codec's keyframes.
func (k *keyframeRequester) activate(detects bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.active, k.detects = true, detects
}

// deactivate drops open requests and takes no more until activated: media
// is not forwarded (a downgrade, or the track ended), so a keyframe would
// help nobody.
func (k *keyframeRequester) deactivate() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.active, k.open = false, false
	if k.timer != nil {
		k.timer.Stop()
		k.timer = nil
		k.gen++
	}
}

// request asks for a keyframe. Requests while inactive are ignored.
func (k *keyframeRequester) request(reason KeyframeReason) {
	now := k.now()
	k.mu.Lock()
	if !k.active {
		k.mu.Unlock()
		return
	}
	if !k.open {
		k.open, k.tries = true, 0
	}
	sendNow := reason == KeyframeUpgrade || now.Sub(k.last) >= k.interval
	if sendNow {
		k.sent(now)
	}
	k.arm(now)
	k.mu.Unlock()
	if k.count != nil {
		k.count(reason, sendNow)
	}
	if sendNow {
		k.send()
	}
}

// keyframe says a keyframe is being forwarded: it answers every open
// request. The forwarding loop calls it before writing the keyframe out, so
// a request it closes was made before any consumer could miss that keyframe.
func (k *keyframeRequester) keyframe() {
	k.mu.Lock()
	k.open = false
	k.mu.Unlock()
}

// sent notes a PLI going out now. Called locked.
func (k *keyframeRequester) sent(now time.Time) {
	k.last = now
	k.tries++
	if !k.detects {
		k.open = false // no keyframe will be seen: this PLI answers all
	}
}

// arm makes sure the timer runs at the interval's end while a request is
// open. Called locked.
func (k *keyframeRequester) arm(now time.Time) {
	if !k.open || k.timer != nil {
		return
	}
	k.gen++
	gen := k.gen
	d, f := k.last.Add(k.interval).Sub(now), func() { k.due(gen) }
	if k.clock != nil {
		k.timer = k.clock.AfterFunc(d, f)
	} else {
		k.timer = time.AfterFunc(d, f)
	}
}

// due runs when the interval after the last PLI ends; gen is its timer's.
func (k *keyframeRequester) due(gen uint64) {
	now := k.now()
	k.mu.Lock()
	if gen != k.gen { // stopped, and maybe replaced, while it fired
		k.mu.Unlock()
		return
	}
	k.timer = nil
	if !k.active || !k.open {
		k.mu.Unlock()
		return
	}
	if k.tries > keyframeRetries {
		k.open = false // given up: the next request starts afresh
		k.mu.Unlock()
		return
	}
	if now.Sub(k.last) < k.interval { // an upgrade PLI went out meanwhile
		k.arm(now)
		k.mu.Unlock()
		return
	}
	k.sent(now)
	k.arm(now)
	k.mu.Unlock()
	k.send()
}
