package cluster_test

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medcall/medcall/sfu"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/cluster"
	"github.com/medcall/medcall/signaling/cluster/redistest"
	"github.com/medcall/medcall/signaling/signaltest"
	"github.com/medcall/medcall/signaling/token"
	"github.com/redis/go-redis/v9"
)

// lazyPlacer lets a signaling server be made before the node that places
// for it (the node needs the server's URL).
type lazyPlacer struct{ n atomic.Pointer[cluster.Node] }

func (l *lazyPlacer) Place(ctx context.Context, cid string) (string, error) {
	return l.n.Load().Place(ctx, cid)
}

// node is one medcall node of a test cluster: SFU + signaling on loopback,
// a cluster.Node on the shared Redis, bindings and audit in Redis.
type node struct {
	*signaltest.Env
	busy  *atomic.Bool // what the node reports busy (as serve --admit-cpu-wait: placement alone refuses)
	node  *cluster.Node
	audit *cluster.Audit
	stop  context.CancelFunc
	done  chan struct{}
}

// testCluster is n nodes sharing one redis-server and one token key set.
type testCluster struct {
	t     testing.TB
	redis *redistest.Server
	rdb   *redis.Client
	keys  *token.KeySet
	nodes []*node
	// capacity is each node started from now on's --max-consultations
	// (0: no limit).
	capacity int
}

func newCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	_, priv, err := ed25519.GenerateKey(crand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	keys := &token.KeySet{Keys: []token.Key{{ID: "ed1", Alg: "EdDSA", Public: priv.Public().(ed25519.PublicKey), Private: priv}}}
	c := &testCluster{t: t, redis: rs, rdb: rdb, keys: keys}
	for range n {
		c.nodes = append(c.nodes, c.startNode())
	}
	return c
}

// startNode starts one more node and waits until it is registered.
func (c *testCluster) startNode() *node {
	c.t.Helper()
	return c.startNodeOn(c.rdb)
}

// startNodeOn starts one more node whose membership (heartbeat, leases,
// placement) talks to Redis through rdb, and waits until it is registered.
func (c *testCluster) startNodeOn(rdb *redis.Client) *node {
	c.t.Helper()
	lp := &lazyPlacer{}
	audit := &cluster.Audit{Redis: c.rdb}
	busy := &atomic.Bool{}
	env := signaltest.Start(c.t, sfu.Config{Bindings: &cluster.Bindings{Redis: c.rdb}, MaxConsultations: c.capacity}, func(s *signaling.Server) {
		s.Placer = lp
		s.Verifier = &token.Verifier{Keys: c.keys.Public()}
		s.Hooks.Audit = func(ev signaling.JoinAudit) {
			if err := audit.Append(ev); err != nil {
				c.t.Errorf("audit: %v", err)
			}
		}
	})
	env.Keys = c.keys // Mint signs with the cluster's key
	n, err := cluster.New(cluster.Config{Redis: rdb, URL: env.URL, Hosted: env.SFU.Hosted, Capacity: c.capacity, Busy: busy.Load,
		Lost: func(cid string) { env.SFU.End(cid, signaling.ByeShutdown) }})
	if err != nil {
		c.t.Fatal(err)
	}
	audit.Node = n.ID()
	lp.n.Store(n)
	ctx, cancel := context.WithCancel(context.Background())
	nd := &node{Env: env, busy: busy, node: n, audit: audit, stop: cancel, done: make(chan struct{})}
	go func() { defer close(nd.done); n.Run(ctx) }()
	c.t.Cleanup(nd.close)
	deadline := time.Now().Add(5 * time.Second)
	for c.rdb.Exists(context.Background(), "medcall:node:"+n.ID()).Val() == 0 {
		if time.Now().After(deadline) {
			c.t.Fatal("node never registered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nd
}

// close stops the node's membership (its record goes) and its server.
func (n *node) close() {
	n.stop()
	<-n.done
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = n.Sig.Shutdown(ctx)
	n.HTTP.Close()
}

// byURL finds the node serving a signaling URL.
func (c *testCluster) byURL(u string) *node {
	for _, n := range c.nodes {
		if n.URL == u {
			return n
		}
	}
	return nil
}

// random picks an entry node.
func (c *testCluster) random() *node { return c.nodes[rand.IntN(len(c.nodes))] }

// join dials entry with tok as a listen-only client, following redirects.
func (c *testCluster) join(ctx context.Context, entry *node, tok string) (*client.Client, error) {
	cl, err := client.Dial(ctx, client.Options{URL: entry.URL, Token: tok})
	if err == nil {
		c.t.Cleanup(cl.Close)
	}
	return cl, err
}

type signalingPeer = signaling.Peer

// keys0 mints with the cluster's key through the first node.
func (c *testCluster) keys0() *signaltest.Env { return c.nodes[0].Env }

func claimsFor(sub, role, cid, pid string, rec bool) token.Claims {
	return signaltest.Claims(sub, role, cid, pid, rec)
}
