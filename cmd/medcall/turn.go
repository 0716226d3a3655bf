package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/sfu/turn"
	"github.com/medcall/medcall/signaling"
	"github.com/prometheus/client_golang/prometheus"
)

// turnConfig is the TURN part of serve: the built-in relay and/or an
// operator's coturn, whose credentials joined.iceServers carries.
type turnConfig struct {
	on                   bool
	port, tlsPort        int
	host, listenIP       string
	ttl                  time.Duration
	maxAllocs, bandwidth int
	allowPrivate         string
	cert, key            string
	extURLs, extSecret   string
	metrics              turn.Metrics
}

func (c *turnConfig) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.on, "turn", false, "run the built-in TURN relay (needs --udp-port: the relay reaches only the SFU's media port)")
	fs.IntVar(&c.port, "turn-port", 3478, "built-in TURN port, UDP and TCP")
	fs.IntVar(&c.tlsPort, "turn-tls-port", 5349, "built-in TURN over TLS port (443 in production); 0 turns TLS off; needs a certificate")
	fs.StringVar(&c.listenIP, "turn-ip", "", "IP the built-in TURN ports listen on (default: the --addr IP); relaying always goes out from the SFU's IP. Give TURN its own IP to put TURN over TLS on 443 beside HTTPS")
	fs.StringVar(&c.host, "turn-host", "", "host name put in TURN URLs (the certificate's name with TLS); default: the --addr IP")
	fs.DurationVar(&c.ttl, "turn-ttl", turn.DefaultTTL, "lifetime of the TURN credentials minted at each join")
	fs.IntVar(&c.maxAllocs, "turn-max-allocations", 8, "TURN allocations per credential (participant)")
	fs.IntVar(&c.bandwidth, "turn-bandwidth", 1<<20, "TURN bytes per second per credential and direction")
	fs.StringVar(&c.allowPrivate, "turn-allow-private", "", "comma-separated private ranges (CIDR) the relay may reach, e.g. the SFU's own address behind 1:1 NAT")
	fs.StringVar(&c.cert, "turn-cert", "", "TLS certificate (PEM) for TURN over TLS when it is not the server's (--tls-cert, or ACME, is shared by default)")
	fs.StringVar(&c.key, "turn-key", "", "TLS key (PEM) for --turn-cert")
	fs.StringVar(&c.extURLs, "turn-url", "", "comma-separated TURN URLs of an external server (coturn), e.g. turns:turn.example.org:443?transport=tcp")
	fs.StringVar(&c.extSecret, "turn-secret", "", "the external TURN server's shared secret (coturn static-auth-secret); prefer MEDCALL_TURN_SECRET")
}

// start runs the built-in relay when --turn is given; it returns the
// function that mints each joined participant's iceServers (nil without
// any TURN) and a stop function.
func (c *turnConfig) start(sc sfu.Config, admin net.Addr, shared *tls.Config, log *slog.Logger) (func() ([]signaling.ICEServer, func()), func(), error) {
	if (c.extURLs == "") != (c.extSecret == "") {
		return nil, nil, errors.New("--turn-url and --turn-secret go together (the secret is coturn's static-auth-secret)")
	}
	var srv *turn.Server
	var urls []string
	if c.on {
		var err error
		if srv, urls, err = c.startBuiltin(sc, admin, shared, log); err != nil {
			return nil, nil, err
		}
	}
	ext := splitList(c.extURLs)
	if srv == nil && len(ext) == 0 {
		return nil, func() {}, nil
	}
	ttl := c.ttl
	mint := func() ([]signaling.ICEServer, func()) {
		var out []signaling.ICEServer
		release := func() {}
		if srv != nil {
			cred, rel := srv.Issue()
			out = append(out, signaling.ICEServer{URLs: urls, Username: cred.Username, Credential: cred.Password})
			release = rel
		}
		if len(ext) > 0 {
			cred := turn.Mint([]byte(c.extSecret), time.Now(), ttl)
			out = append(out, signaling.ICEServer{URLs: ext, Username: cred.Username, Credential: cred.Password})
		}
		return out, release
	}
	stop := func() {
		if srv != nil {
			_ = srv.Close()
		}
	}
	return mint, stop, nil
}

