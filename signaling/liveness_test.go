package signaling_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// testLiveness is the ping deadline the liveness tests run with.
const testLiveness = 2 * time.Second

func withLiveness(d time.Duration) func(*signaling.Server) {
	return func(s *signaling.Server) { s.Limits.Liveness = d }
}

// tapLeft reports whether the consultation's tap (the recorder's seat) was
// told that id left.
func (e *env) tapLeft(cid, id string) bool {
	for _, tp := range e.tap.get(cid) {
		tp.mu.Lock()
		for _, ev := range tp.events {
			if ev.Type == sfu.EventLeft && ev.Participant == id {
				tp.mu.Unlock()
				return true
			}
		}
		tp.mu.Unlock()
	}
	return false
}

// removedWithin waits until other is told that id (of consultation c1) left,
// which must be no later than deadline after from (plus a second for a
// loaded machine), and checks the recording noted it and only other is left.
func (e *env) removedWithin(ctx context.Context, other *client.Client, id string, from time.Time, deadline time.Duration, what string) {
	t := e.t
	t.Helper()
	if _, err := other.WaitEvent(ctx, leftEvent(id)); err != nil {
		t.Fatalf("%s: participant %s was never removed: %v", what, id, err)
	}
	took := time.Since(from)
	t.Logf("%s: participant removed after %v (deadline %v)", what, took.Round(10*time.Millisecond), deadline)
	if took > deadline+time.Second {
		t.Errorf("%s: removed after %v, past the %v deadline", what, took, deadline)
	}
	// The recording's seat is told right after the other participants
	// (Consultation.remove), so it may lag the socket by a moment.
	noted := e.tapLeft("c1", id)
	for end := time.Now().Add(2 * time.Second); !noted && time.Now().Before(end); noted = e.tapLeft("c1", id) {
		time.Sleep(10 * time.Millisecond)
	}
	if !noted {
		t.Errorf("%s: the recording was not told %s left (waited 2 s after the other participant was)", what, id)
	}
	if st := e.sfu.Stats(); st.Participants != 1 {
		t.Errorf("%s: %d participants listed, want 1", what, st.Participants)
	}
}

// TestIdleSocketRemoved: a participant whose socket joined and then went
// silent (it answers no ping) is removed within the liveness deadline; the
// other participant gets participant left and the recording notes it, while
// a client that answers pings stays however long it is quiet.
func TestIdleSocketRemoved(t *testing.T) {
	e := newEnv(t, sfu.Config{}, withLiveness(testLiveness))
	ctx := ctxT(t, 30*time.Second)
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), false)
	r := e.raw(ctx)
	if m := r.request(ctx, signaling.Message{Type: signaling.TypeJoin, ID: "j", Token: e.patient("p1", "c1")}); m.Type != signaling.TypeJoined {
		t.Fatalf("join: %s %s", m.Code, m.Message)
	}
	// r reads no more, so answers no ping.
	e.removedWithin(ctx, doc, "p1", time.Now(), testLiveness, "silent socket")
	// The clinician's client answers pings: still there after several deadlines.
	time.Sleep(3 * testLiveness)
	select {
	case <-doc.Done():
		t.Fatal("a client that answers pings was disconnected")
	default:
	}
	if _, err := doc.Request(ctx, signaling.Message{Type: signaling.TypePing}); err != nil {
		t.Fatalf("responsive client: %v", err)
	}
	if st := e.sfu.Stats(); st.Participants != 1 {
		t.Errorf("%d participants listed, want 1", st.Participants)
	}
}

// nsCall joins clinician d1 here and patient p1 in the namespace to
// consultation c1 and waits until d1 hears p1.
func (e *env) nsCall(ctx context.Context, n *netns) *client.Client {
	e.t.Helper()
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), false)
	n.startClient(ctx, n.serve(e), e.patient("p1", "c1"))
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(25)); err != nil {
		e.t.Fatalf("no audio from the client in the namespace: %v", err)
	}
	return doc
}

// TestHalfOpenSocketRemoved: a participant in a network namespace whose
// packets start being dropped, or whose link goes down (its TCP connection is
// half-open: nothing says it closed), is removed within the liveness
// deadline, and the other participant gets participant left.
func TestHalfOpenSocketRemoved(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  func(*netns)
	}{
		{"packets dropped", func(n *netns) { n.drop(false) }},
		{"link down", (*netns).linkDown},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNetns(t)
			e := newEnv(t, sfu.Config{ListenIP: net.ParseIP(n.hostIP)}, withLiveness(testLiveness))
			ctx := ctxT(t, 60*time.Second)
			doc := e.nsCall(ctx, n)
			tc.cut(n)
			e.removedWithin(ctx, doc, "p1", time.Now(), testLiveness, "half-open socket, "+tc.name)
		})
	}
}

// TestICEFailureRemoved: a participant whose media transport dies (its
// namespace drops UDP) while its socket stays open is removed once its
// connection has failed and the grace period has passed: it gets bye
// connection_failed on the socket that still works, the other participant
// gets participant left, the recording notes it.
func TestICEFailureRemoved(t *testing.T) {
	n := newNetns(t)
	cfg := sfu.Config{ListenIP: net.ParseIP(n.hostIP), ICEDisconnectedTimeout: time.Second, ICEFailedTimeout: time.Second, ICEFailedGrace: time.Second}
	e := newEnv(t, cfg)
	ctx := ctxT(t, 60*time.Second)
	doc := e.nsCall(ctx, n)
	n.drop(true)
	dropped := time.Now()
	if _, err := doc.WaitEvent(ctx, leftEvent("p1")); err != nil {
		t.Fatalf("the participant with failed ICE was never removed: %v", err)
	}
	took := time.Since(dropped)
	limit := cfg.ICEDisconnectedTimeout + cfg.ICEFailedTimeout + cfg.ICEFailedGrace
	t.Logf("participant removed %v after its UDP was dropped (disconnected + failed + grace = %v)", took.Round(10*time.Millisecond), limit)
	if took < cfg.ICEFailedGrace {
		t.Errorf("removed after %v, before the %v grace period", took, cfg.ICEFailedGrace)
	}
	if took > limit+3*time.Second {
		t.Errorf("removed after %v, long past %v", took, limit)
	}
	if line := n.clientLine(ctx); line != "bye connection_failed" {
		t.Errorf("the client in the namespace printed %q, want bye connection_failed", line)
	}
	if !e.tapLeft("c1", "p1") {
		t.Error("the recording was not told the participant left")
	}
}
