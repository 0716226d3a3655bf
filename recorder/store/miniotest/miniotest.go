// Package miniotest runs a real MinIO server on loopback for tests.
//
// The binary is found through MEDCALL_MINIO_BIN, else "minio" in PATH, else
// $HOME/.cache/medcall/minio/minio (where deploy/minio.sh builds it). When
// none exists the test is skipped with the reason, unless CI is set, in
// which case it fails: CI must run every integration test (DESIGN §8).
package miniotest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long a server may take to report healthy.
const startTimeout = 60 * time.Second

// Server is one MinIO process serving a temporary data directory on a
// random loopback port. Stop and Restart let a test simulate an outage: the
// port, data and credentials survive a restart.
type Server struct {
	// Endpoint is host:port of the S3 API, e.g. 127.0.0.1:41234.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string
	// DataDir holds the server's data.
	DataDir string

	t       testing.TB
	bin     string
	volumes []string // the drives of an erasure-coded server, or every drive URL of a distributed one (distributed.go)
	env     []string // extra environment (distributed.go)
	probes  []string // health paths that must answer 200 before the server counts as up

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *syncBuffer
}

// Binary returns the path of the MinIO server binary, or skips t (fails it
// when CI is set) with how to get one.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("MEDCALL_MINIO_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("MEDCALL_MINIO_BIN=%s: %v; unset it or point it at a minio server binary", p, err)
		}
		return p
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "medcall", "minio", "minio")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	const why = "no MinIO server binary: set MEDCALL_MINIO_BIN, put minio in PATH, or run deploy/minio.sh"
	if os.Getenv("CI") != "" {
		t.Fatal(why + " (CI is set, so this integration test must not be skipped)")
	}
	t.Skip(why)
	return ""
}

// Start launches a MinIO server for the life of t and waits until it is
// healthy. It is stopped and its data removed when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return startWith(t, nil)
}

// startWith starts a server on volumes (nil: its own DataDir).
func startWith(t testing.TB, volumes []string) *Server {
	t.Helper()
	bin := Binary(t)
	var key [16]byte
	_, _ = rand.Read(key[:])
	s := &Server{
		AccessKey: "medcall-test",
		SecretKey: hex.EncodeToString(key[:]),
		DataDir:   t.TempDir(),
		t:         t,
		bin:       bin,
		volumes:   volumes,
	}
	var err error
	for range 3 { // a just-freed port can be taken by someone else; try another
		if s.Endpoint, err = freePort(); err != nil {
			break
		}
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start minio: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// URL returns a store URL for bucket on this server; extra is appended to
// the query (e.g. "&create=true"). Credentials go through the environment
// (see SetEnv), never the URL.
func (s *Server) URL(bucket, extra string) string {
	return "s3://" + bucket + "?endpoint=" + url.QueryEscape(s.Endpoint) + "&secure=false&region=us-east-1" + extra
}

// SetEnv sets MEDCALL_S3_ACCESS_KEY and MEDCALL_S3_SECRET_KEY to this
// server's credentials for the rest of t (so t cannot be parallel).
func (s *Server) SetEnv(t testing.TB) {
	t.Setenv("MEDCALL_S3_ACCESS_KEY", s.AccessKey)
	t.Setenv("MEDCALL_S3_SECRET_KEY", s.SecretKey)
}

// Stop kills the server, as a crash or outage would, and waits for it to
// exit. Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}

// Restart starts a stopped server again on the same port and data
// directory and waits until it is healthy.
func (s *Server) Restart() error {
	s.Stop()
	return s.start()
}

func (s *Server) start() error {
	if err := s.launch(); err != nil {
		return err
	}
	return s.await()
}

// launch starts the process without waiting for it to be healthy: the
// nodes of a distributed deployment only become healthy together.
func (s *Server) launch() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out = &syncBuffer{}
	vols := s.volumes
	if len(vols) == 0 {
		vols = []string{s.DataDir}
	}
	cmd := exec.Command(s.bin, append([]string{"server", "--quiet", "--address", s.Endpoint, "--console-address", "127.0.0.1:0"}, vols...)...)
	cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
		"MINIO_CI_CD=1",
	)
	cmd.Env = append(cmd.Env, s.env...)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	s.cmd, s.done = cmd, done
	return nil
}

// await waits until a launched server is healthy; one that is not is killed.
func (s *Server) await() error {
	s.mu.Lock()
	done := s.done
	s.mu.Unlock()
	probes := s.probes
	if len(probes) == 0 {
		probes = []string{"/minio/health/live", "/minio/health/ready"}
	}
	if err := waitHealthy(s.Endpoint, probes, done); err != nil {
		s.Stop()
		return fmt.Errorf("%w; server output:\n%s", err, s.out.String())
	}
	return nil
}

func waitHealthy(endpoint string, probes []string, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for _, probe := range probes {
		for {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+probe, nil)
			if resp, err := client.Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			select {
			case <-exited:
				return errors.New("minio exited before it became healthy")
			case <-ctx.Done():
				return fmt.Errorf("minio at %s not healthy (%s) within %s", endpoint, probe, startTimeout)
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	return nil
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port), nil
}

// syncBuffer collects server output for error messages.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.b.Len() > 64<<10 {
		return len(p), nil // keep the start, where startup errors are
	}
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
