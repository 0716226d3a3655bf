package sfu

import (
	"encoding/binary"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// ownpath.go: the receive half of a media path of medcall's own
// (docs/mediapath.md). Through pion, a publisher's RTP passes four
// goroutines and their buffers between the UDP port and the Receiver: the
// UDP mux worker, the ICE candidate's read loop, the DTLS/SRTP demux and
// the SRTP session's read loop. With Config.OwnReceivePath the ingress
// (ingress.go), which reads every datagram of the port anyway, takes a
// publish connection's RTP itself. While it keeps up, it forwards each
// packet there and then (decrypts it, runs the chain, fans it out and
// sends it), with no hand-off, if every subscriber of the stream is sent
// to on the own send path (its sends are then UDP writes). Otherwise, and
// once it falls behind (a datagram has waited over ingressBehind since it
// arrived), it queues them, still encrypted, for the path's forwarding
// pool, which serves streams with audio waiting first (ownworkers.go), or,
// for a stream with a subscriber pion sends to, for the stream's own
// goroutine (ownconn.go, forwardOwn), so that both cores forward and the
// reader, doing only a lookup and a copy per packet, keeps up under
// overload. A stream's packets are forwarded in the order the ingress took
// them, whichever goroutine forwards them (ownstream.go). (The ingress also
// decodes each STUN binding request, and checks the signature of those
// naming a publish connection.)
//
// What stays with pion: ICE (STUN), DTLS, the publishers' RTCP (a
// subscriber's is taken too, ownrtcp.go), each new stream's
// first packets (pion announces a track, OnTrack, on its first packet; the
// ingress takes a stream only once its Receiver has started), and one
// packet in ownPionEvery of each taken stream, so that pion's rollover
// counter stays current should the stream ever go back to it. Liveness is
// unchanged in kind: pion's ICE agent judges the selected pair by the STUN
// it receives, and pings the selected pair every 2 s.
//
// Each publish connection's receive interceptors (NACK generator, receiver
// reports, transport-cc feedback, the loss reporter and NACK counter,
// interceptors.go) run in a chain of medcall's own (ownConn.chain), built
// from the same registry, instead of in pion's: every RTP packet of the
// connection passes through it, whether the ingress took it or pion
// delivered it, so transport-cc feedback and NACKs come from one recorder
// that sees the whole connection (two would each report the other's
// packets lost). pion's own chain for these connections keeps only the
// attributes pool.
//
// A connection's packets are taken once its SRTP keys (srtpkeys.go:
// medcall is the DTLS server of its publish connections) and an address
// of it are known. Without them (medcall the DTLS client, a pair over
// ICE-TCP) pion delivers everything, and the chain still sees it all. With
// the UDP port on several sockets (or none) there is no own path at all:
// pion's connections keep their own interceptors.

// ownMTU is the largest datagram the ingress takes; pion gets larger ones
// (and the Receiver counts them as garbage, as before).
const ownMTU = 1500

// ownQueue is how many packets of one stream may wait for its forwarding
// goroutine: about 10 s of audio, 3 s of video at 1.5 Mbit/s (at N=150 on
// 2 cores 256 dropped 0.7 % of what was read). Beyond it the ingress
// drops (Metrics.OwnPathDropped), as a full socket would.
const ownQueue = 512

// ownPionEvery: the ingress leaves one packet in this many of a taken
// stream to pion, which decrypts and delivers it, so that pion's SRTP
// context follows the stream's rollover counter (it guesses it from the
// last packet it saw, correctly within 2^15 packets).
const ownPionEvery = 4096

// ownFailLimit is how many packets of a stream may fail to authenticate in
// a row before the stream goes back to pion: the own context's rollover
// counter is wrong (the sequence number wrapped while pion had the
// stream), or the stream is not what the table thinks. Each failed packet
// is dropped and counted.
const ownFailLimit = 16

// ownAddrs is how many learned remote addresses one connection keeps in the
// table, besides its selected pair's.
const ownAddrs = 4

// ownPacket is one RTP packet on its way to a Receiver: still encrypted
// from the ingress, or decrypted by pion.
type ownPacket struct {
	buf       [ownMTU]byte
	n         int
	encrypted bool
	arrived   int64 // the kernel's receive time (Unix ns); 0 if not known
}

var ownPackets = sync.Pool{New: func() any { return new(ownPacket) }}

// ownCred is a connection's local ICE credentials, as STUN checks them.
type ownCred struct {
	oc  *ownConn
	pwd stun.MessageIntegrity
}

// ownPath is the SFU's table of publish connections whose RTP the ingress
// takes, by remote address, and of their ICE credentials. The ingress reads
// both on every datagram, so each is a map replaced whole on each change.
type ownPath struct {
	mu     sync.Mutex // writers, and ownConn's table fields
	conns  atomic.Pointer[map[netip.AddrPort]*ownConn]
	ufrags atomic.Pointer[map[string]ownCred] // by local ICE username fragment
	m      *Metrics
	out    udpSocket    // the UDP port's socket, which the send half writes on
	port   int          // its port
	log    *slog.Logger // nil logs nothing
	// subs are the subscribe connections whose RTCP the ingress takes, by
	// their selected pair's remote address (ownrtcp.go).
	subs cowMap[netip.AddrPort, *ownSender]
	// workers forward the streams' queued packets, audio first
	// (ownworkers.go); nil: each stream's goroutine does.
	workers *ownWorkers
	// The send half's failed writes since the last one logged (at most one
	// line every ownSendErrorLog).
	sendErrs     atomic.Uint64
	sendErrsLast atomic.Int64 // unix nanos
}

// add makes addr one of oc's addresses. The selected pair's address
// (pinned) is oc's whoever had it; a learned one never takes an address
// from another connection, and oc keeps its ownAddrs most recently learned
// ones.
func (o *ownPath) add(oc *ownConn, addr netip.AddrPort, pinned bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if oc.removed {
		return
	}
	old := map[netip.AddrPort]*ownConn{}
	if p := o.conns.Load(); p != nil {
		old = *p
	}
	owner := old[addr]
	if !pinned && (addr == oc.pinned || owner != nil && owner != oc) {
		return // the pair's address is not a learned one; another's stays its
	}
	if !pinned {
		// A participant signing STUN from ever new ports could otherwise
		// keep the port's one reader copying the table.
		if now := time.Now(); now.Sub(oc.learnedSince) > time.Second {
			oc.learnedSince, oc.learned = now, 0
		}
		if oc.learned >= ownAddrs {
			return
		}
		oc.learned++
	}
	n := maps.Clone(old)
	if owner != nil && owner != oc {
		owner.addrs = slices.DeleteFunc(owner.addrs, func(a netip.AddrPort) bool { return a == addr })
		if owner.pinned == addr {
			owner.pinned = netip.AddrPort{}
		}
	}
	n[addr] = oc
	if pinned {
		if oc.pinned.IsValid() && oc.pinned != addr {
			oc.addrs = append(oc.addrs, oc.pinned) // an address learned like the others now
		}
		oc.pinned = addr
	}
	oc.addrs = slices.DeleteFunc(oc.addrs, func(a netip.AddrPort) bool { return a == addr })
	if !pinned {
		oc.addrs = append(oc.addrs, addr) // the most recent last
	}
	for len(oc.addrs) > ownAddrs {
		if n[oc.addrs[0]] == oc {
			delete(n, oc.addrs[0])
		}
		oc.addrs = oc.addrs[1:]
	}
	o.conns.Store(&n)
}

// remove forgets oc for good.
func (o *ownPath) remove(oc *ownConn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	oc.removed = true
	oc.addrs, oc.pinned = nil, netip.AddrPort{}
	if old := o.conns.Load(); old != nil {
		n := make(map[netip.AddrPort]*ownConn, len(*old))
		for a, c := range *old {
			if c != oc {
				n[a] = c
			}
		}
		o.conns.Store(&n)
	}
	o.setCredLocked(oc, "", "")
}

// setUfrag makes the STUN that names ufrag and is signed with pwd (oc's
// local ICE credentials, new after an ICE restart) teach the table oc's
// addresses (learn).
func (o *ownPath) setUfrag(oc *ownConn, ufrag, pwd string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !oc.removed {
		o.setCredLocked(oc, ufrag, pwd)
	}
}

func (o *ownPath) setCredLocked(oc *ownConn, ufrag, pwd string) {
	m := map[string]ownCred{}
	if u := o.ufrags.Load(); u != nil {
		for k, c := range *u {
			if c.oc != oc {
				m[k] = c
			}
		}
	}
	if ufrag != "" {
		m[ufrag] = ownCred{oc, stun.NewShortTermIntegrity(pwd)}
	}
	o.ufrags.Store(&m)
}

// learn reads a STUN binding request b from from: one that names (USERNAME)
// and is signed for (MESSAGE-INTEGRITY) a connection on the own path makes
// from one of its addresses. A browser may send its media from another
// pair than the one pion reports selected, and pion's UDP mux learns
// addresses the same way.
func (o *ownPath) learn(b []byte, from netip.AddrPort) {
	u := o.ufrags.Load()
	if u == nil || len(*u) == 0 || len(b) < 20 || binary.BigEndian.Uint16(b) != stun.BindingRequest.Value() {
		return
	}
	msg := &stun.Message{Raw: slices.Clone(b)}
	if msg.Decode() != nil {
		return
	}
	var name stun.Username
	if name.GetFrom(msg) != nil {
		return
	}
	local, _, ok := strings.Cut(name.String(), ":")
	if !ok {
		return
	}
	cred, ok := (*u)[local]
	if !ok || cred.pwd.Check(msg) != nil {
		return
	}
	addr := netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	if c := o.conns.Load(); c != nil && (*c)[addr] == cred.oc {
		o.touch(cred.oc, addr)
		return
	}
	o.add(cred.oc, addr, false)
}

// touch makes a learned address of oc its most recent (the table itself
// is unchanged).
func (o *ownPath) touch(oc *ownConn, addr netip.AddrPort) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if i := slices.Index(oc.addrs, addr); i >= 0 {
		oc.addrs = append(slices.Delete(oc.addrs, i, i+1), addr)
	}
}

