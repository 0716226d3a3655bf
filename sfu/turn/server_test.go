package turn

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pion/logging"
	pturn "github.com/pion/turn/v5"
)

// sink is a UDP socket standing in for a destination: the SFU's media port,
// the admin port, another host. It records what arrives and echoes it.
type sink struct {
	conn net.PacketConn
	got  chan []byte
}

func newSink(t *testing.T, ip string) *sink {
	t.Helper()
	c, err := net.ListenPacket("udp4", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{conn: c, got: make(chan []byte, 1024)}
	go func() {
		b := make([]byte, 2000)
		for {
			n, from, err := c.ReadFrom(b)
			if err != nil {
				return
			}
			p := append([]byte(nil), b[:n]...)
			select {
			case s.got <- p:
			default:
			}
			_, _ = c.WriteTo(p, from)
		}
	}()
	t.Cleanup(func() { c.Close() })
	return s
}

func (s *sink) addr() *net.UDPAddr { return s.conn.LocalAddr().(*net.UDPAddr) }

func (s *sink) ap() netip.AddrPort { return s.addr().AddrPort() }

// wait returns the next packet, or nil after d.
func (s *sink) wait(d time.Duration) []byte {
	select {
	case p := <-s.got:
		return p
	case <-time.After(d):
		return nil
	}
}

// fixture is a relay whose "SFU" is a sink on 127.0.0.1 (the development
// layout: SFU on loopback) with an admin sink on the same IP.
type fixture struct {
	srv          *Server
	met          *Metrics
	media, admin *sink
}

func start(t *testing.T, mod func(*Config)) *fixture {
	t.Helper()
	f := &fixture{met: &Metrics{}, media: newSink(t, "127.0.0.1"), admin: newSink(t, "127.0.0.1")}
	cfg := Config{
		Addr: "127.0.0.1:0", RelayIP: net.IPv4(127, 0, 0, 1), Metrics: f.met,
		Policy: Policy{Media: []netip.AddrPort{f.media.ap()}, Admin: []netip.AddrPort{f.admin.ap()}},
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	f.srv = s
	return f
}

// client allocates over UDP with the given credential.
func (f *fixture) client(t *testing.T, user, pass string) (*pturn.Client, net.PacketConn, error) {
	t.Helper()
	c, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return f.dialOn(t, c, user, pass)
}

func (f *fixture) dialOn(t *testing.T, conn net.PacketConn, user, pass string) (*pturn.Client, net.PacketConn, error) {
	t.Helper()
	addr := f.srv.Addr().String()
	cl, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: "medcall",
		LoggerFactory: logging.NewDefaultLoggerFactory(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close(); conn.Close() })
	if err := cl.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := cl.Allocate()
	if err == nil {
		t.Cleanup(func() { relay.Close() })
	}
	return cl, relay, err
}

// roundTrip sends through the relay to the media sink and reads the echo.
func roundTrip(t *testing.T, f *fixture, relay net.PacketConn, msg string) {
	t.Helper()
	if _, err := relay.WriteTo([]byte(msg), f.media.addr()); err != nil {
		t.Fatalf("relay to the SFU's media address: %v", err)
	}
	if p := f.media.wait(3 * time.Second); string(p) != msg {
		t.Fatalf("the SFU got %q through the relay, want %q", p, msg)
	}
	_ = relay.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 100)
	n, from, err := relay.ReadFrom(b)
	if err != nil || string(b[:n]) != msg || from.String() != f.media.addr().String() {
		t.Fatalf("echo through the relay: %q from %v, %v", b[:n], from, err)
	}
}

func TestRelayReachesTheSFUBothWays(t *testing.T) {
	f := start(t, nil)
	cred, release := f.srv.Issue()
	defer release()
	if !strings.Contains(cred.Username, ":") || cred.Expires.Before(time.Now().Add(9*time.Minute)) {
		t.Fatalf("credential %q expires %v: want expiry:tag, 10 minutes", cred.Username, cred.Expires)
	}
	_, relay, err := f.client(t, cred.Username, cred.Password)
	if err != nil {
		t.Fatalf("allocate with a fresh credential: %v", err)
	}
	roundTrip(t, f, relay, "hello sfu")
	// The relay counts a packet to the SFU after its write returns, which can
	// be after the echo is back: give the counter a moment.
	for deadline := time.Now().Add(2 * time.Second); f.met.BytesToPeer.Load() < 9 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if f.met.Allocations.Load() != 1 || f.met.AllocationsActive.Load() != 1 || f.met.BytesToPeer.Load() != 9 || f.met.BytesToClient.Load() != 9 {
		t.Fatalf("metrics: allocations %d active %d to peer %d to client %d", f.met.Allocations.Load(), f.met.AllocationsActive.Load(), f.met.BytesToPeer.Load(), f.met.BytesToClient.Load())
	}
}

