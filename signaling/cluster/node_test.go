package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
)

// TestPlacementSpreadsAndMeets: 60 two-party consultations, each participant
// joining through a random entry node of three, concurrently. Both
// participants of every consultation end on the same node and in the same
// call (the second joiner's joined lists the first); each node hosts within
// ±20 % of an even share; a redirect was taken (and checked against the
// schema by the server's Sent hook).
func TestPlacementSpreadsAndMeets(t *testing.T) {
	const consultations = 60
	c := newCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 8)
		on   = map[string]string{} // cid -> node URL
	)
	for i := range consultations {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			cid, pid := fmt.Sprintf("c-%d", i), fmt.Sprintf("p-%d", i)
			pat, err := c.join(ctx, c.random(), c.keys0().Patient(pid, cid, false))
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s patient: %w", cid, err))
				mu.Unlock()
				return
			}
			doc, err := c.join(ctx, c.random(), c.keys0().Clinician("d-"+pid, pid, cid, false))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("%s clinician: %w", cid, err))
			case pat.URL() != doc.URL():
				errs = append(errs, fmt.Errorf("%s: patient on %s, clinician on %s", cid, pat.URL(), doc.URL()))
			case !slices.ContainsFunc(doc.Joined().Participants, func(p signalingPeer) bool { return p.ID == pid }):
				errs = append(errs, fmt.Errorf("%s: the clinician's joined lists %+v, not the patient", cid, doc.Joined().Participants))
			}
			on[cid] = pat.URL()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	even := consultations / len(c.nodes)
	var redirects uint64
	for _, n := range c.nodes {
		hosted := n.SFU.Hosted()
		for _, cid := range hosted {
			if on[cid] != n.URL {
				t.Errorf("%s runs on %s but its participants joined on %s", cid, n.URL, on[cid])
			}
		}
		if len(hosted) < even*8/10 || len(hosted) > even*12/10 {
			t.Errorf("node %s hosts %d consultations, want %d ± 20%%", n.node.ID(), len(hosted), even)
		}
		redirects += n.node.Counters.Redirects.Load()
		t.Logf("node %s: %d consultations, %d placements, %d redirects", n.node.ID(), len(hosted),
			n.node.Counters.Placements.Load(), n.node.Counters.Redirects.Load())
	}
	if redirects == 0 {
		t.Error("no join was redirected: entry nodes never differed from hosts")
	}
}

// placeFirst joins a patient with tok through the first node, on two
// nodes: the client, the node it was placed on, and the other node.
func (c *testCluster) placeFirst(ctx context.Context, tok string) (*client.Client, *node, *node) {
	c.t.Helper()
	p, err := c.join(ctx, c.nodes[0], tok)
	if err != nil {
		c.t.Fatal(err)
	}
	host, other := c.byURL(p.URL()), c.nodes[0]
	if host == other {
		other = c.nodes[1]
	}
	return p, host, other
}

// serverFull says whether err is a join refused with server_full.
func serverFull(err error) bool {
	var pe *client.ProtocolError
	return errors.As(err, &pe) && pe.Code == signaling.CodeServerFull
}

