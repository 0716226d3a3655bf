package sfu

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/srtp/v3"
	"github.com/pion/webrtc/v4"
)

// ownsend.go: the send half of the own media path (docs/mediapath.md).
// Through pion, each RTP packet medcall sends a subscriber passes, after
// the subscribe connection's interceptors, pion's SRTP session (a lock, a
// pooled buffer, the encryption), its DTLS/SRTP mux endpoint, the ICE
// candidate pair and the UDP mux's write path before sendto. With
// Config.OwnSendPath the innermost interceptor of a subscribe connection
// (ownSender) encrypts the packet with a context of its own and writes it
// on the UDP port's socket to the selected pair's remote address, where
// pion would have sent it.
//
// Everything outside pion's SRTP session is unchanged: the interceptors
// (sender reports, transport-wide sequence numbers and GCC, the NACK
// responder and RTX) all sit outside this one and see every packet, and
// STUN, DTLS and the RTCP medcall sends stay pion's. (The subscriber's
// RTCP is read on the own path too: ownrtcp.go.)
//
// One sequence of SRTP indexes per SSRC. pion's context and this one both
// encrypt packets of a stream: pion before the connection's keys and pair
// are known, and one packet in ownPionEvery after, so that its rollover
// counter stays current should the stream go back to it. Each packet is
// encrypted once, by one of them, and the rollover counter of each comes
// from rocTrack, which sees every packet of the SSRC: a packet encrypted
// with the wrong counter would not decrypt at the subscriber, and would
// reuse another packet's keystream.

// ownSender is one subscribe connection's innermost interceptor.
type ownSender struct {
	interceptor.NoOp
	path      *ownPath
	capture   *srtpKeyCapture
	pionEvery uint32

	ssrcs cowMap[uint32, *ownSendSSRC]
	// to is where the connection's media goes, with its keys: nil while
	// pion sends it all.
	to atomic.Pointer[ownSendTo]

	startOnce sync.Once
	amu       sync.Mutex // guards keys, failed and closed
	keys      *SRTPKeys
	failed    bool // the connection failed and has not been connected since
	closed    bool

	rtcp ownRTCP // the subscriber's RTCP the ingress takes (ownrtcp.go)
}

type ownSendTo struct {
	keys *SRTPKeys
	addr netip.AddrPort
}

// ownSendSSRC is one SSRC's state, kept for the connection's life: an
// unbind and a later bind of the same SSRC go on with the same counter.
type ownSendSSRC struct {
	mu   sync.Mutex
	roc  rocTrack
	ctx  *srtp.Context
	keys *SRTPKeys // ctx's
	hdr  rtp.Header
	buf  [ownMTU]byte
	out  []byte
}

func newOwnSender(path *ownPath) *ownSender {
	s := &ownSender{path: path, capture: newSRTPKeyCapture(), pionEvery: ownPionEvery}
	return s
}

// ownSenderFactory hands the connection's one ownSender to its chain.
type ownSenderFactory struct{ s *ownSender }

func (f ownSenderFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.s, nil }

// chainFactory makes a registry's whole chain one interceptor of another,
// and hands it to built.
type chainFactory struct {
	r     *interceptor.Registry
	built func(interceptor.Interceptor)
}

func (f chainFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	c, err := f.r.Build(id)
	if err == nil && f.built != nil {
		f.built(c)
	}
	return c, err
}

// newSubscribeConnection makes a participant's subscribe connection:
// pion's, or, on the own send path, one whose API has a key capture and
// whose innermost interceptor is an ownSender.
func (s *SFU) newSubscribeConnection() (*webrtc.PeerConnection, *ownSender, error) {
	if s.own == nil || !s.cfg.OwnSendPath {
		pc, err := s.api.NewPeerConnection(webrtc.Configuration{})
		return pc, nil, err
	}
	os := newOwnSender(s.own)
	reg := &interceptor.Registry{}
	reg.Add(ownSenderFactory{os}) // first: innermost, wrapping pion's SRTP writer
	var chain interceptor.Interceptor
	reg.Add(chainFactory{s.subReg, func(c interceptor.Interceptor) { chain = c }})
	pc, err := s.capturedConnection(os.capture, s.subME, reg)
	if err != nil {
		return nil, nil, err
	}
	if s.ownRTCP() {
		if chain == nil {
			_ = pc.Close()
			return nil, nil, errors.New("sfu: subscribe interceptors were not built")
		}
		os.bindRTCP(chain) // the ingress reads the subscriber's RTCP through it (ownrtcp.go)
	}
	return pc, os, nil
}

// BindLocalStream puts the sender between the chain and pion's SRTP writer.
func (s *ownSender) BindLocalStream(_ *interceptor.StreamInfo, next interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		return s.write(h, payload, a, next)
	})
}

