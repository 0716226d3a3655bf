// Package redistest runs a real redis-server for tests: on a free loopback
// port, in a temporary directory, with the append-only file on so a
// restart keeps what was acknowledged.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process.
type Server struct {
	Addr string // 127.0.0.1:port
	dir  string
	cmd  *exec.Cmd
	t    testing.TB
}

// Start runs redis-server, or skips the test when it is not installed
// (under CI=true a missing redis-server fails the test instead).
func Start(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (deploy/test.sh installs the redis-server package)")
		}
		t.Skip("redis-server not installed: apt-get install redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Addr: addr, dir: t.TempDir(), t: t}
	s.start()
	t.Cleanup(s.Kill)
	return s
}

// URL is the --redis-url for this server.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

func (s *Server) start() {
	s.t.Helper()
	_, port, _ := net.SplitHostPort(s.Addr)
	s.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--dir", s.dir, "--appendonly", "yes", "--appendfsync", "always",
		"--save", "", "--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
	if err := s.cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("redis-server on %s not answering: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill stops the server at once (SIGKILL); what was acknowledged is in the
// append-only file.
func (s *Server) Kill() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

// Restart kills the server and starts it again on the same port and files.
func (s *Server) Restart() {
	s.t.Helper()
	s.Kill()
	s.start()
}

// String names the server for logs.
func (s *Server) String() string { return fmt.Sprintf("redis %s (%s)", s.Addr, filepath.Base(s.dir)) }
