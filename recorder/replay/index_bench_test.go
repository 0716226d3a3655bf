package replay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/signaling/token"
)

// synthStore is a local store filled with signed synthetic recordings:
// perPatient for each of patients patients, each with one of clinicians
// clinicians (recording i of patient p has clinician (p*perPatient+i) %
// clinicians). Objects are written straight into the directory (the
// store's Put syncs every file, which would make 20,000 objects slow);
// the Local store reads them like any other.
type synthStore struct {
	st   *store.Local
	keys *manifest.KeySet
	// byPatient and byClinician are the recording ids each should see.
	byPatient, byClinician map[string][]string
	all                    []string
}

func newSynthStore(tb testing.TB, patients, perPatient, clinicians int) *synthStore {
	tb.Helper()
	dir := memDir(tb)
	now := time.Now()
	s := &synthStore{keys: newSigningKeys(tb, "k1", now.Add(-time.Hour), now.Add(time.Hour)),
		byPatient: map[string][]string{}, byClinician: map[string][]string{}}
	write := func(key string, b []byte) error {
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		return os.WriteFile(path, b, 0o600)
	}
	type spec struct{ pid, doc, cid, rid string }
	specs := make([]spec, 0, patients*perPatient)
	for p := range patients {
		pid := fmt.Sprintf("pat-%04d", p)
		for i := range perPatient {
			n := p*perPatient + i
			sp := spec{pid, fmt.Sprintf("dr-%03d", n%clinicians), fmt.Sprintf("cons-%05d", n), uuid.Must(uuid.NewV7()).String()}
			specs = append(specs, sp)
			s.byPatient[sp.pid] = append(s.byPatient[sp.pid], sp.rid)
			s.byClinician[sp.doc] = append(s.byClinician[sp.doc], sp.rid)
			s.all = append(s.all, sp.rid)
		}
	}
	sign := func(n int, sp spec) error {
		body := []byte("synthetic webm of " + sp.rid)
		webm, man, err := store.RecordingKeys(sp.pid, sp.cid, sp.rid)
		if err != nil {
			return err
		}
		started := now.Add(-time.Duration(n) * time.Minute).UTC().Truncate(time.Millisecond)
		sum := sha256.Sum256(body)
		st, err := manifest.NewStatement(manifest.Predicate{
			Consultation: sp.cid, Patient: sp.pid, RecordingID: sp.rid, Started: started, Ended: started.Add(time.Minute),
			SizeBytes: int64(len(body)), RecorderVersion: "synthetic",
			Participants: []manifest.Participant{{ID: sp.pid, Role: "patient", Joined: started}, {ID: sp.doc, Role: "clinician", Joined: started}},
		}, hex.EncodeToString(sum[:]))
		if err != nil {
			return err
		}
		if st.Predicate.Chunks, _, err = manifest.ComputeChunks(bytes.NewReader(body), manifest.MinChunkSize); err != nil {
			return err
		}
		env, err := manifest.SignAt(s.keys, st, now)
		if err != nil {
			return err
		}
		return errors.Join(write(webm, body), write(man, env))
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(specs))
	for w := range 4 { // signing and writing 20,000 objects: use the cores
		wg.Go(func() {
			for n := w; n < len(specs); n += 4 {
				if err := sign(n, specs[n]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatal(err)
	}
	st, err := store.NewLocal(dir)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	s.st = st
	return s
}

// memDir is a temporary directory in memory (/dev/shm) when the machine
// has one, else on disk: 20,000 small files are written and removed much
// faster there, and the Local store works the same.
func memDir(tb testing.TB) string {
	tb.Helper()
	if dir, err := os.MkdirTemp("/dev/shm", "medcall-replay-"); err == nil {
		tb.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return tb.TempDir()
}

// countingStore counts the store calls made through it.
type countingStore struct {
	store.Store
	lists, gets, stats atomic.Int64
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]string, error) {
	c.lists.Add(1)
	return c.Store.List(ctx, prefix)
}

func (c *countingStore) Get(ctx context.Context, key string) (io.ReadSeekCloser, store.Info, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Stat(ctx context.Context, key string) (store.Info, error) {
	c.stats.Add(1)
	return c.Store.Stat(ctx, key)
}

func (c *countingStore) take() (lists, gets, stats int64) {
	return c.lists.Swap(0), c.gets.Swap(0), c.stats.Swap(0)
}

// TestIndexTenThousandRecordings: with 10,000 signed recordings of 1,000
// patients in the store, every patient and clinician sees exactly their
// own, and answering costs a fixed amount of work whatever the store
// holds: Find and a clinician's list touch the store not at all, a
// patient's list lists only that patient's own prefix, and refusing an
// existing id touches the store exactly as little as refusing a missing one.
func TestIndexTenThousandRecordings(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 recordings: not in -short")
	}
	t0 := time.Now()
	syn := newSynthStore(t, 1000, 10, 100)
	t1 := time.Now()
	cs := &countingStore{Store: syn.st}
	x := &replay.Index{Store: cs, Keys: syn.keys.Public(), Logger: quietLogger()}
	if err := x.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("10,000 recordings written in %v, index rebuilt in %v", t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))
	if lists, gets, _ := cs.take(); lists != 1 || gets != 10000 {
		t.Errorf("rebuild: %d lists, %d gets; want one list and one read per manifest", lists, gets)
	}
	for pid, want := range syn.byPatient {
		if got := ids(visible(x, pid, "patient")); !sameSet(got, want) {
			t.Fatalf("%s sees %d recordings, want their %d", pid, len(got), len(want))
		}
	}
	for doc, want := range syn.byClinician {
		if got := ids(visible(x, doc, "clinician")); !sameSet(got, want) {
			t.Fatalf("%s sees %d recordings, want their %d", doc, len(got), len(want))
		}
	}
	for i, rid := range syn.all {
		pid := fmt.Sprintf("pat-%04d", i/10)
		if _, err := find(x, pid, "patient", rid); err != nil {
			t.Fatalf("%s cannot find their %s: %v", pid, rid, err)
		}
		if _, err := find(x, fmt.Sprintf("pat-%04d", (i/10+1)%1000), "patient", rid); err == nil {
			t.Fatalf("another patient finds %s", rid)
		}
	}
	if lists, gets, stats := cs.take(); lists+gets+stats != 0 {
		t.Errorf("answering from the index touched the store: %d lists, %d gets, %d stats", lists, gets, stats)
	}

	// Through the handler: a patient's list lists their own prefix once and
	// reads nothing it has examined; refusals touch nothing.
	h := &replay.Handler{Verifier: &token.Verifier{Keys: benchTokenKeys.Public()}, Index: x, Audit: discardAudit{}, Logger: quietLogger()}
	patTok := mintReplay(t, "pat-0007", token.RolePatient)
	docTok := mintReplay(t, "dr-042", token.RoleClinician)
	if code, _ := serve(h, replay.Path, patTok); code != http.StatusOK {
		t.Fatalf("patient's list: %d", code)
	}
	if lists, gets, stats := cs.take(); lists != 1 || gets+stats != 0 {
		t.Errorf("patient's list: %d lists, %d gets, %d stats; want one list of their own prefix", lists, gets, stats)
	}
	notTheirs := syn.byPatient["pat-0500"][3]
	missing := uuid.Must(uuid.NewV7()).String()
	for _, tok := range []string{patTok, docTok} {
		c1, b1 := serve(h, replay.Path+"/"+notTheirs, tok)
		c2, b2 := serve(h, replay.Path+"/"+missing, tok)
		if c1 != http.StatusNotFound || c1 != c2 || !bytes.Equal(b1, b2) {
			t.Errorf("exists-not-yours %d %q vs missing %d %q; want the same 404", c1, b1, c2, b2)
		}
	}
	if lists, gets, stats := cs.take(); lists+gets+stats != 0 {
		t.Errorf("refusals touched the store: %d lists, %d gets, %d stats", lists, gets, stats)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// discardAudit accepts every event; for measurements that should not time
// the audit log's fsync.
type discardAudit struct{}

func (discardAudit) Record(replay.AuditEvent) error { return nil }

var benchTokenKeys = func() *token.KeySet {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return &token.KeySet{Keys: []token.Key{{ID: "ed1", Alg: "EdDSA", Public: priv.Public().(ed25519.PublicKey), Private: priv}}}
}()

// mintReplay mints a replay token of sub with benchTokenKeys.
func mintReplay(tb testing.TB, sub, role string) string {
	tb.Helper()
	tok, err := benchTokenKeys.Mint("ed1", token.Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{
		Subject: sub, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	if err != nil {
		tb.Fatal(err)
	}
	return tok
}

// serve runs one GET through h in-process.
func serve(h http.Handler, path, tok string) (int, []byte) {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes()
}

// BenchmarkIndexFind reports the cost of finding one recording (and of
// refusing one) in stores of 1,000 and 10,000 recordings: it should not
// grow with the store.
func BenchmarkIndexFind(b *testing.B) {
	for _, patients := range []int{100, 1000} {
		// One clinician per 10 patients: each clinician has 100 recordings
		// in both stores, so only the store's size changes.
		syn := newSynthStore(b, patients, 10, patients/10)
		x := &replay.Index{Store: syn.st, Keys: syn.keys.Public(), Logger: quietLogger()}
		if err := x.Rebuild(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("recordings=%d", len(syn.all)), func(b *testing.B) {
			i := 0
			for b.Loop() {
				rid := syn.all[i%len(syn.all)]
				find(x, "dr-001", "clinician", rid)
				find(x, fmt.Sprintf("pat-%04d", i%patients), "patient", rid)
				i++
			}
		})
		b.Run(fmt.Sprintf("list/recordings=%d", len(syn.all)), func(b *testing.B) {
			i := 0
			for b.Loop() {
				visible(x, "dr-001", "clinician")
				visible(x, fmt.Sprintf("pat-%04d", i%patients), "patient")
				i++
			}
		})
	}
}

// BenchmarkRefusalTiming measures, through the whole handler (token
// check, index, audit line synced to disk), how long refusing an existing
// recording that is not the caller's takes against refusing a missing one,
// interleaved, for a clinician and a patient, over 10,000 recordings of
// 1,000 patients. It reports the medians; run with -benchtime=1000x for
// 1,000 interleaved pairs per role.
func BenchmarkRefusalTiming(b *testing.B) {
	syn := newSynthStore(b, 1000, 10, 100)
	x := &replay.Index{Store: syn.st, Keys: syn.keys.Public(), Logger: quietLogger()}
	if err := x.Rebuild(context.Background()); err != nil {
		b.Fatal(err)
	}
	audit, err := replay.OpenAudit(filepath.Join(b.TempDir(), "audit.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer audit.Close()
	h := &replay.Handler{Verifier: &token.Verifier{Keys: benchTokenKeys.Public()}, Index: x, Audit: audit, Logger: quietLogger()}
	for _, who := range []struct{ name, sub, role string }{
		{"clinician", "dr-042", token.RoleClinician},
		{"patient", "pat-0007", token.RolePatient},
	} {
		tok := mintReplay(b, who.sub, who.role)
		var exists, missing []time.Duration
		timed := func(rid string) time.Duration {
			start := time.Now()
			code, _ := serve(h, replay.Path+"/"+rid, tok)
			d := time.Since(start)
			if code != http.StatusNotFound {
				b.Fatalf("%s asking for %s: %d, want 404", who.name, rid, code)
			}
			return d
		}
		b.Run(who.name, func(b *testing.B) {
			i := 0
			for b.Loop() {
				notTheirs := syn.all[(i*7919+5000)%len(syn.all)] // pat-0007's own are 70..79
				if slices.Contains(syn.byPatient[who.sub], notTheirs) || slices.Contains(syn.byClinician[who.sub], notTheirs) {
					notTheirs = syn.all[0]
				}
				gone := uuid.Must(uuid.NewV7()).String()
				if i%2 == 0 { // alternate which goes first
					exists = append(exists, timed(notTheirs))
					missing = append(missing, timed(gone))
				} else {
					missing = append(missing, timed(gone))
					exists = append(exists, timed(notTheirs))
				}
				i++
			}
			me, mm := median(exists), median(missing)
			b.ReportMetric(float64(me.Nanoseconds())/1e3, "µs-median-exists")
			b.ReportMetric(float64(mm.Nanoseconds())/1e3, "µs-median-missing")
			b.ReportMetric(float64(len(exists)), "pairs")
			exists, missing = exists[:0], missing[:0]
		})
	}
	// The same comparison at the index alone, without token or audit.
	b.Run("index-only", func(b *testing.B) {
		var exists, missing []time.Duration
		i := 0
		for b.Loop() {
			// Both ids freshly in memory, as one parsed from a request is.
			notTheirs := strings.Clone(syn.all[(i*7919+5000)%len(syn.all)])
			gone := uuid.Must(uuid.NewV7()).String()
			first, second := notTheirs, gone
			if i%2 == 1 {
				first, second = gone, notTheirs
			}
			t0 := time.Now()
			find(x, "dr-042x", "clinician", first)
			t1 := time.Now()
			find(x, "dr-042x", "clinician", second)
			t2 := time.Now()
			if i%2 == 0 {
				exists, missing = append(exists, t1.Sub(t0)), append(missing, t2.Sub(t1))
			} else {
				missing, exists = append(missing, t1.Sub(t0)), append(exists, t2.Sub(t1))
			}
			i++
		}
		b.ReportMetric(float64(median(exists).Nanoseconds()), "ns-median-exists")
		b.ReportMetric(float64(median(missing).Nanoseconds()), "ns-median-missing")
	})
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
