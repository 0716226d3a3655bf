package sfu

import (
	"net/netip"
	"strings"
	"sync"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/srtp/v3"
)

// ownrtcp.go: a subscriber's RTCP on the own path (docs/mediapath.md).
// Through pion, each RTCP datagram a subscriber sends (transport-cc
// feedback ten times a second, receiver reports, NACKs, PLIs) passes the
// UDP mux worker, the ICE candidate's read loop, the DTLS/SRTP demux and
// the SRTCP session's read loop, and is then read by one goroutine per
// downtrack (Participant.readSenderRTCP) through the subscribe chain: four
// goroutines woken per datagram, a fifth of the server's goroutine
// wake-ups at N=50. (pion's demux hands each packet of a compound
// datagram to each SSRC it names: a receiver report with two report
// blocks is read twice.)
//
// Once a subscribe connection is sent to on the own send path (ownsend.go,
// its keys and selected pair known), the ingress takes the RTCP that
// arrives from the pair's remote address: it decrypts it with an SRTCP
// context of its own (replay-protected, srtpReplayWindow) and runs it
// through the connection's subscribe chain (the same interceptor
// instances pion's senders read through: bandwidth estimation, the NACK
// guard and responder, the link observer), there and then, once per
// datagram. What readSenderRTCP does after the chain (counting, relaying
// a PLI or FIR to the publisher) follows, by the media SSRC each names;
// the request itself runs on a goroutine of its own, as it writes to the
// publisher through pion, which on an ICE-TCP pair can block.
//
// What stays with pion: RTCP from any other address (a client that sends
// from another pair than the selected one, one on ICE-TCP), and all of it
// until the connection is taken. The two SRTCP contexts each keep a replay
// window; a packet pion accepted before the takeover and replayed after
// it, inside the window, would pass this one once (a duplicate report: no
// key, no media). A replay is dropped and counted as own_path_duplicate;
// a datagram that does not authenticate goes to pion (readRTCP).

// ownRTCP reports whether the port's reader takes the subscribers' RTCP:
// Config.OwnRTCPPath, on connections OwnSendPath sends on, read by the
// ingress only where OwnReceivePath has it take datagrams (network.go).
func (s *SFU) ownRTCP() bool {
	return s.cfg.OwnRTCPPath && s.cfg.OwnSendPath && s.cfg.OwnReceivePath && s.own != nil
}

// rtcpOn reports whether the ingress may take this connection's RTCP.
func (s *ownSender) rtcpOn() bool { return s.rtcp.in != nil }

// ownRTCP is one subscribe connection's intake of RTCP on the own path.
type ownRTCP struct {
	mu    sync.Mutex
	ctx   *srtp.Context // the subscriber's SRTCP, from the first keys taken
	plain []byte        // where a datagram is decrypted (ownMTU)
	cur   []byte        // what the chain reads next
	out   []byte        // what the chain hands back
	in    interceptor.RTCPReader
	// deliver does what readSenderRTCP does after the chain.
	deliver func([]rtcp.Packet)
}

// bindRTCP makes chain (the subscribe interceptors outside the ownSender)
// read what the ingress takes for the connection (onRTCP's deliver then
// gets the parse).
func (s *ownSender) bindRTCP(chain interceptor.Interceptor) {
	r := &s.rtcp
	r.plain, r.out = make([]byte, 0, ownMTU), make([]byte, ownMTU)
	r.in = chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, r.cur), a, nil
	}))
}

// onRTCP sets what is done with each datagram's packets after the chain.
func (s *ownSender) onRTCP(deliver func([]rtcp.Packet)) {
	s.rtcp.mu.Lock()
	s.rtcp.deliver = deliver
	s.rtcp.mu.Unlock()
}

// takeRTCP is the ingress's question for an RTCP datagram b from from: is
// it a subscribe connection's on the own path? Then it is read here, and
// pion never sees it.
func (o *ownPath) takeRTCP(b []byte, from netip.AddrPort) taken {
	s := o.subs.get(netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
	if s == nil {
		return notTaken
	}
	to := s.to.Load()
	if to == nil {
		return notTaken // failed or closed since: pion's, as before
	}
	if !s.readRTCP(b, to.keys, o.m) {
		return notTaken
	}
	return takenRTCP
}

// readRTCP decrypts b and runs it through the chain (the ingress's
// goroutine only, but under the lock all the same). It is false for a
// datagram that does not authenticate with the connection's keys, which
// is pion's to judge: a client may send two connections' RTCP from one
// address (a pion client on one UDP port), and pion's demux knows which
// is which. A replay is dropped here.
func (s *ownSender) readRTCP(b []byte, keys *SRTPKeys, m *Metrics) bool {
	r := &s.rtcp
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		_, remote, err := keys.Contexts()
		if err != nil {
			return false
		}
		r.ctx = remote
	}
	plain, err := r.ctx.DecryptRTCP(r.plain, b, nil)
	if err != nil && strings.Contains(err.Error(), "duplicated") {
		// srtp's duplicatedError, whose type is not exported. srtp checks
		// the index before the tag, per sender SSRC: another connection's
		// RTCP could only collide under the same sender SSRC.
		m.OwnPathDuplicates.Add(1)
		return true
	}
	if err != nil || len(plain) == 0 || &plain[0] != &r.plain[:1][0] {
		return false // not this connection's, forged, or (decrypted elsewhere) larger than any
	}
	m.OwnPathRTCP.Add(1)
	if !r.read(plain) {
		// An interceptor refused the datagram (GCC an invalid feedback,
		// say): read its packets one at a time, as pion's demux hands
		// them, so that one bad packet costs no other.
		pkts, err := rtcp.Unmarshal(plain)
		if err == nil && len(pkts) > 1 {
			for _, p := range pkts {
				if b, err := p.Marshal(); err == nil {
					r.read(b)
				}
			}
		}
	}
	r.cur = nil
	return true
}

// read runs one decrypted datagram through the chain and delivers the
// parse; false if the chain refused it (r.mu held).
func (r *ownRTCP) read(b []byte) bool {
	r.cur = b
	n, a, err := r.in.Read(r.out, getAttributes())
	if err != nil {
		putAttributes(a)
		return false
	}
	if pkts, err := a.GetRTCPPackets(r.out[:n]); err == nil && r.deliver != nil {
		r.deliver(pkts)
	}
	putAttributes(a)
	return true
}

// setRTCPFrom makes the ingress take the RTCP from addr as s's (the
// selected pair's remote address, unmapped as pairAddr gives it), and
// from no other; an invalid addr takes none. Only a connection whose
// chain is bound (rtcpOn) is ever in the table.
func (o *ownPath) setRTCPFrom(s *ownSender, addr netip.AddrPort) {
	if !s.rtcpOn() {
		return // SFU.ownRTCP off: pion reads it all
	}
	o.subs.edit(func(m map[netip.AddrPort]*ownSender) {
		for a, x := range m {
			if x == s {
				delete(m, a)
			}
		}
		if addr.IsValid() {
			m[addr] = s
		}
	})
}
