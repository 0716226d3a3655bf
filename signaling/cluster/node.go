// Package cluster lets several medcall nodes share one set of consultations
// through Redis: each node registers with a heartbeat and its load, each
// consultation is placed on one node by an atomic claim with a lease that
// its node renews, and a join arriving at any other node is redirected
// there (signaling.Placer). Bindings and the audit log are kept in the same
// Redis (bindings.go, audit.go). Without --redis-url none of this runs.
package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/redis/go-redis/v9"
)

// Defaults for Config.
const (
	DefaultLease     = 10 * time.Second // a dead node's placements move within this (docs/cluster.md, "Leases")
	DefaultHeartbeat = time.Second      // a node record lives 3 heartbeats; leases are renewed each beat
	DefaultGrace     = 5 * time.Second  // a placement waits this long for its first join
)

// Config configures a Node.
type Config struct {
	Redis *redis.Client
	// ID names this node (a pseudonym, unique in the cluster); empty makes
	// a random one per process.
	ID string
	// URL is the signaling URL clients reach this node on, e.g.
	// wss://node-a.example.org/v1/signal; redirects name it.
	URL string
	// Zone, if set, is preferred when placing a consultation that joins here.
	Zone string
	// Lease is how long a placement holds without renewal; 0 means
	// DefaultLease. The node itself stops serving a consultation one
	// Heartbeat before its lease can have expired in Redis (Node.fence), so
	// it must be more than two Heartbeats.
	Lease time.Duration
	// Heartbeat is how often the node record and leases are renewed; the
	// record expires after three missed beats. 0 means DefaultHeartbeat.
	Heartbeat time.Duration
	// Hosted lists the consultations running on this node (sfu.SFU.Hosted).
	Hosted func() []string
	// Capacity is how many consultations this node hosts at once
	// (sfu.Config.MaxConsultations); 0 means no limit. Placement skips a
	// node that holds Capacity placements.
	Capacity int
	// Busy, if set, reports the node too loaded to start another
	// consultation (serve --admit-cpu-wait); placement skips it while it
	// says so (as of its last heartbeat).
	Busy func() bool
	// Participants counts the participants on this node, for the record.
	Participants func() int
	// Lost is called for a consultation running here whose placement is
	// held by another node (e.g. after a partition); it should end it here
	// so its participants reconnect and meet on that node.
	// It is also called when this node could not renew the lease of a
	// consultation running here in time (Node.fence), and for each one
	// still running when the node leaves, before its placement is released.
	Lost   func(cid string)
	Logger *slog.Logger
}

// Counters are what the node did since it started; cmd exports them as metrics.
type Counters struct {
	Placements, Redirects, LeasesLost, Reclaimed, Handovers atomic.Uint64
}

// Node is this process's membership of the cluster.
type Node struct {
	cfg      Config
	draining atomic.Bool
	mu       sync.Mutex
	// held is, per consultation placed here, when this node's lease on it
	// ends by the node's own clock: a renewal sent at t holds until
	// t + Lease - Heartbeat, before Redis (which starts the lease when the
	// renewal arrives, after t) can let another node take it. Guarded by mu.
	held map[string]time.Time
	// ended are the consultations this node ended (Node.lose) that Hosted
	// may still list while their participants leave: each is counted as a
	// lease lost once, and a renewal does not hold it again. Each maps to
	// when it was ended; a placement here (Node.placed) clears it, and
	// Node.fence once it is no longer listed. Guarded by mu.
	ended map[string]time.Time
	// Counters are exported as metrics.
	Counters Counters
}

// Record is what a node publishes about itself.
type Record struct {
	ID            string `json:"id"`
	URL           string `json:"url"`
	Zone          string `json:"zone,omitempty"`
	Draining      bool   `json:"draining,omitempty"`
	Consultations int    `json:"consultations"`
	Participants  int    `json:"participants"`
	// Capacity is Config.Capacity: 0, or the placements the node takes.
	Capacity int `json:"capacity,omitempty"`
	// Busy is Config.Busy at the heartbeat: no placements while true.
	Busy bool `json:"busy,omitempty"`
}

