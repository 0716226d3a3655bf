package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/pion/stun/v4"
)

// networkConfig is how the SFU's media addresses are chosen and announced.
type networkConfig struct {
	publicIPs, stunServer, interfaces string
	tcpPort                           int
}

func (c *networkConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.publicIPs, "public-ip", "", "comma-separated public addresses (IPv4/IPv6) announced in place of the local ones, for a server behind 1:1 NAT; PUBLIC/LOCAL maps one local address")
	fs.StringVar(&c.stunServer, "stun", "", "learn the public IPv4 address at start-up from this STUN server (host:port), when --public-ip is not given")
	fs.StringVar(&c.interfaces, "ice-interfaces", "", "comma-separated network interfaces ICE may gather on (default: all, or only --addr's address when it is not 0.0.0.0)")
	fs.IntVar(&c.tcpPort, "tcp-port", 0, "passive ICE-TCP port for clients whose networks block UDP; 0 disables ICE over TCP")
}

// apply fills the SFU's network settings: the parsed public addresses (or
// the one learnt from --stun), the interface allow-list and the TCP port.
func (c *networkConfig) apply(ctx context.Context, sc *sfu.Config, log *slog.Logger) error {
	sc.TCPPort = c.tcpPort
	sc.Interfaces = splitList(c.interfaces)
	for _, s := range splitList(c.publicIPs) {
		p, err := sfu.ParsePublicIP(s)
		if err != nil {
			return fmt.Errorf("--public-ip: %w", err)
		}
		sc.PublicIPs = append(sc.PublicIPs, p)
	}
	if c.stunServer == "" || len(sc.PublicIPs) > 0 {
		return nil
	}
	ip, err := stunDiscover(ctx, c.stunServer, sc.ListenIP)
	if err != nil {
		return fmt.Errorf("--stun %s: %w (give --public-ip instead, or check the STUN server is reachable over UDP)", c.stunServer, err)
	}
	log.Info("public address learnt by STUN", "stun", c.stunServer, "public_ip", ip.String())
	sc.PublicIPs = append(sc.PublicIPs, sfu.PublicIP{Public: ip})
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// stunDiscover asks a STUN server which address our UDP packets come from
// (RFC 8489 binding request, retried), sending from local (nil: any).
func stunDiscover(ctx context.Context, server string, local net.IP) (net.IP, error) {
	raddr, err := net.ResolveUDPAddr("udp4", server)
	if err != nil {
		return nil, err
	}
	var laddr *net.UDPAddr
	if local != nil && !local.IsUnspecified() {
		laddr = &net.UDPAddr{IP: local}
	}
	conn, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	for attempt := 0; attempt < 4; attempt++ {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		req := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
		if _, err := conn.WriteToUDP(req.Raw, raddr); err != nil {
			return nil, err
		}
		_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond << attempt))
		for {
			n, _, err := conn.ReadFromUDP(buf)
			if err != nil {
				break // timeout: send again
			}
			res := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if res.Decode() != nil || res.TransactionID != req.TransactionID {
				continue
			}
			var xor stun.XORMappedAddress
			if err := xor.GetFrom(res); err != nil {
				return nil, fmt.Errorf("answer without an XOR-MAPPED-ADDRESS: %w", err)
			}
			return xor.IP, nil
		}
	}
	return nil, fmt.Errorf("no answer from %s", raddr)
}
