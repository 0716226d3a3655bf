package netns

import "testing"

// World is the standard topology of medcall's network tests: a patient at
// home behind a masquerading router, a server on a cloud VM behind 1:1 NAT,
// and the internet between them where a clinician sits on a public address.
//
//	Client 10.9.2.2 -- Home 10.9.2.1 | 172.30.0.2 (masquerade)
//	                                  |
//	                   Inet 172.30.0.1 | 172.29.0.1   (router; the clinician runs here)
//	                                  |
//	Server 10.9.1.2 -- Gateway 10.9.1.1 | 172.29.0.2, public 172.29.0.10 (1:1 NAT to 10.9.1.2)
//
// The server's private address is unreachable from the internet; only its
// public address is. Firewall rules for the patient's network go on Home
// (e.g. Home.DropForwardedUDP()).
type World struct {
	*Topology
	Client, Home, Inet, Gateway, Server *NS
}

// The World's addresses.
const (
	ClientIP        = "10.9.2.2"    // the patient's private address
	HomePublicIP    = "172.30.0.2"  // what the server sees of the patient
	InetIP          = "172.29.0.1"  // the clinician's address, on the server's public network
	ServerPrivateIP = "10.9.1.2"    // the address the server binds
	ServerPublicIP  = "172.29.0.10" // the address the server announces
)

// NewWorld builds the World with namespaces named prefix+"cli", "home",
// "inet", "gw" and "srv".
func NewWorld(t testing.TB, prefix string) *World {
	t.Helper()
	tp := New(t, prefix)
	w := &World{Topology: tp,
		Client: tp.Namespace("cli"), Home: tp.Namespace("home"), Inet: tp.Namespace("inet"),
		Gateway: tp.Namespace("gw"), Server: tp.Namespace("srv")}
	tp.Link(w.Client, "eth0", ClientIP+"/24", w.Home, "lan", "10.9.2.1/24")
	tp.Link(w.Home, "wan", HomePublicIP+"/24", w.Inet, "home", "172.30.0.1/24")
	tp.Link(w.Inet, "gw", InetIP+"/24", w.Gateway, "wan", "172.29.0.2/24")
	tp.Link(w.Gateway, "lan", "10.9.1.1/24", w.Server, "eth0", ServerPrivateIP+"/24")
	w.Gateway.Addr("wan", ServerPublicIP+"/32")
	w.Client.Route("default", "10.9.2.1")
	w.Home.Route("default", "172.30.0.1")
	w.Inet.Forward()
	w.Gateway.Route("default", "172.29.0.1")
	w.Server.Route("default", "10.9.1.1")
	w.Home.Masquerade("wan")
	w.Gateway.NAT1to1(ServerPublicIP, ServerPrivateIP)
	return w
}

// The World's IPv6 addresses (unique local, inside the namespaces only).
const (
	ClientIPv6        = "fd00:9:2::2"
	ServerPrivateIPv6 = "fd00:9:1::2"
	ServerPublicIPv6  = "fd00:29::10"
)

// EnableIPv6 gives the World a second, IPv6 network beside the IPv4 one:
// the patient has a routed (not NATed) address, as IPv6 homes do; the
// server a private address behind the gateway's 1:1 NAT to ServerPublicIPv6.
func (w *World) EnableIPv6() {
	w.t.Helper()
	for _, a := range []struct {
		ns        *NS
		ifc, addr string
	}{
		{w.Client, "eth0", ClientIPv6 + "/64"}, {w.Home, "lan", "fd00:9:2::1/64"},
		{w.Home, "wan", "fd00:30::2/64"}, {w.Inet, "home", "fd00:30::1/64"},
		{w.Inet, "gw", "fd00:29::1/64"}, {w.Gateway, "wan", "fd00:29::2/64"},
		{w.Gateway, "wan", ServerPublicIPv6 + "/128"}, {w.Gateway, "lan", "fd00:9:1::1/64"},
		{w.Server, "eth0", ServerPrivateIPv6 + "/64"},
	} {
		a.ns.Addr(a.ifc, a.addr)
	}
	w.Client.Route("default", "fd00:9:2::1")
	w.Home.Route("default", "fd00:30::1")
	w.Inet.Route("fd00:9:2::/64", "fd00:30::2") // the home's routed prefix
	w.Gateway.Route("default", "fd00:29::1")
	w.Server.Route("default", "fd00:9:1::1")
	w.Gateway.NAT1to1(ServerPublicIPv6, ServerPrivateIPv6)
}
