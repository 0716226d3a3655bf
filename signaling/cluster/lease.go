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

// hold records that a lease renewal of cid sent at sent succeeded. A
// consultation this node has ended (Node.lose) is not held again by a
// renewal that raced its ending; only a placement (Node.placed) is.
func (n *Node) hold(cid string, sent time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ended := n.ended[cid]; !ended {
		n.extendLocked(cid, sent)
	}
}

// placed records that this node placed cid here with a request sent at
// sent: cid is held, and a copy of it ended here before is forgotten.
func (n *Node) placed(cid string, sent time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.ended, cid)
	n.extendLocked(cid, sent)
}

func (n *Node) extendLocked(cid string, sent time.Time) {
	if until := sent.Add(n.cfg.Lease - n.cfg.Heartbeat); until.After(n.held[cid]) {
		n.held[cid] = until
	}
}

// holds reports whether this node's lease on cid lasts beyond now.
func (n *Node) holds(cid string, now time.Time) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return now.Before(n.held[cid])
}

// drop forgets cid's lease: Redis says this node does not hold it, and it
// does not run here.
func (n *Node) drop(cid string) {
	n.mu.Lock()
	delete(n.held, cid)
	n.mu.Unlock()
}

// lose ends cid here: another node holds its placement, or (at not zero)
// this node's lease on it had run out by at. Unless it is held again by
// now (placed here anew since the caller looked), it forgets the lease and
// calls Lost, every time: ending a copy is idempotent, and one started here
// again without a lease (a join let in just before) must end too. It
// counts and logs the loss once, though: the participants of a copy take a
// while to leave, and Hosted lists it meanwhile.
func (n *Node) lose(cid string, at time.Time, why string) {
	n.mu.Lock()
	if !at.IsZero() && at.Before(n.held[cid]) {
		n.mu.Unlock()
		return
	}
	delete(n.held, cid)
	_, again := n.ended[cid]
	if !again {
		n.ended[cid] = time.Now()
	}
	n.mu.Unlock()
	if !again {
		n.Counters.LeasesLost.Add(1)
		n.cfg.Logger.Warn(why, "consultation", cid)
	}
	if n.cfg.Lost != nil {
		n.cfg.Lost(cid)
	}
}

// fence ends every consultation running here whose lease this node can no
// longer be sure of at now (Node.lose: counted once as a lease lost). It
// forgets the consultations ended before now (so before it looked) that
// are no longer listed.
func (n *Node) fence(now time.Time) {
	hosted := n.cfg.Hosted()
	for _, cid := range hosted {
		if !n.holds(cid, now) {
			n.lose(cid, now, "cluster: could not renew the lease of a consultation running here in time; ending it here so it can move")
		}
	}
	n.mu.Lock()
	for cid, at := range n.ended {
		if at.Before(now) && !slices.Contains(hosted, cid) {
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
