// Package coturntest runs a real coturn (Debian package coturn, program
// turnserver) for tests, configured as an operator would run it beside
// medcall: TURN REST credentials (use-auth-secret), relaying only to the
// addresses the test allows. Without turnserver the test is skipped with the
// reason, unless CI is set, where that is a failure.
package coturntest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config is one coturn instance. Zero ports pick free loopback ports (only
// meaningful with ListenIP on loopback).
type Config struct {
	ListenIP string // address coturn listens on
	RelayIP  string // address its relay sockets use; default ListenIP
	Port     int    // UDP and TCP
	TLSPort  int    // 0: no TLS
	Cert     string // PEM files, with TLSPort
	Key      string
	Secret   string   // static-auth-secret
	Peers    []string // the only peer IPs allowed (the SFU's media address)
	// Command starts the program, e.g. inside a network namespace; default
	// exec.CommandContext.
	Command func(ctx context.Context, name string, args ...string) *exec.Cmd
}

// Server is a running coturn.
type Server struct {
	Config
	Dir string
	out *syncBuffer
}

// Binary returns turnserver's path or skips (fails under CI).
func Binary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("turnserver")
	if err == nil {
		return p
	}
	why := "turnserver (coturn) is not installed; Debian: apt-get install -y coturn"
	if os.Getenv("CI") != "" {
		t.Fatalf("%s (CI is set, so this fails instead of skipping)", why)
	}
	t.Skip(why)
	return ""
}

// Start writes a configuration file into a temporary directory and runs
// turnserver with it until the test ends.
func Start(t testing.TB, c Config) *Server {
	t.Helper()
	bin := Binary(t)
	if c.RelayIP == "" {
		c.RelayIP = c.ListenIP
	}
	if c.Port == 0 {
		c.Port = freePort(t, c.ListenIP)
	}
	if c.Command == nil {
		c.Command = exec.CommandContext
	}
	s := &Server{Config: c, Dir: t.TempDir(), out: &syncBuffer{}}
	conf := filepath.Join(s.Dir, "turnserver.conf")
	if err := os.WriteFile(conf, []byte(s.config()), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := c.Command(ctx, bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start turnserver: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("turnserver output:\n%s", s.Output())
		}
	})
	// Ready when it reports its listeners.
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(s.Output(), "Total General servers") {
		select {
		case <-done:
			t.Fatalf("turnserver exited:\n%s", s.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("turnserver did not start:\n%s", s.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // listeners bind right after the banner
	return s
}

func (s *Server) config() string {
	var b strings.Builder
	w := func(f string, a ...any) { fmt.Fprintf(&b, f+"\n", a...) }
	w("listening-ip=%s", s.ListenIP)
	w("relay-ip=%s", s.RelayIP)
	w("listening-port=%d", s.Port)
	if s.TLSPort != 0 {
		w("tls-listening-port=%d", s.TLSPort)
		w("cert=%s", s.Cert)
		w("pkey=%s", s.Key)
	} else {
		w("no-tls")
	}
	w("no-dtls")
	w("min-port=49152")
	w("max-port=65535")
	w("realm=medcall")
	w("use-auth-secret")
	w("static-auth-secret=%s", s.Secret)
	w("fingerprint")
	w("no-cli")
	w("no-multicast-peers")
	w("no-tcp-relay")
	w("simple-log")
	w("verbose")                                       // logs each allocation, so a test can see the relay was used
	w("log-file=%s", filepath.Join(s.Dir, "turn.log")) // stdout is block-buffered in a pipe
	w("pidfile=%s", filepath.Join(s.Dir, "turnserver.pid"))
	w("userdb=%s", filepath.Join(s.Dir, "turndb"))
	// Not an open relay: every peer is denied except the SFU.
	w("denied-peer-ip=0.0.0.0-255.255.255.255")
	w("denied-peer-ip=::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")
	for _, p := range s.Peers {
		w("allowed-peer-ip=%s", p)
		if net.ParseIP(p).IsLoopback() {
			w("allow-loopback-peers")
		}
	}
	return b.String()
}

// Output is what turnserver has printed and logged.
func (s *Server) Output() string {
	out := s.out.String()
	logs, _ := filepath.Glob(filepath.Join(s.Dir, "turn*.log"))
	for _, f := range logs {
		b, _ := os.ReadFile(f)
		out += string(b)
	}
	return out
}

func freePort(t testing.TB, ip string) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := u.LocalAddr().(*net.UDPAddr).Port
		tl, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
		u.Close()
		if err == nil {
			tl.Close()
			return port
		}
	}
	t.Fatal("no free port for turnserver")
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
