// Package client is medcall's Go client: it speaks signaling/PROTOCOL.md with
// pion, publishes Opus and VP8 from fixture files at real-time pace, upgrades
// and downgrades video by either path, subscribes to the other participants,
// and counts what it sends and receives. Tests and the bench use it; it is
// also the reference for app developers.
package client

import (
	"context"
	"errors"
	"fmt"
	"github.com/medcall/medcall/signaling/client/fixture"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Options configure a client.
type Options struct {
	URL          string // ws://host:port/v1/signal
	Token        string // a join token
	Consultation string // optional: checked against the token's cid
	AudioFile    string // Ogg Opus, one packet per page; empty: publish no audio
	VideoFile    string // IVF VP8; empty: cannot upgrade
	// Prenegotiate negotiates an idle video transceiver at join so Upgrade
	// needs no SDP round trip (the fast path).
	Prenegotiate bool
	// Fingerprint keeps the RTP timestamps of every packet sent and received,
	// so tests can prove whose media arrived where.
	Fingerprint bool
	// DropRate drops this fraction of outgoing media packets before they
	// reach the network, to test behaviour under loss (0 in real use).
	DropRate float64
	// ReceiveDropRate drops this fraction of the media packets that arrive,
	// before the client's NACK generator and receiver reports see them, as
	// a lossy downlink would (0 in real use).
	ReceiveDropRate float64
	// RelayOnly forces every connection through the TURN servers the server
	// sent in joined.iceServers (ICETransportPolicy relay): for tests and for
	// diagnosing a network where only TURN gets through.
	RelayOnly bool
	// TURNTransports, if set, keeps only the iceServers URLs with these
	// transports ("udp", "tcp", "tls"), to prove one path alone.
	TURNTransports []string
	// ICETCP also gathers (active) ICE-TCP candidates, so the client can
	// reach the server's ICE-TCP port where UDP is blocked.
	ICETCP bool
	// HTTPClient dials the WebSocket (e.g. to trust a private CA for wss://);
	// nil uses http.DefaultClient.
	HTTPClient *http.Client
	Logger     *slog.Logger
	// Trace, if set, sees every message as it is written (sent) or read,
	// e.g. to check each against signaling/protocol.schema.json. It is
	// called from the client's goroutines and must not keep data.
	Trace func(sent bool, data []byte)
	// NoNetworkWatch turns off the automatic ICE restart on a network change
	// (icerestart.go); RestartICE still works.
	NoNetworkWatch bool
	// TransportCC stamps what the client publishes with transport-wide
	// sequence numbers, as browsers do, so the server sends transport-cc
	// feedback for it (FeedbackReceived counts it).
	TransportCC bool
	// KeepAudio keeps every received audio packet with its arrival time, so
	// a test can decode what a listener heard (AudioOgg).
	KeepAudio bool
}

// ProtocolError is an error message from the server.
type ProtocolError struct{ Code, Message string }

func (e *ProtocolError) Error() string { return e.Code + ": " + e.Message }

// Client is one participant.
type Client struct {
	opts   Options
	log    *slog.Logger
	sockMu sync.Mutex
	sock   *sock // the signaling socket in use; a resume replaces it (resume.go)
	net    *timeoutNet
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	pub    *webrtc.PeerConnection
	sub    *webrtc.PeerConnection
	joined signaling.Message
	// feedback counts the server's RTCP about what this client publishes.
	feedback feedbackCounts

	reqMu   sync.Mutex
	nextID  int
	pending map[string]chan signaling.Message

	server chan signaling.Message // offers and candidates, handled in order

	audio, video           *pump
	audioSent, videoSent   sendStats
	videoTrack             *webrtc.TrackLocalStaticRTP
	videoSender            *webrtc.RTPSender
	upMu                   sync.Mutex // serialises Upgrade/Downgrade
	videoAdded, videoBound bool

	mu          sync.Mutex
	recv        map[string]*recvStats
	events      []signaling.Message
	evChange    chan struct{}
	sdp         int // offers and answers exchanged after join
	cands       map[sfu.PC][]webrtc.ICECandidateInit
	serverCands []string
	closed      bool
	kept        map[string][]keptPacket // KeepAudio: by participant (keepaudio.go)

	restartMu         sync.Mutex // one ICE restart at a time (icerestart.go)
	restarts, resumes int        // guarded by mu
	pairBase          [2]net.IP  // publish, subscribe: the selected pairs' local addresses; guarded by mu
}

// dialOnce connects to o.URL and runs start; a redirect reply to join is
// returned as a *Redirect.
func dialOnce(ctx context.Context, o Options) (*Client, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	sk, err := dialSocket(ctx, o)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: o, log: o.Logger, sock: sk, ctx: cctx, cancel: cancel,
		pending:  map[string]chan signaling.Message{},
		server:   make(chan signaling.Message, 256),
		recv:     map[string]*recvStats{},
		evChange: make(chan struct{}),
		cands:    map[sfu.PC][]webrtc.ICECandidateInit{},
	}
	if o.Fingerprint {
		c.audioSent.prints = map[uint32]struct{}{}
		c.videoSent.prints = map[uint32]struct{}{}
	}
	c.wg.Add(1)
	go c.readLoop(sk)
	if err := c.start(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if !o.NoNetworkWatch {
		c.wg.Add(1)
		go c.watchNetwork()
	}
	return c, nil
}

func (c *Client) start(ctx context.Context) error {
	reply, err := c.Request(ctx, signaling.Message{Type: signaling.TypeJoin, Token: c.opts.Token, Consultation: c.opts.Consultation})
	if err != nil {
		return err
	}
	if reply.Type == signaling.TypeRedirect {
		return &Redirect{URL: reply.URL}
	}
	c.joined = reply
	api, tn, err := newAPI(c.opts)
	if err != nil {
		return err
	}
	c.net = tn
	pcConfig := peerConfig(reply.ICEServers, c.opts)
	if c.opts.RelayOnly && len(pcConfig.ICEServers) == 0 {
		return errors.New("client: relay-only, but the server sent no TURN servers in joined.iceServers")
	}
	if c.pub, err = api.NewPeerConnection(pcConfig); err != nil {
		return err
	}
	if c.sub, err = api.NewPeerConnection(pcConfig); err != nil {
		return err
	}
	c.pub.OnICECandidate(func(ic *webrtc.ICECandidate) { c.sendCandidate(sfu.PCPublish, ic) })
	c.sub.OnICECandidate(func(ic *webrtc.ICECandidate) { c.sendCandidate(sfu.PCSubscribe, ic) })
	c.sub.OnTrack(c.onTrack)
	c.watchPairs()
	c.wg.Add(1)
	go c.serverLoop()

	if c.opts.AudioFile != "" {
		clip, err := fixture.LoadOgg(c.opts.AudioFile)
		if err != nil {
			return err
		}
		track, err := webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "medcall")
		if err != nil {
			return err
		}
		sender, err := c.pub.AddTrack(track)
		if err != nil {
			return err
		}
		c.audio = newPump(clip, track, opusPayloader(), 48000, "audio", &c.audioSent)
		c.audio.dropRate = c.opts.DropRate
		c.drainRTCP(sender, nil)
	}
	if c.opts.VideoFile != "" {
		clip, err := fixture.LoadIVF(c.opts.VideoFile)
		if err != nil {
			return err
		}
		if c.videoTrack, err = webrtc.NewTrackLocalStaticRTP(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}, "video", "medcall"); err != nil {
			return err
		}
		c.video = newPump(clip, c.videoTrack, vp8Payloader(), 90000, "video", &c.videoSent)
		c.video.dropRate = c.opts.DropRate
		if c.opts.Prenegotiate {
			tr, err := c.pub.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
			if err != nil {
				return err
			}
			c.videoSender = tr.Sender()
			c.videoAdded = true
			c.drainRTCP(c.videoSender, c.video)
		}
	}
	if len(c.pub.GetTransceivers()) == 0 {
		return nil // listen-only: nothing to publish, no publish connection to negotiate
	}
	connected := make(chan struct{})
	var once sync.Once
	c.pub.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		if s == webrtc.PeerConnectionStateConnected {
			once.Do(func() { close(connected) })
		}
	})
	if err := c.negotiatePublish(ctx); err != nil {
		return err
	}
	// Media starts once the transport is up, so every packet counted as sent
	// was really sent; Dial returns connected.
	select {
	case <-connected:
	case <-ctx.Done():
		return fmt.Errorf("client: publish connection not established: %w", ctx.Err())
	case <-c.ctx.Done():
		return errors.New("client: connection closed while connecting")
	}
	for _, p := range []*pump{c.audio, c.video} {
		if p != nil {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				p.run(c.ctx.Done())
			}()
		}
	}
	if c.audio != nil {
		c.audio.setOn(true)
		c.notify(signaling.Message{Type: signaling.TypeMedia, Audio: ptr(true)})
	}
	return nil
}

