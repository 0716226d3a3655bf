package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// joinedReply is the part of `joined` the check reads. iceServers are the
// STUN/TURN servers the server hands its clients (absent before the server
// offers TURN).
type joinedReply struct {
	signaling.Message
	ICEServers []webrtc.ICEServer `json:"iceServers,omitempty"`
}

// probeSession is one joined signaling socket.
type probeSession struct {
	conn   *websocket.Conn
	joined joinedReply
	took   time.Duration // dial to joined

	mu     sync.Mutex
	nextID int
	cands  chan webrtc.ICECandidateInit // the server's publish candidates
	answer chan string
	failed chan error
}

// joinProbe opens the WebSocket and joins with the token.
func joinProbe(ctx context.Context, wsURL, tok string, hc *http.Client) (*probeSession, error) {
	start := time.Now()
	conn, _, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	conn.SetReadLimit(1 << 20)
	s := &probeSession{conn: conn, cands: make(chan webrtc.ICECandidateInit, 64), answer: make(chan string, 1), failed: make(chan error, 1)}
	if err := s.send(ctx, signaling.Message{Type: signaling.TypeJoin, Token: tok}); err != nil {
		conn.CloseNow()
		return nil, err
	}
	for {
		var m joinedReply
		if err := s.read(ctx, &m); err != nil {
			conn.CloseNow()
			return nil, err
		}
		switch m.Type {
		case signaling.TypeJoined:
			s.joined, s.took = m, time.Since(start)
			go s.readLoop()
			return s, nil
		case signaling.TypeError:
			conn.CloseNow()
			return nil, fmt.Errorf("join refused: %s: %s", m.Code, m.Message.Message)
		}
	}
}

func (s *probeSession) read(ctx context.Context, v any) error {
	_, b, err := s.conn.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (s *probeSession) send(ctx context.Context, m signaling.Message) error {
	s.mu.Lock()
	s.nextID++
	m.ID = strconv.Itoa(s.nextID)
	s.mu.Unlock()
	b, _ := json.Marshal(m)
	return s.conn.Write(ctx, websocket.MessageText, b)
}

// readLoop routes the server's answer and publish candidates; everything
// else (acks, events) is not needed by a probe.
func (s *probeSession) readLoop() {
	for {
		var m signaling.Message
		if err := s.read(context.Background(), &m); err != nil {
			close(s.cands)
			return
		}
		switch {
		case m.Type == signaling.TypeAnswer && m.PC == string(sfu.PCPublish):
			s.answer <- m.SDP
		case m.Type == signaling.TypeCandidate && m.PC == string(sfu.PCPublish) && m.Candidate != nil:
			s.cands <- *m.Candidate
		case m.Type == signaling.TypeError:
			select {
			case s.failed <- fmt.Errorf("%s: %s", m.Code, m.Message):
			default:
			}
		}
	}
}

func (s *probeSession) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.send(ctx, signaling.Message{Type: signaling.TypeLeave})
	_ = s.conn.Close(websocket.StatusNormalClosure, "check done")
}

// pathResult is what one probe found.
type pathResult struct {
	rtt            time.Duration
	local, remote  string // candidate types
	protocol, addr string // transport and the server address used
}

// probePath negotiates a publish connection restricted to one way of
// reaching the server and waits for ICE to connect. types limits the local
// candidates (UDP or TCP); servers with relay forces TURN.
func (s *probeSession) probePath(ctx context.Context, types []webrtc.NetworkType, servers []webrtc.ICEServer, relay bool) (pathResult, error) {
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes(types)
	m := &webrtc.MediaEngine{}
	if err := sfu.RegisterCodecs(m); err != nil {
		return pathResult{}, err
	}
	cfg := webrtc.Configuration{ICEServers: servers}
	if relay {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m)).NewPeerConnection(cfg)
	if err != nil {
		return pathResult{}, err
	}
	defer pc.Close()
	// A silent audio track: the server accepts a publish connection that
	// carries one; no media is sent.
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "check")
	if err != nil {
		return pathResult{}, err
	}
	if _, err := pc.AddTrack(track); err != nil {
		return pathResult{}, err
	}
	connected := make(chan struct{})
	var once sync.Once
	pc.OnICEConnectionStateChange(func(st webrtc.ICEConnectionState) {
		if st == webrtc.ICEConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c != nil {
			ci := c.ToJSON()
			_ = s.send(ctx, signaling.Message{Type: signaling.TypeCandidate, PC: string(sfu.PCPublish), Candidate: &ci})
		}
	})
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return pathResult{}, err
	}
	if err := pc.SetLocalDescription(offer); err != nil {
		return pathResult{}, err
	}
	if err := s.send(ctx, signaling.Message{Type: signaling.TypeOffer, PC: string(sfu.PCPublish), SDP: offer.SDP}); err != nil {
		return pathResult{}, err
	}
	// Whether the server offered a candidate of this path's transport at
	// all: a TCP path to a server without --tcp-port is not offered, not
	// failed.
	tcp := slices.Contains(types, webrtc.NetworkTypeTCP4) && !relay
	offered := !tcp
	select {
	case sdp := <-s.answer:
		if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: sdp}); err != nil {
			return pathResult{}, err
		}
		offered = offered || strings.Contains(sdp, " tcp ") || strings.Contains(sdp, " TCP ")
	case err := <-s.failed:
		return pathResult{}, fmt.Errorf("offer refused: %w", err)
	case <-ctx.Done():
		return pathResult{}, errors.New("no answer from the server")
	}
	for {
		select {
		case c, ok := <-s.cands:
			if !ok {
				return pathResult{}, errors.New("the server closed the socket")
			}
			offered = offered || strings.Contains(strings.ToLower(c.Candidate), " tcp ")
			_ = pc.AddICECandidate(c)
			continue
		case <-connected:
		case <-ctx.Done():
			if !offered {
				return pathResult{}, errNotOffered
			}
			return pathResult{}, errors.New("no connection")
		}
		break
	}
	return selectedPath(ctx, pc)
}

// errNotOffered: the server gave no candidate of the path's transport.
var errNotOffered = errors.New("not offered by server")

// selectedPath describes the connected pair, waiting briefly for a
// round-trip time measured by ICE's own connectivity checks.
func selectedPath(ctx context.Context, pc *webrtc.PeerConnection) (pathResult, error) {
	p, err := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || p == nil {
		return pathResult{}, errors.New("connected but no candidate pair selected")
	}
	r := pathResult{local: p.Local.Typ.String(), remote: p.Remote.Typ.String(), protocol: p.Local.Protocol.String(),
		addr: net.JoinHostPort(p.Remote.Address, strconv.Itoa(int(p.Remote.Port)))}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if st, ok := pc.SCTP().Transport().ICETransport().GetSelectedCandidatePairStats(); ok && st.CurrentRoundTripTime > 0 {
			r.rtt = time.Duration(st.CurrentRoundTripTime * float64(time.Second))
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return r, nil
}

// tlsCheck dials host:port and verifies the certificate for host against
// the system roots (or tc's), reporting when it expires.
func tlsCheck(ctx context.Context, hostport, host string, roots *tls.Config) (string, error) {
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if roots != nil {
		cfg.RootCAs = roots.RootCAs
	}
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return "", err
	}
	defer c.Close()
	leaf := c.(*tls.Conn).ConnectionState().PeerCertificates[0]
	days := int(time.Until(leaf.NotAfter).Hours() / 24)
	return fmt.Sprintf("certificate for %s valid until %s (%d days), issued by %s", host, leaf.NotAfter.UTC().Format("2006-01-02"), days, leaf.Issuer.CommonName), nil
}