// UnbindLocalStream forgets the stream's SSRCs: pion's sender has stopped,
// and nothing writes on them again.
func (s *ownSender) UnbindLocalStream(info *interceptor.StreamInfo) {
	s.ssrcs.edit(func(m map[uint32]*ownSendSSRC) {
		delete(m, info.SSRC)
		for _, x := range []uint32{info.SSRCRetransmission, info.SSRCForwardErrorCorrection} {
			if x != 0 {
				delete(m, x)
			}
		}
	})
}

// write sends one packet: through pion while the connection is not taken,
// and for each stream's first packet and every sequence number divisible
// by pionEvery (so that pion's context knows the stream from its start and
// keeps following its rollover counter, and the two contexts never
// encrypt the same sequence number of a cycle); on the own path otherwise.
func (s *ownSender) write(h *rtp.Header, payload []byte, a interceptor.Attributes, next interceptor.RTPWriter) (int, error) {
	x := s.ssrc(h.SSRC)
	x.mu.Lock()
	defer x.mu.Unlock()
	to := s.to.Load()
	if to == nil || !x.roc.started || uint32(h.SequenceNumber)%s.pionEvery == 0 {
		return x.viaPion(h, payload, a, next)
	}
	roc := x.roc.update(h.SequenceNumber)
	b, err := x.seal(h, payload, roc, to.keys)
	if err != nil {
		return x.viaPion(h, payload, a, next) // not one this path sends (too large, a header pion refuses too)
	}
	if _, err := s.path.out.WriteToUDPAddrPort(b, to.addr); err != nil {
		s.path.sendFailed(err)
		return 0, err
	}
	s.path.m.OwnPathSent.Add(1)
	return len(b), nil
}

// ownSendErrorLog is how often at most the send half logs its failed writes.
const ownSendErrorLog = 10 * time.Second

// sendFailed counts a failed write of the send half and logs, at most once
// every ownSendErrorLog, how many failed and the last error (pion's ICE
// writer logged every one).
func (o *ownPath) sendFailed(err error) {
	o.sendErrs.Add(1)
	now := time.Now().UnixNano()
	last := o.sendErrsLast.Load()
	if o.log == nil || now-last < int64(ownSendErrorLog) || !o.sendErrsLast.CompareAndSwap(last, now) {
		return
	}
	o.log.Warn("own send path: writes on the UDP port failed", "failed", o.sendErrs.Swap(0), "err", err)
}

// viaPion hands a packet to pion's SRTP writer. Only a packet pion sent
// counts for the rollover counter: before the DTLS handshake is over pion
// drops what it is given, and the subscriber's counter (and pion's) starts
// at the first packet sent.
func (x *ownSendSSRC) viaPion(h *rtp.Header, payload []byte, a interceptor.Attributes, next interceptor.RTPWriter) (int, error) {
	n, err := next.Write(h, payload, a)
	if n > 0 {
		x.roc.update(h.SequenceNumber)
	}
	return n, err
}

// seal marshals and encrypts one packet into x.out, with the rollover
// counter rocTrack gave it.
func (x *ownSendSSRC) seal(h *rtp.Header, payload []byte, roc uint32, keys *SRTPKeys) ([]byte, error) {
	if x.keys != keys {
		ctx, err := keys.sender()
		if err != nil {
			return nil, err
		}
		x.ctx, x.keys = ctx, keys
	}
	p := rtp.Packet{Header: *h, Payload: payload}
	if p.MarshalSize() > len(x.buf) {
		return nil, errors.New("larger than the path's MTU")
	}
	n, err := p.MarshalTo(x.buf[:])
	if err != nil {
		return nil, err
	}
	x.ctx.SetROC(h.SSRC, roc)
	out, err := x.ctx.EncryptRTP(x.out[:0], x.buf[:n], &x.hdr)
	if err != nil {
		return nil, err
	}
	x.out = out[:0]
	return out, nil
}

func (s *ownSender) ssrc(ssrc uint32) *ownSendSSRC {
	if x := s.ssrcs.get(ssrc); x != nil {
		return x
	}
	var x *ownSendSSRC
	s.ssrcs.edit(func(m map[uint32]*ownSendSSRC) {
		if x = m[ssrc]; x == nil {
			x = &ownSendSSRC{out: make([]byte, 0, ownMTU+32)}
			m[ssrc] = x
		}
	})
	return x
}

// connected starts sending the connection's RTP on the own path once its
// keys and selected pair are known, and after a failure, when the
// connection is connected again, goes on with its selected pair.
func (s *ownSender) connected(pc *webrtc.PeerConnection, log interface{ Debug(string, ...any) }) {
	first := false
	s.startOnce.Do(func() { first = true })
	go func() {
		if err := s.start(pc, first); err != nil {
			log.Debug("own send path not taken for this connection; pion sends its media", "err", err)
		}
	}()
}

