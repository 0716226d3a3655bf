package turn

import (
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"
)

// Config configures the built-in relay.
type Config struct {
	// Addr is where TURN listens on UDP and TCP (one port), e.g. ":3478".
	Addr string
	// TLSAddr, with TLS, is where TURN listens over TLS, e.g. ":5349" or ":443".
	TLSAddr string
	// TLS serves TLSAddr; GetCertificate lets the certificate be reloaded.
	TLS *tls.Config
	// RelayIP is the address relay sockets bind to and announce; it must
	// reach the SFU's media addresses.
	RelayIP net.IP
	// Realm names the server in the long-term credential mechanism.
	Realm string
	// TTL of minted credentials; 0 means DefaultTTL.
	TTL time.Duration
	// MaxAllocations per credential; 0 means 8 (two peer connections, each
	// allocating once per TURN URL, with room for a retry).
	MaxAllocations int
	// Bandwidth per credential and direction, bytes per second; 0 means
	// 1 MB/s (8 Mbit/s, several video calls' worth).
	Bandwidth int
	// Policy limits where allocations may send.
	Policy  Policy
	Metrics *Metrics
	Logger  *slog.Logger
}

// Server is the running relay.
type Server struct {
	cfg    Config
	secret []byte
	srv    *pturn.Server
	udp    net.PacketConn
	tlsLn  net.Listener
	met    *Metrics
	log    *slog.Logger

	mu      sync.Mutex
	creds   map[string]*grant    // live credentials by username
	revoked map[string]time.Time // left participants' usernames, until expiry
}

// grant is one live credential: its allocations and bandwidth budget.
type grant struct {
	expires  time.Time
	conns    map[*relayConn]struct{}
	up, down *bucket
}