// takeAt is the ingress's question for each datagram b from from, which
// the kernel received at arrived (zero if not known; a forward measures
// from it, Metrics.OnForwardDelay): is it RTP of a stream the own path has
// taken? Then pion never sees it: it is forwarded here and now, or, if
// behind (the datagram waited longer than ingressBehind since it arrived),
// the stream has packets waiting or a subscriber of it is sent to through
// pion (ownStream.inline), queued still encrypted for the stream's server,
// a worker of the pool or its goroutine (or dropped, the queue full).
// Called on the ingress's one goroutine only.
func (o *ownPath) takeAt(b []byte, from netip.AddrPort, arrived time.Time, behind bool) taken {
	if len(b) > 0 && b[0] < 4 { // STUN (RFC 7983)
		o.learn(b, from)
		return notTaken
	}
	// RTP (RFC 7983: first byte 128-191) and not RTCP (RFC 5761: payload
	// type octet 192-223).
	if len(b) < 12 || len(b) > ownMTU || b[0]&0xc0 != 0x80 {
		return notTaken
	}
	if b[1] >= 192 && b[1] <= 223 {
		return o.takeRTCP(b, from) // a subscriber's (ownrtcp.go)
	}
	conns := o.conns.Load()
	if conns == nil {
		return notTaken
	}
	oc := (*conns)[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]
	if oc == nil {
		return notTaken
	}
	st := oc.stream(binary.BigEndian.Uint32(b[8:12]))
	if st == nil {
		return notTaken
	}
	if st.seen++; st.seen%ownPionEvery == 0 {
		return notTaken // pion's, to keep its rollover counter current
	}
	p := ownPackets.Get().(*ownPacket)
	p.n, p.encrypted, p.arrived = copy(p.buf[:], b), true, 0
	if !arrived.IsZero() {
		p.arrived = arrived.UnixNano()
	}
	queued := behind || !st.inline(p)
	if queued && !st.queue(p) {
		ownPackets.Put(p)
		o.m.OwnPathDropped.Add(1)
		return takenQueued
	}
	o.m.OwnPathPackets.Add(1)
	if queued {
		o.m.OwnPathQueued.Add(1)
		return takenQueued
	}
	return takenForwarded
}

