package gcc

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	pgcc "github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// link stands for the network and the subscriber: it notes when each packet
// left and, as pion's receivers do, reports arrivals in transport-cc
// feedback, each packet delayed by queue(i).
type link struct {
	t        *testing.T
	start    time.Time
	recorder *twcc.Recorder
	sent     int
	queue    func(i int) time.Duration
}

func (l *link) Write(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) {
	var ext rtp.TransportCCExtension
	if err := ext.Unmarshal(h.GetExtension(testExtID)); err != nil {
		l.t.Fatal(err)
	}
	arrival := time.Since(l.start) + 20*time.Millisecond + l.queue(l.sent)
	l.recorder.Record(1, ext.TransportSequence, arrival.Microseconds())
	l.sent++
	return 0, nil
}

// TestSendSideBWEReactsToAQueue: the estimator as medcall builds it, fed
// through pion's transport-wide sequence numbers and pion's feedback
// recorder, sees normal usage while packets cross a link in constant time
// and overuse, with a lower target, once each packet waits longer than the
// one before (a queue building up). Real time: the estimator reads the clock.
func TestSendSideBWEReactsToAQueue(t *testing.T) {
	const maxRate = 2_000_000
	bwe, err := NewSendSideBWE(SendSideBWEInitialBitrate(maxRate), SendSideBWEMaxBitrate(maxRate), SendSideBWEMinBitrate(50_000))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bwe.Close() }()
	const building = 60 // packets after which the queue starts to build
	l := &link{t: t, start: time.Now(), recorder: twcc.NewRecorder(5000), queue: func(i int) time.Duration {
		return time.Duration(max(0, i-building)) * 2 * time.Millisecond
	}}
	info := &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: transportCCURI, ID: testExtID}}}
	w := (&twcc.HeaderExtensionInterceptor{}).BindLocalStream(info, bwe.AddStream(info, l))
	payload := make([]byte, 1000)

	usage := func() string { u, _ := bwe.GetStats()["usage"].(string); return u }
	overuseAt, before := -1, 0
	for i := 0; i < 200 && overuseAt < 0; i++ {
		if _, err := w.Write(&rtp.Header{Version: 2, SSRC: 1, SequenceNumber: uint16(i)}, payload, nil); err != nil { //nolint:gosec // i < 200
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if i%5 != 4 {
			continue
		}
		if err := bwe.WriteRTCP(l.recorder.BuildFeedbackPacket(), nil); err != nil {
			t.Fatal(err)
		}
		switch u := usage(); {
		case u == "overuse" && i < building:
			t.Fatalf("overuse at packet %d, before any queue built (stats %v)", i, bwe.GetStats())
		case u == "overuse":
			overuseAt = i
		case i < building:
			before = bwe.GetTargetBitrate()
		}
	}
	if overuseAt < 0 {
		t.Fatalf("a queue growing 2 ms a packet for %d packets was never seen as overuse (stats %v)", 200-building, bwe.GetStats())
	}
	// GCC answers overuse with 0.85 of the rate the feedback says arrived
	// (the last 500 ms): here about what was sent, 1,020 bytes every ~10 ms.
	rate := float64(l.sent*1020*8) / time.Since(l.start).Seconds()
	if got := bwe.GetTargetBitrate(); got >= before || float64(got) < 0.6*rate || float64(got) > 0.95*rate {
		t.Fatalf("target %d bit/s after overuse, %d before, %.0f sent: want about 0.85 of what was sent", got, before, rate)
	}
	t.Logf("overuse seen %d packets after the queue began; target %d bit/s, %d before", overuseAt-building, bwe.GetTargetBitrate(), before)
}

