package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/signaling/token"
)

// ServerConfig says which server to drive: a child process of the medcall
// binary (InProcess) or a running one (URL and Admin).
type ServerConfig struct {
	// InProcess starts `BinPath serve` on loopback ports with a fresh data
	// directory and stops it with SIGTERM at the end. It is a child process,
	// not goroutines in the bench, so the server's CPU and memory figures
	// are its own.
	InProcess bool     `json:"inprocess"`
	BinPath   string   `json:"server_bin,omitempty"`
	ExtraArgs []string `json:"server_args,omitempty"`

	URL   string `json:"url,omitempty"`   // ws://host:port/v1/signal
	Admin string `json:"admin,omitempty"` // http://host:port (the admin listener)

	Data         string `json:"data,omitempty"`       // server data dir: dev token key, local store, manifest key
	TokenKeys    string `json:"token_keys,omitempty"` // key set with private keys, instead of Data's dev key
	StoreURL     string `json:"store,omitempty"`      // where recordings land; default file://Data/objects
	ManifestKeys string `json:"manifest_keys,omitempty"`
}

func (s *ServerConfig) validate() error {
	if s.InProcess {
		if s.URL != "" || s.Admin != "" {
			return errors.New("bench: --inprocess starts its own server; drop --url and --admin")
		}
		return nil
	}
	if s.URL == "" || s.Admin == "" {
		return errors.New("bench: give --url and --admin of a running server, or --inprocess")
	}
	if s.Data == "" && s.TokenKeys == "" {
		return errors.New("bench: minting tokens needs --data (the server's dev key) or --token-keys")
	}
	return nil
}

// server is the server under test, as the bench reaches it.
type server struct {
	url, admin string
	entries    *entries // url split into a cluster's entry nodes
	keys       *token.KeySet
	kid        string
	store      store.Store      // nil: recordings are not checked
	mkeys      *manifest.KeySet // public manifest keys
	storeErr   error            // why recordings cannot be checked
	cmd        *exec.Cmd        // the child, with InProcess
	exited     chan struct{}    // closed when the child has exited
	logPath    string           // the child's stderr
	cleanup    func()
}

var servingLine = regexp.MustCompile(`serving on http://([0-9.:\[\]a-f]+) .* admin on http://([0-9.:\[\]a-f]+)`)

// startServer starts (InProcess) or reaches the server and loads what the
// bench needs to mint tokens and check recordings.
func startServer(ctx context.Context, c ServerConfig, record bool) (*server, error) {
	s := &server{url: c.URL, admin: strings.TrimSuffix(c.Admin, "/"), cleanup: func() {}}
	if c.InProcess {
		if err := s.startChild(ctx, &c); err != nil {
			return nil, err
		}
	}
	s.entries = newEntries(s.url)
	var err error
	if c.TokenKeys != "" {
		s.keys, err = token.Load(c.TokenKeys)
	} else {
		s.keys, _, err = token.LoadOrCreateDev(filepath.Join(c.Data, "keys", "token-dev.json"))
	}
	if err != nil {
		s.stop()
		return nil, fmt.Errorf("bench: token keys: %w", err)
	}
	s.kid = s.keys.Keys[0].ID
	if record {
		s.store, s.mkeys, s.storeErr = openVerifier(ctx, c)
	}
	return s, nil
}

func openVerifier(ctx context.Context, c ServerConfig) (store.Store, *manifest.KeySet, error) {
	loc := c.StoreURL
	if loc == "" {
		if c.Data == "" {
			return nil, nil, errors.New("no --store or --data: recordings cannot be checked")
		}
		abs, err := filepath.Abs(filepath.Join(c.Data, "objects"))
		if err != nil {
			return nil, nil, err
		}
		loc = "file://" + abs
	}
	st, err := store.Open(ctx, loc)
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", loc, err)
	}
	kf := c.ManifestKeys
	if kf == "" {
		kf = filepath.Join(c.Data, "keys", "manifest-dev.json")
	}
	ks, err := manifest.LoadKeySet(kf)
	if err != nil {
		return nil, nil, fmt.Errorf("manifest keys: %w", err)
	}
	return st, ks.Public(), nil
}

// startChild runs `bin serve` on loopback and waits for its serving line.
func (s *server) startChild(ctx context.Context, c *ServerConfig) error {
	bin := c.BinPath
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return fmt.Errorf("bench: finding the medcall binary: %w", err)
		}
	}
	dir, err := os.MkdirTemp("", "medcall-bench-")
	if err != nil {
		return err
	}
	s.cleanup = func() { _ = os.RemoveAll(dir) }
	c.Data = filepath.Join(dir, "data")
	s.logPath = filepath.Join(dir, "server.log")
	logf, err := os.Create(s.logPath)
	if err != nil {
		return err
	}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
		"--data", c.Data, "--log-level", "warn"}, c.ExtraArgs...)
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stderr = logf
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("bench: starting %s: %w", bin, err)
	}
	s.exited = make(chan struct{})
	lines := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				lines <- m
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	go func() {
		_ = s.cmd.Wait()
		logf.Close()
		close(s.exited)
	}()
	select {
	case m := <-lines:
		s.url, s.admin = "ws://"+m[1]+"/v1/signal", "http://"+m[2]
		return nil
	case <-s.exited:
		return fmt.Errorf("bench: the server exited before serving: %s", s.logTail())
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
	s.stop()
	return fmt.Errorf("bench: the server did not start within 30 s: %s", s.logTail())
}

// logTail is the end of the child's log, for error messages.
func (s *server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// stop ends a child server with SIGTERM (a graceful shutdown: recordings are
// drained) and kills it if it has not exited within the grace period.
func (s *server) stop() {
	defer s.cleanup()
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// mint makes a join token for one participant.
func (s *server) mint(sub, role, cid, pid string, rec bool, ttl time.Duration) (string, error) {
	now := time.Now()
	return s.keys.Mint(s.kid, token.Claims{
		Role: role, Consultation: cid, Patient: pid, Record: rec,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject: sub, ID: uuid.NewString(),
			IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	})
}

// profile fetches a CPU profile of the server over the next seconds into
// file. The server must expose net/http/pprof on its admin listener
// (`medcall serve --pprof`).
func (s *server) profile(ctx context.Context, seconds int, file string) error {
	url := fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", s.admin, seconds)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("cpu profile: %s has no /debug/pprof/profile: start the server with --pprof", s.admin)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("cpu profile: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile: %w", err)
	}
	return f.Close()
}
