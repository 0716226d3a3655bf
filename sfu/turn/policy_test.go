package turn

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPolicy(t *testing.T) {
	ap := netip.MustParseAddrPort
	public := Policy{ // an SFU on a public address
		Media: []netip.AddrPort{ap("203.0.113.5:50000")},
		Admin: []netip.AddrPort{ap("0.0.0.0:9090")},
	}
	natted := Policy{ // a VM behind 1:1 NAT whose operator allowed its private range
		Media:        []netip.AddrPort{ap("10.0.0.5:50000")},
		AllowPrivate: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/24")},
	}
	dev := Policy{Media: []netip.AddrPort{ap("127.0.0.1:50000")}, Admin: []netip.AddrPort{ap("127.0.0.1:9090")}}
	for _, tc := range []struct {
		name string
		p    Policy
		dst  string
		want string
	}{
		{"the SFU's media port", public, "203.0.113.5:50000", ""},
		{"loopback when the SFU is public", public, "127.0.0.1:50000", ReasonLoopback},
		{"IPv6 loopback", public, "[::1]:50000", ReasonLoopback},
		{"admin port on any address", public, "203.0.113.5:9090", ReasonAdminPort},
		{"another port of the SFU", public, "203.0.113.5:22", ReasonOtherPort},
		{"a third host", public, "198.51.100.7:50000", ReasonOtherHost},
		{"a private host", public, "192.168.1.1:50000", ReasonPrivate},
		{"cloud metadata", public, "169.254.169.254:80", ReasonLinkLocal},
		{"multicast", public, "224.0.0.1:50000", ReasonLinkLocal},
		{"IPv4-mapped IPv6 of the SFU", public, "[::ffff:203.0.113.5]:50000", ""},
		{"allowed private media address", natted, "10.0.0.5:50000", ""},
		{"allowed range, other host", natted, "10.0.0.6:50000", ReasonOtherHost},
		{"dev: SFU on loopback", dev, "127.0.0.1:50000", ""},
		{"dev: admin port", dev, "127.0.0.1:9090", ReasonAdminPort},
		{"dev: signaling port", dev, "127.0.0.1:8080", ReasonOtherPort},
		{"dev: other loopback address", dev, "127.0.0.2:50000", ReasonLoopback},
	} {
		if got := tc.p.Check(ap(tc.dst)); got != tc.want {
			t.Errorf("%s: Check(%s) = %q, want %q", tc.name, tc.dst, got, tc.want)
		}
	}
}

func TestPolicyRefusesToStartWhenItWouldRefuseTheSFU(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{}, "--udp-port"},
		{Policy{Media: []netip.AddrPort{ap("0.0.0.0:50000")}}, "concrete"},
		{Policy{Media: []netip.AddrPort{ap("10.0.0.5:50000")}}, "--turn-allow-private 10.0.0.5/32"},
	} {
		err := tc.p.validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("validate(%v) = %v, want an error naming %q", tc.p.Media, err, tc.want)
		}
	}
}