func TestRefusesExpiredCredential(t *testing.T) {
	f := start(t, func(c *Config) { c.TTL = time.Second })
	cred, release := f.srv.Issue()
	defer release()
	time.Sleep(time.Until(cred.Expires) + 100*time.Millisecond)
	if _, _, err := f.client(t, cred.Username, cred.Password); err == nil {
		t.Fatal("an expired credential allocated")
	}
	if f.met.Refusals(ReasonExpired) == 0 {
		t.Fatal("expired refusal not counted")
	}
}

func TestRefusesForgedCredential(t *testing.T) {
	f := start(t, nil)
	cred, release := f.srv.Issue()
	defer release()
	// A live username with a password made with another secret.
	if _, _, err := f.client(t, cred.Username, Password([]byte("guessed secret"), cred.Username)); err == nil {
		t.Fatal("a forged password allocated")
	}
	if f.met.Refusals(ReasonBadIntegrity) == 0 {
		t.Fatal("forged password not counted as bad_integrity")
	}
	// A username the server never minted, whatever its password.
	other := Mint([]byte("guessed secret"), time.Now(), time.Minute)
	if _, _, err := f.client(t, other.Username, other.Password); err == nil {
		t.Fatal("a credential never minted here allocated")
	}
	if f.met.Refusals(ReasonUnknown) == 0 {
		t.Fatal("unknown credential not counted")
	}
	if f.met.Allocations.Load() != 0 {
		t.Fatalf("%d allocations made with forged credentials", f.met.Allocations.Load())
	}
}

func TestCredentialStopsWhenItsParticipantLeaves(t *testing.T) {
	f := start(t, nil)
	cred, release := f.srv.Issue()
	_, relay, err := f.client(t, cred.Username, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, f, relay, "before leaving")
	release() // the participant left
	// The open allocation is gone: nothing more reaches the SFU.
	_, _ = relay.WriteTo([]byte("after leaving"), f.media.addr())
	if p := f.media.wait(500 * time.Millisecond); p != nil {
		t.Fatalf("the SFU got %q through a released credential's allocation", p)
	}
	if n := f.met.AllocationsActive.Load(); n != 0 {
		t.Fatalf("%d allocations still active after release", n)
	}
	// And the credential cannot make a new one.
	if _, _, err := f.client(t, cred.Username, cred.Password); err == nil {
		t.Fatal("a left participant's credential allocated again")
	}
	if f.met.Refusals(ReasonRevoked) == 0 {
		t.Fatal("revoked refusal not counted")
	}
}