// TestPlacementSkipsFullNodes: two nodes with room for one consultation
// each (--max-consultations 1). A new consultation entering through the
// full node is placed on the other; a third is refused with server_full on
// any entry node, and nothing of it is left placed; a participant of a
// running consultation is admitted through either node while both are
// full; once a consultation ends its node takes the refused one.
func TestPlacementSkipsFullNodes(t *testing.T) {
	c := newCluster(t, 0)
	c.capacity = 1
	c.nodes = append(c.nodes, c.startNode(), c.startNode())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k := c.keys0()
	p1, full, other := c.placeFirst(ctx, k.Patient("p-1", "c-1", false))
	p2, err := c.join(ctx, full, k.Patient("p-2", "c-2", false))
	if err != nil {
		t.Fatalf("second consultation through the full node: %v", err)
	}
	if p2.URL() != other.URL {
		t.Fatalf("second consultation placed on %s, want the node with room %s", p2.URL(), other.URL)
	}
	for _, entry := range c.nodes {
		_, err := c.join(ctx, entry, k.Patient("p-3", "c-3", false))
		if !serverFull(err) {
			t.Fatalf("third consultation through %s: %v, want %s", entry.URL, err, signaling.CodeServerFull)
		}
	}
	if n := c.rdb.Exists(ctx, "medcall:place:c-3").Val(); n != 0 {
		t.Error("the refused consultation was left placed")
	}
	for _, entry := range c.nodes {
		sub := "d-" + entry.node.ID()
		d, err := c.join(ctx, entry, k.Clinician(sub, "p-1", "c-1", false))
		if err != nil {
			t.Fatalf("a clinician of the running c-1 through %s while both nodes are full: %v", entry.URL, err)
		}
		if d.URL() != full.URL {
			t.Errorf("c-1's clinician joined on %s, want %s", d.URL(), full.URL)
		}
		d.Close()
	}
	p1.Close()
	// c-1's placement is forgotten by a heartbeat of its node once it ended
	// there: until then its node still counts it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		p3, err := c.join(ctx, c.random(), k.Patient("p-3", "c-3", false))
		if err == nil {
			if p3.URL() != full.URL {
				t.Errorf("c-3 placed on %s, want the node c-1 left, %s", p3.URL(), full.URL)
			}
			break
		}
		if !serverFull(err) || time.Now().After(deadline) {
			t.Fatalf("c-3 after c-1 ended: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPlacementSkipsBusyNodes: a node starved of CPU (serve
// --admit-cpu-wait) takes no new consultation once its heartbeat says so,
// whichever node a join enters through, while its running consultation
// still admits its clinician; with every node busy a new consultation is
// refused with server_full; once the node recovers it takes them again.
func TestPlacementSkipsBusyNodes(t *testing.T) {
	c := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	k := c.keys0()
	_, busy, other := c.placeFirst(ctx, k.Patient("p-1", "c-1", false))
	// setBusy sets what n reports and waits for a heartbeat to publish it.
	setBusy := func(n *node, b bool) {
		t.Helper()
		n.busy.Store(b)
		want := `"busy":true`
		for {
			rec := c.rdb.Get(ctx, "medcall:node:"+n.node.ID()).Val()
			if strings.Contains(rec, want) == b {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("node record %s never said busy=%v", rec, b)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	setBusy(busy, true)
	for i, entry := range []*node{busy, other, busy} {
		cid := fmt.Sprintf("c-b%d", i)
		p, err := c.join(ctx, entry, k.Patient("p-"+cid, cid, false))
		if err != nil {
			t.Fatalf("%s through %s: %v", cid, entry.URL, err)
		}
		if p.URL() != other.URL {
			t.Errorf("%s placed on %s while it is busy, want %s", cid, p.URL(), other.URL)
		}
	}
	if _, err := c.join(ctx, other, k.Clinician("d-1", "p-1", "c-1", false)); err != nil {
		t.Fatalf("c-1's clinician while its node is busy: %v", err)
	}
	setBusy(other, true)
	_, err := c.join(ctx, c.random(), k.Patient("p-x", "c-x", false))
	if !serverFull(err) {
		t.Fatalf("a new consultation with every node busy: %v, want %s", err, signaling.CodeServerFull)
	}
	setBusy(busy, false)
	setBusy(other, false)
	if _, err := c.join(ctx, c.random(), k.Patient("p-x", "c-x", false)); err != nil {
		t.Fatalf("a new consultation once the nodes recovered: %v", err)
	}
}

// TestLeaseLostEndsLocalCopy: when Redis places a consultation running on
// node A on another node (as after a partition healed), A's next heartbeat
// counts a lost lease and ends its copy: the participant is told bye and
// the consultation is gone from A, so its people reconnect to one node.
func TestLeaseLostEndsLocalCopy(t *testing.T) {
	c := newCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pat, err := c.join(ctx, c.nodes[0], c.keys0().Patient("p-1", "c-1", false))
	if err != nil {
		t.Fatal(err)
	}
	host, other := c.byURL(pat.URL()), c.nodes[0]
	if host == other {
		other = c.nodes[1]
	}
	if err := c.rdb.Set(ctx, "medcall:place:c-1", other.node.ID(), time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	bye, err := pat.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye })
	if err != nil || bye.Reason != signaling.ByeShutdown {
		t.Fatalf("the participant of the lost copy got %+v, %v; want bye shutdown", bye, err)
	}
	if h := host.SFU.Hosted(); len(h) != 0 {
		t.Errorf("node %s still hosts %v after losing the lease", host.node.ID(), h)
	}
	if n := host.node.Counters.LeasesLost.Load(); n != 1 {
		t.Errorf("%d leases lost counted, want 1", n)
	}
}
