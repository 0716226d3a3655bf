package sfu

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// redBlock is one block of a RED payload as a receiver parses it (RFC 2198).
type redBlock struct {
	pt     uint8
	offset uint32 // timestamp offset; 0 for the primary block
	data   []byte
}

// parseRED splits a RED payload into its blocks, the primary last.
func parseRED(t *testing.T, b []byte) []redBlock {
	t.Helper()
	var hdrs []redBlock
	var lens []int
	for {
		if len(b) == 0 {
			t.Fatal("RED payload ends inside its headers")
		}
		if b[0]&0x80 == 0 {
			hdrs = append(hdrs, redBlock{pt: b[0] & 0x7f})
			b = b[1:]
			break
		}
		if len(b) < 4 {
			t.Fatal("RED payload ends inside a block header")
		}
		h := binary.BigEndian.Uint32(b)
		hdrs = append(hdrs, redBlock{pt: uint8(h>>24) & 0x7f, offset: h >> 10 & 0x3fff})
		lens = append(lens, int(h&0x3ff))
		b = b[4:]
	}
	for i := range lens {
		if len(b) < lens[i] {
			t.Fatal("RED payload shorter than its blocks")
		}
		hdrs[i].data, b = b[:lens[i]], b[lens[i]:]
	}
	hdrs[len(hdrs)-1].data = b
	return hdrs
}

// TestREDEncoderCarriesThePreviousFrame: each packet carries its own Opus
// frame and, when the packet before it directly precedes it, that one's
// frame too, with its timestamp offset; after a gap, or a jump RED cannot
// express, only its own.
func TestREDEncoderCarriesThePreviousFrame(t *testing.T) {
	e := newREDEncoder(111)
	pkt := func(seq uint16, ts uint32, data string) *rtp.Packet {
		return &rtp.Packet{Header: rtp.Header{SequenceNumber: seq, Timestamp: ts}, Payload: []byte(data)}
	}
	for _, c := range []struct {
		name string
		pkt  *rtp.Packet
		want []redBlock
	}{
		{"the first packet: its own frame only", pkt(10, 1000, "aa"), []redBlock{{111, 0, []byte("aa")}}},
		{"the next: the first's frame, then its own", pkt(11, 1960, "bbb"), []redBlock{{111, 960, []byte("aa")}, {111, 0, []byte("bbb")}}},
		{"and so on", pkt(12, 2920, "c"), []redBlock{{111, 960, []byte("bbb")}, {111, 0, []byte("c")}}},
		{"after a lost packet: its own only", pkt(14, 4840, "d"), []redBlock{{111, 0, []byte("d")}}},
		{"after a timestamp jump beyond 14 bits: its own only", pkt(15, 4840+1<<14, "e"), []redBlock{{111, 0, []byte("e")}}},
		{"sequence numbers wrap", pkt(0, 4840+1<<14+960, "f"), []redBlock{{111, 0, []byte("f")}}},
	} {
		if c.name == "sequence numbers wrap" {
			e.encode(pkt(65535, 4840+1<<14, "e")) // the packet before, numbered 65535
			c.want = []redBlock{{111, 960, []byte("e")}, {111, 0, []byte("f")}}
		}
		got := parseRED(t, e.encode(c.pkt))
		if len(got) != len(c.want) {
			t.Fatalf("%s: %d blocks %+v, want %d", c.name, len(got), got, len(c.want))
		}
		for i := range got {
			if got[i].pt != c.want[i].pt || got[i].offset != c.want[i].offset || !bytes.Equal(got[i].data, c.want[i].data) {
				t.Errorf("%s: block %d is %+v, want %+v", c.name, i, got[i], c.want[i])
			}
		}
	}
}

func TestREDOnlyForOpusWhereNegotiated(t *testing.T) {
	opus := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus}, PayloadType: 111}
	red := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeTypeRED, SDPFmtpLine: "111/111"}, PayloadType: 63}
	redOther := webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: mimeTypeRED, SDPFmtpLine: "109/109"}, PayloadType: 63}
	for _, c := range []struct {
		name       string
		mime       string
		negotiated []webrtc.RTPCodecParameters
		want       bool
	}{
		{"Opus and RED negotiated", webrtc.MimeTypeOpus, []webrtc.RTPCodecParameters{opus, red}, true},
		{"Opus alone", webrtc.MimeTypeOpus, []webrtc.RTPCodecParameters{opus}, false},
		{"RED around a codec that is not the negotiated Opus", webrtc.MimeTypeOpus, []webrtc.RTPCodecParameters{opus, redOther}, false},
		{"video", webrtc.MimeTypeVP8, []webrtc.RTPCodecParameters{opus, red}, false},
	} {
		got, primary, ok := redFor(c.mime, c.negotiated)
		if ok != c.want || (ok && (got.PayloadType != 63 || primary != 111)) {
			t.Errorf("%s: RED %v (payload type %d around %d), want %v", c.name, ok, got.PayloadType, primary, c.want)
		}
	}
}

// TestREDAudioTakesTwoReserves: a subscriber's audio wrapped in RED costs
// its link two Opus frames per packet, so the rate control reserves twice
// for it before video gets a share.
func TestREDAudioTakesTwoReserves(t *testing.T) {
	plain, wrapped := &Receiver{kind: KindAudio}, &Receiver{kind: KindAudio}
	red := &DownTrack{}
	red.red.Store(newREDEncoder(111))
	p := &Participant{subs: map[*Receiver]*DownTrack{plain: {}, wrapped: red}}
	if audio, video := p.subscriptionCounts(); audio != 3 || video != 0 {
		t.Errorf("subscriptionCounts = %d audio reserves, %d video; want 3 (one plain, two for RED) and 0", audio, video)
	}
}
