package signaling_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
	"github.com/medcall/medcall/signaling/token"
)

const (
	audioFile = "../testdata/audio.ogg"
	videoFile = "../testdata/video.ivf"
)

// env is a real server (SFU + signaling) on loopback, with a test tap.
type env struct {
	*signaltest.Env
	t    testing.TB
	keys *token.KeySet
	sfu  *sfu.SFU
	sig  *signaling.Server
	url  string
	tap  *testTapFactory
	// trace checks every message a Go client of this env sends or receives
	// against protocol.schema.json; clientChecked counts them.
	trace         func(sent bool, data []byte)
	clientChecked *signaltest.Violations
}

func newEnv(t testing.TB, cfg sfu.Config, opts ...func(*signaling.Server)) *env {
	t.Helper()
	tap := &testTapFactory{}
	if cfg.Taps == nil {
		cfg.Taps = tap.open
	}
	se := signaltest.Start(t, cfg, opts...)
	e := &env{Env: se, t: t, keys: se.Keys, sfu: se.SFU, sig: se.Sig, url: se.URL, tap: tap}
	e.clientChecked = signaltest.NewViolations(t)
	e.trace = signaltest.Trace(t, e.clientChecked)
	return e
}

// claims builds join claims valid for an hour.
func claims(sub, role, cid, pid string, rec bool) token.Claims {
	return signaltest.Claims(sub, role, cid, pid, rec)
}

func (e *env) mint(c token.Claims) string { return e.Mint(c) }

func (e *env) patient(pid, cid string) string {
	return e.mint(claims(pid, token.RolePatient, cid, pid, false))
}

func (e *env) clinician(sub, pid, cid string) string {
	return e.mint(claims(sub, token.RoleClinician, cid, pid, false))
}

// dial joins with tok and publishes the fixtures; it fails the test on error.
func (e *env) dial(ctx context.Context, tok string, prenegotiate bool) *client.Client {
	e.t.Helper()
	c, err := client.Dial(ctx, client.Options{URL: e.url, Token: tok, AudioFile: audioFile, VideoFile: videoFile, Prenegotiate: prenegotiate, Fingerprint: true, Trace: e.trace})
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

// audioCall joins patient pid and clinician "d1" to consultation cid and
// waits until the clinician hears the patient.
func (e *env) audioCall(ctx context.Context, pid, cid string) (pat, doc *client.Client) {
	e.t.Helper()
	pat = e.dial(ctx, e.patient(pid, cid), false)
	doc = e.dial(ctx, e.clinician("d1", pid, cid), false)
	if _, err := doc.WaitReceived(ctx, pid, "audio", atLeast(10)); err != nil {
		e.t.Fatal(err)
	}
	return pat, doc
}
