package cluster_test

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/cluster"
	"github.com/medcall/medcall/signaling/cluster/redistest"
	"github.com/redis/go-redis/v9"
)

// stallLink is a TCP relay to Redis that can hold every byte, both ways,
// for as long as a node is starved: to Redis the node's heartbeat simply
// stops arriving, as when a loaded machine does not schedule it.
type stallLink struct {
	ln      net.Listener
	stalled atomic.Bool
	mu      sync.Mutex
	conns   []net.Conn
}

func newStallLink(t *testing.T, redisAddr string) *stallLink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &stallLink{ln: ln}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", redisAddr)
			if err != nil {
				in.Close()
				continue
			}
			l.mu.Lock()
			l.conns = append(l.conns, in, out)
			l.mu.Unlock()
			go l.pipe(in, out)
			go l.pipe(out, in)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		l.mu.Lock()
		for _, c := range l.conns {
			c.Close()
		}
		l.mu.Unlock()
	})
	return l
}

func (l *stallLink) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for l.stalled.Load() {
			time.Sleep(5 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				dst.Close()
			}
			return
		}
	}
}

// starvedHost starts a cluster whose first node (the host) reaches Redis
// through a stallLink, joins a talking patient of c-1 there, then starts a
// second node and stalls the host's link.
func starvedHost(t *testing.T, ctx context.Context) (c *testCluster, host, other *node, link *stallLink, pat *client.Client) {
	t.Helper()
	c = newCluster(t, 0)
	link = newStallLink(t, c.redis.Addr)
	rdb := redis.NewClient(&redis.Options{Addr: link.ln.Addr().String()})
	t.Cleanup(func() { rdb.Close() })
	host = c.startNodeOn(rdb)
	c.nodes = append(c.nodes, host)
	pat, err := client.Dial(ctx, client.Options{URL: host.URL, Token: c.keys0().Patient("p-1", "c-1", false), AudioFile: audioFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pat.Close)
	other = c.startNode()
	c.nodes = append(c.nodes, other)
	link.stalled.Store(true)
	t.Cleanup(func() { link.stalled.Store(false) }) // before the nodes close: the host leaves quickly
	return c, host, other, link, pat
}

// TestStarvedHostKeepsItsConsultation: the node hosting a consultation
// stops heartbeating for longer than its node record lives (3 s) but less
// than its lease (8 s), as a node starved of CPU does. A participant
// joining through another node meanwhile is told to wait (unavailable),
// not placed on a second node; once the host beats again the retrying
// join is sent to it and hears the patient, and the patient was never
// moved.
func TestStarvedHostKeepsItsConsultation(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, host, other, link, pat := starvedHost(t, ctx)
	for c.rdb.Exists(ctx, "medcall:node:"+host.node.ID()).Val() == 1 {
		time.Sleep(50 * time.Millisecond)
	}
	doc, err := client.Dial(ctx, client.Options{URL: other.URL, Token: c.keys0().Clinician("d-1", "p-1", "c-1", false)})
	var pe *client.ProtocolError
	if err == nil {
		doc.Close()
		t.Fatalf("with its host's record expired but its lease alive, c-1's clinician was placed on %s (patient on %s): one consultation on two nodes", doc.URL(), pat.URL())
	}
	if !errors.As(err, &pe) || pe.Code != signaling.CodeUnavailable {
		t.Fatalf("a join while the host is starved: %v, want %s", err, signaling.CodeUnavailable)
	}
	link.stalled.Store(false)
	doc, _, err = client.DialRetry(ctx, client.Options{URL: other.URL, Token: c.keys0().Clinician("d-1", "p-1", "c-1", false)}, client.DefaultBackoff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(doc.Close)
	if doc.URL() != host.URL {
		t.Fatalf("c-1's clinician joined on %s, its patient is on %s", doc.URL(), host.URL)
	}
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 10 }); err != nil {
		t.Fatalf("the clinician never heard the patient: %v", err)
	}
	if n := host.node.Counters.LeasesLost.Load(); n != 0 || !slices.Contains(host.SFU.Hosted(), "c-1") {
		t.Errorf("the host lost %d leases and hosts %v; want c-1 kept", n, host.SFU.Hosted())
	}
}

