package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/signaling/client"
	"github.com/medcall/medcall/signaling/cluster/redistest"
)

// clusterRig is three `medcall serve` processes on loopback sharing one
// redis-server, one token key, one manifest key and one object store.
type clusterRig struct {
	t     *testing.T
	bin   string
	redis *redistest.Server
	store string // shared file store directory
	data  []string
	nodes []*serveProcess
	extra []string // more serve flags for every node
}

// startClusterRig starts n nodes; node 0's development token and manifest
// keys sign for all of them.
func startClusterRig(t *testing.T, n int, extra ...string) *clusterRig {
	t.Helper()
	r := &clusterRig{t: t, bin: buildMedcall(t), redis: redistest.Start(t), store: filepath.Join(t.TempDir(), "objects"), extra: extra}
	for i := range n {
		r.data = append(r.data, filepath.Join(t.TempDir(), "data"+strconv.Itoa(i)))
		r.nodes = append(r.nodes, r.start(i))
	}
	return r
}

// start runs node i on its data directory (again, after a kill).
func (r *clusterRig) start(i int) *serveProcess {
	r.t.Helper()
	args := []string{"--redis-url", r.redis.URL(), "--store", "file://" + r.store, "--node-id", "node" + strconv.Itoa(i), "--drain-timeout", "2s"}
	if i > 0 {
		args = append(args, "--token-keys", devKeyPath(r.data[0]), "--manifest-keys", filepath.Join(r.data[0], "keys", "manifest-dev.json"))
	}
	return startServeProcess(r.t, r.bin, r.data[i], append(args, r.extra...)...)
}

func (r *clusterRig) url(i int) string { return "ws://" + r.nodes[i].addr + "/v1/signal" }

// recordings lists the stored WebMs that have a manifest.
func (r *clusterRig) recordings() []string {
	var webms []string
	_ = filepath.Walk(r.store, func(p string, _ os.FileInfo, err error) error {
		if w, ok := strings.CutSuffix(p, ".manifest.json"); ok && err == nil {
			webms = append(webms, w+".webm")
		}
		return nil
	})
	return webms
}

// pair is one recorded consultation's two participants.
type pair struct {
	cid, pid string
	pat, doc *client.Client
	patO     client.Options
	docO     client.Options
	patHz    int // the tone the patient sends (giveTones)
	docHz    int
}

func killCount() int {
	if v, err := strconv.Atoi(os.Getenv("MEDCALL_CLUSTER_KILL_N")); err == nil && v > 0 {
		return v
	}
	return 4
}

