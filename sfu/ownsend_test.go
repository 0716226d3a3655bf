package sfu

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
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
	// Below 2^15 there is nothing to wrap back to: a larger number is newer.
	r = rocTrack{}
	for _, seq := range []uint16{100, 40000, 65535} {
		if got := r.update(seq); got != 0 {
			t.Fatalf("sequence number %d after 100: rollover counter %d, want 0", seq, got)
		}
	}
	if got := r.update(3); got != 1 {
		t.Fatalf("3 after 65535: rollover counter %d, want 1", got)
	}
}

// sendRig is an ownSender on a loopback socket, with "pion" (a context of
// its own, as pion's SRTP session has, which guesses each rollover counter
// itself and drops what it is given until ready), and a receiver that
// knows only the keys.
type sendRig struct {
	t      *testing.T
	s      *ownSender
	m      *Metrics
	keys   SRTPKeys
	rx, tx *net.UDPConn
	w      interceptor.RTPWriter
	ready  bool // pion sends (its DTLS handshake is over)
	toPion int  // packets pion sent
	pion   *srtp.Context
	open   *srtp.Context
	buf    []byte
}

func newSendRig(t *testing.T) *sendRig {
	g := &sendRig{t: t, m: &Metrics{}, keys: testKeys(t), ready: true, buf: make([]byte, 1500)}
	for _, c := range []**net.UDPConn{&g.rx, &g.tx} {
		conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		*c = conn
	}
	var err error
	if g.pion, err = g.keys.sender(); err != nil {
		t.Fatal(err)
	}
	if g.open, err = srtp.CreateContext(g.keys.LocalKey, g.keys.LocalSalt, g.keys.Profile, srtp.SRTPReplayProtection(srtpReplayWindow)); err != nil {
		t.Fatal(err)
	}
	g.s = newOwnSender(&ownPath{m: g.m, out: g.tx})
	g.w = g.s.BindLocalStream(&interceptor.StreamInfo{SSRC: 1111}, interceptor.RTPWriterFunc(g.viaPion))
	return g
}

func (g *sendRig) viaPion(h *rtp.Header, payload []byte, _ interceptor.Attributes) (int, error) {
	if !g.ready {
		return 0, nil // pion's srtpWriterFuture before the handshake
	}
	g.toPion++
	b, err := (&rtp.Packet{Header: *h, Payload: payload}).Marshal()
	if err != nil {
		return 0, err
	}
	if b, err = g.pion.EncryptRTP(nil, b, nil); err != nil {
		return 0, err
	}
	return g.tx.WriteToUDPAddrPort(b, g.rx.LocalAddr().(*net.UDPAddr).AddrPort())
}

// take has the own path send from now on.
func (g *sendRig) take() {
	g.s.to.Store(&ownSendTo{keys: &g.keys, addr: g.rx.LocalAddr().(*net.UDPAddr).AddrPort()})
}

// send writes packet i and, if it was sent, checks that the receiver
// decrypts it.
func (g *sendRig) send(i int, ssrc uint32, seq uint16) {
	t := g.t
	t.Helper()
	payload := fmt.Appendf(nil, "ssrc %d seq %05d #%d", ssrc, seq, i)
	n, err := g.w.Write(&rtp.Header{Version: 2, SSRC: ssrc, SequenceNumber: seq, PayloadType: 111}, payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		return // dropped by a pion not ready
	}
	_ = g.rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err = g.rx.Read(g.buf)
	if err != nil {
		t.Fatalf("packet %d (ssrc %d, sequence number %d) did not arrive: %v", i, ssrc, seq, err)
	}
	plain, err := g.open.DecryptRTP(nil, g.buf[:n], nil)
	if err != nil {
		t.Fatalf("packet %d (ssrc %d, sequence number %d) does not decrypt: %v", i, ssrc, seq, err)
	}
	var p rtp.Packet
	if err := p.Unmarshal(plain); err != nil || !bytes.Equal(p.Payload, payload) {
		t.Fatalf("packet %d: %q, want %q (%v)", i, p.Payload, payload, err)
	}
}

// TestOwnSenderAcrossWraps sends a stream across two sequence wraps, with
// late packets from before each, all of it through pion until after the
// first wrap and then every sequence number divisible by three, and a
// second SSRC (RTX) through the same sender. The receiver decrypts every
// packet exactly once, whoever encrypted it.
func TestOwnSenderAcrossWraps(t *testing.T) {
	g := newSendRig(t)
	g.s.pionEvery = 3
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
	for i, seq := range seqs {
		if i == 50 { // taken after the first wrap: its counter is already 1
			g.take()
		}
		ssrc := uint32(1111)
		if i%4 == 3 {
			ssrc = 2222 // an RTX stream with the same numbers is as good a test
		}
		g.send(i, ssrc, seq)
	}
	if own := g.m.OwnPathSent.Load(); g.toPion < 50 || own == 0 || int(own)+g.toPion != len(seqs) {
		t.Errorf("own path sent %d, pion %d, of %d", own, g.toPion, len(seqs))
	}
}

