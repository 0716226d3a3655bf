package sfu

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

func TestNACKResponderSize(t *testing.T) {
	for _, c := range []struct {
		bitrate int
		want    uint16
	}{
		{minVideoBitrate, 64},             // 15 packets in 800 ms: the floor
		{DefaultMaxVideoBitrate, 256},     // 150
		{4_000_000, 512},                  // 400
		{50_000_000, 8192},                // 5000
		{1_000_000_000, 32768},            // pion's largest
		{DefaultMaxVideoBitrate / 2, 128}, // 75
	} {
		if got := nackResponderSize(c.bitrate); got != c.want {
			t.Errorf("nackResponderSize(%d) = %d, want %d", c.bitrate, got, c.want)
		}
	}
}

// TestNACKRepairWithinTheNACKWindow drives a subscribe connection's real
// interceptor chain (bandwidth estimation, NACK guard, responder, sender
// reports) with video at the bitrate ceiling: 800 ms of packets (the NACK
// guard's window), 5 % of them lost at random and NACKed. Every lost packet
// must be resent with the history medcall sizes, as with pion's default of
// 1024 packets. A history smaller than the window must miss some: that
// proves the test sees the history's size.
func TestNACKRepairWithinTheNACKWindow(t *testing.T) {
	for _, c := range []struct {
		history  uint16
		repaired bool
	}{
		{0, true},    // sized by nackResponderSize
		{1024, true}, // pion's default, as before
		{32, false},  // too small for the window
	} {
		t.Run(fmt.Sprintf("history=%d", c.history), func(t *testing.T) {
			lost, resent := nackRound(t, Config{Metrics: &Metrics{}, MaxVideoBitrate: DefaultMaxVideoBitrate, NACKHistory: c.history})
			missing := 0
			for _, seq := range lost {
				if !resent[seq] {
					missing++
				}
			}
			if c.repaired && missing > 0 {
				t.Errorf("%d of %d NACKed packets were not resent", missing, len(lost))
			}
			if !c.repaired && missing == 0 {
				t.Errorf("all %d NACKed packets were resent from a history of %d packets, want the oldest missing", len(lost), c.history)
			}
		})
	}
}

// nackRound sends one NACK window of video through a subscribe chain built
// from cfg, NACKs a random 5 % of it and returns what was NACKed and what
// the chain resent.
func nackRound(t *testing.T, cfg Config) (lost []uint16, resent map[uint16]bool) {
	t.Helper()
	chain := buildChain(t, cfg, PCSubscribe)
	const ssrc = 0x1234
	info := &interceptor.StreamInfo{SSRC: ssrc, MimeType: "video/VP8", ClockRate: 90000,
		RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}}}
	var mu sync.Mutex
	writes := map[uint16]int{}
	all := make(chan struct{}, 1)
	var want int
	w := chain.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		writes[h.SequenceNumber]++
		if writes[h.SequenceNumber] == 2 {
			if want--; want == 0 {
				all <- struct{}{}
			}
		}
		return h.MarshalSize() + len(p), nil
	}))

	window := int(float64(cfg.MaxVideoBitrate) / 8 / nackPacketBytes * maxNackAge.Seconds())
	rng := rand.New(rand.NewPCG(1, 16))
	payload := make([]byte, nackPacketBytes-12)
	for i := range window {
		seq := uint16(60000 + i) // wraps during the window
		h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: seq, Timestamp: uint32(i * 3000), SSRC: ssrc}
		if _, err := w.Write(h, payload, nil); err != nil {
			t.Fatal(err)
		}
		if rng.Float64() < 0.05 || i == 0 {
			lost = append(lost, seq) // the oldest packet of the window is always among them
		}
	}
	mu.Lock()
	want = len(lost)
	mu.Unlock()

	readNACK(t, chain, ssrc, lost)
	// The responder resends on its own goroutine. Wait for every resend, or
	// long enough to be sure the missing ones are not coming.
	select {
	case <-all:
	case <-time.After(2 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	resent = map[uint16]bool{}
	for seq, n := range writes {
		if n > 1 {
			resent[seq] = true
		}
	}
	return lost, resent
}

// TestPublishChainFeedsBackToThePublisher: a publish connection's
// interceptors (built without the subscribe side's) still send the
// publisher transport-cc feedback, which browsers steer their encoders by,
// and NACKs for what was lost on the way in.
func TestPublishChainFeedsBackToThePublisher(t *testing.T) {
	chain := buildChain(t, Config{Metrics: &Metrics{}, MaxVideoBitrate: DefaultMaxVideoBitrate}, PCPublish)
	gotTWCC, gotNACK := make(chan struct{}, 1), make(chan struct{}, 1)
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			switch p.(type) {
			case *rtcp.TransportLayerCC:
				select {
				case gotTWCC <- struct{}{}:
				default:
				}
			case *rtcp.TransportLayerNack:
				select {
				case gotNACK <- struct{}{}:
				default:
				}
			}
		}
		return 0, nil
	}))
	const ssrc, extID = 0x5678, 5
	info := &interceptor.StreamInfo{SSRC: ssrc, MimeType: "video/VP8", ClockRate: 90000,
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "transport-cc"}},
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", ID: extID}}}
	next := make(chan []byte, 1)
	r := chain.BindRemoteStream(info, interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, <-next), a, nil
	}))
	for i := range 200 {
		if i == 50 {
			continue // lost on the way in
		}
		h := rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(i), Timestamp: uint32(i * 3000), SSRC: ssrc}
		tcc, err := (&rtp.TransportCCExtension{TransportSequence: uint16(i)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := h.SetExtension(extID, tcc); err != nil {
			t.Fatal(err)
		}
		raw, err := (&rtp.Packet{Header: h, Payload: make([]byte, 100)}).Marshal()
		if err != nil {
			t.Fatal(err)
		}
		next <- raw
		if _, _, err := r.Read(make([]byte, 1500), nil); err != nil {
			t.Fatal(err)
		}
	}
	for name, ch := range map[string]chan struct{}{"transport-cc feedback": gotTWCC, "NACK": gotNACK} {
		select {
		case <-ch:
		case <-time.After(3 * time.Second): // both are sent on 100 ms tickers
			t.Errorf("the publish connection sent no %s", name)
		}
	}
}

// buildChain builds the interceptors of one connection of kind pc, as
// newMediaEngine configures them for cfg, closed when the test ends.
func buildChain(t *testing.T, cfg Config, pc PC) interceptor.Interceptor {
	t.Helper()
	_, pub, sub, err := newMediaEngine(cfg, &links{})
	if err != nil {
		t.Fatal(err)
	}
	reg := sub
	if pc == PCPublish {
		reg = pub
	}
	chain, err := reg.Build("pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chain.Close() })
	return chain
}

// readNACK hands the chain a NACK from the subscriber for seqs of ssrc.
func readNACK(t *testing.T, chain interceptor.Interceptor, ssrc uint32, seqs []uint16) {
	t.Helper()
	nack, err := rtcp.Marshal([]rtcp.Packet{&rtcp.TransportLayerNack{MediaSSRC: ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers(seqs)}})
	if err != nil {
		t.Fatal(err)
	}
	r := chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, nack), a, nil
	}))
	if _, _, err := r.Read(make([]byte, 1500), nil); err != nil {
		t.Fatal(err)
	}
}
