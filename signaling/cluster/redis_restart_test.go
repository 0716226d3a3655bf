package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

const audioFile = "../../testdata/audio.ogg"

// TestRedisRestartMidRun: audio calls run on three nodes; Redis is killed
// (SIGKILL) and restarted on its append-only file. While it is down the
// running calls go on (each clinician keeps hearing its patient) and a new
// consultation is refused with unavailable; once it is back new joins
// succeed, and every consultation runs on exactly one node, the node its
// placement in Redis names.
func TestRedisRestartMidRun(t *testing.T) {
	c := newCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	type call struct {
		pid, cid string
		pat, doc *client.Client
	}
	var calls []call
	dial := func(entry *node, tok string) (*client.Client, error) {
		cl, err := client.Dial(ctx, client.Options{URL: entry.URL, Token: tok, AudioFile: audioFile})
		if err == nil {
			t.Cleanup(cl.Close)
		}
		return cl, err
	}
	for i := range 6 {
		k := call{pid: fmt.Sprintf("p-%d", i), cid: fmt.Sprintf("c-%d", i)}
		var err error
		if k.pat, err = dial(c.random(), c.keys0().Patient(k.pid, k.cid, false)); err != nil {
			t.Fatal(err)
		}
		if k.doc, err = dial(c.random(), c.keys0().Clinician("d-"+k.pid, k.pid, k.cid, false)); err != nil {
			t.Fatal(err)
		}
		calls = append(calls, k)
	}
	hears := func(when string) {
		t.Helper()
		seen := make([]uint64, len(calls)) // all at once: the calls run side by side
		for i, k := range calls {
			seen[i] = k.doc.Received(k.pid, "audio").Packets
		}
		for i, k := range calls {
			n := seen[i]
			if _, err := k.doc.WaitReceived(ctx, k.pid, "audio", func(s client.TrackStats) bool { return s.Packets >= n+25 }); err != nil {
				t.Fatalf("%s: %s's clinician stopped hearing the patient: %v", when, k.cid, err)
			}
		}
	}
	hears("before")

	c.redis.Kill()
	hears("with Redis down")
	var pe *client.ProtocolError
	if _, err := dial(c.random(), c.keys0().Patient("p-new", "c-new", false)); !errors.As(err, &pe) || pe.Code != signaling.CodeUnavailable {
		t.Fatalf("a new consultation with Redis down: %v, want %s", err, signaling.CodeUnavailable)
	}
	time.Sleep(3 * time.Second) // past a node record's life: every heartbeat failed
	c.redis.Restart()
	hears("after Redis came back")
	var late *client.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		if late, err = dial(c.random(), c.keys0().Patient("p-new", "c-new", false)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a new consultation after Redis came back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	doc, err := dial(c.random(), c.keys0().Clinician("d-new", "p-new", "c-new", false))
	if err != nil || doc.URL() != late.URL() {
		t.Fatalf("the new consultation's clinician: %v on %v, patient on %s", err, doc, late.URL())
	}
	time.Sleep(2 * time.Second) // a heartbeat re-takes every running placement
	where := map[string]string{}
	for _, n := range c.nodes {
		for _, cid := range n.SFU.Hosted() {
			if other, dup := where[cid]; dup {
				t.Errorf("%s runs on two nodes: %s and %s", cid, other, n.node.ID())
			}
			where[cid] = n.node.ID()
			if owner := c.rdb.Get(ctx, "medcall:place:"+cid).Val(); owner != n.node.ID() {
				t.Errorf("%s runs on %s but Redis places it on %q", cid, n.node.ID(), owner)
			}
		}
	}
	if len(where) != len(calls)+1 {
		t.Errorf("%d consultations running, want %d", len(where), len(calls)+1)
	}
}