// ownConn is one publish connection on the own path.
type ownConn struct {
	path    *ownPath
	capture *srtpKeyCapture
	chain   interceptor.Interceptor
	keys    atomic.Pointer[SRTPKeys] // once known, before any packet is taken
	pc      *webrtc.PeerConnection

	streams cowMap[uint32, *ownStream]

	startOnce sync.Once
	amu       sync.Mutex // guards pc (set once taken) and closed
	closed    bool

	// Under path.mu: in the table no more, its selected pair's address,
	// and its learned addresses, oldest first.
	removed bool
	pinned  netip.AddrPort
	addrs   []netip.AddrPort
	// New addresses learned since learnedSince: at most ownAddrs a second.
	learned      int
	learnedSince time.Time

	rtcpMu  sync.Mutex
	rtcpIn  interceptor.RTCPReader
	rtcpCur []byte
	rtcpBuf []byte
}

func newOwnConn(path *ownPath) *ownConn {
	oc := &ownConn{path: path, capture: newSRTPKeyCapture(), rtcpBuf: make([]byte, 1500)}
	return oc
}

func (oc *ownConn) stream(ssrc uint32) *ownStream { return oc.streams.get(ssrc) }

// hold lets the ingress take ssrc's packets into st.ch once the connection
// is taken.
func (oc *ownConn) hold(ssrc uint32, st *ownStream) {
	oc.streams.edit(func(m map[uint32]*ownStream) { m[ssrc] = st })
}

// release gives ssrc back to pion, if st still holds it.
func (oc *ownConn) release(ssrc uint32, st *ownStream) {
	oc.streams.edit(func(m map[uint32]*ownStream) {
		if m[ssrc] == st {
			delete(m, ssrc)
		}
	})
}

// feedRTCP passes one RTCP datagram the publisher sent (read from pion) to
// the chain, whose receiver reports need the sender reports.
func (oc *ownConn) feedRTCP(b []byte) {
	oc.rtcpMu.Lock()
	defer oc.rtcpMu.Unlock()
	oc.rtcpCur = b
	_, a, _ := oc.rtcpIn.Read(oc.rtcpBuf, nil)
	putAttributes(a)
}