// TestSendSideBWEConcurrentUse: the way medcall uses it, several
// forwarding goroutines write, RTCP readers feed back and the link reads
// the stats at once (run with -race).
func TestSendSideBWEConcurrentUse(t *testing.T) {
	bwe, err := NewSendSideBWE()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bwe.Close() }()
	l := &link{t: t, start: time.Now(), recorder: twcc.NewRecorder(5000), queue: func(int) time.Duration { return 0 }}
	var lmu sync.Mutex
	info := &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: transportCCURI, ID: testExtID}}}
	locked := interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, a interceptor.Attributes) (int, error) {
		lmu.Lock()
		defer lmu.Unlock()
		return l.Write(h, p, a)
	})
	w := (&twcc.HeaderExtensionInterceptor{}).BindLocalStream(info, bwe.AddStream(info, locked))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				h := &rtp.Header{Version: 2, SSRC: 1, SequenceNumber: uint16(g*1000 + i)} //nolint:gosec // small
				if _, err := w.Write(h, make([]byte, 100), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 50 {
				lmu.Lock()
				fb := l.recorder.BuildFeedbackPacket()
				lmu.Unlock()
				if err := bwe.WriteRTCP(fb, nil); err != nil {
					t.Error(err)
					return
				}
				_ = bwe.GetStats()
				_ = bwe.GetTargetBitrate()
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
}

// TestSendSideBWEAnswersWithThisFeedbacksRate: overuse is answered with
// 0.85 of the rate received as of the feedback that showed it, not the one
// before. The rate sent quadruples as the queue begins to build, so the
// two differ; the first version of the copy ran the delay controller
// before the rate calculator and failed this.
func TestSendSideBWEAnswersWithThisFeedbacksRate(t *testing.T) {
	bwe, err := NewSendSideBWE(SendSideBWEInitialBitrate(2_000_000), SendSideBWEMaxBitrate(2_000_000), SendSideBWEMinBitrate(50_000))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = bwe.Close() }()
	l := &link{t: t, start: time.Now(), recorder: twcc.NewRecorder(5000), queue: func(i int) time.Duration {
		return time.Duration(max(0, i-60)) * 2 * time.Millisecond
	}}
	info := &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: transportCCURI, ID: testExtID}}}
	w := (&twcc.HeaderExtensionInterceptor{}).BindLocalStream(info, bwe.AddStream(info, l))
	small, large := make([]byte, 250), make([]byte, 1200)
	decreases := 0
	for i := range 160 {
		payload := small
		if i >= 60 {
			payload = large
		}
		if _, err := w.Write(&rtp.Header{Version: 2, SSRC: 1, SequenceNumber: uint16(i)}, payload, nil); err != nil { //nolint:gosec // i < 160
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		if i%5 != 4 {
			continue
		}
		delayTarget := func() int { d, _ := bwe.GetStats()["delayTargetBitrate"].(int); return d }
		before := delayTarget()
		if err := bwe.WriteRTCP(l.recorder.BuildFeedbackPacket(), nil); err != nil {
			t.Fatal(err)
		}
		// Decreased by this feedback (the stats keep the last state
		// written, and a hold writes none).
		if bwe.GetStats()["state"] != stateDecrease.String() || delayTarget() == before {
			continue
		}
		decreases++
		rc := &bwe.delayController.rateCalculator.history
		rate := int(float64(8*rc.sum) / rc.latestArrival().Sub(rc.samples[rc.start].arrival).Seconds())
		// The delay-based target: the loss-based one grows at its own pace
		// and the smaller of the two is GetTargetBitrate.
		if want, got := clampInt(int(beta*float64(rate)), 50_000, 2_000_000), delayTarget(); got != want {
			t.Fatalf("feedback %d: delay-based target %d bit/s, want 0.85 of the %d received as of this feedback (%d)", i/5, got, rate, want)
		}
	}
	if decreases < 3 {
		t.Fatalf("the estimator decreased after %d feedbacks of a growing queue, want several", decreases)
	}
}

// TestSendSideBWERefusesFeedbackWhenClosed, as pion's does.
func TestSendSideBWERefusesFeedbackWhenClosed(t *testing.T) {
	bwe, err := NewSendSideBWE()
	if err != nil {
		t.Fatal(err)
	}
	pkts := []rtcp.Packet{&rtcp.TransportLayerCC{}}
	if err := bwe.WriteRTCP(pkts, nil); err != nil {
		t.Fatal(err)
	}
	if err := bwe.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bwe.WriteRTCP(pkts, nil); err != ErrSendSideBWEClosed { //nolint:errorlint // returned as is
		t.Fatalf("after Close: %v", err)
	}
}

// twin sends the same packets to pion's estimator and to this package's,
// and the feedback a link with a growing queue and then loss reports on
// them, and compares what the two estimate after each feedback.
type twin struct {
	start    time.Time
	recorder *twcc.Recorder
	sent     int
	delay    func(i int) (time.Duration, bool) // queueing delay, lost
}

func (tw *twin) Write(h *rtp.Header, _ []byte, _ interceptor.Attributes) (int, error) { return 0, nil }

func (tw *twin) arrive(seq uint16) {
	d, lost := tw.delay(tw.sent)
	tw.sent++
	if !lost {
		tw.recorder.Record(1, seq, (time.Since(tw.start) + 20*time.Millisecond + d).Microseconds())
	}
}

