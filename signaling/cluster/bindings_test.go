package cluster_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/token"
)

// TestBindingRefusedAcrossNodes: c-1 is bound to p-1 by a join on node A; a
// valid token binding c-1 to p-2 is refused with binding_mismatch whichever
// node it enters, and the refusal is in the cluster's audit stream. After
// every node and Redis itself restart (append-only file), it is still
// refused and p-1's own people still get in.
func TestBindingRefusedAcrossNodes(t *testing.T) {
	c := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, b := c.nodes[0], c.nodes[1]
	pat, err := c.join(ctx, a, a.Patient("p-1", "c-1", true))
	if err != nil {
		t.Fatal(err)
	}
	other := b.Mint(claimsFor("d-9", token.RoleClinician, "c-1", "p-2", true))
	refused := func(when string, entry *node) {
		t.Helper()
		var pe *client.ProtocolError
		if _, err := c.join(ctx, entry, other); !errors.As(err, &pe) || pe.Code != signaling.CodeBindingMismatch {
			t.Fatalf("%s: c-1 for p-2 through %s: %v, want %s", when, entry.node.ID(), err, signaling.CodeBindingMismatch)
		}
	}
	refused("while c-1 runs", b)
	pat.Close()
	audited := func(want int) {
		t.Helper()
		entries, err := a.audit.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != want {
			t.Fatalf("%d audit entries, want %d", len(entries), want)
		}
		for _, e := range entries {
			var ev signaling.JoinAudit
			if err := json.Unmarshal(e.Event, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.Consultation != "c-1" || ev.Sub != "d-9" || ev.Reason != signaling.CodeBindingMismatch || ev.Outcome != "refused" || e.Node == "" {
				t.Errorf("audit entry %+v from %q", ev, e.Node)
			}
		}
	}
	audited(1)

	for _, n := range c.nodes {
		n.close()
	}
	c.redis.Restart()
	c.nodes = []*node{c.startNode(), c.startNode()}
	refused("after every node and Redis restarted", c.nodes[1])
	refused("after every node and Redis restarted", c.nodes[0])
	audited(3)
	doc, err := c.join(ctx, c.nodes[1], c.nodes[1].Clinician("d-1", "p-1", "c-1", true))
	if err != nil {
		t.Fatalf("p-1's clinician after the restart: %v", err)
	}
	doc.Close()
}
