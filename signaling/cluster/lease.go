package cluster

import (
	"context"
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
	n.mu.Unlock()
}

// holds reports whether this node's lease on cid lasts beyond now.
func (n *Node) holds(cid string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return now.Before(n.held[cid])
}

// drop forgets cid's lease (it ended here, or another node holds it).
func (n *Node) drop(cid string) {
	n.mu.Lock()
	delete(n.held, cid)
	n.mu.Unlock()
}

// fence ends every consultation running here whose lease this node can no
// longer be sure of at now; each counts as a lease lost.
func (n *Node) fence(now time.Time) {
	n.fencing.Lock()
	defer n.fencing.Unlock()
	for _, cid := range n.cfg.Hosted() {
		if n.holds(cid, now) {
			continue
		}
		n.drop(cid)
		n.Counters.LeasesLost.Add(1)
		n.cfg.Logger.Warn("cluster: could not renew the lease of a consultation running here in time; ending it here so it can move", "consultation", cid)
		if n.cfg.Lost != nil {
			n.cfg.Lost(cid)
		}
	}
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
