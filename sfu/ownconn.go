package sfu

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// ownconn.go: a publish connection's part in the own receive path
// (ownpath.go): its API with a key capture, its interceptor chain, when
// the ingress starts taking its packets, and the Receiver's loop.

// ownKeysWait is how long a connected publish connection's keys are waited
// for; they are normally there before it is connected.
const ownKeysWait = 5 * time.Second

// newPublishConnection makes a participant's publish connection: pion's
// with its receive interceptors, or, on the own path, one whose API has a
// key capture and whose receive interceptors run in a chain of medcall's
// own (ownConn.chain).
func (s *SFU) newPublishConnection() (*webrtc.PeerConnection, *ownConn, error) {
	if s.own == nil || !s.cfg.OwnReceivePath {
		pc, err := s.pubAPI.NewPeerConnection(webrtc.Configuration{})
		return pc, nil, err
	}
	oc := newOwnConn(s.own)
	pc, err := s.capturedConnection(oc.capture, s.pubME, s.ownPionReg)
	if err != nil {
		return nil, nil, err
	}
	chain, err := s.pubReg.Build(pc.ID())
	if err != nil {
		_ = pc.Close()
		return nil, nil, fmt.Errorf("sfu: receive interceptors: %w", err)
	}
	oc.chain = chain
	oc.rtcpIn = chain.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, oc.rtcpCur), a, nil
	}))
	chain.BindRTCPWriter(interceptor.RTCPWriterFunc(func(pkts []rtcp.Packet, _ interceptor.Attributes) (int, error) {
		return 0, pc.WriteRTCP(pkts)
	}))
	return pc, oc, nil
}

// capturedConnection is a peer connection with an API of its own, whose
// setting engine (a copy of the SFU's) reports the DTLS handshake to c.
func (s *SFU) capturedConnection(c *srtpKeyCapture, me *webrtc.MediaEngine, reg *interceptor.Registry) (*webrtc.PeerConnection, error) {
	se := s.ownSE // a copy: the capture is this connection's alone
	if err := c.apply(&se); err != nil {
		return nil, err
	}
	api := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(reg))
	return api.NewPeerConnection(webrtc.Configuration{})
}

// connected starts taking the connection's RTP at the ingress, once: its
// keys and selected pair are known by then (an ICE restart keeps the DTLS
// session, and so the keys; a new pair comes through pairChanged).
func (oc *ownConn) connected(pc *webrtc.PeerConnection, log interface{ Debug(string, ...any) }) {
	oc.startOnce.Do(func() {
		go func() {
			if err := oc.start(pc); err != nil {
				log.Debug("own receive path not taken for this connection; pion delivers its media", "err", err)
			}
		}()
	})
}

// connectedKeys waits for a connected connection's SRTP keys and notes
// which way its header extensions are encrypted.
func connectedKeys(c *srtpKeyCapture, pc *webrtc.PeerConnection) (SRTPKeys, error) {
	ctx, cancel := context.WithTimeout(context.Background(), ownKeysWait)
	defer cancel()
	keys, err := c.Keys(ctx)
	if err != nil {
		return SRTPKeys{}, err
	}
	keys.LocalCryptex, keys.RemoteCryptex, err = cryptexModes(pc.LocalDescription(), pc.RemoteDescription())
	if err != nil {
		return SRTPKeys{}, err
	}
	if _, _, err := keys.Contexts(); err != nil { // the profile is one srtp runs
		return SRTPKeys{}, err
	}
	return keys, nil
}

func (oc *ownConn) start(pc *webrtc.PeerConnection) error {
	keys, err := connectedKeys(oc.capture, pc)
	if err != nil {
		return err
	}
	oc.amu.Lock()
	defer oc.amu.Unlock()
	if oc.closed {
		return errors.New("closed")
	}
	pair, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil {
		return err
	}
	oc.pc = pc
	oc.keys.Store(&keys) // before the table has an address of oc
	return oc.follow(pair)
}

// pairChanged follows the connection to its new selected pair (and, after
// an ICE restart, its new credentials).
func (oc *ownConn) pairChanged(pair *webrtc.ICECandidatePair) {
	oc.amu.Lock()
	defer oc.amu.Unlock()
	if oc.pc != nil && !oc.closed { // taken
		_ = oc.follow(pair)
	}
}

// follow puts the connection's ICE credentials and the selected pair's
// remote address in the table (oc.amu held). The ingress learns the other
// addresses it sends from through STUN (ownPath.learn). A pair over TCP
// adds nothing: that media is pion's alone.
func (oc *ownConn) follow(pair *webrtc.ICECandidatePair) error {
	ufrag, pwd, err := iceCredentials(oc.pc.LocalDescription())
	if err != nil {
		return err
	}
	oc.path.setUfrag(oc, ufrag, pwd)
	addr, err := pairAddr(pair)
	if err != nil {
		return err
	}
	oc.path.add(oc, addr, true)
	return nil
}

