package client

import (
	"slices"
	"strings"

	"github.com/medcall/medcall/signaling"
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
