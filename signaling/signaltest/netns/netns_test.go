package netns_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/signaltest/netns"
)

func TestNetnsChild(t *testing.T) {
	netns.Child(t, map[string]func([]string) error{
		"echo": echo,
		"dial": func(args []string) error { // dial ADDR: print the source address the far end saw
			c, err := net.DialTimeout(args[0], args[1], 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Write([]byte("hi\n")); err != nil {
				return err
			}
			b := make([]byte, 128)
			n, err := c.Read(b)
			if err != nil {
				return err
			}
			fmt.Println("SAW", string(b[:n]))
			return nil
		},
	})
}

// echoPeer answers each TCP connection and UDP datagram on port 7000
// inside ns with the source address it came from.
func echoPeer(t *testing.T, ns *netns.NS) {
	t.Helper()
	cmd := ns.Func(context.Background(), "echo")
	cmd.Stdout = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
}

func echo([]string) error {
	ln, err := net.Listen("tcp", ":7000")
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", ":7000")
	if err != nil {
		return err
	}
	go func() {
		b := make([]byte, 64)
		for {
			_, a, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(a.(*net.UDPAddr).IP.String()), a)
		}
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		_, _ = c.Read(make([]byte, 16))
		_, _ = c.Write([]byte(c.RemoteAddr().(*net.TCPAddr).IP.String()))
		c.Close()
	}
}

// TestTopology builds a client behind a masquerading router and a server
// behind a 1:1 NAT, and checks what each side sees: the server sees the
// router's public address, the client reaches the server by its public
// address, and a UDP-dropping firewall stops UDP but not TCP.
func TestTopology(t *testing.T) {
	w := netns.NewWorld(t, "i09a-self-")
	cli, home, srv := w.Client, w.Home, w.Server
	echoPeer(t, srv)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, netw := range []string{"tcp", "udp"} {
		out, err := cli.Func(ctx, "dial", netw, netns.ServerPublicIP+":7000").Output()
		if err != nil {
			t.Fatalf("%s from the client to the server's public address: %v", netw, err)
		}
		if got := saw(string(out)); got != netns.HomePublicIP {
			t.Errorf("%s: the server saw the client as %q, want the home router's public 172.30.0.2", netw, got)
		}
	}
	// The server's private address is not reachable from outside.
	if err := cli.Func(ctx, "dial", "tcp", netns.ServerPrivateIP+":7000").Run(); err == nil {
		t.Error("the server's private address is reachable from the client; the NAT is not in the way")
	}

	home.DropForwardedUDP()
	if err := cli.Func(ctx, "dial", "udp", netns.ServerPublicIP+":7000").Run(); err == nil {
		t.Error("UDP passed a firewall that drops all UDP")
	}
	if err := cli.Func(ctx, "dial", "tcp", netns.ServerPublicIP+":7000").Run(); err != nil {
		t.Errorf("TCP blocked by a firewall that only drops UDP: %v", err)
	}
}

// saw picks the address a "dial" child printed out of its test output.
func saw(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if a, ok := strings.CutPrefix(l, "SAW "); ok {
			return a
		}
	}
	return ""
}
