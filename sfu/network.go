package sfu

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"github.com/pion/ice/v4"
	"github.com/pion/webrtc/v4"
)

// PublicIP maps a public address to the local address it reaches (1:1 NAT,
// as on a cloud VM). An empty Local maps every local address of the same
// family.
type PublicIP struct {
	Public, Local net.IP
}

// ParsePublicIP reads "PUBLIC" or "PUBLIC/LOCAL" (IPv4 or IPv6).
func ParsePublicIP(s string) (PublicIP, error) {
	pub, local, mapped := strings.Cut(s, "/")
	p := PublicIP{Public: net.ParseIP(pub)}
	if p.Public == nil || p.Public.IsUnspecified() {
		return PublicIP{}, fmt.Errorf("public IP %q: want an IPv4 or IPv6 address, optionally /LOCAL-ADDRESS", s)
	}
	if mapped {
		if p.Local = net.ParseIP(local); p.Local == nil || (p.Local.To4() == nil) != (p.Public.To4() == nil) {
			return PublicIP{}, fmt.Errorf("public IP %q: the local address after / must be an address of the same family", s)
		}
	}
	return p, nil
}

// configureNetwork sets up how ICE gathers and announces the SFU's
// addresses: only the listen address (or the allowed interfaces), public
// addresses instead of private ones behind 1:1 NAT, one UDP port and one
// passive ICE-TCP port when configured. It opens those ports.
func (s *SFU) configureNetwork(se *webrtc.SettingEngine) error {
	cfg := s.cfg
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	ip := cfg.ListenIP
	if ip != nil && !ip.IsUnspecified() {
		se.SetIPFilter(func(c net.IP) bool { return c.Equal(ip) })
		if ip.IsLoopback() {
			se.SetIncludeLoopbackCandidate(true)
		}
		if ip.Equal(net.IPv6loopback) {
			// pion/ice's isSupportedIPv6Partial refuses addresses whose
			// first 96 bits are zero (IPv4-compatible IPv6), ::1 among them.
			s.log.Warn("no media can flow on ::1: ICE (pion) gathers no candidate on the IPv6 loopback address; listen on 127.0.0.1 or a routable IPv6 address")
		}
	} else {
		ip = net.IPv4zero
	}
	if len(cfg.Interfaces) > 0 {
		allowed := slices.Clone(cfg.Interfaces)
		se.SetInterfaceFilter(func(name string) bool { return slices.Contains(allowed, name) })
	}
	if len(cfg.PublicIPs) > 0 {
		rules := make([]webrtc.ICEAddressRewriteRule, 0, len(cfg.PublicIPs))
		for _, p := range cfg.PublicIPs {
			r := webrtc.ICEAddressRewriteRule{External: []string{p.Public.String()}, AsCandidateType: webrtc.ICECandidateTypeHost, Mode: webrtc.ICEAddressRewriteReplace}
			if p.Local != nil {
				r.Local = p.Local.String()
			}
			rules = append(rules, r)
		}
		if err := se.SetICEAddressRewriteRules(rules...); err != nil {
			return fmt.Errorf("sfu: public IPs: %w", err)
		}
	}
	if cfg.UDPPort != 0 {
		if err := s.listenUDP(ip); err != nil {
			return err
		}
		se.SetICEUDPMux(s.udpMux)
	}
	if cfg.TCPPort != 0 {
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: ip, Port: cfg.TCPPort})
		if err != nil {
			s.closeNetwork()
			return fmt.Errorf("sfu: listen on ICE-TCP port %d: %w (is another server using it?)", cfg.TCPPort, err)
		}
		s.tcpMux = webrtc.NewICETCPMux(nil, ln, 8)
		se.SetICETCPMux(s.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(types)
	return nil
}

