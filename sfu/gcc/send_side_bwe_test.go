package gcc

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
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
	if got := bwe.GetTargetBitrate(); got >= before {
		t.Fatalf("target %d bit/s after overuse, %d before: want lower", got, before)
	}
	t.Logf("overuse seen %d packets after the queue began; target %d bit/s, %d before", overuseAt-building, bwe.GetTargetBitrate(), before)
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
