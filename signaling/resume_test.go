package signaling_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// TestResumeKeepsThePlace: the patient moves to a new signaling socket (as
// after a network change) and restarts ICE on both connections, twice;
// the clinician sees no left or joined, media flows both ways again on the
// same tracks, and the tap notes one ice_restart per publish restart.
func TestResumeKeepsThePlace(t *testing.T) {
	e := newEnv(t, sfu.Config{Metrics: &sfu.Metrics{}})
	ctx := ctxT(t, 60*time.Second)
	pat, doc := e.audioCall(ctx, "p1", "c1")
	if _, err := pat.WaitReceived(ctx, "d1", "audio", atLeast(10)); err != nil {
		t.Fatal(err)
	}
	for round := 1; round <= 2; round++ {
		if err := pat.Resume(ctx); err != nil {
			t.Fatalf("resume %d: %v", round, err)
		}
		for _, w := range []struct {
			c    *client.Client
			from string
		}{{doc, "p1"}, {pat, "d1"}} {
			before := w.c.Received(w.from, "audio").Packets
			if _, err := w.c.WaitReceived(ctx, w.from, "audio", atLeast(before+25)); err != nil {
				t.Fatalf("after resume %d, audio from %s stopped at %d packets: %v", round, w.from, before, err)
			}
		}
	}
	if restarts, resumes := pat.Restarts(); restarts != 2 || resumes != 2 {
		t.Errorf("patient restarts %d, resumes %d; want 2 and 2", restarts, resumes)
	}
	churn := func(m signaling.Message) bool {
		return m.Type == signaling.TypeParticipant && m.Participant != nil && m.Participant.ID == "p1" && m.Event != "media"
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if m, err := doc.WaitEvent(short, churn); err == nil {
		t.Errorf("the clinician saw the patient %s", m.Event)
	}
	if got := e.sfu.Stats().Participants; got != 2 {
		t.Errorf("%d participants, want 2", got)
	}
	taps := e.tap.get("c1")
	if len(taps) != 1 {
		t.Fatalf("%d taps (recording sessions), want 1", len(taps))
	}
	n := 0
	for _, ev := range taps[0].snapshotEvents() {
		if ev.Type == sfu.EventICERestart && ev.Participant == "p1" {
			n++
		}
		if ev.Type == sfu.EventLeft {
			t.Errorf("the tap saw %s leave", ev.Participant)
		}
	}
	if n != 2 {
		t.Errorf("the tap noted %d ice_restart events for p1, want 2", n)
	}
}

// TestResumeRefused: a resume secret that is wrong, or another
// participant's, is refused with resume_failed and takes nothing over.
func TestResumeRefused(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat, _ := e.audioCall(ctx, "p1", "c1")
	secret := pat.Joined().Resume
	if secret == "" {
		t.Fatal("joined carries no resume secret")
	}
	for _, tc := range []struct{ name, tok, secret string }{
		{"wrong secret", e.patient("p1", "c1"), "not-the-secret"},
		{"another participant's secret", e.clinician("d1", "p1", "c1"), secret},
	} {
		r := e.raw(ctx)
		b, _ := json.Marshal(signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: tc.tok, Resume: tc.secret})
		if err := r.conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		_, data, err := r.conn.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var m signaling.Message
		if err := json.Unmarshal(data, &m); err != nil || m.Type != signaling.TypeError || m.Code != signaling.CodeResumeFailed {
			t.Errorf("%s: got %s, want error %s", tc.name, data, signaling.CodeResumeFailed)
		}
	}
	if _, err := pat.Request(ctx, signaling.Message{Type: signaling.TypePing}); err != nil {
		t.Errorf("the patient's own socket after the refused resumes: %v", err)
	}
	if got := e.sfu.Stats().Participants; got != 2 {
		t.Errorf("%d participants after refused resumes, want 2", got)
	}
}

// TestResumeHandsOverICEServers: a resume mints fresh TURN credentials for
// the new network and keeps the old ones until the participant leaves;
// leaving then releases both, each once.
func TestResumeHandsOverICEServers(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	var minted, released atomic.Int32
	srv := &signaling.Server{SFU: e.sfu, Verifier: e.sig.Verifier, Logger: e.sig.Logger,
		ICEServers: func() ([]signaling.ICEServer, func()) {
			n := minted.Add(1)
			return []signaling.ICEServer{{URLs: []string{"turn:127.0.0.1:9?transport=udp"}, Username: fmt.Sprintf("u%d", n), Credential: "c"}},
				func() { released.Add(1) }
		}}
	hs := httptest.NewServer(srv)
	defer hs.Close()
	defer func() { _ = srv.Shutdown(context.Background()) }()
	ctx := ctxT(t, 30*time.Second)
	pat, err := client.Dial(ctx, client.Options{URL: "ws" + strings.TrimPrefix(hs.URL, "http"), Token: e.patient("p1", "c1"),
		AudioFile: audioFile, Trace: e.trace})
	if err != nil {
		t.Fatal(err)
	}
	defer pat.Close()
	if err := pat.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	if m, r := minted.Load(), released.Load(); m != 2 || r != 0 {
		t.Fatalf("after a resume: %d credentials minted, %d released; want 2 and 0", m, r)
	}
	if err := pat.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for released.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if r := released.Load(); r != 2 {
		t.Fatalf("after leaving: %d credentials released, want 2 (the first join's and the resume's)", r)
	}
}
