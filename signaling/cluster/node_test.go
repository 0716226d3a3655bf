package cluster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
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
