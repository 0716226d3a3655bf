package sfu

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// ownRig is a path with one connection whose remote context decrypts what
// peer encrypts.
type ownRig struct {
	path *ownPath
	oc   *ownConn
	peer *srtp.Context
	m    *Metrics
}

func newOwnRig(t *testing.T) *ownRig {
	t.Helper()
	key, salt := bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{9}, 12)
	mk := func(opts ...srtp.ContextOption) *srtp.Context {
		c, err := srtp.CreateContext(key, salt, srtp.ProtectionProfileAeadAes128Gcm, opts...)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	g := &ownRig{m: &Metrics{}, peer: mk()}
	g.path = &ownPath{m: g.m}
	g.oc = newOwnConn(g.path)
	g.oc.remote = mk(srtp.SRTPReplayProtection(srtpReplayWindow))
	g.path.setUfrag(g.oc, "srvufrag", "srvpassword0123456789012")
	return g
}

func (g *ownRig) packet(t *testing.T, ssrc uint32, seq uint16) (plain, wire []byte) {
	t.Helper()
	p := &rtp.Packet{Header: rtp.Header{Version: 2, PayloadType: 111, SequenceNumber: seq, Timestamp: 960 * uint32(seq), SSRC: ssrc},
		Payload: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	plain, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	wire, err = g.peer.EncryptRTP(nil, plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	return plain, wire
}

func bindingRequest(t *testing.T, username, pwd string) []byte {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(username),
		stun.NewShortTermIntegrity(pwd), stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

var (
	client1 = netip.MustParseAddrPort("192.0.2.10:5000")
	client2 = netip.MustParseAddrPort("192.0.2.10:5002")
)

func (g *ownRig) owner(a netip.AddrPort) *ownConn {
	if m := g.path.conns.Load(); m != nil {
		return (*m)[a]
	}
	return nil
}

// A binding request names the connection (USERNAME) and is signed with its
// password: only then is the address it came from the connection's.
func TestOwnPathLearnsAddressesFromSignedSTUN(t *testing.T) {
	g := newOwnRig(t)
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"wrong password", bindingRequest(t, "srvufrag:cli", "not-the-password-at-all!")},
		{"unknown username", bindingRequest(t, "other:cli", "srvpassword0123456789012")},
		{"no colon", bindingRequest(t, "srvufrag", "srvpassword0123456789012")},
		{"junk", []byte{0, 1, 0, 0, 0x21, 0x12}},
	} {
		if g.path.take(c.b, client1) {
			t.Errorf("%s: STUN taken from pion", c.name)
		}
		if g.owner(client1) != nil {
			t.Fatalf("%s: address learned", c.name)
		}
	}
	if g.path.take(bindingRequest(t, "srvufrag:cli", "srvpassword0123456789012"), client1) {
		t.Error("STUN taken from pion")
	}
	if g.owner(client1) != g.oc {
		t.Fatal("a signed binding request did not teach the address")
	}
	// The most recent ownAddrs addresses are kept.
	for port := uint16(6000); port < 6000+ownAddrs; port++ {
		g.path.take(bindingRequest(t, "srvufrag:cli", "srvpassword0123456789012"), netip.AddrPortFrom(client1.Addr(), port))
	}
	if g.owner(client1) != nil || g.owner(netip.AddrPortFrom(client1.Addr(), 6000)) != g.oc {
		t.Errorf("the table keeps %v", *g.path.conns.Load())
	}
	// After an ICE restart only the new credentials count.
	g.path.setUfrag(g.oc, "newufrag", "newpassword0123456789012")
	g.path.take(bindingRequest(t, "srvufrag:cli", "srvpassword0123456789012"), client2)
	if g.owner(client2) != nil {
		t.Error("the old credentials still teach addresses")
	}
	g.path.remove(g.oc)
	if len(*g.path.conns.Load()) != 0 || len(*g.path.ufrags.Load()) != 0 {
		t.Error("a removed connection stays in the table")
	}
}

// The ingress takes only RTP of a held stream from one of the connection's
// addresses; it decrypts it, and drops what does not authenticate.
func TestOwnPathTakesHeldStreams(t *testing.T) {
	g := newOwnRig(t)
	g.path.add(g.oc, client1)
	st := &ownStream{ch: make(chan *ownPacket, 2)}
	g.oc.hold(1111, st)

	_, unheld := g.packet(t, 2222, 1)
	if g.path.take(unheld, client1) {
		t.Error("a stream not held was taken (pion must see a new stream's first packets)")
	}
	plain, wire := g.packet(t, 1111, 1)
	if g.path.take(wire, client2) {
		t.Error("a packet from an address not the connection's was taken")
	}
	rtcp := bytes.Clone(wire)
	rtcp[1] = 200 // a sender report's packet type
	if g.path.take(rtcp, client1) {
		t.Error("RTCP was taken")
	}
	if !g.path.take(wire, client1) {
		t.Fatal("a held stream's packet was not taken")
	}
	if p := <-st.ch; !bytes.Equal(p.buf[:p.n], plain) {
		t.Errorf("decrypted %x, want %x", p.buf[:p.n], plain)
	}
	if !g.path.take(wire, client1) || len(st.ch) != 0 || g.m.OwnPathDecryptErrors.Load() != 1 {
		t.Error("a replayed packet was not dropped and counted")
	}
	_, forged := g.packet(t, 1111, 2)
	forged[len(forged)-1] ^= 1
	if !g.path.take(forged, client1) || len(st.ch) != 0 || g.m.OwnPathDecryptErrors.Load() != 2 {
		t.Error("a forged packet was not dropped and counted")
	}
	for seq := uint16(3); seq < 6; seq++ {
		_, w := g.packet(t, 1111, seq)
		g.path.take(w, client1)
	}
	if g.m.OwnPathPackets.Load() != 3 || g.m.OwnPathDropped.Load() != 1 {
		t.Errorf("queued %d, dropped %d; want 3 queued (of them 2 waiting) and 1 dropped on the full queue",
			g.m.OwnPathPackets.Load(), g.m.OwnPathDropped.Load())
	}
}

// A stream none of whose packets decrypt goes back to pion (its sequence
// numbers wrapped before the ingress took it, so only pion knows the
// rollover counter); one that has decrypted stays.
func TestOwnPathReleasesAStreamThatNeverDecrypts(t *testing.T) {
	g := newOwnRig(t)
	g.path.add(g.oc, client1)
	g.oc.hold(1111, &ownStream{ch: make(chan *ownPacket, ownQueue)})
	g.oc.hold(3333, &ownStream{ch: make(chan *ownPacket, ownQueue)})
	_, good := g.packet(t, 3333, 1)
	g.path.take(good, client1)
	for seq := range uint16(ownFailLimit) {
		for _, ssrc := range []uint32{1111, 3333} {
			_, w := g.packet(t, ssrc, 100+seq)
			w[len(w)-1] ^= 1
			g.path.take(w, client1)
		}
	}
	if g.oc.stream(1111) != nil {
		t.Error("a stream that never decrypted is still taken")
	}
	if g.oc.stream(3333) == nil {
		t.Error("a stream that decrypted was given back on later failures")
	}
}
