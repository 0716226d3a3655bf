package signaling_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/token"
)

func waitStats(t *testing.T, e *env, want sfu.Stats) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.sfu.Stats() != want {
		if time.Now().After(deadline) {
			t.Fatalf("sfu stats %+v, want %+v", e.sfu.Stats(), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func leftEvent(id string) func(signaling.Message) bool {
	return func(m signaling.Message) bool {
		return m.Type == signaling.TypeParticipant && m.Event == "left" && m.Participant != nil && m.Participant.ID == id
	}
}

func TestLeaveAndRejoinWithFreshToken(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat, doc := e.audioCall(ctx, "p1", "c1")
	waitStats(t, e, sfu.Stats{Consultations: 1, Participants: 2})
	if err := pat.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if _, err := doc.WaitEvent(ctx, leftEvent("p1")); err != nil {
		t.Fatalf("no left event: %v", err)
	}
	waitStats(t, e, sfu.Stats{Consultations: 1, Participants: 1})
	before := doc.Received("p1", "audio").Packets
	pat2 := e.dial(ctx, e.patient("p1", "c1"), false) // a fresh token
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(before+50)); err != nil {
		t.Fatalf("no audio after rejoin: %v", err)
	}
	if _, err := pat2.WaitReceived(ctx, "d1", "audio", atLeast(20)); err != nil {
		t.Fatalf("rejoined patient hears nothing: %v", err)
	}
}

func TestDroppedSocketCleansUp(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat, doc := e.audioCall(ctx, "p1", "c1")
	pat.Close() // no leave: the socket and the peer connections just go away
	if _, err := doc.WaitEvent(ctx, leftEvent("p1")); err != nil {
		t.Fatalf("no left event after a dropped socket: %v", err)
	}
	waitStats(t, e, sfu.Stats{Consultations: 1, Participants: 1})
	doc.Close()
	waitStats(t, e, sfu.Stats{})
	// The consultation's tap was closed when the last one left.
	taps := e.tap.get("c1")
	if len(taps) != 1 {
		t.Fatalf("%d taps for c1, want 1", len(taps))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		taps[0].mu.Lock()
		closed := taps[0].closed
		taps[0].mu.Unlock()
		if closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tap not closed after the consultation ended")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestReconnectReplacesStaleParticipant(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	old, doc := e.audioCall(ctx, "p1", "c1")
	// Same participant, new socket (the app reconnected before the server noticed the old one died).
	fresh := e.dial(ctx, e.patient("p1", "c1"), false)
	if _, err := old.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye && m.Reason == "replaced" }); err != nil {
		t.Fatalf("old socket got no bye: %v", err)
	}
	waitStats(t, e, sfu.Stats{Consultations: 1, Participants: 2})
	if _, err := fresh.WaitReceived(ctx, "d1", "audio", atLeast(20)); err != nil {
		t.Fatal(err)
	}
	// The clinician receives the new patient's audio, and nothing stale of the old one.
	before := doc.Received("p1", "audio").Packets
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(before+25)); err != nil {
		t.Fatalf("no audio from the reconnected patient: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for doc.Subscriptions() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("clinician holds %d subscriptions after the reconnect, want 1", doc.Subscriptions())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShutdownSaysBye(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat := e.dial(ctx, e.patient("p1", "c1"), false)
	if _, err := pat.Request(ctx, signaling.Message{Type: signaling.TypePing}); err != nil {
		t.Fatal(err)
	}
	if err := e.sig.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pat.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye && m.Reason == "shutdown" }); err != nil {
		t.Fatalf("no bye on shutdown: %v", err)
	}
	select {
	case <-pat.Done():
	case <-ctx.Done():
		t.Fatal("socket not closed after shutdown")
	}
}

