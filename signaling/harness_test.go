package signaling_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
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
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/token"
)

const (
	audioFile = "../testdata/audio.ogg"
	videoFile = "../testdata/video.ivf"
)

// env is a real server (SFU + signaling) on loopback with an EdDSA key and an
// HS256 key.
type env struct {
	t    testing.TB
	keys *token.KeySet
	sfu  *sfu.SFU
	sig  *signaling.Server
	http *httptest.Server
	url  string
	tap  *testTapFactory
}

func newEnv(t testing.TB, cfg sfu.Config) *env {
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
		log = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	cfg.ListenIP = net.IPv4(127, 0, 0, 1)
	cfg.Logger = log
	e := &env{t: t, keys: keys, tap: &testTapFactory{}}
	if cfg.Taps == nil {
		cfg.Taps = e.tap.open
	}
	if e.sfu, err = sfu.New(cfg); err != nil {
		t.Fatal(err)
	}
	e.sig = &signaling.Server{SFU: e.sfu, Verifier: &token.Verifier{Keys: keys.Public()}, Logger: log}
	mux := http.NewServeMux()
	mux.Handle("GET /v1/signal", e.sig)
	e.http = httptest.NewServer(mux)
	e.url = "ws" + strings.TrimPrefix(e.http.URL, "http") + "/v1/signal"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = e.sig.Shutdown(ctx)
		e.http.Close()
	})
	return e
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// claims builds join claims valid for an hour.
func claims(sub, role, cid, pid string, rec bool) token.Claims {
	now := time.Now()
	return token.Claims{Role: role, Consultation: cid, Patient: pid, Record: rec,
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: jwt.NewNumericDate(now)}}
}

func (e *env) mint(c token.Claims) string {
	e.t.Helper()
	s, err := e.keys.Mint("ed1", c)
	if err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (e *env) patient(pid, cid string) string {
	return e.mint(claims(pid, token.RolePatient, cid, pid, false))
}

func (e *env) clinician(sub, pid, cid string) string {
	return e.mint(claims(sub, token.RoleClinician, cid, pid, false))
}

// dial joins with tok and publishes the fixtures; it fails the test on error.
func (e *env) dial(ctx context.Context, tok string, prenegotiate bool) *client.Client {
	e.t.Helper()
	c, err := client.Dial(ctx, client.Options{URL: e.url, Token: tok, AudioFile: audioFile, VideoFile: videoFile, Prenegotiate: prenegotiate, Fingerprint: true})
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(c.Close)
	return c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func asProtocolError(err error, pe **client.ProtocolError) bool { return errors.As(err, pe) }