// TestOwnSenderStreamAfterTakeover: a stream that begins once the
// connection is taken, near a wrap. pion sends its first packet, so its
// counter starts where the subscriber's does, and then the sequence
// numbers divisible by 4,096: those after the wrap decrypt too.
func TestOwnSenderStreamAfterTakeover(t *testing.T) {
	g := newSendRig(t)
	g.take()
	for i := range 8000 {
		g.send(i, 1111, uint16(63000+i)) // wraps at i = 2536; 0 and 4096 are pion's
	}
	if g.toPion != 3 {
		t.Errorf("pion sent %d packets; want 3 (the first, 0 and 4096)", g.toPion)
	}
}

// TestOwnSenderAfterPionDropped: what pion drops before its handshake is
// over is sent to no one; the stream's counter starts at the first packet
// sent, even when the numbers wrapped among those dropped.
func TestOwnSenderAfterPionDropped(t *testing.T) {
	g := newSendRig(t)
	g.ready = false
	for i := range 100 {
		g.send(i, 1111, uint16(65500+i)) // wraps at i = 36, all dropped
	}
	g.ready = true
	g.send(100, 1111, 64)
	g.take()
	for i := 101; i < 300; i++ {
		g.send(i, 1111, uint16(65500+i))
	}
	if g.toPion != 1 || g.m.OwnPathSent.Load() != 199 {
		t.Errorf("pion sent %d, the own path %d; want 1 and 199", g.toPion, g.m.OwnPathSent.Load())
	}
}

// TestOwnSenderLeavesToPion: before the connection is taken, and for what
// it cannot send, pion sends.
func TestOwnSenderLeavesToPion(t *testing.T) {
	m := &Metrics{}
	s := newOwnSender(&ownPath{m: m})
	n := 0
	next := interceptor.RTPWriterFunc(func(*rtp.Header, []byte, interceptor.Attributes) (int, error) { n++; return 1, nil })
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

// TestOwnSenderStopsOnFailure: a failed connection sends nothing on the own
// path, and a new pair does not change that until it is connected again.
func TestOwnSenderStopsOnFailure(t *testing.T) {
	g := newSendRig(t)
	keys := g.keys
	g.s.keys = &keys
	g.s.path.port = g.tx.LocalAddr().(*net.UDPAddr).Port
	pair := &webrtc.ICECandidatePair{
		Local:  &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: "127.0.0.1", Port: uint16(g.s.path.port)},
		Remote: &webrtc.ICECandidate{Protocol: webrtc.ICEProtocolUDP, Address: "127.0.0.1", Port: uint16(g.rx.LocalAddr().(*net.UDPAddr).Port)},
	}
	g.s.pairChanged(pair)
	if g.s.to.Load() == nil {
		t.Fatal("a UDP pair on the port was not followed")
	}
	g.s.fail()
	g.s.pairChanged(pair)
	if g.s.to.Load() != nil {
		t.Fatal("the own path sends on a failed connection")
	}
	g.s.failed = false
	tcp := *pair.Local
	tcp.Protocol = webrtc.ICEProtocolTCP
	g.s.pairChanged(&webrtc.ICECandidatePair{Local: &tcp, Remote: pair.Remote})
	if g.s.to.Load() != nil {
		t.Fatal("the own path sends for an ICE-TCP pair")
	}
}

// TestOwnSendFailuresAreLoggedSparingly: a failed write is logged with how
// many failed, at most once every ownSendErrorLog.
func TestOwnSendFailuresAreLoggedSparingly(t *testing.T) {
	var out bytes.Buffer
	o := &ownPath{log: slog.New(slog.NewTextHandler(&out, nil))}
	for range 5 {
		o.sendFailed(errors.New("sendto: no buffer space available"))
	}
	if n := strings.Count(out.String(), "own send path: writes on the UDP port failed"); n != 1 || !strings.Contains(out.String(), "failed=1 ") {
		t.Fatalf("log after five failures:\n%s", out.String())
	}
	o.sendErrsLast.Store(time.Now().Add(-ownSendErrorLog).UnixNano())
	o.sendFailed(errors.New("sendto: no buffer space available"))
	if !strings.Contains(out.String(), "failed=5 ") {
		t.Fatalf("the next line does not count the failures since the last:\n%s", out.String())
	}
}
