package sfu

import (
	"encoding/binary"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
)

// offerSig keeps the subscribe offers the SFU sends a participant.
type offerSig struct{ offers chan string }

func (s offerSig) Offer(sdp string)                    { s.offers <- sdp }
func (offerSig) Candidate(PC, webrtc.ICECandidateInit) {}
func (offerSig) Peer(PeerEvent)                        {}
func (offerSig) Bye(string)                            {}

// TestRTXAndOpusFECNegotiated: a browser-like publisher offers Opus with
// in-band FEC and VP8 with RTX. The SFU's answer keeps Opus FEC on
// (useinbandfec=1: the publisher's encoder adds FEC for the SFU's
// subscribers) and declines RTX on the publish side (rtx.go); the subscribe
// offer another participant gets proposes RTX for each video codec, Opus
// with FEC, and RED around Opus (red.go).
func TestRTXAndOpusFECNegotiated(t *testing.T) {
	s, err := New(Config{ListenIP: net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	b := Binding{Consultation: "c-rtx", Patient: "p-1"}
	watcher := offerSig{offers: make(chan string, 8)}
	if _, err := s.Join(b, PeerInfo{ID: "p-1", Role: "patient"}, watcher); err != nil {
		t.Fatal(err)
	}
	pub, err := s.Join(b, PeerInfo{ID: "d-1", Role: "clinician"}, offerSig{offers: make(chan string, 8)})
	if err != nil {
		t.Fatal(err)
	}

	// The publisher: a pion peer with Opus FEC and RTX registered, as Chromium offers them.
	m := &webrtc.MediaEngine{}
	if err := RegisterCodecs(m); err != nil {
		t.Fatal(err)
	}
	if err := registerRTX(m); err != nil {
		t.Fatal(err)
	}
	client, err := webrtc.NewAPI(webrtc.WithMediaEngine(m)).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeAudio, webrtc.RTPCodecTypeVideo} {
		if _, err := client.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
			t.Fatal(err)
		}
	}
	offer, err := client.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(offer.SDP, "apt=96") {
		t.Fatalf("the test's publisher offers no RTX:\n%s", offer.SDP)
	}
	answer, err := pub.HandleOffer(offer.SDP)
	if err != nil {
		t.Fatal(err)
	}
	if got := fmtps(t, answer, "audio", "opus"); !strings.Contains(got, "useinbandfec=1") {
		t.Errorf("the publish answer's Opus fmtp is %q, want useinbandfec=1", got)
	}
	if got := fmtps(t, answer, "video", "rtx"); got != "" {
		t.Errorf("the publish answer accepts RTX (%q); the publish side must not (rtx.go)", got)
	}

	select {
	case sub := <-watcher.offers:
		if got := fmtps(t, sub, "audio", "opus"); !strings.Contains(got, "useinbandfec=1") {
			t.Errorf("the subscribe offer's Opus fmtp is %q, want useinbandfec=1", got)
		}
		if got := fmtps(t, sub, "audio", "red"); got != "111/111" {
			t.Errorf("the subscribe offer's RED fmtp is %q, want RED around Opus (111/111)", got)
		}
		if got := fmtps(t, sub, "video", "rtx"); !strings.Contains(got, "apt=96") || !strings.Contains(got, "apt=98") {
			t.Errorf("the subscribe offer's RTX fmtps are %q, want RTX for VP8 (apt=96) and VP9 (apt=98)", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no subscribe offer for the published tracks")
	}
}

// fmtps joins the fmtp lines of every codec named codec on the m-lines of
// kind in raw.
func fmtps(t *testing.T, raw, kind, codec string) string {
	t.Helper()
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Media != kind || md.MediaName.Port.Value == 0 {
			continue
		}
		for _, f := range md.MediaName.Formats {
			for _, a := range md.Attributes {
				if a.Key == "rtpmap" && strings.HasPrefix(a.Value, f+" ") && strings.EqualFold(strings.SplitN(a.Value[len(f)+1:], "/", 2)[0], codec) {
					for _, b := range md.Attributes {
						if b.Key == "fmtp" && strings.HasPrefix(b.Value, f+" ") {
							out = append(out, b.Value[len(f)+1:])
						}
					}
				}
			}
		}
	}
	return strings.Join(out, ", ")
}

// TestRTXRetransmissionsOnTheirOwnStream: on a subscribe connection whose
// subscriber negotiated RTX, a NACKed packet is resent on the RTX stream
// (its SSRC and payload type, the original sequence number first in the
// payload), counted as a retransmission, and the media stream's record of
// what was sent stays intact, so a later NACK of the same packet is still
// within the NACK guard's window rather than refused as stale.
func TestRTXRetransmissionsOnTheirOwnStream(t *testing.T) {
	cfg := Config{Metrics: &Metrics{}, MaxVideoBitrate: DefaultMaxVideoBitrate}
	chain := buildChain(t, cfg, PCSubscribe)
	const ssrc, rtxSSRC, rtxPT = 0x1234, 0x4321, 97
	info := &interceptor.StreamInfo{SSRC: ssrc, SSRCRetransmission: rtxSSRC, PayloadTypeRetransmission: rtxPT,
		MimeType: "video/VP8", ClockRate: 90000, RTCPFeedback: []interceptor.RTCPFeedback{{Type: "nack"}}}
	// pion numbers the RTX stream when it stores a packet, not when it
	// resends one, so RTX sequence numbers have gaps and a packet resent
	// twice repeats its number: receivers only unwrap RTX, so neither matters.
	type sent struct {
		ssrc uint32
		pt   uint8
		osn  uint16
	}
	var mu sync.Mutex
	var rtx []sent
	got := make(chan struct{}, 16)
	w := chain.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		if h.SSRC == rtxSSRC {
			mu.Lock()
			rtx = append(rtx, sent{h.SSRC, h.PayloadType, binary.BigEndian.Uint16(p)})
			mu.Unlock()
			got <- struct{}{}
		}
		return h.MarshalSize() + len(p), nil
	}))
	for i := range 100 {
		h := &rtp.Header{Version: 2, PayloadType: 96, SequenceNumber: uint16(1000 + i), Timestamp: uint32(i * 3000), SSRC: ssrc}
		if _, err := w.Write(h, make([]byte, 900), nil); err != nil {
			t.Fatal(err)
		}
	}
	nack := func(seqs ...uint16) {
		readNACK(t, chain, ssrc, seqs)
		for range seqs {
			select {
			case <-got:
			case <-time.After(2 * time.Second):
				t.Fatalf("NACK of %v: not all resent on the RTX stream", seqs)
			}
		}
	}
	nack(1010, 1050)
	time.Sleep(20 * time.Millisecond) // the responder resends a packet at most once per round trip
	nack(1050)
	mu.Lock()
	defer mu.Unlock()
	if len(rtx) != 3 {
		t.Fatalf("%d packets on the RTX stream, want 3: %+v", len(rtx), rtx)
	}
	osns := map[uint16]int{}
	for i, r := range rtx {
		if r.ssrc != rtxSSRC || r.pt != rtxPT {
			t.Errorf("retransmission %d has SSRC %x and payload type %d, want RTX's %x and %d", i, r.ssrc, r.pt, rtxSSRC, rtxPT)
		}
		osns[r.osn]++
	}
	if osns[1010] != 1 || osns[1050] != 2 {
		t.Errorf("original sequence numbers resent: %v, want 1010 once and 1050 twice", osns)
	}
	if n := cfg.Metrics.Retransmissions.Load(); n != 3 {
		t.Errorf("%d retransmissions counted, want 3", n)
	}
	if n := cfg.Metrics.NACKStale.Load(); n != 0 {
		t.Errorf("%d NACKed packets refused as stale, want none: the RTX stream's numbers overwrote the media stream's record", n)
	}
}