// listenUDP opens the one UDP port. Bound to one address, that is one
// socket; bound to all, it is one socket per allowed interface address, so
// the allow-list holds and replies leave from the address they were sent to.
func (s *SFU) listenUDP(ip net.IP) error {
	port := s.cfg.UDPPort
	if !ip.IsUnspecified() {
		conn, err := listenPortUDP(&net.UDPAddr{IP: ip, Port: port})
		if err != nil {
			return fmt.Errorf("sfu: listen on UDP port %d: %w (is another server using it?)", port, err)
		}
		setSocketBuffers(conn, s.socketBuffer(), s.log)
		in, err := newIngressConn(conn, s.cfg.Metrics.OnUDPQueueDelay, s.cfg.UDPCoalesce)
		if err != nil {
			_ = conn.Close()
			return err
		}
		s.udpConn, s.udpCoalesce = conn, in.coalesce
		if s.cfg.OwnReceivePath || s.cfg.OwnSendPath {
			s.own = &ownPath{m: s.cfg.Metrics, port: conn.LocalAddr().(*net.UDPAddr).Port, log: s.log}
		}
		if s.cfg.OwnSendPath { // before the socket is read or written: see dupUDP and secondHandle
			if s.own.out, err = secondHandle(conn); err != nil {
				_ = conn.Close()
				s.udpConn = nil
				return err
			}
		}
		if s.cfg.OwnReceivePath { // before the mux starts reading
			in.take = s.own.takeAt
			s.own.workers = newOwnWorkers(runtime.GOMAXPROCS(0))
		}
		s.udpMux = webrtc.NewICEUDPMux(nil, in)
		return nil
	}
	opts := []ice.UDPMuxFromPortOption{
		ice.UDPMuxFromPortWithNetworks(ice.NetworkTypeUDP4, ice.NetworkTypeUDP6),
		// Link-local addresses reach no client (and bind fails while new
		// ones are still tentative).
		ice.UDPMuxFromPortWithIPFilter(func(ip net.IP) bool { return !ip.IsLinkLocalUnicast() }),
		ice.UDPMuxFromPortWithReadBufferSize(s.socketBuffer()),
		ice.UDPMuxFromPortWithWriteBufferSize(s.socketBuffer()),
	}
	if allowed := s.cfg.Interfaces; len(allowed) > 0 {
		opts = append(opts, ice.UDPMuxFromPortWithInterfaceFilter(func(name string) bool { return slices.Contains(allowed, name) }))
	}
	mux, err := ice.NewMultiUDPMuxFromPort(port, opts...)
	if err != nil {
		return fmt.Errorf("sfu: listen on UDP port %d on every allowed interface: %w (is another server using it?)", port, err)
	}
	s.udpMux = mux
	return nil
}

// dupUDP is a second handle on Go's socket for the own send path
// (ownsend.go) to write on: the same port and buffers, with deadlines of
// its own. pion's UDP mux aborts a closed candidate's write still in
// flight 5 s after the close by setting the write deadline of the handle
// it writes on to now, until its writes in flight have returned (ice
// v4.4.8, UDPMuxDefault.checkWriteAborts and abortWrite); on a shared
// handle every own-path write meanwhile failed with "i/o timeout",
// counted as write_error drops (11,133 and 19,732 in two runs at N=150).
//
// os.File.Fd, which net.FilePacketConn calls, puts the socket in blocking
// mode for a moment (the mode belongs to the socket, so to both handles)
// before the new handle makes it non-blocking again: so this runs before
// anything reads or writes the socket.
func dupUDP(sock udpSocket) (udpSocket, error) {
	conn, ok := sock.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("sfu: duplicate the UDP port's socket: a %T cannot be", sock)
	}
	f, err := conn.File()
	if err != nil {
		return nil, fmt.Errorf("sfu: duplicate the UDP port's socket: %w", err)
	}
	defer f.Close()
	pc, err := net.FilePacketConn(f)
	if err != nil {
		return nil, fmt.Errorf("sfu: duplicate the UDP port's socket: %w", err)
	}
	return pc.(*net.UDPConn), nil
}

// udpSocket is the UDP port's socket as the SFU uses it: on Linux on amd64 or arm64 a
// portHandle, outside Go's netpoller (portsocket_linux.go); elsewhere
// Go's *net.UDPConn.
type udpSocket interface {
	net.PacketConn
	syscall.Conn
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error)
	SetReadBuffer(bytes int) error
	SetWriteBuffer(bytes int) error
}

// closeNetwork closes the shared ICE ports.
func (s *SFU) closeNetwork() {
	if s.udpMux != nil {
		_ = s.udpMux.Close()
	}
	if s.own != nil && s.own.out != nil {
		_ = s.own.out.Close()
	}
	if s.own != nil && s.own.workers != nil {
		s.own.workers.close()
	}
	if s.tcpMux != nil {
		_ = s.tcpMux.Close()
	}
}

// watchSelectedPair reports the candidate pair a connection settles on to
// Metrics.OnSelectedPair: the remote (client) candidate's type — host,
// srflx, prflx or relay — and the transport between the SFU and that
// candidate, udp or tcp. No ids: it is counted, not attributed.
func (s *SFU) watchSelectedPair(pc PC, conn *webrtc.PeerConnection, follow func(*webrtc.ICECandidatePair)) {
	f := s.cfg.Metrics.OnSelectedPair
	if f == nil && follow == nil {
		return
	}
	conn.SCTP().Transport().ICETransport().OnSelectedCandidatePairChange(func(p *webrtc.ICECandidatePair) {
		if p == nil || p.Remote == nil || p.Local == nil {
			return
		}
		if follow != nil {
			follow(p) // the own media path follows it (ownconn.go, ownsend.go)
		}
		if f != nil {
			f(pc, p.Remote.Typ.String(), p.Local.Protocol.String())
		}
	})
}