func (c *turnConfig) startBuiltin(sc sfu.Config, admin net.Addr, shared *tls.Config, log *slog.Logger) (*turn.Server, []string, error) {
	if sc.UDPPort == 0 {
		return nil, nil, errors.New("--turn needs --udp-port: the relay may reach only the SFU's one media port")
	}
	ips, err := mediaIPs(sc.ListenIP, sc.Interfaces)
	if err != nil {
		return nil, nil, err
	}
	ip := ips[0] // relay sockets bind here, next to the SFU
	pol := turn.Policy{}
	for _, a := range ips {
		pol.Media = append(pol.Media, netip.AddrPortFrom(a, uint16(sc.UDPPort)))
	}
	public := sc.PublicIPs
	if a, err := netip.ParseAddrPort(admin.String()); err == nil {
		pol.Admin = append(pol.Admin, a)
	}
	for _, p := range public { // 1:1 NAT: clients name the public address
		pub, _ := netip.AddrFromSlice(p.Public)
		local := ip
		if l, ok := netip.AddrFromSlice(p.Local); ok && p.Local != nil {
			local = l.Unmap()
		}
		if pol.Public == nil {
			pol.Public = map[netip.Addr]netip.Addr{}
		}
		pol.Public[pub.Unmap()] = local
	}
	for _, s := range splitList(c.allowPrivate) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, nil, fmt.Errorf("--turn-allow-private %q: %w", s, err)
		}
		pol.AllowPrivate = append(pol.AllowPrivate, p)
	}
	var tlsCfg *tls.Config
	if shared != nil {
		// The server's certificate (files reloaded, or ACME). TURN clients
		// offer no ALPN or "stun.turn" (RFC 7443), never HTTP; ACME's
		// TLS-ALPN challenge for the TURN host name may arrive here too.
		tlsCfg = shared.Clone()
		tlsCfg.NextProtos = nil
		for _, p := range shared.NextProtos {
			if p != "http/1.1" {
				tlsCfg.NextProtos = append(tlsCfg.NextProtos, p)
			}
		}
		if len(tlsCfg.NextProtos) > 0 {
			tlsCfg.NextProtos = append([]string{"stun.turn"}, tlsCfg.NextProtos...)
		}
	}
	if c.cert != "" || c.key != "" {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			return nil, nil, fmt.Errorf("--turn-cert/--turn-key: %w", err)
		}
		tlsCfg = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	}
	listen := ip.String()
	if c.listenIP != "" {
		if net.ParseIP(c.listenIP) == nil {
			return nil, nil, fmt.Errorf("--turn-ip %q: not an IP address", c.listenIP)
		}
		listen = c.listenIP
	}
	host := c.host
	if host == "" {
		host = listen
		if len(public) > 0 && c.listenIP == "" {
			host = public[0].Public.String() // clients reach the relay at the public address
		}
	}
	cfg := turn.Config{
		Addr: net.JoinHostPort(listen, strconv.Itoa(c.port)), RelayIP: net.IP(ip.AsSlice()),
		TTL: c.ttl, MaxAllocations: c.maxAllocs, Bandwidth: c.bandwidth,
		Policy: pol, Metrics: &c.metrics, Logger: log,
	}
	if tlsCfg != nil && c.tlsPort != 0 {
		cfg.TLS, cfg.TLSAddr = tlsCfg, net.JoinHostPort(listen, strconv.Itoa(c.tlsPort))
	}
	srv, err := turn.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	port := strconv.Itoa(c.port)
	if a, ok := srv.Addr().(*net.UDPAddr); ok {
		port = strconv.Itoa(a.Port)
	}
	hp := net.JoinHostPort(host, port)
	urls := []string{"turn:" + hp + "?transport=udp", "turn:" + hp + "?transport=tcp"}
	if a := srv.TLSAddr(); a != nil {
		urls = append(urls, "turns:"+net.JoinHostPort(host, strconv.Itoa(a.(*net.TCPAddr).Port))+"?transport=tcp")
	} else if c.tlsPort != 0 {
		log.Warn("TURN over TLS is off: no certificate (give --tls-cert/--tls-key, --acme-domain, or --turn-cert/--turn-key)")
	}
	log.Info("built-in TURN relay", "urls", strings.Join(urls, " "))
	return srv, urls, nil
}

// mediaIPs are the SFU's own addresses: --addr's IP, or when it is bound to
// all addresses, every global unicast address of the ICE interfaces (IPv4
// first, the relay's own address).
func mediaIPs(listen net.IP, interfaces []string) ([]netip.Addr, error) {
	if ip, ok := netip.AddrFromSlice(listen); ok && !ip.IsUnspecified() {
		return []netip.Addr{ip.Unmap()}, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("--turn: list network interfaces: %w", err)
	}
	var v4, v6 []netip.Addr
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || (len(interfaces) > 0 && !slices.Contains(interfaces, ifc.Name)) {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			pre, err := netip.ParsePrefix(a.String())
			if err != nil || !pre.Addr().IsGlobalUnicast() {
				continue // loopback, link-local, multicast
			}
			if pre.Addr().Is4() {
				v4 = append(v4, pre.Addr())
			} else {
				v6 = append(v6, pre.Addr())
			}
		}
	}
	if len(v4)+len(v6) == 0 {
		return nil, errors.New("--turn: the SFU has no global unicast address to relay to; bind --addr to one")
	}
	return append(v4, v6...), nil
}

// watchTURN adds the relay's series (zero when it is off).
func (m *metrics) watchTURN(t *turn.Metrics) {
	gaugeFunc(m.reg, "turn_allocations_active", "Built-in TURN allocations open.", func() float64 { return float64(t.AllocationsActive.Load()) })
	counterFunc(m.reg, "turn_allocations_total", "Built-in TURN allocations created.", nil, u64(&t.Allocations))
	counterFunc(m.reg, "turn_relayed_bytes_total", "Bytes relayed by the built-in TURN server, by direction.", prometheus.Labels{"direction": "to_sfu"}, u64(&t.BytesToPeer))
	counterFunc(m.reg, "turn_relayed_bytes_total", "Bytes relayed by the built-in TURN server, by direction.", prometheus.Labels{"direction": "to_client"}, u64(&t.BytesToClient))
	for _, r := range turn.Reasons {
		counterFunc(m.reg, "turn_refusals_total", "Built-in TURN requests and packets refused, by reason.", prometheus.Labels{"reason": r}, func() float64 { return float64(t.Refusals(r)) })
	}
}
