package sfu

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// rtcpSeen is a subscribe chain that notes each RTCP datagram it reads,
// and refuses (as GCC does an invalid feedback) any holding a packet
// refuse says no to.
type rtcpSeen struct {
	interceptor.NoOp
	reads  [][]rtcp.Packet
	refuse func(rtcp.Packet) bool
}

func (c *rtcpSeen) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err == nil {
			pkts, perr := a.GetRTCPPackets(b[:n])
			if perr != nil {
				panic(perr)
			}
			for _, p := range pkts {
				if c.refuse != nil && c.refuse(p) {
					return 0, a, errors.New("refused")
				}
			}
			c.reads = append(c.reads, pkts)
		}
		return n, a, err
	})
}

// TestOwnRTCPReadsTheSubscribersRTCPOnce: RTCP from a subscribe connection's
// selected pair is decrypted at the ingress and read through the chain once
// per datagram, then delivered; a replay is dropped; what does not
// authenticate with the connection's keys, what comes from another address,
// and anything once the connection failed, is pion's.
func TestOwnRTCPReadsTheSubscribersRTCPOnce(t *testing.T) {
	keys := testKeys(t)
	m := &Metrics{}
	path := &ownPath{m: m}
	s := newOwnSender(path)
	chain := &rtcpSeen{}
	s.bindRTCP(chain)
	var delivered [][]rtcp.Packet
	s.onRTCP(func(p []rtcp.Packet) { delivered = append(delivered, p) })
	pair := netip.MustParseAddrPort("127.0.0.1:40000")
	other := netip.MustParseAddrPort("127.0.0.1:40001")

	client, err := srtp.CreateContext(keys.RemoteKey, keys.RemoteSalt, keys.Profile)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := srtp.CreateContext(keys.LocalKey, keys.LocalSalt, keys.Profile)
	if err != nil {
		t.Fatal(err)
	}
	seal := func(c *srtp.Context, pkts ...rtcp.Packet) []byte {
		t.Helper()
		b, err := rtcp.Marshal(pkts)
		if err != nil {
			t.Fatal(err)
		}
		if b, err = c.EncryptRTCP(nil, b, nil); err != nil {
			t.Fatal(err)
		}
		return b
	}
	compound := seal(client,
		&rtcp.ReceiverReport{SSRC: 1, Reports: []rtcp.ReceptionReport{{SSRC: 10}, {SSRC: 20}}},
		&rtcp.PictureLossIndication{SenderSSRC: 1, MediaSSRC: 20})

	if got := path.take(compound, pair, false); got != notTaken {
		t.Fatalf("before the connection is taken: %v, want not taken", got)
	}
	s.amu.Lock()
	s.keys = &keys
	s.followAddr(pair)
	s.amu.Unlock()

	if got := path.take(compound, pair, false); got != takenRTCP {
		t.Fatalf("a compound receiver report and PLI from the pair: %v, want RTCP", got)
	}
	if len(chain.reads) != 1 || len(delivered) != 1 || len(delivered[0]) != 2 {
		t.Fatalf("the chain read %d datagrams, %d delivered; want the compound once, both packets delivered", len(chain.reads), len(delivered))
	}
	if pli, ok := delivered[0][1].(*rtcp.PictureLossIndication); !ok || pli.MediaSSRC != 20 {
		t.Fatalf("delivered %v, want the PLI for 20 second", delivered[0])
	}
	if got := path.take(compound, pair, true); got != takenRTCP || m.OwnPathDuplicates.Load() != 1 || len(chain.reads) != 1 {
		t.Fatalf("the same datagram again: %v, %d duplicates, chain read %d; want it dropped as a replay", got, m.OwnPathDuplicates.Load(), len(chain.reads))
	}
	if got := path.take(seal(stranger, &rtcp.PictureLossIndication{MediaSSRC: 20}), pair, false); got != notTaken {
		t.Fatalf("RTCP under other keys from the pair: %v, want pion's (another connection's, or forged)", got)
	}
	if got := path.take(seal(client, &rtcp.PictureLossIndication{MediaSSRC: 20}), other, false); got != notTaken {
		t.Fatalf("RTCP from another address: %v, want pion's", got)
	}
	if got := path.take(seal(client, &rtcp.PictureLossIndication{MediaSSRC: 20}), pair, false); got != takenRTCP || len(chain.reads) != 2 {
		t.Fatalf("a second datagram: %v, chain read %d; want it read", got, len(chain.reads))
	}
	if m.OwnPathRTCP.Load() != 2 {
		t.Fatalf("own_path_rtcp_packets %d, want 2", m.OwnPathRTCP.Load())
	}
	// A packet the chain refuses costs no other of its datagram.
	chain.refuse = func(p rtcp.Packet) bool { _, ok := p.(*rtcp.TransportLayerNack); return ok }
	delivered = nil
	bad := seal(client, &rtcp.ReceiverReport{SSRC: 1}, &rtcp.TransportLayerNack{MediaSSRC: 20, Nacks: []rtcp.NackPair{{PacketID: 5}}}, &rtcp.PictureLossIndication{MediaSSRC: 20})
	if got := path.take(bad, pair, false); got != takenRTCP || len(delivered) != 2 {
		t.Fatalf("a compound with a packet the chain refuses: %v, %d delivered; want the report and the PLI, each alone", got, len(delivered))
	}
	chain.refuse = nil

	// A new selected pair: its address is the connection's, the old one no more.
	s.amu.Lock()
	s.followAddr(other)
	s.amu.Unlock()
	if got := path.take(seal(client, &rtcp.PictureLossIndication{MediaSSRC: 20}), pair, false); got != notTaken {
		t.Fatalf("from the old pair: %v, want pion's", got)
	}
	if got := path.take(seal(client, &rtcp.PictureLossIndication{MediaSSRC: 20}), other, false); got != takenRTCP {
		t.Fatalf("from the new pair: %v, want RTCP", got)
	}
	s.fail()
	if got := path.take(seal(client, &rtcp.PictureLossIndication{MediaSSRC: 20}), other, false); got != notTaken {
		t.Fatalf("after the connection failed: %v, want pion's", got)
	}
	if n := len(*path.subs.p.Load()); n != 0 {
		t.Fatalf("%d addresses left in the table after the failure", n)
	}

	// Config.OwnRTCPPath off: the chain is never bound, and the table
	// never holds the connection.
	off := newOwnSender(path)
	off.amu.Lock()
	off.keys = &keys
	off.followAddr(pair)
	off.amu.Unlock()
	if got := path.take(seal(client, &rtcp.PictureLossIndication{MediaSSRC: 20}), pair, false); got != notTaken || len(*path.subs.p.Load()) != 0 {
		t.Fatalf("with the RTCP path off: %v, %d addresses in the table; want pion's, none", got, len(*path.subs.p.Load()))
	}
}