// TestClusterNodeKilled: recorded consultations, upgraded to video, are
// joined through random entry nodes of three; the node hosting the most is
// killed with SIGKILL. Every one of its participants, redialling through a
// surviving entry node with backoff, is back in its call on another node
// (hears its partner again, both on one node), hears no one from another
// consultation, and every recording segment — the dead node's recovered
// when it restarts, and the next segment on the new node — is stored and
// verifies. Replay, on every node, lists each consultation once with its
// segments in order and plays them as one: each participant's own tone
// (every participant sends a tone of their own) is heard in every segment
// of their stream, for as long as the consultation lasted, and nobody
// else's anywhere; every node refuses each person every other
// consultation's segments as if missing (checkClusterReplay).
// MEDCALL_CLUSTER_KILL_N sets the number of consultations (4 in CI;
// deploy/cluster-kill.sh runs 20).
func TestClusterNodeKilled(t *testing.T) {
	n := killCount()
	r := startClusterRig(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	pairs := recordedPairs(t, r, n)
	joinPairs(ctx, t, r, pairs, false)
	hosted := map[string]int{}
	for _, p := range pairs {
		hosted[p.pat.URL()]++
	}
	victim := 0
	for i := range r.nodes {
		if hosted[r.url(i)] > hosted[r.url(victim)] {
			victim = i
		}
	}
	var moved []*pair
	for _, p := range pairs {
		if p.pat.URL() == r.url(victim) {
			moved = append(moved, p)
		}
	}
	time.Sleep(2 * time.Second) // some media in the recordings and spools
	killed := time.Now()
	if err := r.nodes[victim].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = r.nodes[victim].cmd.Wait()
	var survivors []string
	for i := range r.nodes {
		if i != victim {
			survivors = append(survivors, r.url(i))
		}
	}
	var (
		mu    sync.Mutex
		back  []time.Duration
		wg    sync.WaitGroup
		fails []string
	)
	redial := func(old *client.Client, o client.Options, partner string) *client.Client {
		<-old.Done()
		o.URL = survivors[rand.IntN(len(survivors))]
		c, _, err := client.DialRetry(ctx, o, client.DefaultBackoff)
		if err != nil {
			mu.Lock()
			fails = append(fails, err.Error())
			mu.Unlock()
			return nil
		}
		t.Cleanup(c.Close)
		if _, err := c.WaitReceived(ctx, partner, "audio", func(s client.TrackStats) bool { return s.Packets >= 10 }); err != nil {
			mu.Lock()
			fails = append(fails, fmt.Sprintf("after the node loss %s never heard %s: %v", o.URL, partner, err))
			mu.Unlock()
			return c
		}
		mu.Lock()
		back = append(back, time.Since(killed))
		mu.Unlock()
		return c
	}
	for _, p := range moved {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if p.pat = redial(p.pat, p.patO, "d-"+p.pid); p.pat != nil {
				if err := p.pat.Upgrade(ctx, "prenegotiated"); err != nil { // the camera again, on the new node
					mu.Lock()
					fails = append(fails, fmt.Sprintf("%s: upgrade after the node loss: %v", p.cid, err))
					mu.Unlock()
				}
			}
		}()
		go func() { defer wg.Done(); p.doc = redial(p.doc, p.docO, p.pid) }()
	}
	wg.Wait()
	for _, f := range fails {
		t.Error(f)
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, p := range moved {
		if p.pat.URL() != p.doc.URL() || p.pat.URL() == r.url(victim) {
			t.Errorf("%s after the loss: patient on %s, clinician on %s (dead node %s)", p.cid, p.pat.URL(), p.doc.URL(), r.url(victim))
		}
	}
	slices.Sort(back)
	t.Logf("node loss: %d consultations (%d clients) moved; back in the call (partner heard) after p50 %v, p95 %v, max %v",
		len(moved), len(back), back[len(back)/2].Round(time.Millisecond), back[(len(back)*95-1)/100].Round(time.Millisecond), back[len(back)-1].Round(time.Millisecond))
	checkNoStrangers(t, pairs)
	var handovers float64
	for i := range r.nodes {
		if i != victim {
			handovers += scrape(t, r.nodes[i].admin)["medcall_cluster_segment_handovers_total"]
		}
	}
	if handovers != float64(len(moved)) {
		t.Errorf("the surviving nodes count %v segment handovers, want %d (one per moved consultation)", handovers, len(moved))
	}

	time.Sleep(2 * time.Second) // some media in the next segments
	for _, p := range pairs {
		_ = p.pat.Leave(ctx)
		_ = p.doc.Leave(ctx)
	}
	r.nodes[victim] = r.start(victim) // recovers the dead node's spools
	want := n + len(moved)            // one segment each, and a next segment for each moved
	deadline := time.Now().Add(60 * time.Second)
	for len(r.recordings()) < want && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	recs := r.recordings()
	if len(recs) != want {
		t.Fatalf("%d recordings stored, want %d (%d consultations, %d moved)", len(recs), want, n, len(moved))
	}
	checkSegments(t, r, recs, moved)
	for _, w := range recs {
		out := verifyCmd(t, r.data[0], w)
		if !strings.Contains(w, "/patients/") {
			t.Errorf("recording outside a patient prefix: %s", w)
		}
		pid := strings.Split(strings.SplitN(w, "/patients/", 2)[1], "/")[0]
		if !strings.Contains(out, pid) {
			t.Errorf("%s verifies but does not name patient %s: %s", w, pid, out)
		}
	}
	checkClusterReplay(t, r, pairs, moved)
}

// TestClusterNodePaused: the node hosting a consultation is stopped
// (SIGSTOP, as a starved machine stops scheduling it) past its node
// record's life but not its lease. A clinician joining meanwhile through
// the other node is told to wait (unavailable), not placed there; once the
// host runs again the retrying clinician is sent to it and hears the patient.
func TestClusterNodePaused(t *testing.T) {
	r := startClusterRig(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := func(role, sub string) string {
		return mintCmd(t, "--data", r.data[0], "--role", role, "--sub", sub, "--pid", "p-1", "--cid", "c-1")
	}
	pat, _, err := client.DialRetry(ctx, client.Options{URL: r.url(0), Token: tok("patient", "p-1"), AudioFile: "../../testdata/audio.ogg"}, client.DefaultBackoff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pat.Close)
	host, other := 0, 1
	if pat.URL() == r.url(1) {
		host, other = 1, 0
	}
	proc := r.nodes[host].cmd.Process
	if err := proc.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proc.Signal(syscall.SIGCONT) })
	time.Sleep(4 * time.Second) // the host's record (3 s) is gone, its lease (10 s) is not
	var pe *client.ProtocolError
	if doc, err := client.Dial(ctx, client.Options{URL: r.url(other), Token: tok("clinician", "d-1")}); !errors.As(err, &pe) || pe.Code != "unavailable" {
		if err == nil {
			t.Fatalf("while its host was stopped c-1's clinician joined on %s, its patient is on %s", doc.URL(), pat.URL())
		}
		t.Fatalf("a join while the host is stopped: %v, want unavailable", err)
	}
	if err := proc.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	doc, _, err := client.DialRetry(ctx, client.Options{URL: r.url(other), Token: tok("clinician", "d-1")}, client.DefaultBackoff)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(doc.Close)
	if doc.URL() != pat.URL() {
		t.Fatalf("c-1: patient on %s, clinician on %s", pat.URL(), doc.URL())
	}
	if _, err := doc.WaitReceived(ctx, "p-1", "audio", func(s client.TrackStats) bool { return s.Packets >= 10 }); err != nil {
		t.Fatalf("the clinician never heard the patient: %v", err)
	}
}

