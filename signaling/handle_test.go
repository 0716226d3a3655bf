package signaling_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/token"
)

// TestICEServersOnlyAfterJoinAndReleasedOnLeave: joined carries the
// participant's iceServers; a refused join mints nothing; leaving or a
// dropped socket releases the credential exactly once.
func TestICEServersOnlyAfterJoinAndReleasedOnLeave(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	var minted, released atomic.Int32
	srv := &signaling.Server{SFU: e.sfu, Verifier: e.sig.Verifier, Logger: e.sig.Logger,
		ICEServers: func() ([]signaling.ICEServer, func()) {
			n := minted.Add(1)
			return []signaling.ICEServer{{URLs: []string{"turn:127.0.0.1:3478?transport=udp"}, Username: "u" + string('0'+rune(n)), Credential: "c"}},
				func() { released.Add(1) }
		}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer func() { _ = srv.Shutdown(context.Background()) }()
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	ctx := ctxT(t, 30*time.Second)

	expired := claims("p1", token.RolePatient, "c1", "p1", false)
	expired.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
	if _, err := client.Dial(ctx, client.Options{URL: url, Token: e.mint(expired)}); err == nil {
		t.Fatal("expired token joined")
	}
	if _, err := client.Dial(ctx, client.Options{URL: url, Token: "forged.token.here"}); err == nil {
		t.Fatal("forged token joined")
	}
	if n := minted.Load(); n != 0 {
		t.Fatalf("%d credentials minted for refused joins", n)
	}
	pat, err := client.Dial(ctx, client.Options{URL: url, Token: e.patient("p1", "c1"), AudioFile: audioFile})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := client.Dial(ctx, client.Options{URL: url, Token: e.clinician("d1", "p1", "c1"), AudioFile: audioFile})
	if err != nil {
		t.Fatal(err)
	}
	if s := pat.Joined().ICEServers; len(s) != 1 || s[0].Username != "u1" || s[0].URLs[0] != "turn:127.0.0.1:3478?transport=udp" {
		t.Fatalf("patient's joined.iceServers = %+v", s)
	}
	if s := doc.Joined().ICEServers; len(s) != 1 || s[0].Username != "u2" {
		t.Fatalf("clinician's joined.iceServers = %+v", s)
	}
	if err := pat.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	doc.Close() // a dropped socket
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	pat.Close()
	time.Sleep(100 * time.Millisecond)
	if n := released.Load(); n != 2 {
		t.Fatalf("%d credentials released after a leave and a drop, want 2", n)
	}
}
