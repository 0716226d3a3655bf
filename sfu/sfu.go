// Package sfu forwards RTP between the participants of a consultation. Each
// participant has two peer connections: publish (the client offers) and
// subscribe (the server offers). Published tracks are received by a Receiver
// and fanned out to one DownTrack per subscriber and to in-process taps.
package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
)

// Errors returned by the SFU.
var (
	ErrBindingMismatch = errors.New("consultation is bound to a different patient or recording setting")
	ErrFull            = errors.New("consultation is full")
	// ErrServerFull refuses a join that would start a consultation on a
	// server already hosting Config.MaxConsultations, or Config.Busy.
	ErrServerFull = errors.New("server hosts its most consultations")
	ErrClosed     = errors.New("sfu is closed")
)

// Config configures an SFU. The zero value works: ephemeral UDP ports, all interfaces.
type Config struct {
	// ListenIP restricts ICE to one local address (e.g. 127.0.0.1). Loopback
	// candidates are enabled when it is a loopback address.
	ListenIP net.IP
	// UDPPort puts all ICE traffic on one UDP port when non-zero.
	UDPPort int
	// UDPSocketBuffer is the kernel receive and send buffer, in bytes, of the
	// UDPPort socket; 0 means DefaultUDPSocketBuffer (udpbuffers.go).
	UDPSocketBuffer int
	// UDPCoalesce, when positive, coalesces the UDPPort socket's reads
	// (bound to one address, on Linux on amd64 or arm64): after a read that did not
	// fill its batch, the reader sleeps until this long after it, so it
	// wakes about once per interval rather than once per datagram
	// (ingress.go). It adds up to about this plus 1 ms to media delay (Go's
	// timers are as coarse as 1 ms). 0 reads as soon as a datagram
	// arrives; more than MaxUDPCoalesce is taken as MaxUDPCoalesce.
	UDPCoalesce time.Duration
	// TCPPort opens one passive ICE-TCP port when non-zero, for clients
	// whose networks block UDP.
	TCPPort int
	// PublicIPs are announced instead of the local addresses they map to
	// (1:1 NAT).
	PublicIPs []PublicIP
	// Interfaces, when set, are the only network interfaces ICE gathers on.
	Interfaces []string
	// MaxParticipants per consultation; 0 means 4.
	MaxParticipants int
	// MaxConsultations is how many consultations the server hosts at once;
	// 0 means no limit. A join that would start one more is refused
	// (ErrServerFull); a join to a consultation running here (someone is
	// still in it) is not, so no consultation started here is left
	// without its other party. It is the capacity a node keeps its media
	// quality up to (measured with medcall bench), so overload refuses
	// newcomers instead of degrading every call.
	MaxConsultations int
	// Busy, if set, reports the server too loaded to start another
	// consultation (serve --admit-cpu-wait on a single node; a cluster's
	// placement does this instead): while it says so, a join that would
	// start one is refused with ErrServerFull, as at MaxConsultations. It
	// is called with the SFU's lock held and must be quick (an atomic
	// load).
	Busy func() bool
	// PLIInterval is the shortest time between two keyframe requests sent to one
	// publisher; 0 means 500ms.
	PLIInterval time.Duration
	// MaxVideoBitrate is the ceiling, in bits/s, of the bitrate asked of a
	// publisher's video; 0 means DefaultMaxVideoBitrate.
	MaxVideoBitrate int
	// NACKHistory is the most sent packets each video stream of a subscribe
	// connection keeps to answer NACKs from (it keeps only the last 800 ms),
	// a power of two; 0 sizes it from MaxVideoBitrate (interceptors.go).
	NACKHistory uint16
	// ICEDisconnectedTimeout and ICEFailedTimeout are pion's ICE timeouts:
	// without connectivity a connection is disconnected after the first and
	// failed after both; 0 means pion's defaults (5s, 25s).
	ICEDisconnectedTimeout, ICEFailedTimeout time.Duration
	// OwnReceivePath has the UDP port's reader take publishers' RTP past
	// pion's receive goroutines and forward it itself while it keeps up,
	// else hand it to a forwarding pool that serves audio first, or to the
	// streams' goroutines (ownpath.go, ownstream.go, ownworkers.go).
	// It needs UDPPort on one address
	// (ListenIP a specific IP, so one socket); otherwise pion delivers
	// everything.
	OwnReceivePath bool
	// OwnSendPath has each subscribe connection's innermost interceptor
	// encrypt the RTP medcall sends and write it on the UDP port itself,
	// past pion's SRTP session and ICE write path (ownsend.go). It needs
	// what OwnReceivePath needs.
	OwnSendPath bool
	// OwnRTCPPath has the UDP port's reader also read the subscribers'
	// RTCP of the connections OwnSendPath sends on, past pion's receive
	// goroutines (ownrtcp.go); it needs OwnReceivePath too (the reader
	// takes datagrams only then). Off by default: see docs/mediapath.md.
	OwnRTCPPath bool
	// ICEFailedGrace is how long a failed connection may take to recover (an
	// ICE restart) before its participant is removed; 0 means 5s.
	ICEFailedGrace time.Duration
	// Bindings keeps consultation bindings; nil keeps them in memory (for
	// the life of the process, finished ones for DefaultBindingRetention).
	Bindings Bindings
	// Taps opens an in-process consumer (the recorder) per consultation; may be nil.
	Taps TapFactory
	// Metrics receives counters; may be nil.
	Metrics *Metrics
	Logger  *slog.Logger
}