// New starts the relay on cfg.Addr (UDP and TCP) and, with cfg.TLS, on
// cfg.TLSAddr.
func New(cfg Config) (*Server, error) {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxAllocations == 0 {
		cfg.MaxAllocations = 8
	}
	if cfg.Bandwidth == 0 {
		cfg.Bandwidth = 1 << 20
	}
	if cfg.Realm == "" {
		cfg.Realm = "medcall"
	}
	if cfg.Metrics == nil {
		cfg.Metrics = &Metrics{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RelayIP == nil || cfg.RelayIP.IsUnspecified() {
		return nil, errors.New("turn: a concrete relay address is needed (the SFU's address)")
	}
	if err := cfg.Policy.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, met: cfg.Metrics, log: cfg.Logger, creds: map[string]*grant{}, revoked: map[string]time.Time{}}
	s.secret = make([]byte, 32)
	_, _ = rand.Read(s.secret)

	gen := &relayGen{s: s}
	perm := func(_ net.Addr, ip net.IP) bool {
		a, _ := netip.AddrFromSlice(ip)
		if r := s.cfg.Policy.permit(a); r != "" {
			s.met.Refused(r)
			return false
		}
		return true
	}
	udp, tcp, err := listenBoth(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s.udp = udp
	listeners := []pturn.ListenerConfig{{Listener: tcp, RelayAddressGenerator: gen, PermissionHandler: perm}}
	if cfg.TLS != nil && cfg.TLSAddr != "" {
		tl, err := tls.Listen("tcp", cfg.TLSAddr, cfg.TLS)
		if err != nil {
			udp.Close()
			tcp.Close()
			return nil, fmt.Errorf("turn: listen TLS %s: %w", cfg.TLSAddr, err)
		}
		s.tlsLn = tl
		listeners = append(listeners, pturn.ListenerConfig{Listener: tl, RelayAddressGenerator: gen, PermissionHandler: perm})
	}
	s.srv, err = pturn.NewServer(pturn.ServerConfig{
		Realm:             cfg.Realm,
		AuthHandler:       s.auth,
		QuotaHandler:      s.quota,
		PacketConnConfigs: []pturn.PacketConnConfig{{PacketConn: udp, RelayAddressGenerator: gen, PermissionHandler: perm}},
		ListenerConfigs:   listeners,
		LoggerFactory:     quietLogs{},
		EventHandler: pturn.EventHandler{
			OnAuth: func(_, _ net.Addr, _, _, _, _ string, ok bool) {
				if !ok {
					s.met.Refused(ReasonBadIntegrity)
				}
			},
		},
	})
	if err != nil {
		udp.Close()
		tcp.Close()
		for _, l := range listeners[1:] {
			l.Listener.Close()
		}
		return nil, fmt.Errorf("turn: %w", err)
	}
	return s, nil
}

// Addr is the UDP (and TCP) address the relay listens on.
func (s *Server) Addr() net.Addr { return s.udp.LocalAddr() }

// TLSAddr is the TLS address, or nil without TLS.
func (s *Server) TLSAddr() net.Addr {
	if s.tlsLn == nil {
		return nil
	}
	return s.tlsLn.Addr()
}

// Issue mints a credential for one joined participant. Call the returned
// release when the participant leaves: the credential is refused from then
// on and its allocations are closed.
func (s *Server) Issue() (Credential, func()) {
	c := Mint(s.secret, time.Now(), s.cfg.TTL)
	g := &grant{
		expires: c.Expires, conns: map[*relayConn]struct{}{},
		up: newBucket(s.cfg.Bandwidth), down: newBucket(s.cfg.Bandwidth),
	}
	s.mu.Lock()
	s.creds[c.Username] = g
	s.mu.Unlock()
	var once sync.Once
	return c, func() { once.Do(func() { s.revoke(c.Username) }) }
}

func (s *Server) revoke(user string) {
	s.mu.Lock()
	g := s.creds[user]
	delete(s.creds, user)
	now := time.Now()
	if g != nil {
		s.revoked[user] = g.expires
	}
	for u, exp := range s.revoked {
		if now.After(exp) {
			delete(s.revoked, u)
		}
	}
	var conns []*relayConn
	if g != nil {
		for c := range g.conns {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.Close() // ends the allocation: pion deletes it when its relay socket fails
	}
}

// auth is pion's AuthHandler: only credentials minted here, not expired,
// not released. The key is derived from the HMAC password, so a forged
// password fails pion's integrity check (counted in OnAuth).
func (s *Server) auth(ra *pturn.RequestAttributes) (string, []byte, bool) {
	if _, err := Parse(ra.Username, time.Now()); err != nil {
		if errors.Is(err, ErrExpired) {
			s.met.Refused(ReasonExpired)
		} else {
			s.met.Refused(ReasonUnknown)
		}
		return "", nil, false
	}
	s.mu.Lock()
	_, live := s.creds[ra.Username]
	_, gone := s.revoked[ra.Username]
	s.mu.Unlock()
	switch {
	case gone:
		s.met.Refused(ReasonRevoked)
		return "", nil, false
	case !live:
		s.met.Refused(ReasonUnknown)
		return "", nil, false
	}
	return ra.Username, pturn.GenerateAuthKey(ra.Username, ra.Realm, Password(s.secret, ra.Username)), true
}

func (s *Server) quota(user, _ string, _ net.Addr) bool {
	s.mu.Lock()
	g := s.creds[user]
	ok := g != nil && len(g.conns) < s.cfg.MaxAllocations
	s.mu.Unlock()
	if !ok {
		s.met.Refused(ReasonQuota)
	}
	return ok
}

// Close stops the relay and every allocation.
func (s *Server) Close() error { return s.srv.Close() }

// relayGen allocates relay sockets on RelayIP, wrapped so every packet is
// checked against the policy and the credential's budget.
type relayGen struct{ s *Server }

func (g *relayGen) Validate() error { return nil }

func (g *relayGen) AllocatePacketConn(c pturn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.s
	s.mu.Lock()
	gr := s.creds[c.UserID]
	s.mu.Unlock()
	if gr == nil {
		return nil, nil, errors.New("turn: credential released")
	}
	pc, err := net.ListenPacket(c.Network, net.JoinHostPort(s.cfg.RelayIP.String(), strconv.Itoa(c.RequestedPort)))
	if err != nil {
		return nil, nil, err
	}
	rc := &relayConn{PacketConn: pc, s: s, g: gr}
	s.mu.Lock()
	if _, live := s.creds[c.UserID]; !live {
		s.mu.Unlock()
		pc.Close()
		return nil, nil, errors.New("turn: credential released")
	}
	gr.conns[rc] = struct{}{}
	s.mu.Unlock()
	s.met.Allocations.Add(1)
	s.met.AllocationsActive.Add(1)
	return rc, pc.LocalAddr(), nil
}

func (g *relayGen) AllocateListener(pturn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	g.s.met.Refused(ReasonTCPRelay)
	return nil, nil, errors.New("turn: TCP relaying (RFC 6062) is not offered")
}

func (g *relayGen) AllocateConn(pturn.AllocateConnConfig) (net.Conn, error) {
	g.s.met.Refused(ReasonTCPRelay)
	return nil, errors.New("turn: TCP relaying (RFC 6062) is not offered")
}

// quietLogs drops pion's TURN logs: they would print credentials' usernames
// and peers' addresses for every junk packet.
type quietLogs struct{}

func (quietLogs) NewLogger(string) logging.LeveledLogger {
	return logging.NewDefaultLeveledLoggerForScope("turn", logging.LogLevelDisabled, nopWriter{})
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// listenBoth listens on addr for UDP and on the same port for TCP. With
// port 0 the system picks the UDP port, and that port may be in use for
// TCP (an outgoing connection's ephemeral port): another is tried, up to
// ten times.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	for try := 1; ; try++ {
		udp, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("turn: listen UDP %s: %w (is another TURN server on the port?)", addr, err)
		}
		tcp, err := net.Listen("tcp", udp.LocalAddr().String())
		if err == nil {
			return udp, tcp, nil
		}
		udp.Close()
		if port != "0" || try == 10 {
			return nil, nil, fmt.Errorf("turn: listen TCP %s: %w", udp.LocalAddr(), err)
		}
	}
}
