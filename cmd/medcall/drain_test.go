package main

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling/client"
)

// TestClusterDrainOnSIGTERM: a node of two hosting a call gets SIGTERM. While
// it drains, a new consultation entering through it is placed on the other
// node and the running call goes on; after --drain-timeout it hands the call
// over: both participants, redialling through the other node, are back in
// their call there, and the drained process exits cleanly.
func TestClusterDrainOnSIGTERM(t *testing.T) {
	r := startClusterRig(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	mint := func(role, sub, pid, cid string) client.Options {
		return client.Options{Token: mintCmd(t, "--data", r.data[0], "--role", role, "--sub", sub, "--pid", pid, "--cid", cid),
			AudioFile: "../../testdata/audio.ogg"}
	}
	dial := func(o client.Options, url string) *client.Client {
		o.URL = url
		c, _, err := client.DialRetry(ctx, o, client.DefaultBackoff)
		if err != nil {
			t.Fatalf("dial %s: %v", url, err)
		}
		t.Cleanup(c.Close)
		return c
	}
	patO, docO := mint("patient", "p-1", "p-1", "c-1"), mint("clinician", "d-1", "p-1", "c-1")
	pat := dial(patO, r.url(0))
	doc := dial(docO, r.url(0))
	host := 0
	if pat.URL() != r.url(0) {
		host = 1
	}
	other := 1 - host
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 10 }); err != nil {
		t.Fatal(err)
	}
	if err := r.nodes[host].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the draining mark is published at once
	late := dial(mint("patient", "p-2", "p-2", "c-2"), r.url(host))
	if late.URL() != r.url(other) {
		t.Errorf("a new consultation entering the draining node was placed on %s, want %s", late.URL(), r.url(other))
	}
	n := doc.Received("p-1", "audio").Packets
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= n+25 }); err != nil {
		t.Fatalf("the call stopped while its node drained: %v", err)
	}
	<-pat.Done() // handed over after --drain-timeout (2s)
	<-doc.Done()
	pat, doc = dial(patO, r.url(other)), dial(docO, r.url(other))
	if pat.URL() != r.url(other) || doc.URL() != r.url(other) {
		t.Fatalf("after the drain: patient on %s, clinician on %s, want %s", pat.URL(), doc.URL(), r.url(other))
	}
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 10 }); err != nil {
		t.Fatalf("not back in the call after the drain: %v", err)
	}
	if err := r.nodes[host].cmd.Wait(); err != nil {
		t.Errorf("the drained node exited with %v", err)
	}
}