// Twenty consultations at once, each upgraded: every video packet a client
// receives must be one its own consultation's patient sent (RTP timestamps
// start at random per stream, so streams are distinct), and the taps see
// only their own consultation.
func TestTwentyConsultationsStayApart(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 20
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 120*time.Second)
	type pair struct{ pat, doc *client.Client }
	pairs := make([]pair, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pid, cid := fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)
			path := signaling.PathPrenegotiated
			if i%2 == 1 {
				path = signaling.PathRenegotiate
			}
			pat, err := client.Dial(ctx, client.Options{URL: e.url, Token: e.patient(pid, cid), AudioFile: audioFile, VideoFile: videoFile, Prenegotiate: path == signaling.PathPrenegotiated, Fingerprint: true})
			if err != nil {
				errs <- err
				return
			}
			doc, err := client.Dial(ctx, client.Options{URL: e.url, Token: e.mint(claims("d"+pid, token.RoleClinician, cid, pid, false)), AudioFile: audioFile, VideoFile: videoFile, Prenegotiate: true, Fingerprint: true})
			if err != nil {
				errs <- err
				return
			}
			pairs[i] = pair{pat, doc}
			if err := pat.Upgrade(ctx, path); err != nil {
				errs <- err
				return
			}
			if _, err := doc.WaitReceived(ctx, pid, "video", atLeast(60)); err != nil {
				errs <- fmt.Errorf("%s: %w", cid, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, p := range pairs {
		if p.pat != nil {
			defer p.pat.Close()
			defer p.doc.Close()
		}
	}
	if t.Failed() {
		return
	}
	// Stop the senders first, so that nothing received or tapped below was
	// sent after the snapshot of what was sent.
	for _, p := range pairs {
		p.pat.StopSending()
	}
	time.Sleep(300 * time.Millisecond) // in-flight packets land
	sent := make([]map[uint32]struct{}, n)
	for i, p := range pairs {
		_, sent[i] = p.pat.Sent("video")
	}
	for i, p := range pairs {
		got := p.doc.ReceivedFingerprints(fmt.Sprintf("p%d", i), "video")
		if len(got) < 20 {
			t.Errorf("c%d: only %d video frames received", i, len(got))
		}
		for ts := range got {
			if _, ok := sent[i][ts]; !ok {
				t.Errorf("c%d: received a video frame its patient never sent", i)
				break
			}
			for j := range n {
				if _, ok := sent[j][ts]; ok && j != i {
					t.Errorf("c%d: received a frame of c%d's patient", i, j)
				}
			}
		}
		// The tap of consultation i saw only its own patient's frames too.
		taps := e.tap.get(fmt.Sprintf("c%d", i))
		if len(taps) != 1 {
			t.Fatalf("c%d: %d taps", i, len(taps))
		}
		if b := taps[0].b; b.Patient != fmt.Sprintf("p%d", i) {
			t.Errorf("c%d: tap bound to patient %s", i, b.Patient)
		}
		s := taps[0].sink(fmt.Sprintf("p%d/video", i))
		if s == nil {
			t.Errorf("c%d: tap saw no patient video", i)
			continue
		}
		s.mu.Lock()
		for ts := range s.prints {
			if _, ok := sent[i][ts]; !ok {
				t.Errorf("c%d: tap got a video frame its patient never sent", i)
				break
			}
		}
		s.mu.Unlock()
	}
}

// TestLeaveIsAlwaysAcked: the reply to leave (and the bye after it) are
// written before the server closes the socket, every time, even while the
// server is busy telling the leaver about the other one leaving.
func TestLeaveIsAlwaysAcked(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 90*time.Second)
	for i := range 12 {
		pid, cid := fmt.Sprintf("p%d", i), fmt.Sprintf("c%d", i)
		pat := e.dial(ctx, e.patient(pid, cid), false)
		doc := e.dial(ctx, e.clinician("d"+pid, pid, cid), false)
		if _, err := doc.WaitReceived(ctx, pid, "audio", atLeast(1)); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 2)
		go func() { errs <- pat.Leave(ctx) }()
		go func() { errs <- doc.Leave(ctx) }()
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: leave: %v", i, err)
			}
		}
	}
	waitStats(t, e, sfu.Stats{})
}