func TestRefusesDestinationsOtherThanTheSFU(t *testing.T) {
	f := start(t, nil)
	cred, release := f.srv.Issue()
	defer release()
	_, relay, err := f.client(t, cred.Username, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	otherLoopback := newSink(t, "127.0.0.2") // loopback, not the SFU
	sameHost := newSink(t, "127.0.0.1")      // the SFU's IP, another port (signaling, a database...)
	cases := []struct {
		name   string
		to     *net.UDPAddr
		reason string
		s      *sink
	}{
		{"admin port", f.admin.addr(), ReasonAdminPort, f.admin},
		{"other port on the SFU's host", sameHost.addr(), ReasonOtherPort, sameHost},
		{"loopback", otherLoopback.addr(), ReasonLoopback, otherLoopback},
		{"third host", &net.UDPAddr{IP: net.IPv4(192, 0, 2, 99), Port: 5000}, ReasonOtherHost, nil},
		{"private range", &net.UDPAddr{IP: net.IPv4(10, 9, 9, 9), Port: 5000}, ReasonPrivate, nil},
		{"link-local", &net.UDPAddr{IP: net.IPv4(169, 254, 169, 254), Port: 80}, ReasonLinkLocal, nil},
	}
	for _, tc := range cases {
		before := f.met.Refusals(tc.reason)
		_, _ = relay.WriteTo([]byte("probe "+tc.name), tc.to)
		// A packet to the SFU sent after the probe arrives after it would have.
		roundTrip(t, f, relay, "after "+tc.name)
		if tc.s != nil {
			if p := tc.s.wait(50 * time.Millisecond); p != nil {
				t.Errorf("%s: %q was relayed to %v", tc.name, p, tc.to)
			}
		}
		if f.met.Refusals(tc.reason) == before {
			t.Errorf("%s: refusal %q not counted", tc.name, tc.reason)
		}
	}
}

func TestLimitsAllocationsAndBandwidthPerCredential(t *testing.T) {
	f := start(t, func(c *Config) { c.MaxAllocations = 2; c.Bandwidth = 2000 })
	cred, release := f.srv.Issue()
	defer release()
	var relays []net.PacketConn
	for i := 0; i < 2; i++ {
		_, r, err := f.client(t, cred.Username, cred.Password)
		if err != nil {
			t.Fatalf("allocation %d: %v", i+1, err)
		}
		relays = append(relays, r)
	}
	if _, _, err := f.client(t, cred.Username, cred.Password); err == nil {
		t.Fatal("a third allocation passed a quota of two")
	}
	if f.met.Refusals(ReasonQuota) == 0 {
		t.Fatal("quota refusal not counted")
	}
	// 20 kB at once against a 2 kB/s budget (one second of burst): at most
	// the burst plus what the budget refills while the test runs gets
	// through, whichever allocation it goes through.
	payload := bytes.Repeat([]byte{1}, 1000)
	start := time.Now()
	for i := 0; i < 20; i++ {
		_, _ = relays[i%2].WriteTo(payload, f.media.addr())
	}
	time.Sleep(300 * time.Millisecond)
	got := 0
	for len(f.media.got) > 0 {
		got += len(<-f.media.got)
	}
	limit := 2000 + int(2000*time.Since(start).Seconds())
	if got == 0 || got > limit || got >= 20000 {
		t.Fatalf("%d bytes relayed for a 2000 B/s budget shared by the credential's allocations (at most %d allowed)", got, limit)
	}
	if f.met.Refusals(ReasonBandwidth) == 0 {
		t.Fatal("bandwidth refusal not counted")
	}
}

func TestRelayOverTCPAndTLS(t *testing.T) {
	cert := selfSigned(t)
	f := start(t, func(c *Config) {
		c.TLSAddr = "127.0.0.1:0"
		c.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	})
	for _, tc := range []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"tcp", func() (net.Conn, error) { return net.Dial("tcp", f.srv.Addr().String()) }},
		{"tls", func() (net.Conn, error) {
			return tls.Dial("tcp", f.srv.TLSAddr().String(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // self-signed test certificate
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cred, release := f.srv.Issue()
			defer release()
			conn, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			addr := conn.RemoteAddr().String()
			cl, err := pturn.NewClient(&pturn.ClientConfig{
				STUNServerAddr: addr, TURNServerAddr: addr, Conn: pturn.NewSTUNConn(conn),
				Username: cred.Username, Password: cred.Password, Realm: "medcall",
			})
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			if err := cl.Listen(); err != nil {
				t.Fatal(err)
			}
			relay, err := cl.Allocate()
			if err != nil {
				t.Fatalf("allocate over %s: %v", tc.name, err)
			}
			defer relay.Close()
			roundTrip(t, f, relay, "over "+tc.name)
		})
	}
}

// TestSurvivesJunk sends 10,000 malformed STUN/TURN/ChannelData datagrams and
// TCP frames while an allocation relays; it keeps relaying and a new client
// still allocates.
func TestSurvivesJunk(t *testing.T) {
	f := start(t, nil)
	cred, release := f.srv.Issue()
	defer release()
	_, relay, err := f.client(t, cred.Username, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	junk, err := net.Dial("udp4", f.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer junk.Close()
	roundTrip(t, f, relay, "before junk")
	for i, p := range junkPackets(10000) {
		_, _ = junk.Write(p)
		if i%1000 == 999 {
			// The flood may overrun the server's socket buffer and lose a
			// datagram (UDP); what matters is that relaying goes on.
			stillRelays(t, f, relay, fmt.Sprintf("during junk %d", i))
		}
	}
	tcp, err := net.Dial("tcp", f.srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range junkPackets(200) {
		_, _ = tcp.Write(p)
	}
	tcp.Close()
	stillRelays(t, f, relay, "after junk")
	cred2, release2 := f.srv.Issue()
	defer release2()
	_, relay2, err := f.client(t, cred2.Username, cred2.Password)
	if err != nil {
		t.Fatalf("allocate after junk: %v", err)
	}
	roundTrip(t, f, relay2, "new client after junk")
}

// stillRelays sends msg through the relay until the SFU gets it (a few tries:
// a flood on the same host can drop a datagram) and reads its echo.
func stillRelays(t *testing.T, f *fixture, relay net.PacketConn, msg string) {
	t.Helper()
	for try := 0; try < 10; try++ {
		if _, err := relay.WriteTo([]byte(msg), f.media.addr()); err != nil {
			t.Fatalf("relay: %v", err)
		}
		for p := f.media.wait(300 * time.Millisecond); p != nil; p = f.media.wait(10 * time.Millisecond) {
			if string(p) == msg {
				_ = relay.SetReadDeadline(time.Now().Add(3 * time.Second))
				b := make([]byte, 100)
				for {
					n, _, err := relay.ReadFrom(b)
					if err != nil {
						t.Fatalf("no echo of %q through the relay: %v", msg, err)
					}
					if string(b[:n]) == msg {
						return
					}
				}
			}
		}
	}
	t.Fatalf("%q never reached the SFU through the relay", msg)
}

// TestRelayBehindOneToOneNAT: clients know only the SFU's public address;
// the relay, inside the NAT, reaches the local one and answers as the public.
func TestRelayBehindOneToOneNAT(t *testing.T) {
	public := netip.MustParseAddr("192.0.2.77")
	f := start(t, func(c *Config) { c.Policy.Public = map[netip.Addr]netip.Addr{public: netip.MustParseAddr("127.0.0.1")} })
	cred, release := f.srv.Issue()
	defer release()
	_, relay, err := f.client(t, cred.Username, cred.Password)
	if err != nil {
		t.Fatal(err)
	}
	pubAddr := &net.UDPAddr{IP: public.AsSlice(), Port: f.media.addr().Port}
	if _, err := relay.WriteTo([]byte("via public"), pubAddr); err != nil {
		t.Fatalf("relay to the SFU's public address: %v", err)
	}
	if p := f.media.wait(3 * time.Second); string(p) != "via public" {
		t.Fatalf("the SFU got %q", p)
	}
	_ = relay.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 100)
	n, from, err := relay.ReadFrom(b)
	if err != nil || string(b[:n]) != "via public" || from.String() != pubAddr.String() {
		t.Fatalf("echo %q from %v (%v), want from the public %v", b[:n], from, err, pubAddr)
	}
	// Another port of the public address is still refused.
	before := f.met.Refusals(ReasonAdminPort)
	_, _ = relay.WriteTo([]byte("admin"), &net.UDPAddr{IP: public.AsSlice(), Port: f.admin.addr().Port})
	_, _ = relay.WriteTo([]byte("after"), pubAddr)
	if p := f.media.wait(3 * time.Second); string(p) != "after" {
		t.Fatalf("the SFU got %q", p)
	}
	if f.admin.wait(50*time.Millisecond) != nil || f.met.Refusals(ReasonAdminPort) == before {
		t.Fatal("the admin port was reachable through the public address")
	}
}

func TestListenBothTakesOnePortForUDPAndTCP(t *testing.T) {
	udp, tcp, err := listenBoth("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	defer tcp.Close()
	if u, c := udp.LocalAddr().(*net.UDPAddr).Port, tcp.Addr().(*net.TCPAddr).Port; u != c || u == 0 {
		t.Fatalf("UDP port %d, TCP port %d: want one port", u, c)
	}
	// A port given by the operator is never swapped for another: its TCP
	// side taken is an error naming it.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	if _, _, err := listenBoth(taken.Addr().String()); err == nil || !strings.Contains(err.Error(), "listen TCP "+taken.Addr().String()) {
		t.Fatalf("listenBoth on a port whose TCP side is taken: %v, want an error naming it", err)
	}
}
