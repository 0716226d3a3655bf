package cluster

import (
	"context"
	"slices"
	"time"
)

// A node serves a consultation only while it holds the consultation's
// lease by its own clock. Redis starts a lease when a renewal arrives; the
// node counts from when it sent the renewal (earlier) and gives up one
// Heartbeat before that, so it has ended its copy before Redis lets another
// node place the consultation: one consultation never runs on two nodes,
// however late the node's heartbeat runs (CPU starvation, a stopped
// process, a partition from Redis). docs/cluster.md, "Leases".

// hold records that a lease renewal of cid sent at sent succeeded.
func (n *Node) hold(cid string, sent time.Time) {
	until := sent.Add(n.cfg.Lease - n.cfg.Heartbeat)
	n.mu.Lock()
	if until.After(n.held[cid]) {
		n.held[cid] = until
	}
	delete(n.ended, cid) // placed here again
	n.mu.Unlock()
}

// holds reports whether this node's lease on cid lasts beyond now.
func (n *Node) holds(cid string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return now.Before(n.held[cid])
}

// drop forgets cid's lease (it ended here).
func (n *Node) drop(cid string) {
	n.mu.Lock()
	delete(n.held, cid)
	n.mu.Unlock()
}

// lose forgets cid's lease and ends cid here, once: its participants may
// take a while to leave, and until they have, Hosted still lists it, so a
// later fence or heartbeat must not count it or end it again.
func (n *Node) lose(cid, why string) {
	n.mu.Lock()
	delete(n.held, cid)
	_, again := n.ended[cid]
	if !again {
		n.ended[cid] = time.Now()
	}
	n.mu.Unlock()
	if again {
		return
	}
	n.Counters.LeasesLost.Add(1)
	n.cfg.Logger.Warn(why, "consultation", cid)
	if n.cfg.Lost != nil {
		n.cfg.Lost(cid)
	}
}

// fence ends every consultation running here whose lease this node can no
// longer be sure of at now; each counts as a lease lost. It forgets the
// consultations ended before it looked that are no longer listed.
func (n *Node) fence(now time.Time) {
	looked := time.Now()
	hosted := n.cfg.Hosted()
	for _, cid := range hosted {
		if !n.holds(cid, now) {
			n.lose(cid, "cluster: could not renew the lease of a consultation running here in time; ending it here so it can move")
		}
	}
	n.mu.Lock()
	for cid, at := range n.ended {
		if at.Before(looked) && !slices.Contains(hosted, cid) {
			delete(n.ended, cid)
		}
	}
	n.mu.Unlock()
}

// watch fences four times a heartbeat, apart from the heartbeat itself so a
// renewal stuck on Redis cannot delay it.
func (n *Node) watch(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			n.fence(now)
		}
	}
}
