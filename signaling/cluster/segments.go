package cluster

import (
	"context"
	"strings"
	"time"
)

// segmentTTL is how long a consultation remembers its last recording.
const segmentTTL = 30 * 24 * time.Hour

// Chain records rid as consultation cid's newest recording segment and
// returns the one before it ("" for the first), for recorder.Options.Chain.
// A segment whose previous one was recorded on another node is a handover
// (after a node loss or drain) and is counted. With Redis unreachable the
// segment records unchained and the failure is logged.
func (n *Node) Chain(cid, rid string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	old, err := n.cfg.Redis.SetArgs(ctx, keySegment+cid, rid+" "+n.cfg.ID, redisSetGet(segmentTTL)).Result()
	if err != nil && !isNil(err) {
		n.cfg.Logger.Error("cluster: could not chain a recording segment", "consultation", cid, "recording", rid, "err", err)
		return ""
	}
	prev, node, _ := strings.Cut(old, " ")
	if prev != "" && node != n.cfg.ID {
		n.Counters.Handovers.Add(1)
	}
	return prev
}
