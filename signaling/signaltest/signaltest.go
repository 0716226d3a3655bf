// Package signaltest runs a real medcall server (SFU + signaling) on loopback
// for tests in any package: real pion peers, real WebSockets, real tokens.
package signaltest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/token"
)

// Env is a running server with an EdDSA key "ed1" and an HS256 key "hs1".
type Env struct {
	T    testing.TB
	Keys *token.KeySet // with private halves, for minting
	SFU  *sfu.SFU
	Sig  *signaling.Server
	Mux  *http.ServeMux // add handlers before the first request
	HTTP *httptest.Server
	URL  string // ws://.../v1/signal
	// ServerChecked counts every message the server sent, each checked
	// against protocol.schema.json; a violation fails the test.
	ServerChecked *Violations
	// ClientChecked counts every frame the server read, its verdict held to
	// protocol.schema.json; a disagreement fails the test.
	ClientChecked *Violations
}

// Start runs a server with cfg (ListenIP defaults to 127.0.0.1; Logger is set
// here) and stops
// it when the test ends. Each opt may adjust the signaling server (limits,
// liveness) before it serves.
func Start(t testing.TB, cfg sfu.Config, opts ...func(*signaling.Server)) *Env {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	keys := &token.KeySet{Keys: []token.Key{
		{ID: "ed1", Alg: "EdDSA", Public: priv.Public().(ed25519.PublicKey), Private: priv},
		{ID: "hs1", Alg: "HS256", Secret: secret},
	}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if cfg.ListenIP == nil {
		cfg.ListenIP = net.IPv4(127, 0, 0, 1)
	}
	if cfg.Logger == nil {
		cfg.Logger = log
	}
	e := &Env{T: t, Keys: keys}
	if e.SFU, err = sfu.New(cfg); err != nil {
		t.Fatal(err)
	}
	e.Sig = &signaling.Server{SFU: e.SFU, Verifier: &token.Verifier{Keys: keys.Public()}, Logger: cfg.Logger}
	e.Sig.Hooks.Sent = e.checkServer(t)
	e.Sig.Hooks.Received = e.checkReceived(t)
	for _, o := range opts {
		o(e.Sig)
	}
	e.Mux = http.NewServeMux()
	e.Mux.Handle("GET /v1/signal", e.Sig)
	e.HTTP = httptest.NewServer(e.Mux)
	e.URL = "ws" + strings.TrimPrefix(e.HTTP.URL, "http") + "/v1/signal"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.Sig.Shutdown(ctx)
		e.HTTP.Close()
	})
	return e
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// Claims builds token claims valid for an hour; empty cid and pid make a replay token.
func Claims(sub, role, cid, pid string, rec bool) token.Claims {
	now := time.Now()
	return token.Claims{Role: role, Consultation: cid, Patient: pid, Record: rec,
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}}
}

// Mint signs c with the EdDSA key.
func (e *Env) Mint(c token.Claims) string {
	e.T.Helper()
	s, err := e.Keys.Mint("ed1", c)
	if err != nil {
		e.T.Fatal(err)
	}
	return s
}

// Patient mints a patient's join token for their own consultation cid.
func (e *Env) Patient(pid, cid string, rec bool) string {
	return e.Mint(Claims(pid, token.RolePatient, cid, pid, rec))
}

// Clinician mints a clinician's join token for patient pid's consultation cid.
func (e *Env) Clinician(sub, pid, cid string, rec bool) string {
	return e.Mint(Claims(sub, token.RoleClinician, cid, pid, rec))
}

// FreeUDPPort returns a loopback UDP port free a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
