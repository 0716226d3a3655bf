package sfu

import (
	"encoding/binary"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/stun/v4"
	"github.com/pion/webrtc/v4"
)

// ownpath.go: the receive half of a media path of medcall's own
// (docs/mediapath.md). Through pion, a publisher's RTP passes four
// goroutines and their buffers between the UDP port and the Receiver: the
// UDP mux worker, the ICE candidate's read loop, the DTLS/SRTP demux and
// the SRTP session's read loop. With Config.OwnReceivePath the ingress
// (ingress.go), which reads every datagram of the port anyway, decrypts a
// publish connection's RTP itself and hands it to the Receiver's
// forwarding goroutine: one hand-off instead of four.
//
// What stays with pion: ICE (STUN), DTLS, all RTCP, and the first packets
// of each new stream (pion announces a track, OnTrack, on its first
// packet; the ingress takes a stream only once its Receiver has started).
// Liveness is unchanged in kind: pion's ICE agent judges the selected
// pair by the STUN it receives, and sends a keepalive request every 2 s
// when it has received nothing else.
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
// A connection's packets are taken only with its SRTP keys (srtpkeys.go:
// medcall is the DTLS server of its publish connections) and its selected
// candidate pair's remote address. Without them (medcall the DTLS client,
// ICE-TCP, the UDP port on several sockets) pion delivers everything, and
// the chain still sees it all.

// ownMTU is the largest datagram the ingress decrypts itself; pion gets
// larger ones (and the Receiver counts them as garbage, as before).
const ownMTU = 1500

// ownQueue is how many packets of one stream may wait for its forwarding
// goroutine: about 1.5 s of audio, 0.5 s of video at 1.5 Mbit/s. Beyond it
// the ingress drops (Metrics.OwnPathDropped), as a full socket would.
const ownQueue = 256

// ownFailLimit is how many packets of a stream may fail to decrypt before
// the first one succeeds, after which the stream goes back to pion. That
// is a stream whose sequence number wrapped before the ingress took it
// (the rollover counter is pion's to know), not an attack: a replayed or
// forged packet is dropped either way.
const ownFailLimit = 16

// ownAddrs is how many remote addresses one connection keeps in the table.
const ownAddrs = 4

// ownPacket is one decrypted RTP packet on its way to a Receiver.
type ownPacket struct {
	buf [ownMTU]byte
	n   int
}

var ownPackets = sync.Pool{New: func() any { return new(ownPacket) }}

// ownPath is the SFU's table of publish connections whose RTP the ingress
// takes, by remote address. The ingress reads it on every datagram, so it
// is a map replaced whole on each change.
type ownPath struct {
	mu     sync.Mutex // writers
	conns  atomic.Pointer[map[netip.AddrPort]*ownConn]
	ufrags atomic.Pointer[map[string]*ownConn] // by local ICE username fragment
	m      *Metrics
}

// add makes addr one of oc's addresses (and no other connection's). A
// connection keeps its ownAddrs most recent ones.
func (o *ownPath) add(oc *ownConn, addr netip.AddrPort) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.conns.Load()
	if old != nil && (*old)[addr] == oc {
		return
	}
	n := map[netip.AddrPort]*ownConn{}
	if old != nil {
		for a, c := range *old {
			if a != addr && (c != oc || slices.Contains(oc.addrs, a)) {
				n[a] = c
			}
		}
	}
	oc.addrs = append(oc.addrs, addr)
	if len(oc.addrs) > ownAddrs {
		delete(n, oc.addrs[0])
		oc.addrs = slices.Delete(oc.addrs, 0, 1)
	}
	n[addr] = oc
	o.conns.Store(&n)
}

// remove forgets oc.
func (o *ownPath) remove(oc *ownConn) {
	o.mu.Lock()
	defer o.mu.Unlock()
	old := o.conns.Load()
	if old == nil {
		return
	}
	n := make(map[netip.AddrPort]*ownConn, len(*old))
	for a, c := range *old {
		if c != oc {
			n[a] = c
		}
	}
	o.conns.Store(&n)
	oc.addrs = nil
	if u := o.ufrags.Load(); u != nil && (*u)[oc.ufrag] == oc {
		m := maps.Clone(*u)
		delete(m, oc.ufrag)
		o.ufrags.Store(&m)
	}
}

// setUfrag makes the STUN that names ufrag and is signed with pwd (oc's
// local ICE credentials) teach the table oc's addresses (learn).
func (o *ownPath) setUfrag(oc *ownConn, ufrag, pwd string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := map[string]*ownConn{}
	if u := o.ufrags.Load(); u != nil {
		for k, c := range *u {
			if c != oc {
				m[k] = c
			}
		}
	}
	oc.ufrag, oc.pwd = ufrag, stun.NewShortTermIntegrity(pwd)
	m[ufrag] = oc
	o.ufrags.Store(&m)
}

