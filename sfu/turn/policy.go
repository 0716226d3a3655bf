package turn

import (
	"fmt"
	"net"
	"net/netip"
)

// Refusal reasons, the label values of medcall_turn_refusals_total.
const (
	ReasonExpired      = "expired"       // credential past its expiry
	ReasonUnknown      = "unknown"       // never minted here, or malformed
	ReasonRevoked      = "revoked"       // its participant has left
	ReasonBadIntegrity = "bad_integrity" // right username, wrong password (forged)
	ReasonQuota        = "quota"         // allocations per credential exhausted
	ReasonBandwidth    = "bandwidth"     // bytes per second per credential exceeded
	ReasonTCPRelay     = "tcp_relay"     // RFC 6062 TCP relaying is not offered
	ReasonAdminPort    = "admin_port"    // the admin listener
	ReasonOtherPort    = "other_port"    // an SFU address, but not a media port
	ReasonLoopback     = "loopback"      // loopback that is not the SFU's media address
	ReasonLinkLocal    = "link_local"
	ReasonPrivate      = "private" // a private range the operator has not allowed
	ReasonOtherHost    = "other_host"
)

// Reasons lists every refusal reason (metrics pre-declare them).
var Reasons = []string{
	ReasonExpired, ReasonUnknown, ReasonRevoked, ReasonBadIntegrity, ReasonQuota, ReasonBandwidth,
	ReasonTCPRelay, ReasonAdminPort, ReasonOtherPort, ReasonLoopback, ReasonLinkLocal, ReasonPrivate, ReasonOtherHost,
}

// Policy says where an allocation may send: only to the SFU's own media
// addresses. Everything else is refused with a reason.
//
// Loopback is refused unless the SFU's media address itself is loopback (the
// embedded development default, where TURN, SFU and browser share one
// machine): relaying to 127.0.0.1:udp-port then reaches only the SFU, and the
// port check keeps the admin, signaling and every other local port out of
// reach. A private-range media address (a VM behind 1:1 NAT) must be allowed
// explicitly through AllowPrivate, so an operator decides it; New refuses a
// policy whose media address it would then refuse.
type Policy struct {
	// Media are the SFU's ICE addresses (IP and UDP port) the relay may reach.
	Media []netip.AddrPort
	// Admin are addresses that are always refused (the admin listener), named
	// so a refusal says why.
	Admin []netip.AddrPort
	// AllowPrivate are private ranges the operator allows as destinations
	// (still only at a media address).
	AllowPrivate []netip.Prefix
	// Public maps the SFU's announced public IPs (1:1 NAT) to the local IPs
	// of Media. Clients know only the public address, so their permissions
	// and packets name it; the relay, inside the NAT, sends to the local
	// address instead and reports the SFU's replies as from the public one.
	Public map[netip.Addr]netip.Addr
}

// toLocal rewrites a public SFU address to its local one.
func (p *Policy) toLocal(a netip.AddrPort) netip.AddrPort {
	if l, ok := p.Public[a.Addr().Unmap()]; ok {
		return netip.AddrPortFrom(l, a.Port())
	}
	return a
}

// toPublic rewrites a local SFU address to the public one clients know.
func (p *Policy) toPublic(a netip.AddrPort) netip.AddrPort {
	for pub, l := range p.Public {
		if l == a.Addr().Unmap() {
			return netip.AddrPortFrom(pub, a.Port())
		}
	}
	return a
}

// Check returns "" when dst may be reached, else the refusal reason.
func (p *Policy) Check(dst netip.AddrPort) string {
	dst = netip.AddrPortFrom(dst.Addr().Unmap(), dst.Port())
	for _, a := range p.Admin {
		if dst.Port() == a.Port() && (a.Addr().IsUnspecified() || a.Addr() == dst.Addr()) {
			return ReasonAdminPort
		}
	}
	for _, m := range p.Media {
		if m == dst {
			return p.rangeReason(dst.Addr())
		}
	}
	return p.CheckIP(dst.Addr())
}

// CheckIP is Check for a destination whose port is not known yet (a TURN
// permission names an IP only): "" when ip is one of the media IPs.
func (p *Policy) CheckIP(ip netip.Addr) string {
	ip = ip.Unmap()
	for _, m := range p.Media {
		if m.Addr() == ip {
			if r := p.rangeReason(ip); r != "" {
				return r
			}
			return ReasonOtherPort
		}
	}
	switch r := p.rangeReason(ip); {
	case ip.IsLoopback():
		return ReasonLoopback
	case r != "":
		return r
	}
	return ReasonOtherHost
}

// rangeReason refuses link-local, multicast, unspecified and private
// addresses the operator has not allowed. A loopback media address passes
// (it is only ever in Media when the SFU itself is on loopback).
func (p *Policy) rangeReason(ip netip.Addr) string {
	switch {
	case ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified():
		return ReasonLinkLocal
	case ip.IsPrivate():
		for _, pre := range p.AllowPrivate {
			if pre.Contains(ip) {
				return ""
			}
		}
		return ReasonPrivate
	}
	return ""
}

// permit reports whether a permission (IP only) may be created.
func (p *Policy) permit(ip netip.Addr) string {
	if l, ok := p.Public[ip.Unmap()]; ok {
		ip = l
	}
	if r := p.CheckIP(ip); r != ReasonOtherPort {
		return r
	}
	return "" // a media IP: the port is checked on every packet
}

// validate refuses a policy that would refuse its own media addresses.
func (p *Policy) validate() error {
	if len(p.Media) == 0 {
		return fmt.Errorf("turn: no SFU media address to relay to; give the SFU a fixed UDP port (--udp-port)")
	}
	for _, m := range p.Media {
		if m.Port() == 0 || !m.Addr().IsValid() || m.Addr().IsUnspecified() {
			return fmt.Errorf("turn: SFU media address %s is not a concrete IP and port; bind the SFU to one address and a fixed --udp-port", m)
		}
		if r := p.rangeReason(m.Addr()); r != "" {
			return fmt.Errorf("turn: the SFU's media address %s is in a %s range the relay would refuse; allow it explicitly (--turn-allow-private %s)", m, r, netip.PrefixFrom(m.Addr(), m.Addr().BitLen()))
		}
	}
	return nil
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch v := a.(type) {
	case *net.UDPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return netip.AddrPortFrom(ip.Unmap(), uint16(v.Port)), ok
	case *net.TCPAddr:
		ip, ok := netip.AddrFromSlice(v.IP)
		return netip.AddrPortFrom(ip.Unmap(), uint16(v.Port)), ok
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}
