package sfu

import (
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
)

// probe stands for the interceptors inside the chain: what it does with the
// attributes is what pion's bandwidth estimator, report and NACK
// interceptors do.
type probe struct {
	interceptor.NoOp
	onWrite func(a interceptor.Attributes)
	onRead  func(h *rtp.Header)
	onRTCP  func(pkts []rtcp.Packet)
}

func (p *probe) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, b []byte, a interceptor.Attributes) (int, error) {
		p.onWrite(a)
		return w.Write(h, b, a)
	})
}

func (p *probe) BindRemoteStream(_ *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil {
			h, herr := a.GetRTPHeader(b[:n])
			if herr != nil {
				return n, a, herr
			}
			p.onRead(h)
		}
		return n, a, err
	})
}

func (p *probe) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil {
			pkts, perr := a.GetRTCPPackets(b[:n])
			if perr != nil {
				return n, a, perr
			}
			p.onRTCP(pkts)
		}
		return n, a, err
	})
}

type probeFactory struct{ p *probe }

func (f probeFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.p, nil }

// chainWith builds probes (innermost first) with attrsFactory outermost, as
// newMediaEngine registers it.
func chainWith(t *testing.T, probes ...*probe) interceptor.Interceptor {
	t.Helper()
	reg := &interceptor.Registry{}
	for _, p := range probes {
		reg.Add(probeFactory{p})
	}
	reg.Add(attrsFactory{})
	chain, err := reg.Build("pc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = chain.Close() })
	return chain
}

// A packet sent through the chain finds an empty map, never one holding the
// last packet's values, and sending costs no allocation for it.
func TestAttributesLentToTheSendChain(t *testing.T) {
	seen := 0
	p := &probe{onWrite: func(a interceptor.Attributes) {
		if a == nil {
			t.Fatal("the chain got nil attributes")
		}
		if len(a) != 0 {
			t.Fatalf("packet %d found %d attributes left from an earlier packet", seen, len(a))
		}
		a.Set("twcc", uint8(5)) // as pion's bandwidth estimator did
		seen++
	}}
	w := chainWith(t, p).BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, interceptor.RTPWriterFunc(
		func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { return 0, nil }))
	h, payload := &rtp.Header{Version: 2, SSRC: 1}, make([]byte, 100)
	for range 3 {
		if _, err := w.Write(h, payload, nil); err != nil {
			t.Fatal(err)
		}
	}
	if allocs := testing.AllocsPerRun(200, func() { _, _ = w.Write(h, payload, nil) }); allocs != 0 {
		t.Errorf("a packet sent allocates %.1f times in the chain, want 0", allocs)
	}
}

// Two interceptors reading one received packet share one parsed header, and
// the reader gets nil attributes (the map went back to the pool).
func TestAttributesReceiveHeaderParsedOnce(t *testing.T) {
	var headers []*rtp.Header
	inner := &probe{onRead: func(h *rtp.Header) { headers = append(headers, h) }}
	outer := &probe{onRead: func(h *rtp.Header) { headers = append(headers, h) }}
	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, SequenceNumber: 7, SSRC: 1}, Payload: []byte{1}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r := chainWith(t, inner, outer).BindRemoteStream(&interceptor.StreamInfo{SSRC: 1}, interceptor.RTPReaderFunc(
		func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, pkt), a, nil
		}))
	_, a, err := r.Read(make([]byte, 1500), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a != nil {
		t.Error("the reader got the pooled attributes back; it must get nil")
	}
	if len(headers) != 2 || headers[0] != headers[1] || headers[0].SequenceNumber != 7 {
		t.Fatalf("headers seen %v: want one parse (sequence 7) shared by both", headers)
	}
}

// A report is parsed once for the whole RTCP chain; the caller reads the
// same parse from the attributes it gets and hands them back.
func TestAttributesRTCPParsedOnce(t *testing.T) {
	var parses [][]rtcp.Packet
	inner := &probe{onRTCP: func(p []rtcp.Packet) { parses = append(parses, p) }}
	outer := &probe{onRTCP: func(p []rtcp.Packet) { parses = append(parses, p) }}
	raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: 9}})
	if err != nil {
		t.Fatal(err)
	}
	r := chainWith(t, inner, outer).BindRTCPReader(interceptor.RTCPReaderFunc(
		func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, raw), a, nil
		}))
	buf := make([]byte, 1500)
	n, a, err := r.Read(buf, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a == nil {
		t.Fatal("the caller got no attributes")
	}
	got, err := a.GetRTCPPackets(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	if len(parses) != 2 || &parses[0][0] != &parses[1][0] || &got[0] != &parses[0][0] {
		t.Fatal("the report was parsed more than once")
	}
	if pli, ok := got[0].(*rtcp.PictureLossIndication); !ok || pli.MediaSSRC != 9 {
		t.Fatalf("parsed %v, want the PLI for 9", got)
	}
	putAttributes(a)
	if len(a) != 0 {
		t.Error("putAttributes left the map holding the parse")
	}
}

// Both of medcall's chains end with the lender: a report read through
// either comes back with attributes, and a packet read through the publish
// chain comes back with none (its map went back to the pool).
func TestAttributesInBothChains(t *testing.T) {
	cfg := Config{Metrics: &Metrics{}, MaxVideoBitrate: DefaultMaxVideoBitrate}
	raw, err := rtcp.Marshal([]rtcp.Packet{&rtcp.ReceiverReport{SSRC: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for _, pc := range []PC{PCPublish, PCSubscribe} {
		r := buildChain(t, cfg, pc).BindRTCPReader(
			interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
				return copy(b, raw), a, nil
			}))
		if _, a, err := r.Read(make([]byte, 1500), nil); err != nil || a == nil {
			t.Errorf("%s chain: attributes %v, err %v; want a lent map", pc, a, err)
		}
	}
	pkt, err := (&rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: 1, SSRC: 5}, Payload: []byte{1}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	info := &interceptor.StreamInfo{SSRC: 5, ClockRate: 48000, MimeType: "audio/opus"}
	r := buildChain(t, cfg, PCPublish).BindRemoteStream(info, interceptor.RTPReaderFunc(
		func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
			return copy(b, pkt), a, nil
		}))
	if _, a, err := r.Read(make([]byte, 1500), nil); err != nil || a != nil {
		t.Errorf("publish chain, RTP: attributes %v, err %v; want nil (the map back in the pool)", a, err)
	}
}