// New makes a node; Run registers it.
func New(cfg Config) (*Node, error) {
	if cfg.Redis == nil || cfg.URL == "" || cfg.Hosted == nil {
		return nil, errors.New("cluster: a node needs Redis, its URL and Hosted")
	}
	if cfg.ID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		cfg.ID = "n-" + hex.EncodeToString(b)
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = DefaultHeartbeat
	}
	if cfg.Lease <= 2*cfg.Heartbeat {
		return nil, fmt.Errorf("cluster: a lease (%v) must be longer than two heartbeats (%v)", cfg.Lease, cfg.Heartbeat)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Participants == nil {
		cfg.Participants = func() int { return 0 }
	}
	return &Node{cfg: cfg, held: map[string]time.Time{}, ended: map[string]time.Time{}}, nil
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Drain stops new placements on this node; consultations already here stay
// until they end (or the process stops and their leases expire).
func (n *Node) Drain(ctx context.Context) error {
	n.draining.Store(true)
	return n.beat(ctx)
}

// ErrHostSilent: the consultation's node holds its lease but stopped
// heartbeating; a join waits (the client retries) until the lease ends.
var ErrHostSilent = fmt.Errorf("cluster: the hosting node is silent (%w)", signaling.ErrPlacementWait)

// Place implements signaling.Placer: "" when cid runs (or is now placed)
// here, else the URL of the node hosting it. A consultation whose node
// holds its lease but stopped heartbeating is not moved until the lease is
// gone: the join is refused for now (the client retries). With Redis
// unreachable a consultation running here stays here while this node's
// lease on it lasts; others are refused.
func (n *Node) Place(ctx context.Context, cid string) (string, error) {
	lease := n.cfg.Lease.Milliseconds()
	sent := time.Now()
	res, err := placeScript.Run(ctx, n.cfg.Redis, []string{keyPlace + cid}, lease, cid, n.cfg.Zone, n.cfg.ID).StringSlice()
	if errors.Is(err, redis.Nil) {
		return "", errors.New("cluster: no live node can take a consultation")
	}
	if err == nil && len(res) == 3 && res[2] == "full" {
		// No placement, yet it may run here (Redis lost it; the next
		// heartbeat claims it again): its people are not refused.
		if n.runsHere(cid) {
			return "", nil
		}
		return "", fmt.Errorf("cluster: every live node is at its capacity or busy: %w", sfu.ErrServerFull)
	}
	if err != nil {
		if n.runsHere(cid) {
			return "", nil
		}
		return "", fmt.Errorf("cluster: place consultation: %w", err)
	}
	switch {
	case res[0] == n.cfg.ID:
		if res[2] == "1" {
			n.Counters.Placements.Add(1)
		}
		n.placed(cid, sent)
		return "", nil
	case res[2] == "1":
		n.Counters.Placements.Add(1)
	case res[2] == "2":
		return "", fmt.Errorf("%w: consultation %s is held by node %s, which stopped heartbeating; it moves when the lease ends (at most %v)", ErrHostSilent, cid, res[0], n.cfg.Lease)
	}
	var r Record
	if err := json.Unmarshal([]byte(res[1]), &r); err != nil || r.URL == "" {
		return "", fmt.Errorf("cluster: node %s has an unreadable record: %v", res[0], err)
	}
	n.Counters.Redirects.Add(1)
	return r.URL, nil
}

// runsHere says whether cid runs on this node under a lease it still holds:
// its joins are served here whatever Redis answers.
func (n *Node) runsHere(cid string) bool {
	return n.holds(cid, time.Now()) && slices.Contains(n.cfg.Hosted(), cid)
}

// Run keeps the node registered and its leases renewed until ctx ends,
// then removes its record and releases its placements (a handover: the
// next join of each consultation places it on another node). Cancel ctx
// after the consultations here were ended or drained.
func (n *Node) Run(ctx context.Context) {
	t := time.NewTicker(n.cfg.Heartbeat)
	defer t.Stop()
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go n.watch(wctx)
	for {
		bctx, cancel := context.WithTimeout(ctx, n.cfg.Heartbeat)
		if err := n.beat(bctx); err != nil && ctx.Err() == nil {
			n.cfg.Logger.Warn("cluster heartbeat failed; running consultations continue", "err", err)
		}
		cancel()
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			n.leave(dctx)
			cancel()
			return
		case <-t.C:
		}
	}
}

// leave removes the node record, ends the consultations still running here
// (a drain that timed out) and then releases every placement the node
// holds, so the next join of each consultation places it on another node:
// a placement is released only once its copy here has ended.
func (n *Node) leave(ctx context.Context) {
	_ = n.cfg.Redis.Del(ctx, keyNode+n.cfg.ID).Err()
	hosted := n.cfg.Hosted()
	if n.cfg.Lost != nil {
		for _, cid := range hosted {
			n.cfg.Lost(cid)
		}
	}
	placed, _ := n.cfg.Redis.SMembers(ctx, keyHosted+n.cfg.ID).Result()
	for _, cid := range union(placed, hosted) {
		_ = releaseScript.Run(ctx, n.cfg.Redis, []string{keyPlace + cid}, n.cfg.ID, cid).Err()
	}
}

// beat publishes the node record and renews, in one round trip, the lease
// of every consultation running here that this node still holds.
func (n *Node) beat(ctx context.Context) error {
	n.fence(time.Now())
	hosted := n.cfg.Hosted()
	sent := time.Now()
	here := make([]string, 0, len(hosted))
	for _, cid := range hosted {
		if n.holds(cid, sent) {
			here = append(here, cid)
		}
	}
	rec, _ := json.Marshal(Record{ID: n.cfg.ID, URL: n.cfg.URL, Zone: n.cfg.Zone, Draining: n.draining.Load(),
		Consultations: len(hosted), Participants: n.cfg.Participants(), Capacity: n.cfg.Capacity,
		Busy: n.cfg.Busy != nil && n.cfg.Busy()})
	args := []any{n.cfg.ID, n.cfg.Lease.Milliseconds(), DefaultGrace.Milliseconds(), rec, (3 * n.cfg.Heartbeat).Milliseconds()}
	for _, cid := range here {
		args = append(args, cid)
	}
	res, err := beatScript.Run(ctx, n.cfg.Redis, []string{keyNode + n.cfg.ID}, args...).StringSlice()
	if err != nil {
		return fmt.Errorf("cluster: heartbeat and lease renewal: %w", err)
	}
	for i := 0; i+1 < len(res); i += 2 {
		cid, code := res[i], res[i+1]
		switch code {
		case "1", "2":
			if slices.Contains(here, cid) {
				n.hold(cid, sent)
			}
			if code == "2" {
				n.Counters.Reclaimed.Add(1)
			}
		case "0":
			n.lose(cid, time.Time{}, "cluster: another node holds a consultation running here; ending it here")
		case "3":
			n.drop(cid)
		default:
			return fmt.Errorf("cluster: heartbeat: unexpected lease state %q for %s", code, cid)
		}
	}
	return nil
}

func redisSetGet(ttl time.Duration) redis.SetArgs { return redis.SetArgs{Get: true, TTL: ttl} }

func isNil(err error) bool { return errors.Is(err, redis.Nil) }

func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}
