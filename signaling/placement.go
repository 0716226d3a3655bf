package signaling

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/medcall/medcall/sfu"
)

// Placer decides which node of a cluster hosts a consultation. Place
// returns "" when this node hosts cid (it then holds, or has just taken,
// cid's placement lease), or the signaling URL of the node that does.
// signaling/cluster implements it on Redis.
type Placer interface {
	Place(ctx context.Context, cid string) (redirect string, err error)
}

// ErrPlacementWait, wrapped by a Placer's error, says the join must wait
// for the consultation's node (a retry will succeed): logged as a warning,
// not an error.
var ErrPlacementWait = errors.New("placement: wait for the consultation's node")

// placeTimeout bounds how long a join waits for its placement.
const placeTimeout = 3 * time.Second

// place asks the Placer where consultation cid lives. done is true when the
// join was answered here: redirected to the hosting node (closeSocket: the
// socket closes after the redirect) or refused because no placement could
// be made (the socket stays open for a retry).
func (s *session) place(id, cid string, refuse func(code, text string)) (done, closeSocket bool) {
	if s.srv.Placer == nil {
		return false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), placeTimeout)
	defer cancel()
	url, err := s.srv.Placer.Place(ctx, cid)
	if errors.Is(err, sfu.ErrServerFull) {
		s.srv.full.note(s.srv.log(), "every node is at capacity (--max-consultations, or short of CPU with --admit-cpu-wait)")
		refuse(CodeServerFull, "every node is at capacity; try again in a few minutes")
		return true, false
	}
	if err != nil {
		// A silent host's lease running out is expected after a node
		// loss (the client retries); anything else is an operator's matter.
		level := slog.LevelError
		if errors.Is(err, ErrPlacementWait) {
			level = slog.LevelWarn
		}
		s.srv.log().Log(context.Background(), level, "placement failed", "consultation", cid, "err", err)
		refuse(CodeUnavailable, "no node can take this consultation now; try again shortly")
		return true, false
	}
	if url == "" {
		return false, false
	}
	s.push(Message{Type: TypeRedirect, ID: id, URL: url}, true)
	return true, true
}

// fullLog logs server_full refusals at most once a minute, with how many
// there were since the last line: a flood of joins (valid tokens starting
// consultations) must not flood the log too. medcall_joins_total counts
// every one.
type fullLog struct {
	mu    sync.Mutex
	last  time.Time
	since int
}

func (f *fullLog) note(log *slog.Logger, why string) {
	f.mu.Lock()
	f.since++
	now := time.Now()
	if now.Sub(f.last) < time.Minute {
		f.mu.Unlock()
		return
	}
	n := f.since
	f.last, f.since = now, 0
	f.mu.Unlock()
	log.Warn("joins refused with server_full: "+why, "refused", n, "logged", "at most once a minute")
}
