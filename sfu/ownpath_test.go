package sfu

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
)

// ownRig is a path with one connection whose keys open what peer
// encrypts.
type ownRig struct {
	path *ownPath
	oc   *ownConn
	peer *srtp.Context
	m    *Metrics
}

const (
	rigUfrag = "srvufrag"
	rigPwd   = "srvpassword0123456789012"
)

// testKeys are a connection's keys, made up.
func testKeys(t *testing.T) SRTPKeys {
	t.Helper()
	return SRTPKeys{Profile: srtp.ProtectionProfileAeadAes128Gcm,
		LocalKey: bytes.Repeat([]byte{1}, 16), LocalSalt: bytes.Repeat([]byte{2}, 12),
		RemoteKey: bytes.Repeat([]byte{7}, 16), RemoteSalt: bytes.Repeat([]byte{9}, 12)}
}

func newOwnRig(t *testing.T) *ownRig {
	t.Helper()
	keys := testKeys(t)
	peer, err := srtp.CreateContext(keys.RemoteKey, keys.RemoteSalt, keys.Profile)
	if err != nil {
		t.Fatal(err)
	}
	g := &ownRig{m: &Metrics{}, peer: peer}
	g.path = &ownPath{m: g.m}
	g.oc = newOwnConn(g.path)
	g.oc.keys.Store(&keys)
	g.path.setUfrag(g.oc, rigUfrag, rigPwd)
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

func addr(port uint16) netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("192.0.2.10"), port)
}

func (g *ownRig) owner(a netip.AddrPort) *ownConn {
	if m := g.path.conns.Load(); m != nil {
		return (*m)[a]
	}
	return nil
}

// A binding request names the connection (USERNAME) and is signed with its
// password: only then is the address it came from the connection's. The
// table keeps the selected pair's address and the most recently learned
// ones, learning at most ownAddrs new ones a second; a learned address is
// never taken from another connection.
func TestOwnPathLearnsAddressesFromSignedSTUN(t *testing.T) {
	g := newOwnRig(t)
	signed := bindingRequest(t, rigUfrag+":cli", rigPwd)
	response := bytes.Clone(signed)
	response[0], response[1] = 0x01, 0x01 // a binding success response
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"wrong password", bindingRequest(t, rigUfrag+":cli", "not-the-password-at-all!")},
		{"unknown username", bindingRequest(t, "other:cli", rigPwd)},
		{"no colon", bindingRequest(t, rigUfrag, rigPwd)},
		{"not a request", response},
		{"junk", []byte{0, 1, 0, 0, 0x21, 0x12}},
	} {
		if g.path.take(c.b, addr(5000), true) != notTaken {
			t.Errorf("%s: STUN taken from pion", c.name)
		}
		if g.owner(addr(5000)) != nil {
			t.Fatalf("%s: address learned", c.name)
		}
	}
	if g.path.take(signed, addr(5000), true) != notTaken || g.owner(addr(5000)) != g.oc {
		t.Fatal("a signed binding request did not teach the address (or was taken from pion)")
	}
	g.path.add(g.oc, addr(4000), true) // the selected pair's
	// 5000 learned again is the most recent: the next ownAddrs-1 keep it.
	for port := uint16(6000); port < 6000+ownAddrs-1; port++ {
		g.path.take(signed, addr(port), true)
	}
	g.path.take(signed, addr(5000), true)
	if g.path.take(signed, addr(6100), true); g.owner(addr(6100)) != nil {
		t.Errorf("%d new addresses learned within a second; want at most %d", ownAddrs+1, ownAddrs)
	}
	g.oc.learnedSince = time.Time{} // a second later
	g.path.take(signed, addr(6100), true)
	if g.owner(addr(5000)) != g.oc || g.owner(addr(6000)) != nil || g.owner(addr(4000)) != g.oc {
		t.Errorf("the table keeps %v (%v, pinned %v); want 6000, the least recent, evicted and the pair's address kept",
			*g.path.conns.Load(), g.oc.addrs, g.oc.pinned)
	}
	// Another connection: signed STUN from oc's address does not take it;
	// its selected pair does, and oc's later eviction leaves it alone.
	other := newOwnConn(g.path)
	g.path.setUfrag(other, "ufrag2", "password2-0123456789012")
	g.path.take(bindingRequest(t, "ufrag2:cli", "password2-0123456789012"), addr(5000), true)
	if g.owner(addr(5000)) != g.oc {
		t.Fatal("a learned address was taken from another connection")
	}
	g.path.add(other, addr(6100), true)
	g.oc.learnedSince = time.Time{}
	for port := uint16(7000); port < 7000+ownAddrs; port++ {
		g.path.take(signed, addr(port), true)
	}
	if g.owner(addr(6100)) != other {
		t.Error("a connection's eviction removed an address another connection holds")
	}
	// After an ICE restart the new credentials teach, the old ones no more.
	g.path.setUfrag(g.oc, "newufrag", "newpassword0123456789012")
	g.oc.learnedSince = time.Time{}
	g.path.take(signed, addr(8000), true)
	g.path.take(bindingRequest(t, "newufrag:cli", "newpassword0123456789012"), addr(8001), true)
	if g.owner(addr(8000)) != nil || g.owner(addr(8001)) != g.oc {
		t.Error("after new credentials, the old still teach or the new do not")
	}
	// Removed, the connection comes back neither by STUN nor by its pair.
	g.path.remove(g.oc)
	g.path.take(bindingRequest(t, "newufrag:cli", "newpassword0123456789012"), addr(8002), true)
	g.path.add(g.oc, addr(8003), true)
	for a, c := range *g.path.conns.Load() {
		if c == g.oc {
			t.Errorf("a removed connection holds %v", a)
		}
	}
	if _, ok := (*g.path.ufrags.Load())["newufrag"]; ok {
		t.Error("a removed connection's credentials still teach")
	}
}