// iceCredentials are the ICE username fragment and password of a
// description (pion writes the same in every media section).
func iceCredentials(d *webrtc.SessionDescription) (ufrag, pwd string, err error) {
	if d == nil {
		return "", "", errors.New("no local description")
	}
	for line := range strings.Lines(d.SDP) {
		line = strings.TrimRight(line, "\r\n")
		if v, ok := strings.CutPrefix(line, "a=ice-ufrag:"); ok && ufrag == "" {
			ufrag = v
		}
		if v, ok := strings.CutPrefix(line, "a=ice-pwd:"); ok && pwd == "" {
			pwd = v
		}
	}
	if ufrag == "" || pwd == "" {
		return "", "", errors.New("no ICE credentials in the local description")
	}
	return ufrag, pwd, nil
}

func pairAddr(pair *webrtc.ICECandidatePair) (netip.AddrPort, error) {
	if pair == nil || pair.Remote == nil {
		return netip.AddrPort{}, errors.New("no selected candidate pair")
	}
	if pair.Remote.Protocol != webrtc.ICEProtocolUDP {
		return netip.AddrPort{}, errors.New("the selected pair is not UDP")
	}
	ip, err := netip.ParseAddr(pair.Remote.Address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("remote candidate address: %w", err)
	}
	return netip.AddrPortFrom(ip.Unmap(), pair.Remote.Port), nil
}

// close takes the connection off the path and stops its interceptors.
func (oc *ownConn) close() {
	oc.amu.Lock()
	oc.closed = true
	oc.amu.Unlock()
	oc.path.remove(oc)
	if oc.chain != nil {
		_ = oc.chain.Close()
	}
}

// forwardOwn is Receiver.forward on the own path: the packets come from the
// ingress (once it takes the stream; decrypted here) and from pion (before
// that, or when it never does), pass through the connection's chain, and
// are fanned out here. One replay window covers both sources.
func (r *Receiver) forwardOwn(track *webrtc.TrackRemote, rr *webrtc.RTPReceiver, oc *ownConn) {
	m := r.owner.c.s.cfg.Metrics
	info := ownStreamInfo(track, rr)
	st := &ownStream{ch: make(chan *ownPacket, ownQueue), video: r.kind == KindVideo,
		pool: oc.path.workers, wake: make(chan struct{}, 1)}
	var cur []byte
	in := oc.chain.BindRemoteStream(info, interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		if len(b) < len(cur) {
			return 0, nil, io.ErrShortBuffer
		}
		return copy(b, cur), a, nil
	}))
	defer oc.chain.UnbindRemoteStream(info)
	ssrc := info.SSRC
	o := ownOpener{oc: oc, st: st, ssrc: ssrc, m: m}
	buf, plain := make([]byte, ownMTU), make([]byte, ownMTU)
	var pkt rtp.Packet
	st.forward = func(p *ownPacket) {
		cur = o.open(p, plain) // may be p.buf itself: p goes back after the read
		n, err := 0, io.EOF
		if cur != nil {
			n, _, err = in.Read(buf, nil)
		}
		arrived := p.arrived
		ownPackets.Put(p)
		if err == nil {
			r.fanout(buf[:n], &pkt, m)
			if arrived != 0 && m.OnForwardDelay != nil {
				m.OnForwardDelay(r.kind, max(time.Duration(time.Now().UnixNano()-arrived), 0))
			}
		}
	}
	st.direct = r.sendsOnOwnPath
	// pion's packets, once forward and direct are set: a worker may
	// forward the first at once.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			p := ownPackets.Get().(*ownPacket)
			n, _, err := track.Read(p.buf[:])
			if errors.Is(err, io.ErrShortBuffer) {
				ownPackets.Put(p)
				m.DroppedGarbage.Add(1) // larger than any MTU: not ours to forward
				continue
			}
			if err != nil {
				ownPackets.Put(p)
				return
			}
			p.n, p.encrypted, p.arrived = n, false, 0
			st.queueDelivered(p)
		}
	}()
	oc.hold(ssrc, st)
	defer oc.release(ssrc, st)
	for {
		select {
		case <-st.wake:
			st.serve(false)
		case <-done:
			oc.release(ssrc, st) // first, so the ingress queues no more
			st.close()
			for { // what is left goes back to the pool, uncounted
				select {
				case p := <-st.ch:
					st.forwardQueued(p) // closed: not forwarded
				default:
					return
				}
			}
		}
	}
}

// ownStreamInfo describes a published stream to the chain as pion would.
func ownStreamInfo(track *webrtc.TrackRemote, rr *webrtc.RTPReceiver) *interceptor.StreamInfo {
	c := track.Codec()
	info := &interceptor.StreamInfo{
		ID: track.ID(), Attributes: interceptor.Attributes{},
		SSRC: uint32(track.SSRC()), PayloadType: uint8(c.PayloadType),
		MimeType: c.MimeType, ClockRate: c.ClockRate, Channels: c.Channels, SDPFmtpLine: c.SDPFmtpLine,
	}
	for _, e := range rr.GetParameters().HeaderExtensions {
		info.RTPHeaderExtensions = append(info.RTPHeaderExtensions, interceptor.RTPHeaderExtension{URI: e.URI, ID: e.ID})
	}
	for _, f := range c.RTCPFeedback {
		info.RTCPFeedback = append(info.RTCPFeedback, interceptor.RTCPFeedback{Type: f.Type, Parameter: f.Parameter})
	}
	return info
}
