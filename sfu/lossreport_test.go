package sfu

import (
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestReceiverReportsCarryTheSubscribersAudioLoss: the receiver reports a
// publish connection sends (pion's, through the real publish chain) carry
// for an audio track the loss its subscribers report (a quarter here) when
// it is higher than the uplink's, so the publisher's Opus encoder adds
// in-band FEC; a video track's report keeps the uplink's own loss.
func TestReceiverReportsCarryTheSubscribersAudioLoss(t *testing.T) {
	const audio, video = 0xa0d10, 0x51de0
	ls := &links{downLoss: func(pc string, ssrc uint32) uint8 {
		if pc == "pc" && ssrc == audio {
			return 64
		}
		return 0
	}}
	_, pub, _, err := newMediaEngine(Config{Metrics: &Metrics{}, MaxVideoBitrate: DefaultMaxVideoBitrate}, ls)
	if err != nil {
		t.Fatal(err)
	}
	chain, err := pub.Build("pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chain.Close() })
	reports := make(chan []rtcp.ReceptionReport, 16)
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		for _, p := range pkts {
			if rr, ok := p.(*rtcp.ReceiverReport); ok {
				select {
				case reports <- rr.Reports:
				default:
				}
			}
		}
		return 0, nil
	}))
	for _, s := range []struct {
		ssrc uint32
		mime string
	}{{audio, "audio/opus"}, {video, "video/VP8"}} {
		next := make(chan []byte, 1)
		r := chain.BindRemoteStream(&interceptor.StreamInfo{SSRC: s.ssrc, MimeType: s.mime, ClockRate: 90000},
			interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
				return copy(b, <-next), a, nil
			}))
		for i := range 20 {
			raw, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: uint16(i), Timestamp: uint32(i * 960), SSRC: s.ssrc}, Payload: make([]byte, 50)}).Marshal()
			if err != nil {
				t.Fatal(err)
			}
			next <- raw
			if _, _, err := r.Read(make([]byte, 1500), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.After(5 * time.Second) // pion reports every second, one report per stream
	got := map[uint32]uint8{}
	for {
		select {
		case reps := <-reports:
			for _, r := range reps {
				got[r.SSRC] = r.FractionLost
			}
			a, okA := got[audio]
			v, okV := got[video]
			if !okA || !okV {
				continue
			}
			if a != 64 || v != 0 {
				t.Fatalf("fraction lost reported: audio %d, video %d; want the subscribers' 64 for audio and the uplink's 0 for video", a, v)
			}
			return
		case <-deadline:
			t.Fatal("no receiver report for both streams within 5 s")
		}
	}
}

func TestLossReportsAreFreshOnly(t *testing.T) {
	var r lossReports
	now := time.Now()
	r.note([]rtcp.ReceptionReport{{SSRC: 1, FractionLost: 12}}, now)
	if got := r.of(1, now.Add(time.Second)); got != 12 {
		t.Errorf("a report a second old: %d, want 12", got)
	}
	if got := r.of(1, now.Add(lossFresh+time.Second)); got != 0 {
		t.Errorf("a stale report still counts: %d", got)
	}
	if got := r.of(2, now); got != 0 {
		t.Errorf("no report: %d, want 0", got)
	}
}
