package sfu

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
)

func TestRocTrack(t *testing.T) {
	var r rocTrack
	for _, c := range []struct {
		seq uint16
		roc uint32
	}{
		{65000, 0}, {65535, 0}, {0, 1}, // the wrap
		{65534, 0},         // late, from before it
		{5, 1}, {30000, 1}, // a jump forward within half the space
		{10, 1},                                    // late again
		{60000, 1}, {65535, 1}, {0, 2}, {65535, 1}, // the next wrap, and a late one across it
	} {
		if got := r.update(c.seq); got != c.roc {
			t.Fatalf("sequence number %d: rollover counter %d, want %d", c.seq, got, c.roc)
		}
	}
}

// TestOwnSenderAcrossWraps sends a stream across two sequence wraps, with
// late packets from before each, all of it through "pion" (a context of its
// own, as pion's session has) until after the first wrap and one packet in
// three after that, and a second SSRC (RTX) through the same sender. A receiver that knows nothing but the keys
// decrypts every packet exactly once, whoever encrypted it.
func TestOwnSenderAcrossWraps(t *testing.T) {
	keys := testKeys(t)
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	m := &Metrics{}
	s := newOwnSender(&ownPath{m: m, out: tx})
	s.pionEvery = 3
	pion, err := keys.sender() // pion's own context, which guesses each counter itself
	if err != nil {
		t.Fatal(err)
	}
	toPion := 0
	next := interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
		toPion++
		b, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
		if err != nil {
			return 0, err
		}
		if b, err = pion.EncryptRTP(nil, b, nil); err != nil {
			return 0, err
		}
		return tx.WriteToUDPAddrPort(b, rx.LocalAddr().(*net.UDPAddr).AddrPort())
	})
	w := s.BindLocalStream(&interceptor.StreamInfo{SSRC: 1111}, next)
	var seqs []uint16
	for i := range 140 {
		seq := uint16(65500 + i) // crosses the first wrap at i = 36
		if i != 10 {
			seqs = append(seqs, seq)
		}
		if i == 60 {
			seqs = append(seqs, 65510) // late: from before the wrap
		}
	}
	for k := 1; k <= 140; k++ { // strides of 500 (lost packets) across the second wrap, at k = 131
		seqs = append(seqs, uint16(103+500*k))
		if k == 132 {
			seqs = append(seqs, 65500) // late: from before it
		}
	}
	open, err := srtp.CreateContext(keys.LocalKey, keys.LocalSalt, keys.Profile, srtp.SRTPReplayProtection(srtpReplayWindow))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	for i, seq := range seqs {
		if i == 50 { // taken after the first wrap: its counter is already 1
			s.to.Store(&ownSendTo{keys: &keys, addr: rx.LocalAddr().(*net.UDPAddr).AddrPort()})
		}
		ssrc := uint32(1111)
		if i%4 == 3 {
			ssrc = 2222 // an RTX stream with the same numbers is as good a test
		}
		payload := fmt.Appendf(nil, "ssrc %d seq %05d #%d", ssrc, seq, i)
		if _, err := w.Write(&rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, PayloadType: 111}, payload, nil); err != nil {
			t.Fatal(err)
		}
		_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("packet %d (ssrc %d, sequence number %d) did not arrive: %v", i, ssrc, seq, err)
		}
		plain, err := open.DecryptRTP(nil, buf[:n], nil)
		if err != nil {
			t.Fatalf("packet %d (ssrc %d, sequence number %d) does not decrypt: %v", i, ssrc, seq, err)
		}
		var p rtp.Packet
		if err := p.Unmarshal(plain); err != nil || !bytes.Equal(p.Payload, payload) {
			t.Fatalf("packet %d: %q, want %q (%v)", i, p.Payload, payload, err)
		}
	}
	if own := m.OwnPathSent.Load(); toPion == 0 || own == 0 || int(own)+toPion != len(seqs) {
		t.Errorf("own path sent %d, pion %d, of %d", own, toPion, len(seqs))
	}
}

// TestOwnSenderLeavesToPion: before the connection is taken, and for what
// it cannot send, pion sends.
func TestOwnSenderLeavesToPion(t *testing.T) {
	m := &Metrics{}
	s := newOwnSender(&ownPath{m: m})
	n := 0
	next := interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { n++; return 0, nil })
	w := s.BindLocalStream(&interceptor.StreamInfo{SSRC: 1}, next)
	if _, err := w.Write(&rtp.Header{Version: 2, SSRC: 1, SequenceNumber: 1}, []byte("x"), nil); err != nil || n != 1 {
		t.Fatalf("not taken: pion wrote %d (%v)", n, err)
	}
	keys := testKeys(t)
	s.to.Store(&ownSendTo{keys: &keys, addr: netip.MustParseAddrPort("127.0.0.1:9")})
	if _, err := w.Write(&rtp.Header{Version: 2, SSRC: 1, SequenceNumber: 2}, make([]byte, ownMTU), nil); err != nil || n != 2 {
		t.Fatalf("larger than the MTU: pion wrote %d (%v)", n, err)
	}
	if m.OwnPathSent.Load() != 0 {
		t.Fatal("the own path counted a packet it did not send")
	}
}
