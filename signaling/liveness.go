package signaling

import (
	"context"
	"errors"
	"time"
)

// keepalive pings the client with WebSocket ping frames (RFC 6455 §5.5.2),
// which browsers and every WebSocket library answer by themselves, and
// cancels the session when a ping goes unanswered: a socket silent for
// Limits.Liveness is dead, half-open or stuck, and its participant is
// removed (the others get participant left, a recording notes the leave)
// rather than left listed until TCP gives up minutes later.
//
// A ping goes out every Liveness/2 and may take Liveness/2 to be answered,
// so a socket is removed at most Liveness after it last answered.
func (s *session) keepalive(ctx context.Context) {
	half := s.lim.Liveness / 2
	t := time.NewTicker(half)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, half)
		err := s.conn.Ping(pctx)
		silent := errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		if err == nil {
			continue
		}
		// Any other error is a socket already closing for its own reason.
		if silent {
			s.srv.log().Info("signaling socket did not answer a ping; removing its participant",
				"silent_for", s.lim.Liveness.String(), "participant", s.participantID())
			s.cancel()
		}
		return
	}
}

func (s *session) participantID() string {
	if p := s.participant(); p != nil {
		return p.ID()
	}
	return ""
}
