package sfu

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stepClock is a keyframeClock that moves only when the test says.
type stepClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*stepTimer
}

type stepTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func (t *stepTimer) Stop() bool { was := !t.stopped; t.stopped = true; return was }

func (c *stepClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *stepClock) AfterFunc(d time.Duration, f func()) interface{ Stop() bool } {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &stepTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

// advance moves the clock by d, running the timers that come due on the way.
func (c *stepClock) advance(d time.Duration) {
	c.mu.Lock()
	end := c.now.Add(d)
	c.mu.Unlock()
	for {
		c.mu.Lock()
		var next *stepTimer
		for _, t := range c.timers {
			if !t.stopped && !t.at.After(end) && (next == nil || t.at.Before(next.at)) {
				next = t
			}
		}
		if next == nil {
			c.now = end
			c.mu.Unlock()
			return
		}
		next.stopped = true
		c.now = next.at
		c.mu.Unlock()
		next.f()
	}
}

// plis is a keyframeRequester on a fake clock, wired to counters instead
// of a publisher.
type plis struct {
	k         *keyframeRequester
	clock     *stepClock
	sent      atomic.Int64
	asked     [NumKeyframeReasons]atomic.Int64
	throttled [NumKeyframeReasons]atomic.Int64
}

const testInterval = 500 * time.Millisecond

func newPLIs(detects bool) *plis {
	p := &plis{clock: &stepClock{now: time.Unix(1_000_000, 0)}}
	p.k = &keyframeRequester{
		interval: testInterval,
		clock:    p.clock,
		send:     func() { p.sent.Add(1) },
		count: func(r KeyframeReason, sentNow bool) {
			p.asked[r].Add(1)
			if !sentNow {
				p.throttled[r].Add(1)
			}
		},
	}
	p.k.activate(detects)
	return p
}

// want checks the number of PLIs sent so far.
func (p *plis) want(t *testing.T, n int64, when string) {
	t.Helper()
	if got := p.sent.Load(); got != n {
		t.Fatalf("%s: %d PLIs sent, want %d", when, got, n)
	}
}

// One PLI per interval whatever the reason, except an upgrade's, which
// goes at once; every request is counted by its reason.
func TestKeyframeRequesterThrottle(t *testing.T) {
	p := newPLIs(true)
	p.k.request(KeyframeSubscriber)
	p.k.request(KeyframeSubscriberBind)
	p.k.request(KeyframeRecorderSync)
	p.k.request(KeyframeLossRecovery)
	p.k.request(KeyframeRecorderInterval)
	p.k.request(KeyframeSubscriber)
	if got := p.sent.Load(); got != 1 {
		t.Fatalf("%d PLIs for six requests within one interval, want 1", got)
	}
	p.k.request(KeyframeUpgrade)
	if got := p.sent.Load(); got != 2 {
		t.Fatalf("an upgrade inside the interval sent %d PLIs in all, want 2 (it is not throttled)", got)
	}
	want := [NumKeyframeReasons][2]int64{ // asked, throttled
		KeyframeSubscriber:       {2, 1},
		KeyframeSubscriberBind:   {1, 1},
		KeyframeUpgrade:          {1, 0},
		KeyframeLossRecovery:     {1, 1},
		KeyframeRecorderSync:     {1, 1},
		KeyframeRecorderInterval: {1, 1},
	}
	for r := range NumKeyframeReasons {
		if got := [2]int64{p.asked[r].Load(), p.throttled[r].Load()}; got != want[r] {
			t.Errorf("%s: asked, throttled = %v, want %v", r, got, want[r])
		}
	}
}

// Requests from many goroutines at once cause one PLI, and each is counted.
func TestKeyframeRequesterCoalescesConcurrentRequests(t *testing.T) {
	p := newPLIs(true)
	const n = 64
	reasons := []KeyframeReason{KeyframeSubscriber, KeyframeSubscriberBind, KeyframeLossRecovery, KeyframeRecorderSync}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			p.k.request(reasons[i%len(reasons)])
		})
	}
	close(start)
	wg.Wait()
	if got := p.sent.Load(); got != 1 {
		t.Fatalf("%d concurrent requests sent %d PLIs, want 1", n, got)
	}
	var asked, throttled int64
	for r := range NumKeyframeReasons {
		asked += p.asked[r].Load()
		throttled += p.throttled[r].Load()
	}
	if asked != n || throttled != n-1 {
		t.Errorf("counted %d requests, %d throttled; want %d, %d", asked, throttled, n, n-1)
	}
	for _, r := range reasons {
		if got := p.asked[r].Load(); got != n/int64(len(reasons)) {
			t.Errorf("%s: counted %d requests, want %d", r, got, n/len(reasons))
		}
	}
}

// A keyframe forwarded answers every request made before it: nothing is
// sent for them at the end of the interval.
func TestKeyframeRequesterKeyframeAnswersOpenRequests(t *testing.T) {
	p := newPLIs(true)
	p.k.request(KeyframeSubscriberBind)
	p.clock.advance(testInterval / 2)
	p.k.request(KeyframeRecorderSync)
	p.want(t, 1, "two requests in one interval")
	p.k.keyframe()
	p.clock.advance(10 * testInterval)
	p.want(t, 1, "after the keyframe that answered them")
}