// TestHostEndsItsCopyBeforeItsLeaseEnds: a host that cannot renew a
// consultation's lease (stalled past the lease) has ended its copy (bye
// shutdown, counted as a lease lost) by the time Redis lets another node
// take it; the participants then meet again on one node.
func TestHostEndsItsCopyBeforeItsLeaseEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, host, other, _, pat := starvedHost(t, ctx)
	for c.rdb.Exists(ctx, "medcall:place:c-1").Val() == 1 {
		time.Sleep(20 * time.Millisecond)
	}
	if slices.Contains(host.SFU.Hosted(), "c-1") {
		t.Fatal("c-1's lease is gone from Redis but its host still serves it: the next join would place it on a second node")
	}
	bye, err := pat.WaitEvent(ctx, func(m signaling.Message) bool { return m.Type == signaling.TypeBye })
	if err != nil || bye.Reason != signaling.ByeShutdown {
		t.Fatalf("the patient of the fenced copy got %+v, %v; want bye shutdown", bye, err)
	}
	if n := host.node.Counters.LeasesLost.Load(); n != 1 {
		t.Errorf("%d leases lost counted, want 1", n)
	}
	doc, _, err := client.DialRetry(ctx, client.Options{URL: other.URL, Token: c.keys0().Clinician("d-1", "p-1", "c-1", false)}, client.DefaultBackoff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(doc.Close)
	pat2, _, err := client.DialRetry(ctx, client.Options{URL: other.URL, Token: c.keys0().Patient("p-1", "c-1", false), AudioFile: audioFile}, client.DefaultBackoff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pat2.Close)
	if doc.URL() != pat2.URL() {
		t.Fatalf("after the hand-over: patient on %s, clinician on %s", pat2.URL(), doc.URL())
	}
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 10 }); err != nil {
		t.Fatalf("after the hand-over the clinician never heard the patient: %v", err)
	}
}

// TestLostConsultationEndedOnce: a consultation another node now holds is
// counted as one lease lost here, though its participants take a while to
// leave and Hosted lists it meanwhile; while it is listed without a lease
// it is ended again at every fence (a copy let in just before must end
// too), and once it is gone it is no longer ended nor remembered. Placed
// here again, even while the old copy is still listed, losing it again
// counts again.
func TestLostConsultationEndedOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
	t.Cleanup(func() { rdb.Close() })
	var listed atomic.Bool
	var ends atomic.Int32
	hosted := func() []string {
		if listed.Load() {
			return []string{"c-1"}
		}
		return nil
	}
	const beat = 50 * time.Millisecond
	n, err := cluster.New(cluster.Config{Redis: rdb, URL: "ws://127.0.0.1:1/v1/signal", Hosted: hosted,
		Heartbeat: beat, Lease: 10 * beat, Lost: func(string) { ends.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); n.Run(rctx) }()
	t.Cleanup(func() { stop(); <-done })
	for rdb.Exists(ctx, "medcall:node:"+n.ID()).Val() == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	takeAway := func(round uint64, leave bool) {
		t.Helper()
		if u, err := n.Place(ctx, "c-1"); err != nil || u != "" {
			t.Fatalf("round %d: placing c-1 here: %q, %v", round, u, err)
		}
		listed.Store(true)
		time.Sleep(4 * beat)
		if c := n.Counters.LeasesLost.Load(); c != round-1 {
			t.Fatalf("round %d: %d leases lost counted while c-1 was held here, want %d", round, c, round-1)
		}
		if err := rdb.Set(ctx, "medcall:place:c-1", "n-other", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		before := ends.Load()
		time.Sleep(20 * beat) // its people still leaving: many fences and heartbeats
		if c := n.Counters.LeasesLost.Load(); c != round {
			t.Fatalf("round %d: %d leases lost counted, want %d", round, c, round)
		}
		if e := ends.Load() - before; e < 10 {
			t.Fatalf("round %d: c-1, listed here without a lease for 20 heartbeats, was ended %d times, want one each fence", round, e)
		}
		if err := rdb.Del(ctx, "medcall:place:c-1").Err(); err != nil {
			t.Fatal(err)
		}
		if !leave {
			return
		}
		listed.Store(false) // its people left
		time.Sleep(2 * beat)
		if k := cluster.Ended(n); k != 0 {
			t.Fatalf("round %d: %d ended consultations remembered once none is listed", round, k)
		}
		e := ends.Load()
		time.Sleep(4 * beat)
		if e2 := ends.Load(); e2 != e {
			t.Fatalf("round %d: ended %d more times once it was gone", round, e2-e)
		}
	}
	takeAway(1, true)
	takeAway(2, false) // still listed when placed here again
	takeAway(3, true)
}