// recordedPairs makes the participants of n recorded consultations (tokens
// from node 0's development key, a tone each), not yet joined.
func recordedPairs(t *testing.T, r *clusterRig, n int) []*pair {
	t.Helper()
	pairs := make([]*pair, n)
	for i := range pairs {
		p := &pair{cid: fmt.Sprintf("c-%d", i), pid: fmt.Sprintf("p-%d", i)}
		p.patO = client.Options{Token: mintCmd(t, "--data", r.data[0], "--role", "patient", "--sub", p.pid, "--pid", p.pid, "--cid", p.cid, "--rec"),
			AudioFile: "../../testdata/audio.ogg", VideoFile: "../../testdata/video.ivf", Prenegotiate: true, Fingerprint: true}
		p.docO = client.Options{Token: mintCmd(t, "--data", r.data[0], "--role", "clinician", "--sub", "d-"+p.pid, "--pid", p.pid, "--cid", p.cid, "--rec"),
			AudioFile: "../../testdata/audio.ogg", Fingerprint: true}
		pairs[i] = p
	}
	giveTones(t, pairs)
	return pairs
}

// joinPairs joins both participants of every pair, each through a random
// entry node, and upgrades the patient to video (pre-negotiated; every
// other one by renegotiation when mixed); it returns once each pair is on
// one node and its clinician has seen the patient's video.
func joinPairs(ctx context.Context, t *testing.T, r *clusterRig, pairs []*pair, mixed bool) {
	t.Helper()
	dial := func(o client.Options, entry string) *client.Client {
		o.URL = entry
		c, _, err := client.DialRetry(ctx, o, client.DefaultBackoff)
		if err != nil {
			t.Fatalf("dial through %s: %v", entry, err)
		}
		t.Cleanup(c.Close)
		return c
	}
	for i, p := range pairs {
		path := "prenegotiated"
		if mixed && i%2 == 1 {
			path, p.patO.Prenegotiate = "renegotiate", false
		}
		p.pat = dial(p.patO, r.url(rand.IntN(len(r.nodes))))
		p.doc = dial(p.docO, r.url(rand.IntN(len(r.nodes))))
		if err := p.pat.Upgrade(ctx, path); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range pairs {
		if p.pat.URL() != p.doc.URL() {
			t.Fatalf("%s: patient on %s, clinician on %s", p.cid, p.pat.URL(), p.doc.URL())
		}
		if _, err := p.doc.WaitReceived(ctx, p.pid, "video", func(s client.TrackStats) bool { return s.Keyframes > 0 }); err != nil {
			t.Fatalf("%s: the clinician never saw the patient's video: %v", p.cid, err)
		}
	}
}

// checkNoStrangers: nobody received media from a participant of another
// consultation, and what each heard from its partner is what the partner sent.
func checkNoStrangers(t *testing.T, pairs []*pair) {
	t.Helper()
	for _, p := range pairs {
		for _, q := range pairs {
			if q == p {
				continue
			}
			for _, c := range []*client.Client{p.pat, p.doc} {
				for _, id := range []string{q.pid, "d-" + q.pid} {
					if got := c.Received(id, "audio").Packets + c.Received(id, "video").Packets; got != 0 {
						t.Errorf("%s: a participant received %d packets from %s of %s", p.cid, got, id, q.cid)
					}
				}
			}
		}
		received := p.doc.ReceivedFingerprints(p.pid, "audio") // before the sent ones: the patient is still sending
		_, sent := p.pat.Sent("audio")
		for ts := range received {
			if _, ok := sent[ts]; !ok {
				t.Errorf("%s: the clinician heard audio the patient never sent", p.cid)
				break
			}
		}
	}
}

// checkSegments: each moved consultation has two segments, the dead node's
// (recovered) and the next one on the new node, whose manifest names the
// first as previous; a consultation that stayed has one, with no previous;
// no recording holds a participant or track of another consultation.
func checkSegments(t *testing.T, r *clusterRig, recs []string, moved []*pair) {
	t.Helper()
	ks, err := manifest.LoadKeySet(filepath.Join(r.data[0], "keys", "manifest-dev.json"))
	if err != nil {
		t.Fatal(err)
	}
	byCID := map[string][]manifest.Predicate{}
	for _, w := range recs {
		env, err := os.ReadFile(strings.TrimSuffix(w, ".webm") + ".manifest.json")
		if err != nil {
			t.Fatal(err)
		}
		st, err := manifest.Verify(ks.Public(), env)
		if err != nil {
			t.Fatalf("%s: %v", w, err)
		}
		byCID[st.Predicate.Consultation] = append(byCID[st.Predicate.Consultation], st.Predicate)
	}
	wasMoved := map[string]bool{}
	for _, p := range moved {
		wasMoved[p.cid] = true
	}
	for cid, segs := range byCID {
		pid := "p-" + strings.TrimPrefix(cid, "c-")
		for _, seg := range segs {
			for _, x := range seg.Participants {
				if x.ID != pid && x.ID != "d-"+pid {
					t.Errorf("%s's recording %s holds participant %s of another consultation", cid, seg.RecordingID, x.ID)
				}
			}
			for _, x := range seg.Tracks {
				if x.Participant != pid && x.Participant != "d-"+pid {
					t.Errorf("%s's recording %s holds a track of %s", cid, seg.RecordingID, x.Participant)
				}
			}
		}
		if !wasMoved[cid] {
			if len(segs) != 1 || segs[0].Previous != "" {
				t.Errorf("%s never moved but has %d segments (previous %q)", cid, len(segs), segs[0].Previous)
			}
			continue
		}
		if len(segs) != 2 {
			t.Errorf("%s moved and has %d segments, want 2", cid, len(segs))
			continue
		}
		first, next := segs[0], segs[1]
		if first.Previous != "" {
			first, next = next, first
		}
		if !first.Recovered || next.Previous != first.RecordingID {
			t.Errorf("%s: segments %s (recovered %v) and %s (previous %q): the next segment must name the recovered one",
				cid, first.RecordingID, first.Recovered, next.RecordingID, next.Previous)
		}
	}
}
