package client

import (
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// TestReceiveAccounting: expected packets follow RFC 3550 through sequence
// wrap, reordering and an SSRC change (a renegotiated track); jitter is the
// RFC 3550 interarrival jitter.
func TestReceiveAccounting(t *testing.T) {
	r := newRecvStats(false)
	r.setClockRate(48000)
	t0 := time.Now()
	seqs := []uint16{65530, 65531, 65533, 65535, 0, 2, 1, 3}
	for i, s := range seqs {
		r.received(&rtp.Packet{Header: rtp.Header{SSRC: 1, SequenceNumber: s, Timestamp: uint32(960 * i)}}, 10, false, t0.Add(time.Duration(i)*20*time.Millisecond))
	}
	if r.st.Expected != 10 || r.st.Packets != 8 || r.st.Jitter != 0 {
		t.Fatalf("%+v", r.st)
	}
	// A new SSRC: a new track instance, accounted from its own first packet.
	r.received(&rtp.Packet{Header: rtp.Header{SSRC: 2, SequenceNumber: 100, Timestamp: 5}}, 10, false, t0.Add(time.Second))
	r.received(&rtp.Packet{Header: rtp.Header{SSRC: 2, SequenceNumber: 102, Timestamp: 965}}, 10, false, t0.Add(time.Second+30*time.Millisecond))
	if r.st.Expected != 13 {
		t.Fatalf("%+v", r.st)
	}
	if r.st.Jitter < 600*time.Microsecond || r.st.Jitter > 700*time.Microsecond { // |30-20|/16 ms
		t.Fatalf("jitter %v", r.st.Jitter)
	}
}

// The server's feedback is counted by kind, and a reception report that
// echoes a sender report (LSR set) apart; PLI and FIR are keyframe
// requests; the highest fraction lost is kept.
func TestFeedbackCounts(t *testing.T) {
	var f feedbackCounts
	f.count([]rtcp.Packet{
		&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 1, LastSenderReport: 7}, {SSRC: 2, FractionLost: 30}}},
		&rtcp.ReceiverReport{Reports: []rtcp.ReceptionReport{{SSRC: 1, FractionLost: 12}}},
		&rtcp.TransportLayerNack{}, &rtcp.TransportLayerCC{}, &rtcp.TransportLayerCC{},
		&rtcp.PictureLossIndication{}, &rtcp.FullIntraRequest{},
	})
	got := Feedback{f.rr.Load(), f.lsr.Load(), f.nack.Load(), f.twcc.Load(), f.keyframe.Load(), uint8(f.lost.Load())}
	if want := (Feedback{ReceiverReports: 2, EchoedSenderReports: 1, NACKs: 1, TransportCC: 2, KeyframeRequests: 2, MaxFractionLost: 30}); got != want {
		t.Errorf("counted %+v, want %+v", got, want)
	}
}
