package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/cluster"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// clusterConfig is the serve flags that join this node to a cluster
// (docs/cluster.md). Without --redis-url the node runs alone.
type clusterConfig struct {
	redisURL, nodeURL, nodeID, zone string
	drainTimeout                    time.Duration
}

func (c *clusterConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.redisURL, "redis-url", "", "join a cluster through this Redis (redis://host:6379/0; run it with appendonly yes, appendfsync always); empty runs alone")
	fs.StringVar(&c.nodeURL, "node-url", "", "signaling URL clients reach this node on (wss://node-a.example.org/v1/signal); default ws://--addr/v1/signal")
	fs.StringVar(&c.nodeID, "node-id", "", "this node's id in the cluster (a pseudonym); empty picks a random one per start")
	fs.StringVar(&c.zone, "zone", "", "this node's zone or region label; joins entering here prefer nodes of the same zone")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 30*time.Second, "in a cluster, on SIGTERM: stop new placements and let running consultations finish for up to this long, then hand them over")
}

// clusterRun is this node's membership while serving.
type clusterRun struct {
	cfg      *clusterConfig
	rdb      *redis.Client
	node     *cluster.Node
	bindings *cluster.Bindings
	audit    *cluster.Audit
	log      *slog.Logger
	stop     context.CancelFunc
	done     chan struct{}
	// busy, if set, is --admit-cpu-wait's verdict, published in the node
	// record so placement skips the node.
	busy func() bool
}

// openCluster connects to --redis-url; it returns nil when none is set.
func openCluster(ctx context.Context, c *clusterConfig, addr net.Addr, retention time.Duration, log *slog.Logger) (*clusterRun, error) {
	if c.redisURL == "" {
		return nil, nil
	}
	opts, err := redis.ParseURL(c.redisURL)
	if err != nil { // the parse error may quote the URL, password included
		return nil, errors.New("--redis-url is not a valid redis://[user:password@]host:port/db or rediss:// URL")
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("--redis-url %s: %w (is Redis running?)", opts.Addr, err)
	}
	if c.nodeURL == "" {
		host, port, _ := net.SplitHostPort(addr.String())
		if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
			rdb.Close()
			return nil, fmt.Errorf("--addr %s listens on every interface: set --node-url to the URL clients reach this node on", addr)
		}
		c.nodeURL = "ws://" + net.JoinHostPort(host, port) + "/v1/signal"
	}
	return &clusterRun{cfg: c, rdb: rdb, log: log, bindings: &cluster.Bindings{Redis: rdb, Retention: retention}}, nil
}

// start registers the node, makes sig place every join through it and
// chains each recording to the consultation's previous segment.
func (cr *clusterRun) start(s *sfu.SFU, sig *signaling.Server, rec *recorder.Recorder, reg *prometheus.Registry) error {
	n, err := cluster.New(cluster.Config{
		Redis: cr.rdb, ID: cr.cfg.nodeID, URL: cr.cfg.nodeURL, Zone: cr.cfg.zone,
		Hosted:       s.Hosted,
		Capacity:     s.MaxConsultations(),
		Busy:         cr.busy,
		Participants: func() int { return s.Stats().Participants },
		Lost:         func(cid string) { s.End(cid, signaling.ByeShutdown) },
		Logger:       cr.log,
	})
	if err != nil {
		return err
	}
	cr.node = n
	cr.audit = &cluster.Audit{Redis: cr.rdb, Node: n.ID()}
	sig.Placer = n
	rec.SetChain(n.Chain)
	fileAudit := sig.Hooks.Audit
	sig.Hooks.Audit = func(ev signaling.JoinAudit) {
		if fileAudit != nil {
			fileAudit(ev)
		}
		if err := cr.audit.Append(ev); err != nil {
			cr.log.Error("cluster audit stream write failed", "err", err)
		}
	}
	counterFunc(reg, "cluster_placements_total", "Consultations placed by joins entering this node (on any node).", nil, u64(&n.Counters.Placements))
	counterFunc(reg, "cluster_redirects_total", "Joins entering this node redirected to the node hosting their consultation.", nil, u64(&n.Counters.Redirects))
	counterFunc(reg, "cluster_leases_lost_total", "Consultations ended here because another node held their placement or this node could not renew their lease in time.", nil, u64(&n.Counters.LeasesLost))
	counterFunc(reg, "cluster_segment_handovers_total", "Recordings started here that continue a segment recorded on another node.", nil, u64(&n.Counters.Handovers))
	counterFunc(reg, "cluster_leases_reclaimed_total", "Placements of consultations running here re-taken after Redis lost them.", nil, u64(&n.Counters.Reclaimed))
	ctx, cancel := context.WithCancel(context.Background())
	cr.stop, cr.done = cancel, make(chan struct{})
	go func() { defer close(cr.done); n.Run(ctx) }()
	cr.log.Info("joined the cluster", "node", n.ID(), "url", cr.cfg.nodeURL, "zone", cr.cfg.zone)
	return nil
}

// drain stops new placements here and waits, up to --drain-timeout, for the
// consultations here to finish; then it leaves the cluster, releasing the
// placements of any still running (their participants reconnect and are
// placed on another node).
func (cr *clusterRun) drain(ctx context.Context, s *sfu.SFU) {
	if cr == nil || cr.node == nil {
		return
	}
	dctx, cancel := context.WithTimeout(ctx, cr.cfg.drainTimeout)
	defer cancel()
	if err := cr.node.Drain(dctx); err != nil {
		cr.log.Warn("cluster: could not mark the node draining", "err", err)
	}
	for s.Stats().Consultations > 0 && dctx.Err() == nil {
		select {
		case <-dctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	if n := s.Stats().Consultations; n > 0 {
		cr.log.Info("drain timeout: handing consultations over", "consultations", n)
	}
	cr.stop()
	<-cr.done
}

// close ends the Redis connection.
func (cr *clusterRun) close() {
	if cr != nil {
		cr.rdb.Close()
	}
}
