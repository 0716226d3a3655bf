package signaling_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
)

// TestRateLimitAnswersAndCloses floods a socket past the rate limit and past
// the strikes that close it: every message is answered, in order, with its
// own id (a pong, or rate_limited), the replies queued before the close all
// arrive, and only then does the socket close with status 1008.
func TestRateLimitAnswersAndCloses(t *testing.T) {
	e := newEnv(t, sfu.Config{}, func(s *signaling.Server) {
		s.Limits.RatePerSec, s.Limits.Burst = 0.1, 2 // no token comes back during the test
	})
	ctx := ctxT(t, 30*time.Second)
	r := e.raw(ctx)
	const n = 2 + 101 // the burst, then one strike more than the 100 tolerated
	for i := range n {
		b, _ := json.Marshal(signaling.Message{Type: signaling.TypePing, ID: "r" + strconv.Itoa(i)})
		if err := r.conn.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
	}
	limited := 0
	for i := range n {
		m, err := r.read(ctx)
		if err != nil {
			t.Fatalf("reply %d of %d lost before the close: %v", i, n, err)
		}
		if want := "r" + strconv.Itoa(i); m.ID != want {
			t.Fatalf("reply %d: %s %q for id %q, want id %q", i, m.Type, m.Code, m.ID, want)
		}
		switch {
		case m.Type == signaling.TypePong:
		case m.Type == signaling.TypeError && m.Code == signaling.CodeRateLimited:
			limited++
		default:
			t.Fatalf("reply %d: %s %q", i, m.Type, m.Code)
		}
	}
	if limited < 100 {
		t.Fatalf("%d of %d messages rate limited; the socket should close after 100 strikes", limited, n)
	}
	_, err := r.read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation {
		t.Fatalf("after the replies: %v, want a close with status 1008", err)
	}
}