func ptr[T any](v T) *T { return &v }

func newAPI(o Options) (*webrtc.API, *timeoutNet, error) {
	m := &webrtc.MediaEngine{}
	if err := sfu.RegisterCodecs(m); err != nil {
		return nil, nil, err
	}
	ir := &interceptor.Registry{}
	if o.ReceiveDropRate > 0 {
		ir.Add(&dropIncoming{rate: o.ReceiveDropRate}) // first: innermost, nearest the network
	}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, nil, err
	}
	if o.TransportCC {
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
			return nil, nil, err
		}
	}
	se := webrtc.SettingEngine{}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIncludeLoopbackCandidate(true)
	se.SetNetworkTypes(networkTypes(o))
	tn, err := newTimeoutNet()
	if err != nil {
		return nil, nil, err
	}
	se.SetNet(tn)
	if o.RelayOnly {
		// Only relayed pairs exist: nothing better to wait for (pion holds
		// a relayed pair back 2 s by default, hoping for a direct one).
		se.SetRelayAcceptanceMinWait(0)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), tn, nil
}

// Subscriptions counts the tracks the server currently sends this client:
// the subscribe connection's transceivers that are receiving.
func (c *Client) Subscriptions() int {
	n := 0
	for _, t := range c.sub.GetTransceivers() {
		if d := t.Direction(); d == webrtc.RTPTransceiverDirectionRecvonly || d == webrtc.RTPTransceiverDirectionSendrecv {
			if t.Receiver() != nil && t.Mid() != "" {
				n++
			}
		}
	}
	return n
}

// Joined is the server's joined reply.
func (c *Client) Joined() signaling.Message { return c.joined }

// Leave says goodbye and closes the client.
func (c *Client) Leave(ctx context.Context) error {
	_, err := c.Request(ctx, signaling.Message{Type: signaling.TypeLeave})
	c.Close()
	return err
}

// Close drops the socket and the peer connections without a leave (as a
// crashed app or a lost network would) and waits for the client's goroutines.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	_ = c.current().conn.CloseNow()
	if c.pub != nil {
		_ = c.pub.Close()
	}
	if c.sub != nil {
		_ = c.sub.Close()
	}
	c.wg.Wait()
}