// TestSendSideBWEEstimatesAsPions: fed the same packets and the same
// feedback, with a queue building (overuse) and then 20 % loss, this
// package's estimator sees pion's usage (normal, overuse) after each
// feedback and pion's average loss at the end.
func TestSendSideBWEEstimatesAsPions(t *testing.T) {
	const maxRate = 2_000_000
	opts := []Option{SendSideBWEInitialBitrate(maxRate), SendSideBWEMaxBitrate(maxRate), SendSideBWEMinBitrate(50_000)}
	ours, err := NewSendSideBWE(opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ours.Close() }()
	theirs, err := pgcc.NewSendSideBWE(pgcc.SendSideBWEPacer(pgcc.NewNoOpPacer()),
		pgcc.SendSideBWEInitialBitrate(maxRate), pgcc.SendSideBWEMaxBitrate(maxRate), pgcc.SendSideBWEMinBitrate(50_000))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = theirs.Close() }()

	tw := &twin{start: time.Now(), recorder: twcc.NewRecorder(5000), delay: func(i int) (time.Duration, bool) {
		switch {
		case i < 60:
			return 0, false
		case i < 140:
			return time.Duration(i-60) * 2 * time.Millisecond, false
		default:
			return 160 * time.Millisecond, i%5 == 0
		}
	}}
	info := &interceptor.StreamInfo{SSRC: 1, RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: transportCCURI, ID: testExtID}}}
	wOurs, wTheirs := ours.AddStream(info, tw), theirs.AddStream(info, tw)
	// The rate sent quadruples as the queue begins to build, so the rate
	// received climbs through the overuse, feedback by feedback: an
	// estimator answering with the previous feedback's rate falls behind.
	small, large := make([]byte, 250), make([]byte, 1200)
	steps, apart, usageApart := 0, 0, 0
	var worst float64
	for i := range 240 {
		seq := uint16(i) //nolint:gosec // i < 240
		b, _ := (&rtp.TransportCCExtension{TransportSequence: seq}).Marshal()
		h := &rtp.Header{Version: 2, SSRC: 1, SequenceNumber: seq}
		if err := h.SetExtension(testExtID, b); err != nil {
			t.Fatal(err)
		}
		payload := small
		if i >= 60 {
			payload = large
		}
		if _, err := wTheirs.Write(h, payload, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := wOurs.Write(h, payload, nil); err != nil {
			t.Fatal(err)
		}
		tw.arrive(seq)
		time.Sleep(10 * time.Millisecond)
		if i%5 != 4 {
			continue
		}
		fb := tw.recorder.BuildFeedbackPacket()
		if err := theirs.WriteRTCP(fb, nil); err != nil {
			t.Fatal(err)
		}
		if err := ours.WriteRTCP(fb, nil); err != nil {
			t.Fatal(err)
		}
		// pion's goroutines take each feedback from an unbuffered channel
		// and work on it before they take the next: an empty one (no
		// packets, so nothing to estimate) returns once they have finished.
		if err := theirs.WriteRTCP([]rtcp.Packet{&rtcp.TransportLayerCC{}}, nil); err != nil {
			t.Fatal(err)
		}
		steps++
		a, b2 := float64(ours.GetTargetBitrate()), float64(theirs.GetTargetBitrate())
		if d := math.Abs(a-b2) / b2; d > 0.03 {
			apart++
			worst = max(worst, d)
		}
		if ours.GetStats()["usage"] != theirs.GetStats()["usage"] {
			usageApart++
		}
	}
	so, st := ours.GetStats(), theirs.GetStats()
	t.Logf("%d feedbacks: targets more than 3 %% apart after %d (worst %.0f %%), usage apart after %d; loss %.3f / %.3f",
		steps, apart, 100*worst, usageApart, so["averageLoss"], st["averageLoss"])
	// The targets are logged, not asserted: which of pion's goroutines
	// takes a feedback first is up to the scheduler, and in one run of
	// three under -race pion's answered with the previous feedback's rate
	// throughout (35 of 48 apart). TestSendSideBWEAnswersWithThisFeedbacksRate
	// checks the order of this package's.
	if usageApart > steps/10 {
		t.Fatalf("the copy's estimate left pion's: usage apart after %d of %d feedbacks", usageApart, steps)
	}
	if lo, lt := so["averageLoss"].(float64), st["averageLoss"].(float64); lo < 0.1 || math.Abs(lo-lt) > 0.02 {
		t.Fatalf("average loss %.3f, pion's %.3f: want 20 %% loss seen alike", lo, lt)
	}
}