// SFU holds the consultations of one server.
type SFU struct {
	cfg    Config
	api    *webrtc.API // subscribe connections
	pubAPI *webrtc.API // publish connections (interceptors.go)
	// The own media path (ownpath.go, ownsend.go), when on: its table and
	// socket, and what each connection's API is made of.
	own        *ownPath
	ownSE      webrtc.SettingEngine
	pubME      *webrtc.MediaEngine
	pubReg     *interceptor.Registry // the receive interceptors, run by ownConn.chain
	ownPionReg *interceptor.Registry // what pion runs itself: the attributes pool
	subME      *webrtc.MediaEngine
	subReg     *interceptor.Registry // the send interceptors, outside ownSender
	log        *slog.Logger
	udpMux     ice.UDPMux
	links      links // subscribe connections' downlinks, until their Participant takes them
	// publishers are the participants by their publish connection's id,
	// from their making to their closing (lossreport.go).
	publishers sync.Map
	tcpMux     ice.TCPMux

	// udpConn is the UDP port's socket when the SFU opened it itself (bound
	// to one address), for its drop count.
	udpConn udpSocket
	// udpCoalesce is the wait its reader coalesces reads by (ingress.go):
	// Config.UDPCoalesce where reads are batched, bounded; else 0.
	udpCoalesce time.Duration

	mu            sync.Mutex
	closed        bool
	consultations map[string]*Consultation
	// starting counts, per consultation id, the joins between their
	// admission and their consultation running (consultation.go, admit).
	starting map[string]int
	wg       sync.WaitGroup // consultations' goroutines
}