// A request made after the keyframe that answered the last PLI, within its
// interval, is a new need: a PLI goes out when the interval ends, not before.
func TestKeyframeRequesterDefersRequestAfterKeyframe(t *testing.T) {
	p := newPLIs(true)
	p.k.request(KeyframeUpgrade)
	p.clock.advance(100 * time.Millisecond)
	p.k.keyframe()
	p.k.request(KeyframeSubscriberBind) // a subscriber that bound just after that keyframe
	p.clock.advance(testInterval - 100*time.Millisecond - time.Millisecond)
	p.want(t, 1, "just before the interval ends")
	p.clock.advance(time.Millisecond)
	p.want(t, 2, "when the interval ends")
	p.k.keyframe()
	p.clock.advance(10 * testInterval)
	p.want(t, 2, "after its keyframe")
}

// A PLI that brings no keyframe (lost on the way, say) is sent again once per
// interval, keyframeRetries times, and then the request is given up.
func TestKeyframeRequesterRetriesUntilKeyframe(t *testing.T) {
	p := newPLIs(true)
	p.k.request(KeyframeRecorderSync)
	for i := range int64(keyframeRetries) {
		p.clock.advance(testInterval)
		p.want(t, 2+i, "a retry per interval")
	}
	p.clock.advance(10 * testInterval)
	p.want(t, 1+keyframeRetries, "given up")

	// Given up, the next request starts afresh; a keyframe ends its retries.
	p.k.request(KeyframeSubscriber)
	p.want(t, 2+keyframeRetries, "a request after giving up")
	p.clock.advance(testInterval)
	p.want(t, 3+keyframeRetries, "its retry")
	p.k.keyframe()
	p.clock.advance(10 * testInterval)
	p.want(t, 3+keyframeRetries, "after the keyframe")
}

// An upgrade's PLI inside the interval moves the next retry to a full
// interval after it.
func TestKeyframeRequesterUpgradeRestartsInterval(t *testing.T) {
	p := newPLIs(true)
	p.k.request(KeyframeSubscriber)
	p.clock.advance(testInterval / 2)
	p.k.request(KeyframeUpgrade)
	p.want(t, 2, "the upgrade's PLI")
	p.clock.advance(testInterval/2 + time.Millisecond)
	p.want(t, 2, "half an interval after the upgrade")
	p.clock.advance(testInterval / 2)
	p.want(t, 3, "an interval after the upgrade, no keyframe")
}

// When the codec's keyframes cannot be seen (H.264), each PLI answers the
// requests before it: a request inside the interval gets one PLI at its
// end, and nothing is retried.
func TestKeyframeRequesterUndetectableCodec(t *testing.T) {
	p := newPLIs(false)
	p.k.request(KeyframeSubscriber)
	p.clock.advance(testInterval / 2)
	p.k.request(KeyframeSubscriber)
	p.want(t, 1, "inside the interval")
	p.clock.advance(testInterval / 2)
	p.want(t, 2, "at its end")
	p.clock.advance(10 * testInterval)
	p.want(t, 2, "no retries")
}

// Inactive (before media flows, or while video is off), requests are ignored
// and not counted; deactivating drops an open request and its retries.
func TestKeyframeRequesterInactive(t *testing.T) {
	var zero keyframeRequester
	zero.request(KeyframeSubscriber) // no send func: would panic if used
	zero.keyframe()

	p := newPLIs(true)
	p.k.request(KeyframeUpgrade)
	p.k.deactivate()
	p.k.request(KeyframeSubscriber)
	p.clock.advance(10 * testInterval)
	p.want(t, 1, "deactivated")
	if got := p.asked[KeyframeSubscriber].Load(); got != 0 {
		t.Errorf("counted %d requests while inactive, want 0", got)
	}
	p.k.activate(true)
	p.k.request(KeyframeUpgrade)
	p.want(t, 2, "active again")
}

// A timer that fires as it is stopped (deactivate racing its due) does
// nothing: only the running timer retries, so the PLI rate stays one per
// interval.
func TestKeyframeRequesterStaleTimer(t *testing.T) {
	p := newPLIs(true)
	p.k.request(KeyframeSubscriber)
	stale := p.clock.timers[len(p.clock.timers)-1]
	p.k.deactivate()
	p.k.activate(true)
	p.k.request(KeyframeUpgrade)
	p.want(t, 2, "a request after reactivating")
	p.clock.mu.Lock()
	p.clock.now = p.clock.now.Add(testInterval)
	p.clock.mu.Unlock()
	stale.f() // fired although stopped
	p.want(t, 2, "the stale timer fired")
	p.clock.advance(0) // the running timer is due now
	p.want(t, 3, "the running timer's retry")
}

// Reason labels are a fixed set of distinct names.
func TestKeyframeReasonLabels(t *testing.T) {
	seen := map[string]bool{}
	for r := range NumKeyframeReasons {
		s := r.String()
		if s == "" || s == "unknown" || seen[s] {
			t.Errorf("reason %d has label %q", r, s)
		}
		seen[s] = true
	}
	if got := NumKeyframeReasons.String(); got != "unknown" {
		t.Errorf("out of range reason has label %q", got)
	}
}
