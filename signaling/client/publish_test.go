package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
)

// TestPublishOfferWithoutAnswerIsSentAgain: a publish offer whose answer
// never came (here its request gave up at once, as one does when the
// server is too slow or the socket dies) leaves pion in have-local-offer,
// which it cannot roll back. The next ICE restart must still succeed, and
// the call carry audio both ways after it.
func TestPublishOfferWithoutAnswerIsSentAgain(t *testing.T) {
	e := signaltest.Start(t, sfu.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	dial := func(tok string) *client.Client {
		c, err := client.Dial(ctx, client.Options{URL: e.URL, Token: tok, AudioFile: "../../testdata/audio.ogg"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pat := dial(e.Patient("p1", "c1", false))
	doc := dial(e.Clinician("d1", "p1", "c1", false))
	heard := func(who *client.Client, from string, more uint64) {
		t.Helper()
		if _, err := who.WaitReceived(ctx, from, "audio", func(s client.TrackStats) bool { return s.Packets >= more }); err != nil {
			t.Fatalf("no audio from %s: %v", from, err)
		}
	}
	heard(doc, "p1", 10)
	heard(pat, "d1", 10)

	gone, stop := context.WithCancel(ctx)
	stop()
	if err := pat.RestartICE(gone); err == nil {
		t.Fatal("a restart whose context was already done succeeded")
	}
	if err := pat.RestartICE(ctx); err != nil {
		t.Fatalf("the restart after an unanswered offer: %v", err)
	}
	heard(doc, "p1", doc.Received("p1", "audio").Packets+50)
	heard(pat, "d1", pat.Received("d1", "audio").Packets+50)
	if r, _ := pat.Restarts(); r != 1 {
		t.Errorf("restarts %d, want 1", r)
	}
}
