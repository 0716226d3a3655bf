package sfu

import (
	"errors"
	"maps"
	"net/netip"
	"sync"
	"sync/atomic"

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
// RTCP, STUN and DTLS stay pion's.
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

	smu   sync.Mutex // writers of ssrcs
	ssrcs atomic.Pointer[map[uint32]*ownSendSSRC]
	// to is where the connection's media goes, with its keys: nil while
	// pion sends it all.
	to atomic.Pointer[ownSendTo]

	startOnce sync.Once
	amu       sync.Mutex // guards keys and closed
	keys      *SRTPKeys
	closed    bool
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
	sent uint32 // packets seen, for the share left to pion
	ctx  *srtp.Context
	keys *SRTPKeys // ctx's
	hdr  rtp.Header
	buf  [ownMTU]byte
	out  []byte
}

func newOwnSender(path *ownPath) *ownSender {
	s := &ownSender{path: path, capture: newSRTPKeyCapture(), pionEvery: ownPionEvery}
	s.ssrcs.Store(&map[uint32]*ownSendSSRC{})
	return s
}

// ownSenderFactory hands the connection's one ownSender to its chain.
type ownSenderFactory struct{ s *ownSender }

func (f ownSenderFactory) NewInterceptor(string) (interceptor.Interceptor, error) { return f.s, nil }

// chainFactory makes a registry's whole chain one interceptor of another.
type chainFactory struct{ r *interceptor.Registry }

func (f chainFactory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	return f.r.Build(id)
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
	se := s.ownSE // a copy: the capture is this connection's alone
	if err := os.capture.apply(&se); err != nil {
		return nil, nil, err
	}
	reg := &interceptor.Registry{}
	reg.Add(ownSenderFactory{os}) // first: innermost, wrapping pion's SRTP writer
	reg.Add(chainFactory{s.subReg})
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(s.subME), webrtc.WithInterceptorRegistry(reg))
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, nil, err
	}
	return pc, os, nil
}

// BindLocalStream puts the sender between the chain and pion's SRTP writer.
func (s *ownSender) BindLocalStream(_ *interceptor.StreamInfo, next interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		return s.write(h, payload, a, next)
	})
}

func (s *ownSender) write(h *rtp.Header, payload []byte, a interceptor.Attributes, next interceptor.RTPWriter) (int, error) {
	x := s.ssrc(h.SSRC)
	x.mu.Lock()
	defer x.mu.Unlock()
	roc := x.roc.update(h.SequenceNumber)
	x.sent++
	to := s.to.Load()
	if to == nil || x.sent%s.pionEvery == 0 {
		return next.Write(h, payload, a)
	}
	b, err := x.seal(h, payload, roc, to.keys)
	if err != nil {
		return next.Write(h, payload, a) // not one this path sends (too large, a header pion refuses too)
	}
	if _, err := s.path.out.WriteToUDPAddrPort(b, to.addr); err != nil {
		return 0, err
	}
	s.path.m.OwnPathSent.Add(1)
	return len(b), nil
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
		x.out = make([]byte, 0, ownMTU+32)
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
	if x := (*s.ssrcs.Load())[ssrc]; x != nil {
		return x
	}
	s.smu.Lock()
	defer s.smu.Unlock()
	old := *s.ssrcs.Load()
	if x := old[ssrc]; x != nil {
		return x
	}
	x := &ownSendSSRC{}
	n := maps.Clone(old)
	n[ssrc] = x
	s.ssrcs.Store(&n)
	return x
}

// connected starts sending the connection's RTP on the own path, once its
// keys and selected pair are known.
func (s *ownSender) connected(pc *webrtc.PeerConnection, log interface{ Debug(string, ...any) }) {
	startOwn(&s.startOnce, func() error { return s.start(pc) }, log, "own send path not taken for this connection; pion sends its media")
}

func (s *ownSender) start(pc *webrtc.PeerConnection) error {
	keys, err := connectedKeys(s.capture, pc)
	if err != nil {
		return err
	}
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.closed {
		return errors.New("closed")
	}
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return err
	}
	s.keys = &keys
	return s.follow(pair)
}

// pairChanged follows the connection to its new selected pair.
func (s *ownSender) pairChanged(pair *webrtc.ICECandidatePair) {
	s.amu.Lock()
	defer s.amu.Unlock()
	if s.keys != nil && !s.closed {
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
		s.to.Store(nil)
		return err
	}
	s.to.Store(&ownSendTo{keys: s.keys, addr: addr})
	return nil
}

// close hands the connection back to pion (it is closing too).
func (s *ownSender) close() {
	s.amu.Lock()
	defer s.amu.Unlock()
	s.closed = true
	s.to.Store(nil)
}

// rocTrack is a stream's rollover counter as the receiver reckons it
// (RFC 3711, 3.3.1): the sequence numbers seen, each packet's counter
// guessed from the highest so far.
type rocTrack struct {
	started bool
	last    uint16 // highest sequence number
	roc     uint32 // its rollover counter
}

// update takes the next packet's sequence number and returns its
// rollover counter.
func (t *rocTrack) update(seq uint16) uint32 {
	if !t.started {
		t.started, t.last = true, seq
		return t.roc
	}
	if d := int16(seq - t.last); d > 0 { // newer
		if seq < t.last {
			t.roc++
		}
		t.last = seq
		return t.roc
	}
	if seq > t.last && t.roc > 0 { // older, from before the last wrap
		return t.roc - 1
	}
	return t.roc
}
