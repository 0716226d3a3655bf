package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"
)

// Backoff is how DialRetry waits between attempts: Min doubling up to Max,
// each wait jittered by up to a half so many clients do not retry in step.
type Backoff struct{ Min, Max time.Duration }

// DefaultBackoff starts at 100 ms and waits at most 1 s: a lost node's
// consultations are placed anew once their leases end, within about 10 s
// (docs/cluster.md).
var DefaultBackoff = Backoff{Min: 100 * time.Millisecond, Max: time.Second}

// DialRetry dials until a join succeeds, ctx ends or the server refuses the
// join for good (a *ProtocolError other than unavailable or internal). After
// a node of a cluster is lost, dial the entry URL again (not the dead
// node's): the consultation is placed anew and the redirect names its new
// node. It returns the client and the number of attempts made.
func DialRetry(ctx context.Context, o Options, b Backoff) (*Client, int, error) {
	wait := b.Min
	for attempt := 1; ; attempt++ {
		c, err := Dial(ctx, o)
		if err == nil {
			return c, attempt, nil
		}
		var pe *ProtocolError
		if errors.As(err, &pe) && pe.Code != "unavailable" && pe.Code != "internal" {
			return nil, attempt, err
		}
		t := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, attempt, errors.Join(ctx.Err(), err)
		case <-t.C:
		}
		wait = min(2*wait, b.Max)
	}
}
