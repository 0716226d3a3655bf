package signaling_test

import (
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/client"
)

func atLeast(n uint64) func(client.TrackStats) bool {
	return func(s client.TrackStats) bool { return s.Packets >= n }
}

func TestAudioFlowsBothWays(t *testing.T) {
	e := newEnv(t, sfu.Config{})
	ctx := ctxT(t, 30*time.Second)
	pat := e.dial(ctx, e.patient("p1", "c1"), false)
	doc := e.dial(ctx, e.clinician("d1", "p1", "c1"), false)
	if _, err := doc.WaitReceived(ctx, "p1", "audio", atLeast(100)); err != nil {
		t.Fatalf("clinician got no patient audio: %v", err)
	}
	if _, err := pat.WaitReceived(ctx, "d1", "audio", atLeast(100)); err != nil {
		t.Fatalf("patient got no clinician audio: %v", err)
	}
}
