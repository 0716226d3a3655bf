package sfu

import (
	"encoding/binary"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// TestResendOnFeedback drives a subscribe connection's real interceptor
// chain as a browser that repeats NACKs only every 100 ms would: its
// transport-cc feedback reports packets lost, and the SFU resends them
// without waiting for a NACK. A packet already resent on a NACK is not sent
// again for its lost original; a lost resend is sent again; a feedback that
// reports a queue overflowing (over a quarter lost) resends nothing. With
// and without RTX.
func TestResendOnFeedback(t *testing.T) {
	for _, rtx := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "rtx"}[rtx], func(t *testing.T) {
			s := newFeedbackStream(t, rtx)
			for range 40 {
				s.send()
			}
			seqOf := func(i int) uint16 { return s.firstSeq + uint16(i) }

			// Packet 5 lost, reported by feedback: resent.
			s.feedback(s.tseqOf(seqOf(5), 0), 0)
			s.wantCopies(seqOf(5), 2)

			// Packet 9 lost and NACKed, then the feedback reports its
			// original lost (later than the once-per-round-trip rule would
			// refuse): the NACK's resend is the answer.
			s.nack(seqOf(9))
			s.wantCopies(seqOf(9), 2)
			time.Sleep(10 * time.Millisecond)
			s.feedback(s.tseqOf(seqOf(9), 0), 0)
			s.wantCopies(seqOf(9), 2)

			// The resend of packet 5 is lost too: sent a third time, once the
			// once-per-round-trip rule allows.
			time.Sleep(10 * time.Millisecond)
			s.feedback(s.tseqOf(seqOf(5), 1), 0)
			s.wantCopies(seqOf(5), 3)

			// The same loss reported twice is answered once.
			time.Sleep(10 * time.Millisecond)
			s.feedback(s.tseqOf(seqOf(5), 1), 0)
			s.wantCopies(seqOf(5), 3)

			// A feedback reporting half its packets lost: an overflowing
			// queue, left to NACKs and the rate control.
			s.feedback(s.tseqOf(seqOf(20), 0), 0, 2, 4, 6)
			for i := 20; i < 28; i++ {
				s.wantCopies(seqOf(i), 1)
			}
			if n := s.m.FeedbackResends.Load(); n != 2 {
				t.Errorf("%d resends on feedback counted, want 2", n)
			}
		})
	}
}

// feedbackStream is one video stream through a subscribe chain, with what
// reached the wire.
type feedbackStream struct {
	t        *testing.T
	m        *Metrics
	chain    interceptor.Interceptor
	w        interceptor.RTPWriter
	ssrc     uint32
	firstSeq uint16
	next     uint16

	mu     sync.Mutex
	copies map[uint16][]uint16 // media seq -> transport-wide numbers of its copies
}

const feedbackTWCCID = 5

func newFeedbackStream(t *testing.T, rtx bool) *feedbackStream {
	m := &Metrics{}
	chain := buildChain(t, Config{Metrics: m, MaxVideoBitrate: DefaultMaxVideoBitrate}, PCSubscribe)
	s := &feedbackStream{t: t, m: m, chain: chain, ssrc: 0x1234, firstSeq: 65530, next: 65530, copies: map[uint16][]uint16{}}
	info := &interceptor.StreamInfo{SSRC: s.ssrc, MimeType: "video/VP8", ClockRate: 90000,
		RTCPFeedback:        []interceptor.RTCPFeedback{{Type: "nack"}, {Type: "nack", Parameter: "pli"}, {Type: "transport-cc"}},
		RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: feedbackTWCCID}}}
	if rtx {
		info.SSRCRetransmission, info.PayloadTypeRetransmission = 0x5678, 97
	}
	s.w = chain.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		ext := h.GetExtension(feedbackTWCCID)
		if len(ext) < 2 {
			t.Errorf("packet %d sent without a transport-wide number", h.SequenceNumber)
			return 0, nil
		}
		seq := h.SequenceNumber
		if h.SSRC != s.ssrc {
			if !rtx || h.SSRC != info.SSRCRetransmission {
				t.Errorf("packet on SSRC %x", h.SSRC)
			}
			seq = binary.BigEndian.Uint16(p)
		}
		s.mu.Lock()
		s.copies[seq] = append(s.copies[seq], binary.BigEndian.Uint16(ext))
		s.mu.Unlock()
		return h.MarshalSize() + len(p), nil
	}))
	return s
}

