package client

import (
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
	"github.com/pion/webrtc/v4"
)

// peerConfig is both peer connections' configuration: the iceServers from
// joined (optionally only some transports) and, with RelayOnly, the relay
// transport policy.
func peerConfig(servers []signaling.ICEServer, o Options) webrtc.Configuration {
	var cfg webrtc.Configuration
	for _, s := range servers {
		var urls []string
		for _, u := range s.URLs {
			if len(o.TURNTransports) == 0 || slices.Contains(o.TURNTransports, urlTransport(u)) {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			cfg.ICEServers = append(cfg.ICEServers, webrtc.ICEServer{
				URLs: urls, Username: s.Username, Credential: s.Credential,
				CredentialType: webrtc.ICECredentialTypePassword,
			})
		}
	}
	if o.RelayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	return cfg
}

// urlTransport is "udp", "tcp" or "tls" for a turn:/turns:/stun: URL.
func urlTransport(u string) string {
	switch {
	case strings.HasPrefix(u, "turns:"):
		return "tls"
	case strings.Contains(u, "transport=tcp"):
		return "tcp"
	}
	return "udp"
}

// turnDialTimeout bounds a TCP connect to a TURN server.
const turnDialTimeout = 10 * time.Second

// timeoutNet is the standard network with a bounded TCP dial. pion dials
// TURN-over-TCP/TLS servers with no timeout, and behind a firewall that
// drops SYNs that held each peer connection's Close for minutes.
//
// It also makes the interface list safe to refresh while ICE agents read it:
// stdnet.Net's UpdateInterfaces (RestartICE, on a network change) replaces
// the list with no lock, while the agents of a connection still gathering
// read it (found by the race detector when a test elsewhere on the machine
// added an interface in the middle of a call).
type timeoutNet struct {
	*stdnet.Net
	mu sync.RWMutex // guards the interface list
}

func newTimeoutNet() (*timeoutNet, error) {
	n, err := stdnet.NewNet()
	if err != nil {
		return nil, err
	}
	return &timeoutNet{Net: n}, nil
}

// UpdateInterfaces implements transport.Net.
func (n *timeoutNet) UpdateInterfaces() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.Net.UpdateInterfaces()
}

// Interfaces implements transport.Net.
func (n *timeoutNet) Interfaces() ([]*transport.Interface, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.Net.Interfaces()
}

// InterfaceByIndex implements transport.Net.
func (n *timeoutNet) InterfaceByIndex(index int) (*transport.Interface, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.Net.InterfaceByIndex(index)
}

// InterfaceByName implements transport.Net.
func (n *timeoutNet) InterfaceByName(name string) (*transport.Interface, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.Net.InterfaceByName(name)
}

// DialTCP implements transport.Net.
func (n *timeoutNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	d := net.Dialer{Timeout: turnDialTimeout}
	if laddr != nil {
		d.LocalAddr = laddr
	}
	c, err := d.Dial(network, raddr.String())
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}