// learn reads a STUN binding request b from from: one that names (USERNAME)
// and is signed for (MESSAGE-INTEGRITY) a connection on the own path makes
// from one of its addresses. A browser may send its media from another
// pair than the one pion reports selected, and pion's UDP mux learns
// addresses the same way.
func (o *ownPath) learn(b []byte, from netip.AddrPort) {
	u := o.ufrags.Load()
	if u == nil || len(*u) == 0 {
		return
	}
	msg := &stun.Message{Raw: slices.Clone(b)}
	if msg.Decode() != nil || msg.Type != stun.BindingRequest {
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
	oc := (*u)[local]
	if oc == nil || oc.pwd.Check(msg) != nil {
		return
	}
	o.add(oc, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()))
}

// take is the ingress's question for each datagram b from from: is it RTP
// of a stream the own path has taken? Then it is decrypted and queued for
// its Receiver (or dropped), and pion never sees it. Called on the
// ingress's one goroutine only.
func (o *ownPath) take(b []byte, from netip.AddrPort) bool {
	if len(b) > 0 && b[0] < 4 { // STUN (RFC 7983)
		o.learn(b, from)
		return false
	}
	// RTP (RFC 7983: first byte 128-191) and not RTCP (RFC 5761: payload
	// type octet 192-223).
	if len(b) < 12 || len(b) > ownMTU || b[0]&0xc0 != 0x80 || (b[1] >= 192 && b[1] <= 223) {
		return false
	}
	conns := o.conns.Load()
	if conns == nil {
		return false
	}
	oc := (*conns)[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())]
	if oc == nil {
		return false
	}
	ssrc := binary.BigEndian.Uint32(b[8:12])
	st := oc.stream(ssrc)
	if st == nil {
		return false
	}
	p := ownPackets.Get().(*ownPacket)
	out, err := oc.remote.DecryptRTP(p.buf[:0], b, &oc.hdr)
	if err != nil || len(out) == 0 || &out[0] != &p.buf[0] { // a larger copy: not one of ours
		ownPackets.Put(p)
		o.m.OwnPathDecryptErrors.Add(1)
		if st.decrypted == 0 {
			if st.failed++; st.failed >= ownFailLimit {
				oc.release(ssrc)
			}
		}
		return true
	}
	st.decrypted++
	p.n = len(out)
	select {
	case st.ch <- p:
		o.m.OwnPathPackets.Add(1)
	default:
		ownPackets.Put(p)
		o.m.OwnPathDropped.Add(1)
	}
	return true
}

// ownStream is one published stream the ingress may take.
type ownStream struct {
	ch chan *ownPacket
	// The ingress's own counts (its goroutine only).
	decrypted, failed uint32
}

// ownConn is one publish connection on the own path.
type ownConn struct {
	path    *ownPath
	capture *srtpKeyCapture
	chain   interceptor.Interceptor

	// remote decrypts what the publisher sends; set before the connection
	// is in path's table, then used by the ingress's goroutine only, as
	// is hdr.
	remote *srtp.Context
	hdr    rtp.Header
	pc     *webrtc.PeerConnection // set with remote

	smu     sync.Mutex // writers of streams
	streams atomic.Pointer[map[uint32]*ownStream]

	startOnce     sync.Once
	amu           sync.Mutex // guards taken, closed and the table's entries
	taken, closed bool
	// Under path.mu: its addresses in the table, oldest first, and its
	// local ICE credentials.
	addrs []netip.AddrPort
	ufrag string
	pwd   stun.MessageIntegrity

	rtcpMu  sync.Mutex
	rtcpIn  interceptor.RTCPReader
	rtcpCur []byte
	rtcpBuf []byte
}

func newOwnConn(path *ownPath) *ownConn {
	oc := &ownConn{path: path, capture: newSRTPKeyCapture(), rtcpBuf: make([]byte, 1500)}
	oc.streams.Store(&map[uint32]*ownStream{})
	return oc
}

func (oc *ownConn) stream(ssrc uint32) *ownStream { return (*oc.streams.Load())[ssrc] }

// hold lets the ingress take ssrc's packets into st.ch once the connection
// is taken.
func (oc *ownConn) hold(ssrc uint32, st *ownStream) {
	oc.editStreams(func(m map[uint32]*ownStream) { m[ssrc] = st })
}

// release gives ssrc back to pion.
func (oc *ownConn) release(ssrc uint32) {
	oc.editStreams(func(m map[uint32]*ownStream) { delete(m, ssrc) })
}

func (oc *ownConn) editStreams(f func(map[uint32]*ownStream)) {
	oc.smu.Lock()
	defer oc.smu.Unlock()
	old := *oc.streams.Load()
	n := make(map[uint32]*ownStream, len(old)+1)
	for k, v := range old {
		n[k] = v
	}
	f(n)
	oc.streams.Store(&n)
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