// The ingress takes only RTP of a held stream from one of the connection's
// addresses, queued as it came; one packet in ownPionEvery is left to pion.
func TestOwnPathTakesHeldStreams(t *testing.T) {
	g := newOwnRig(t)
	g.path.add(g.oc, addr(5000), true)
	st := &ownStream{ch: make(chan *ownPacket, 2)}
	g.oc.hold(1111, st)

	_, unheld := g.packet(t, 2222, 1)
	if g.path.take(unheld, addr(5000), true) != notTaken {
		t.Error("a stream not held was taken (pion must see a new stream's first packets)")
	}
	_, wire := g.packet(t, 1111, 1)
	if g.path.take(wire, addr(5001), true) != notTaken {
		t.Error("a packet from an address not the connection's was taken")
	}
	for _, pt := range []byte{192, 200, 206, 223} {
		rtcp := bytes.Clone(wire)
		rtcp[1] = pt
		if g.path.take(rtcp, addr(5000), true) != notTaken {
			t.Errorf("RTCP (packet type %d) was taken", pt)
		}
	}
	if g.path.take(append(bytes.Clone(wire), make([]byte, ownMTU)...), addr(5000), true) != notTaken {
		t.Error("a datagram larger than ownMTU was taken")
	}
	if g.path.take(wire, addr(5000), true) != takenQueued {
		t.Fatal("a held stream's packet was not taken")
	}
	if p := <-st.ch; !p.encrypted || !bytes.Equal(p.buf[:p.n], wire) {
		t.Errorf("queued %x (encrypted %v), want the datagram as it came", p.buf[:p.n], p.encrypted)
	}
	g.path.take(wire, addr(5000), true)
	g.path.take(wire, addr(5000), true)
	g.path.take(wire, addr(5000), true)
	if g.m.OwnPathPackets.Load() != 3 || g.m.OwnPathDropped.Load() != 1 {
		t.Errorf("queued %d, dropped %d; want 3 queued and 1 dropped on the full queue",
			g.m.OwnPathPackets.Load(), g.m.OwnPathDropped.Load())
	}
	<-st.ch
	<-st.ch
	st.seen = ownPionEvery - 1
	if g.path.take(wire, addr(5000), true) != notTaken {
		t.Errorf("packet %d of the stream was taken; every %dth is pion's", ownPionEvery, ownPionEvery)
	}
	if g.path.take(wire, addr(5000), true) != takenQueued {
		t.Error("the packet after pion's was not taken")
	}
}

// take is takeAt for a datagram whose receive time is not known.
func (o *ownPath) take(b []byte, from netip.AddrPort, behind bool) taken {
	return o.takeAt(b, from, time.Time{}, behind)
}