func (s *feedbackStream) send() {
	h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: s.next, Timestamp: uint32(s.next) * 3000, SSRC: s.ssrc}
	s.next++
	if _, err := s.w.Write(h, make([]byte, 900), nil); err != nil {
		s.t.Fatal(err)
	}
}

// tseqOf is the transport-wide number of copy n (0: the original) of seq.
func (s *feedbackStream) tseqOf(seq uint16, n int) uint16 {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.copies[seq]) <= n {
		s.t.Fatalf("packet %d: no copy %d (%v)", seq, n, s.copies[seq])
	}
	return s.copies[seq][n]
}

// wantCopies checks that seq has been sent n times in all. The chain
// resends on the goroutine that reads the NACK or feedback, before the read
// returns.
func (s *feedbackStream) wantCopies(seq uint16, n int) {
	s.t.Helper()
	s.mu.Lock()
	got := len(s.copies[seq])
	s.mu.Unlock()
	if got != n {
		s.t.Errorf("packet %d sent %d times, want %d", seq, got, n)
	}
}

// feedback hands the chain a transport-cc feedback for 8 packets from
// base, those at the offsets lost lost and the others arrived.
func (s *feedbackStream) feedback(base uint16, lost ...int) {
	s.t.Helper()
	symbols := make([]uint16, 14)
	var deltas []*rtcp.RecvDelta
	for i := range 8 {
		if !slices.Contains(lost, i) {
			symbols[i] = rtcp.TypeTCCPacketReceivedSmallDelta
			deltas = append(deltas, &rtcp.RecvDelta{Type: rtcp.TypeTCCPacketReceivedSmallDelta, Delta: 1000})
		}
	}
	fb := &rtcp.TransportLayerCC{MediaSSRC: s.ssrc, BaseSequenceNumber: base, PacketStatusCount: 8,
		PacketChunks: []rtcp.PacketStatusChunk{&rtcp.StatusVectorChunk{Type: rtcp.TypeTCCStatusVectorChunk,
			SymbolSize: rtcp.TypeTCCSymbolSizeOneBit, SymbolList: symbols}},
		RecvDeltas: deltas}
	unpadded := 4 + 16 + 2 + len(deltas) // header, fixed fields, one chunk, one byte per small delta
	fb.Header = rtcp.Header{Count: rtcp.FormatTCC, Type: rtcp.TypeTransportSpecificFeedback,
		Padding: unpadded%4 != 0, Length: uint16(fb.MarshalSize()/4 - 1)}
	s.read(fb)
}

func (s *feedbackStream) nack(seq uint16) {
	s.read(&rtcp.TransportLayerNack{MediaSSRC: s.ssrc, Nacks: rtcp.NackPairsFromSequenceNumbers([]uint16{seq})})
}

func (s *feedbackStream) read(p rtcp.Packet) {
	s.t.Helper()
	b, err := rtcp.Marshal([]rtcp.Packet{p})
	if err != nil {
		s.t.Fatal(err)
	}
	r := s.chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(buf []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(buf, b), a, nil
	}))
	if _, _, err := r.Read(make([]byte, 1500), nil); err != nil {
		s.t.Fatal(err)
	}
}

func TestWalkFeedback(t *testing.T) {
	fb := &rtcp.TransportLayerCC{BaseSequenceNumber: 65534, PacketStatusCount: 6, PacketChunks: []rtcp.PacketStatusChunk{
		&rtcp.RunLengthChunk{PacketStatusSymbol: rtcp.TypeTCCPacketReceivedSmallDelta, RunLength: 2},
		&rtcp.StatusVectorChunk{SymbolSize: rtcp.TypeTCCSymbolSizeTwoBit, SymbolList: []uint16{
			rtcp.TypeTCCPacketNotReceived, rtcp.TypeTCCPacketReceivedLargeDelta, rtcp.TypeTCCPacketNotReceived,
			rtcp.TypeTCCPacketReceivedSmallDelta, rtcp.TypeTCCPacketNotReceived}}, // the last two are padding
	}}
	var got []string
	walkFeedback(fb, func(tseq uint16, arrived bool) {
		got = append(got, map[bool]string{true: "+", false: "-"}[arrived]+strconv.Itoa(int(tseq)))
	})
	want := []string{"+65534", "+65535", "-0", "+1", "-2", "+3"}
	if len(got) != len(want) {
		t.Fatalf("walked %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("walked %v, want %v", got, want)
		}
	}
}