func (s *ownSender) start(pc *webrtc.PeerConnection, first bool) error {
	var keys SRTPKeys
	if first {
		k, err := connectedKeys(s.capture, pc)
		if err != nil {
			return err
		}
		keys = k
	}
	s.amu.Lock()
	defer s.amu.Unlock()
	if first {
		s.keys = &keys
		s.cryptexLocked(pc) // an answer may have come since connectedKeys read them
	}
	if s.closed || s.keys == nil || pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
		return nil // closed, never taken, or failed again meanwhile
	}
	s.failed = false
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return err
	}
	return s.follow(pair)
}

// fail stops sending on the own path: pion sends nothing on a failed
// connection either (consent to send is gone, RFC 7675), and its selected
// pair may be gone.
func (s *ownSender) fail() {
	s.amu.Lock()
	defer s.amu.Unlock()
	s.failed = true
	s.stopLocked()
}

// stopLocked leaves the connection's media and RTCP to pion (s.amu held).
func (s *ownSender) stopLocked() {
	s.to.Store(nil)
	s.path.setRTCPFrom(s, netip.AddrPort{})
}

// renegotiated takes up what the subscriber's latest answer says of
// encrypted header extensions (cryptex), as pion does on every answer.
func (s *ownSender) renegotiated(pc *webrtc.PeerConnection) {
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.keys != nil { // else start reads them
		s.cryptexLocked(pc)
	}
}

func (s *ownSender) cryptexLocked(pc *webrtc.PeerConnection) {
	send, receive, err := cryptexModes(pc.LocalDescription(), pc.RemoteDescription())
	if err != nil || (send == s.keys.LocalCryptex && receive == s.keys.RemoteCryptex) {
		return
	}
	k := *s.keys
	k.LocalCryptex, k.RemoteCryptex = send, receive
	s.keys = &k
	if to := s.to.Load(); to != nil {
		s.to.Store(&ownSendTo{keys: s.keys, addr: to.addr})
	}
}

// pairChanged follows the connection to its new selected pair.
func (s *ownSender) pairChanged(pair *webrtc.ICECandidatePair) {
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.keys != nil && !s.closed && !s.failed {
		_ = s.follow(pair)
	}
}

// follow sends to the selected pair's remote address when the pair is the
// UDP port's (s.amu held); otherwise (ICE-TCP) pion sends.
func (s *ownSender) follow(pair *webrtc.ICECandidatePair) error {
	addr, err := pairAddr(pair)
	if err == nil && (pair.Local == nil || pair.Local.Protocol != webrtc.ICEProtocolUDP || int(pair.Local.Port) != s.path.port) {
		err = errors.New("the selected pair's local candidate is not the UDP port")
	}
	if err != nil {
		s.stopLocked()
		return err
	}
	s.followAddr(addr)
	return nil
}

// followAddr sends to addr, and takes the RTCP that comes from it
// (ownrtcp.go); s.amu held.
func (s *ownSender) followAddr(addr netip.AddrPort) {
	s.to.Store(&ownSendTo{keys: s.keys, addr: addr})
	s.path.setRTCPFrom(s, addr)
}

// close hands the connection back to pion (it is closing too).
func (s *ownSender) close() {
	s.amu.Lock()
	defer s.amu.Unlock()
	s.closed = true
	s.stopLocked()
}

// rocTrack is a stream's rollover counter as the receiver reckons it
// (RFC 3711, 3.3.1), by pion's rule (srtp's nextRolloverCount, libsrtp's
// but for an index still below 2^15): each packet's counter is guessed
// from the highest index so far, which it advances if it is newer.
type rocTrack struct {
	started bool
	index   uint64 // the highest: rollover counter << 16 | sequence number
}

// update takes the next packet's sequence number and returns its
// rollover counter.
func (t *rocTrack) update(seq uint16) uint32 {
	const median, size = 1 << 15, 1 << 16
	if !t.started {
		t.started, t.index = true, uint64(seq)
		return 0
	}
	s := int32(seq)
	localRoc, localSeq := uint32(t.index>>16), int32(t.index&(size-1))
	roc, diff := localRoc, s-localSeq
	if t.index > median {
		switch {
		case localSeq < median && s-localSeq > median:
			roc, diff = localRoc-1, s-localSeq-size
		case localSeq >= median && localSeq-median > s:
			roc, diff = localRoc+1, s-localSeq+size
		}
	}
	if diff > 0 {
		t.index += uint64(diff)
	}
	return roc
}
