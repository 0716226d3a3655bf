package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/pion/webrtc/v4"
)

// checkPath is one way a client can reach the server's media.
type checkPath struct {
	name    string
	types   []webrtc.NetworkType
	turn    func(u string) bool // nil: direct; else which TURN URLs it uses
	advice  string              // what to look at when it fails
	offered bool
}

func checkPaths() []*checkPath {
	return []*checkPath{
		{name: "UDP", types: []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}, advice: "this network may block UDP (then TCP or TURN must work); else is the server's --udp-port open for UDP and --public-ip right?"},
		{name: "TCP", types: []webrtc.NetworkType{webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6}, advice: "is the server started with --tcp-port, and that port open for TCP?"},
		{name: "TURN-UDP", types: allNetworkTypes, turn: func(u string) bool { return strings.HasPrefix(u, "turn:") && !strings.Contains(u, "transport=tcp") }, advice: "is the TURN port open for UDP?"},
		{name: "TURN-TCP", types: allNetworkTypes, turn: func(u string) bool { return strings.HasPrefix(u, "turn:") && strings.Contains(u, "transport=tcp") }, advice: "is the TURN port open for TCP?"},
		{name: "TURN-TLS", types: allNetworkTypes, turn: func(u string) bool { return strings.HasPrefix(u, "turns:") }, advice: "is the TURN TLS port open, and its certificate valid?"},
	}
}

var allNetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6}

// runCheck is `medcall check URL`: the connectivity self-test an operator
// (or support, with a patient on the phone) runs from any machine.
func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var tok, caFile string
	var timeout time.Duration
	fs := newFlagSet("check", "Check that a medcall server can be reached from this machine: TLS certificate, WebSocket, and which media paths (UDP, TCP, TURN) connect, with round-trip times.\nusage: medcall check [options] https://medcall.example.org", stderr)
	fs.StringVar(&tok, "token", "", "join token for a dedicated, unrecorded check consultation (mint one with `medcall token --role clinician --sub check --pid check --cid check`); better given as MEDCALL_TOKEN than on the command line")
	fs.StringVar(&caFile, "ca", "", "PEM file of CA certificates to trust instead of the system's (a private CA)")
	fs.DurationVar(&timeout, "timeout", 10*time.Second, "time allowed for each step")
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[len(args)-1], "-") {
		target, args = args[len(args)-1], args[:len(args)-1]
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if target == "" {
		return errors.New("check: give the server's URL, e.g. medcall check https://medcall.example.org")
	}
	if tok == "" {
		return errors.New("check: a join token is needed (--token or MEDCALL_TOKEN), for a dedicated check consultation that is not recorded")
	}
	wsURL, u, err := signalURL(target)
	if err != nil {
		return err
	}
	line := func(name, status, detail string) { fmt.Fprintf(stdout, "%-10s %-5s %s\n", name, status, detail) }
	var hc *http.Client
	var tc *tls.Config
	if caFile != "" {
		if hc, err = httpClientTrusting(caFile); err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		tc = hc.Transport.(*http.Transport).TLSClientConfig
	}
	step := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, timeout) }

	if u.Scheme == "wss" {
		sctx, cancel := step()
		detail, err := tlsCheck(sctx, u.Host, u.Hostname(), tc)
		cancel()
		if err != nil {
			line("TLS", "FAIL", err.Error())
			return errors.New("check: TLS failed; browsers will refuse this server")
		}
		line("TLS", "ok", detail)
	} else {
		line("TLS", "-", "not used (plain HTTP): browsers refuse camera and microphone on such pages except on localhost")
	}

	sctx, cancel := step()
	s, err := joinProbe(sctx, wsURL, tok, hc)
	cancel()
	if err != nil {
		line("WebSocket", "FAIL", err.Error())
		return errors.New("check: could not join; nothing else can be checked")
	}
	line("WebSocket", "ok", fmt.Sprintf("joined in %d ms", s.took.Milliseconds()))
	recorded := s.joined.Recording != nil && *s.joined.Recording
	s.close()
	if recorded {
		return errors.New("check: this token's consultation is recorded; mint a token for a dedicated check consultation without --rec")
	}

	working := 0
	for _, p := range checkPaths() {
		var servers []webrtc.ICEServer
		if p.turn != nil {
			servers = pickTURN(s.joined.ICEServers, p.turn)
			if len(servers) == 0 {
				if p.name != "TURN-TCP" { // TCP TURN is listed only when offered
					line(p.name, "-", "not offered by server")
				}
				continue
			}
		}
		sctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
		r, err := probeOne(sctx, wsURL, tok, hc, p, servers)
		cancel()
		if errors.Is(err, errNotOffered) {
			line(p.name, "-", "not offered by server")
			continue
		}
		if err != nil {
			line(p.name, "FAIL", fmt.Sprintf("%v within %v; %s", err, timeout, p.advice))
			continue
		}
		working++
		line(p.name, "ok", fmt.Sprintf("rtt %s via %s (%s %s/%s)", fmtRTT(r.rtt), r.addr, r.protocol, r.local, r.remote))
	}
	if working == 0 {
		return errors.New("check: no media path connects; calls will fail from this network")
	}
	return nil
}

// probeOne joins afresh (one publish connection per participant) and
// probes one path.
func probeOne(ctx context.Context, wsURL, tok string, hc *http.Client, p *checkPath, servers []webrtc.ICEServer) (pathResult, error) {
	s, err := joinProbe(ctx, wsURL, tok, hc)
	if err != nil {
		return pathResult{}, err
	}
	defer s.close()
	if p.turn != nil {
		// This join's own credential: the first join's stopped working
		// when that session left (the built-in relay revokes on leave).
		servers = pickTURN(s.joined.ICEServers, p.turn)
	}
	return s.probePath(ctx, p.types, servers, p.turn != nil)
}

// pickTURN keeps, of the servers the server offered, the URLs one path uses.
func pickTURN(all []webrtc.ICEServer, use func(string) bool) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range all {
		var urls []string
		for _, u := range s.URLs {
			if use(u) {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			s.URLs = urls
			out = append(out, s)
		}
	}
	return out
}

func fmtRTT(d time.Duration) string {
	if d == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

// signalURL turns what an operator types (https://host, host:port, or the
// signaling URL itself) into the WebSocket URL.
func signalURL(s string) (string, *url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "", nil, fmt.Errorf("check: %q is not a server URL (want e.g. https://medcall.example.org)", s)
	}
	switch u.Scheme {
	case "https", "wss":
		u.Scheme = "wss"
	case "http", "ws":
		u.Scheme = "ws"
	default:
		return "", nil, fmt.Errorf("check: URL scheme %q: want https (or http for a local server)", u.Scheme)
	}
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "ws" {
			port = "80"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", nil, errors.New("check: the URL must not carry a query, fragment or credentials (give the token with --token or MEDCALL_TOKEN)")
	}
	u.Path = "/v1/signal"
	return u.String(), u, nil
}