// New builds an SFU and, with cfg.UDPPort, opens its UDP port.
func New(cfg Config) (*SFU, error) {
	if cfg.MaxParticipants == 0 {
		cfg.MaxParticipants = 4
	}
	if cfg.PLIInterval == 0 {
		cfg.PLIInterval = 500 * time.Millisecond
	}
	if cfg.MaxVideoBitrate == 0 {
		cfg.MaxVideoBitrate = DefaultMaxVideoBitrate
	}
	if cfg.MaxVideoBitrate < minVideoBitrate {
		return nil, fmt.Errorf("sfu: maximum video bitrate %d bit/s is below the floor of %d bit/s; raise --max-video-bitrate to at least %d (kbit/s)",
			cfg.MaxVideoBitrate, minVideoBitrate, minVideoBitrate/1000)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Bindings == nil {
		cfg.Bindings = &MemoryBindings{}
	}
	if cfg.ICEFailedGrace == 0 {
		cfg.ICEFailedGrace = defaultICEFailedGrace
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &Metrics{}
	}
	s := &SFU{
		cfg:           cfg,
		log:           cfg.Logger,
		consultations: map[string]*Consultation{},
	}
	se := webrtc.SettingEngine{}
	if err := s.configureNetwork(&se); err != nil {
		return nil, err
	}
	if cfg.ICEDisconnectedTimeout != 0 || cfg.ICEFailedTimeout != 0 {
		disc, failed := cfg.ICEDisconnectedTimeout, cfg.ICEFailedTimeout
		if disc == 0 {
			disc = 5 * time.Second
		}
		if failed == 0 {
			failed = 25 * time.Second
		}
		se.SetICETimeouts(disc, failed, 2*time.Second)
	}
	// pion's SRTP session refuses as a replay what is more than 64 packets
	// older than the newest; at N=150 NACKed packets resent after a kernel
	// drop arrive later than that. Its window is the own path's
	// (srtpkeys.go), so the two paths judge alike.
	se.SetSRTPReplayProtectionWindow(srtpReplayWindow)
	s.links.downLoss = s.downstreamLoss
	s.links.log = s.log
	m, pub, sub, err := newMediaEngine(cfg, &s.links)
	if err != nil {
		s.closeNetwork()
		return nil, err
	}
	switch {
	case s.own != nil:
		s.log.Info("own media path", "receive", cfg.OwnReceivePath, "send", cfg.OwnSendPath, "rtcp", s.ownRTCP(), "udp_coalesce", s.udpCoalesce, "udp_socket", socketKind(s.udpConn))
	case (cfg.OwnReceivePath || cfg.OwnSendPath) && cfg.UDPPort != 0:
		s.log.Info("own media path off, and reads of the port not coalesced: both need the UDP port on one specific address (--addr not 0.0.0.0 or ::); pion carries all media")
	}
	if s.own != nil { // the UDP port's reader is the ingress (network.go)
		s.ownSE, s.pubME, s.pubReg, s.subME, s.subReg = se, m.pub, pub, m.sub, sub
		s.ownPionReg = &interceptor.Registry{}
		s.ownPionReg.Add(attrsFactory{})
	}
	s.pubAPI = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m.pub), webrtc.WithInterceptorRegistry(pub))
	s.api = webrtc.NewAPI(webrtc.WithSettingEngine(se), webrtc.WithMediaEngine(m.sub), webrtc.WithInterceptorRegistry(sub))
	return s, nil
}

// RegisterCodecs registers Opus, VP8 and VP9 with the feedback medcall uses.
// The Go client uses it too, so both ends agree.
func RegisterCodecs(m *webrtc.MediaEngine) error {
	videoFB := []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}
	codecs := []struct {
		p webrtc.RTPCodecParameters
		k webrtc.RTPCodecType
	}{
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}, PayloadType: 111}, webrtc.RTPCodecTypeAudio},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000, RTCPFeedback: videoFB}, PayloadType: 96}, webrtc.RTPCodecTypeVideo},
		{webrtc.RTPCodecParameters{RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP9, ClockRate: 90000, SDPFmtpLine: "profile-id=0", RTCPFeedback: videoFB}, PayloadType: 98}, webrtc.RTPCodecTypeVideo},
	}
	for _, c := range codecs {
		if err := m.RegisterCodec(c.p, c.k); err != nil {
			return fmt.Errorf("sfu: register %s: %w", c.p.MimeType, err)
		}
	}
	return nil
}

// Bind records the server-side binding of a consultation, or checks a later
// join against it, in cfg.Bindings. The first accepted join wins; a
// different pid or rec is refused with ErrBindingMismatch until the
// binding of the finished consultation expires.
func (s *SFU) Bind(b Binding) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return ErrClosed
	}
	return s.cfg.Bindings.Bind(b)
}

// Close ends every consultation (participants are told through their Signaler)
// and waits for the forwarding goroutines to stop.
func (s *SFU) Close() {
	s.mu.Lock()
	s.closed = true
	cs := make([]*Consultation, 0, len(s.consultations))
	for _, c := range s.consultations {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	for _, c := range cs {
		c.close("shutdown")
	}
	s.wg.Wait()
	s.closeNetwork()
}

// Stats is a point-in-time count for health and metrics.
type Stats struct {
	Consultations, Participants int
}

// Stats counts active consultations and participants.
func (s *SFU) Stats() Stats {
	s.mu.Lock()
	cs := make([]*Consultation, 0, len(s.consultations))
	for _, c := range s.consultations {
		cs = append(cs, c)
	}
	s.mu.Unlock()
	st := Stats{Consultations: len(cs)}
	for _, c := range cs {
		st.Participants += c.size()
	}
	return st
}
