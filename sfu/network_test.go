package sfu

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// TestParsePublicIP: a public address alone maps every local address of its
// family; PUBLIC/LOCAL maps one; anything else is refused with the form to use.
func TestParsePublicIP(t *testing.T) {
	for _, tc := range []struct {
		in            string
		public, local string // "" local: none; "" public: refused
	}{
		{"203.0.113.10", "203.0.113.10", ""},
		{"2001:db8::10", "2001:db8::10", ""},
		{"203.0.113.10/10.0.0.5", "203.0.113.10", "10.0.0.5"},
		{"2001:db8::10/fd00::5", "2001:db8::10", "fd00::5"},
		{"203.0.113.10/fd00::5", "", ""}, // families differ
		{"0.0.0.0", "", ""},
		{"medcall.example.org", "", ""},
		{"203.0.113.10/", "", ""},
		{"", "", ""},
	} {
		p, err := ParsePublicIP(tc.in)
		if tc.public == "" {
			if err == nil {
				t.Errorf("%q accepted as %v", tc.in, p)
			}
			continue
		}
		if err != nil || !p.Public.Equal(net.ParseIP(tc.public)) || (tc.local == "") != (p.Local == nil) || (tc.local != "" && !p.Local.Equal(net.ParseIP(tc.local))) {
			t.Errorf("%q: %v %v, want public %s local %q", tc.in, p, err, tc.public, tc.local)
		}
	}
}

// The own send path writes on a handle of the UDP port's socket that pion's
// UDP mux never sets a deadline on: to abort a write in flight when a
// candidate closes, the mux sets the write deadline of the handle it writes
// on to now (ice UDPMuxDefault.abortWrite), and writes of the own path
// through that handle then failed with "i/o timeout".
func TestOwnSendPathWritesPastPionsWriteDeadline(t *testing.T) {
	port := freeLoopbackUDPPort(t)
	s, err := New(Config{ListenIP: net.IPv4(127, 0, 0, 1), UDPPort: port, OwnSendPath: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	to := rx.LocalAddr().(*net.UDPAddr).AddrPort()

	if err := s.udpConn.SetWriteDeadline(time.Now()); err != nil { // as the mux's abort does
		t.Fatal(err)
	}
	if _, err := s.udpConn.WriteToUDPAddrPort([]byte("pion's"), to); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("pion's handle with its deadline passed wrote: %v", err)
	}
	if _, err := s.own.out.WriteToUDPAddrPort([]byte("own"), to); err != nil {
		t.Fatalf("the own send path's write failed under pion's deadline: %v", err)
	}
	buf := make([]byte, 16)
	_ = rx.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := rx.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "own" || int(from.Port()) != port {
		t.Fatalf("received %q from %v (%v), want \"own\" from the UDP port %d", buf[:n], from, err, port)
	}
}

// TestUDPCoalesceIsLogged: the start-up line says which coalescing wait
// the port's reader uses: the configured one on a socket bound to one
// address and read in batches (Linux on amd64 or arm64), else none; and
// there that the socket is outside Go's netpoller.
func TestUDPCoalesceIsLogged(t *testing.T) {
	port := freeLoopbackUDPPort(t)
	var logs bytes.Buffer
	s, err := New(Config{ListenIP: net.IPv4(127, 0, 0, 1), UDPPort: port, UDPCoalesce: 3 * time.Millisecond, OwnReceivePath: true,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	want := "udp_coalesce=3ms udp_socket=outside-netpoller"
	if !batched {
		want = "udp_coalesce=0s udp_socket=go"
	}
	if !strings.Contains(logs.String(), want) {
		t.Errorf("the start-up log says %q, want it to contain %q", logs.String(), want)
	}
}

// TestIPv6LoopbackIsWarned: a server listening on ::1 says at start that
// no media can flow there (pion's ICE gathers no candidate on ::1, so every
// join timed out with "publish connection not established"); one on
// 127.0.0.1 says nothing of it.
func TestIPv6LoopbackIsWarned(t *testing.T) {
	for _, tc := range []struct {
		ip   net.IP
		warn bool
	}{{net.IPv6loopback, true}, {net.IPv4(127, 0, 0, 1), false}} {
		var logs bytes.Buffer
		s, err := New(Config{ListenIP: tc.ip, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		if got := strings.Contains(logs.String(), "no media can flow on ::1"); got != tc.warn {
			t.Errorf("on %v the start-up log says %q; want the ::1 warning %v", tc.ip, logs.String(), tc.warn)
		}
	}
}

// freeLoopbackUDPPort is a UDP port on 127.0.0.1 that was free a moment ago:
// signaltest.FreeUDPPort, which this package's own tests cannot import
// (signaltest imports sfu).
func freeLoopbackUDPPort(t *testing.T) int {
	t.Helper()
	free, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer free.Close()
	return free.LocalAddr().(*net.UDPAddr).Port
}
