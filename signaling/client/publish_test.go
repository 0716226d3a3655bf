package client_test

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/signaltest"
)

// TestPublishOfferWithoutAnswerIsSentAgain: an ICE restart's publish offer
// whose answer never comes in time (here the patient's client is made to
// read it only after its 3 s step gave up, as on a starved machine) leaves
// pion in have-local-offer, which it cannot roll back. The restart, which
// then resumes on a new socket, must still succeed, and the call carry
// audio both ways after it.
func TestPublishOfferWithoutAnswerIsSentAgain(t *testing.T) {
	e := signaltest.Start(t, sfu.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		withhold = make(chan struct{}) // closed: the next publish answer is held back
		release  = make(chan struct{})
		once     sync.Once
	)
	// Before the clients' Close (a cleanup), which waits for the held reader.
	defer close(release)
	trace := func(sent bool, data []byte) {
		select {
		case <-withhold:
		default:
			return
		}
		var m signaling.Message
		if sent || json.Unmarshal(data, &m) != nil || m.Type != signaling.TypeAnswer || m.PC != string(sfu.PCPublish) {
			return
		}
		held := false
		once.Do(func() { held = true })
		if held {
			<-release // this socket's reader waits: the answer is late
		}
	}
	dial := func(tok string, tr func(bool, []byte)) *client.Client {
		c, err := client.Dial(ctx, client.Options{URL: e.URL, Token: tok, AudioFile: "../../testdata/audio.ogg", Trace: tr})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	pat := dial(e.Patient("p1", "c1", false), trace)
	doc := dial(e.Clinician("d1", "p1", "c1", false), nil)
	heard := func(who *client.Client, from string, atLeast uint64) {
		t.Helper()
		if _, err := who.WaitReceived(ctx, from, "audio", func(s client.TrackStats) bool { return s.Packets >= atLeast }); err != nil {
			t.Fatalf("no audio from %s: %v", from, err)
		}
	}
	heard(doc, "p1", 10)
	heard(pat, "d1", 10)

	close(withhold)
	if err := pat.RestartICE(ctx); err != nil {
		t.Fatalf("the restart whose first answer came too late: %v", err)
	}
	if r, resumes := pat.Restarts(); r != 1 || resumes != 1 {
		t.Errorf("restarts %d, resumes %d; want 1 and 1 (the late answer is taken for a dead socket)", r, resumes)
	}
	heard(doc, "p1", doc.Received("p1", "audio").Packets+50)
	heard(pat, "d1", pat.Received("d1", "audio").Packets+50)
}
