package replay_test

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/recorder/store/miniotest"
	"github.com/medcall/medcall/sfu/ident"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// eachStore runs fn against a local directory store and against a real
// MinIO server (skipped, or failed under CI, when MinIO is missing).
func eachStore(t *testing.T, fn func(t *testing.T, st store.Store)) {
	t.Run("local", func(t *testing.T) {
		st, err := store.NewLocal(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, st)
	})
	t.Run("s3", func(t *testing.T) {
		srv := miniotest.Start(t)
		srv.SetEnv(t)
		st, err := store.Open(context.Background(), srv.URL("replay", "&create=true"))
		if err != nil {
			t.Fatal(err)
		}
		fn(t, st)
	})
}

// alertCounter counts Index.Alert calls by reason.
type alertCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *alertCounter) alert(reason string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == nil {
		a.n = map[string]int{}
	}
	a.n[reason]++
}

func (a *alertCounter) take() map[string]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := a.n
	a.n = nil
	if n == nil {
		n = map[string]int{}
	}
	return n
}

func newSigningKeys(t testing.TB, id string, notBefore, notAfter time.Time) *manifest.KeySet {
	t.Helper()
	k, err := manifest.NewKey(id, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	return &manifest.KeySet{Keys: []manifest.Key{k}}
}

// recSpec is a synthetic recording to put in a store.
type recSpec struct {
	pid, cid   string
	clinicians []string
	guests     []string
	body       []byte
	chunk      int64 // chunk size of the signed digests; 0: the default
	legacy     bool  // sign no chunk digests, as before they existed
}

// stored is what putRecording wrote.
type stored struct {
	rid, webmKey, manKey string
	body, envelope       []byte
	statement            *manifest.Statement
}

// putRecording stores spec's bytes and a manifest signed with ks at signedAt
// under the keys store.RecordingKeys builds, as the uploader would.
func putRecording(t testing.TB, st store.Store, ks *manifest.KeySet, spec recSpec, signedAt time.Time) stored {
	t.Helper()
	ctx := context.Background()
	rid := uuid.Must(uuid.NewV7()).String()
	webmKey, manKey, err := store.RecordingKeys(spec.pid, spec.cid, rid)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Put(ctx, webmKey, bytes.NewReader(spec.body), int64(len(spec.body)))
	if err != nil {
		t.Fatal(err)
	}
	started := signedAt.Add(-10 * time.Minute).UTC().Truncate(time.Millisecond)
	p := manifest.Predicate{
		Consultation: spec.cid, Patient: spec.pid, RecordingID: rid,
		Started: started, Ended: started.Add(90 * time.Second), SizeBytes: info.Size,
		Participants: []manifest.Participant{{ID: spec.pid, Role: "patient", Joined: started}},
		Tracks:       []manifest.Track{}, Events: []manifest.Event{}, RecorderVersion: "test",
	}
	for _, c := range spec.clinicians {
		p.Participants = append(p.Participants, manifest.Participant{ID: c, Role: "clinician", Joined: started})
	}
	for _, g := range spec.guests {
		p.Participants = append(p.Participants, manifest.Participant{ID: g, Role: "guest", Joined: started})
	}
	stmt, err := manifest.NewStatement(p, info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if !spec.legacy {
		if stmt.Predicate.Chunks, _, err = manifest.ComputeChunks(bytes.NewReader(spec.body), cmp.Or(spec.chunk, manifest.DefaultChunkSize)); err != nil {
			t.Fatal(err)
		}
	}
	env, err := manifest.SignAt(ks, stmt, signedAt)
	if err != nil {
		t.Fatal(err)
	}
	putBytes(t, st, manKey, env)
	return stored{rid: rid, webmKey: webmKey, manKey: manKey, body: spec.body, envelope: env, statement: stmt}
}

func putBytes(t testing.TB, st store.Store, key string, b []byte) {
	t.Helper()
	if _, err := st.Put(context.Background(), key, bytes.NewReader(b), int64(len(b))); err != nil {
		t.Fatal(err)
	}
}

// newIndex returns an index over st, built from what st holds now.
func newIndex(t testing.TB, st store.Store, keys *manifest.KeySet, alert func(string)) *replay.Index {
	t.Helper()
	x := &replay.Index{Store: st, Keys: keys, Alert: alert, Logger: quietLogger()}
	if err := x.Rebuild(context.Background()); err != nil {
		t.Fatal(err)
	}
	return x
}

func visible(x *replay.Index, sub, role string) []*replay.Recording {
	return x.Visible(replay.Viewer{Sub: sub, Role: ident.Role(role)})
}

func find(x *replay.Index, sub, role, rid string) (*replay.Recording, error) {
	return x.Find(replay.Viewer{Sub: sub, Role: ident.Role(role)}, rid)
}

func ids(es []*replay.Recording) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

func sameIDs(got []*replay.Recording, want ...string) bool {
	g := ids(got)
	if len(g) != len(want) {
		return false
	}
	seen := map[string]bool{}
	for _, id := range g {
		seen[id] = true
	}
	for _, id := range want {
		if !seen[id] {
			return false
		}
	}
	return true
}

func TestIndexPatientSeesOnlyOwnRecording(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		now := time.Now()
		ks := newSigningKeys(t, "k1", now.Add(-time.Hour), now.Add(time.Hour))
		alerts := &alertCounter{}
		a := putRecording(t, st, ks, recSpec{pid: "patient-a", cid: "cons-a", clinicians: []string{"dr-1"}, body: []byte("webm of patient a")}, now)
		b := putRecording(t, st, ks, recSpec{pid: "patient-b", cid: "cons-b", clinicians: []string{"dr-1"}, body: []byte("webm of patient b")}, now)
		lib := newIndex(t, st, ks.Public(), alerts.alert)

		got := visible(lib, "patient-a", "patient")
		if !sameIDs(got, a.rid) {
			t.Fatalf("patient-a sees %v, want only %s", ids(got), a.rid)
		}
		e := got[0]
		if e.Consultation != "cons-a" || e.Key != a.webmKey || e.Size != int64(len(a.body)) || e.Ended.Sub(e.Started) != 90*time.Second {
			t.Errorf("entry = %+v", e)
		}

		found, err := find(lib, "patient-a", "patient", a.rid)
		if err != nil {
			t.Fatalf("Find own recording: %v", err)
		}
		r, err := lib.Open(ctx, found)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(r)
		r.Close()
		if err != nil || !bytes.Equal(body, a.body) {
			t.Fatalf("opened bytes %q (%v), want %q", body, err, a.body)
		}
		if _, err := manifest.VerifyObject(ks.Public(), a.envelope, a.webmKey, bytes.NewReader(body)); err != nil {
			t.Errorf("bytes served do not verify against the manifest: %v", err)
		}

		refused := []struct{ name, sub, role, rid string }{
			{"other patient's id", "patient-a", "patient", b.rid},
			{"missing id", "patient-a", "patient", uuid.Must(uuid.NewV7()).String()},
			{"upper-case id", "patient-a", "patient", strings.ToUpper(a.rid)},
			{"key path as id", "patient-a", "patient", b.webmKey},
			{"dot-dot", "patient-a", "patient", "../patient-b/" + b.rid},
			{"guest", "patient-a", "guest", a.rid},
			{"bad sub", "../patient-a", "patient", a.rid},
			{"clinician not in it", "dr-2", "clinician", a.rid},
		}
		for _, c := range refused {
			if e, err := find(lib, c.sub, c.role, c.rid); !errors.Is(err, replay.ErrNotVisible) {
				t.Errorf("%s: Find = %+v, %v; want ErrNotVisible", c.name, e, err)
			}
		}
		if got := visible(lib, "patient-a", "guest"); len(got) != 0 {
			t.Errorf("guest sees %v; want nothing", ids(got))
		}
		if _, err := lib.Open(ctx, &replay.Recording{ID: b.rid, Key: b.webmKey, Size: int64(len(b.body))}); !errors.Is(err, replay.ErrNotVisible) {
			t.Errorf("Open of a hand-made recording = %v, want ErrNotVisible", err)
		}
		if n := alerts.take(); len(n) != 0 {
			t.Errorf("alerts for good recordings: %v", n)
		}
	})
}

// tamper describes one way a recording can be wrong. It stores the bad
// recording under patient-a's prefix and returns the alert it must raise.
type tamper struct {
	name   string
	reason string
	make   func(t *testing.T, st store.Store, ks *manifest.KeySet, b stored) // b: a good recording of patient-b
}

func tamperCases(now time.Time) []tamper {
	spec := func(cid string) recSpec {
		return recSpec{pid: "patient-a", cid: cid, clinicians: []string{"dr-1"}, body: []byte("tampered " + cid)}
	}
	return []tamper{
		{"copy of another patient's recording and manifest", replay.AlertSubjectMismatch, func(t *testing.T, st store.Store, _ *manifest.KeySet, b stored) {
			webm, man, _ := store.RecordingKeys("patient-a", "cons-b", b.rid)
			putBytes(t, st, webm, b.body)
			putBytes(t, st, man, b.envelope)
		}},
		{"broken signature", replay.AlertBadSignature, func(t *testing.T, st store.Store, ks *manifest.KeySet, _ stored) {
			r := putRecording(t, st, ks, spec("cons-sig"), now)
			putBytes(t, st, r.manKey, rewriteEnvelope(t, r.envelope, func(env *dsse.Envelope) {
				sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
				sig[0] ^= 1
				env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
			}))
		}},
		{"unknown key", replay.AlertUnknownKey, func(t *testing.T, st store.Store, _ *manifest.KeySet, _ stored) {
			putRecording(t, st, newSigningKeys(t, "rogue", now.Add(-time.Hour), now.Add(time.Hour)), spec("cons-rogue"), now)
		}},
		{"signed after the key expired", replay.AlertExpiredKey, func(t *testing.T, st store.Store, ks *manifest.KeySet, _ stored) {
			// The verifying set ends "old"'s window an hour ago (see
			// TestIndexHidesUnverifiable); a copy that still signs is misused.
			old := ks.Keys[1]
			old.NotAfter = now.Add(time.Hour)
			putRecording(t, st, &manifest.KeySet{Keys: []manifest.Key{old}}, spec("cons-expired"), now)
		}},
		{"wrong payload type", replay.AlertPayloadType, func(t *testing.T, st store.Store, ks *manifest.KeySet, _ stored) {
			r := putRecording(t, st, ks, spec("cons-ptype"), now)
			putBytes(t, st, r.manKey, rewriteEnvelope(t, r.envelope, func(env *dsse.Envelope) {
				payload, _ := env.DecodeB64Payload()
				env.PayloadType = "application/json" // properly signed, wrong type
				sig := ed25519.Sign(ks.Keys[0].PrivateKey, dsse.PAE(env.PayloadType, payload))
				env.Signatures[0].Sig = base64.StdEncoding.EncodeToString(sig)
			}))
		}},
		{"no manifest", replay.AlertNoManifest, func(t *testing.T, st store.Store, _ *manifest.KeySet, _ stored) {
			webm, _, _ := store.RecordingKeys("patient-a", "cons-bare", uuid.Must(uuid.NewV7()).String())
			putBytes(t, st, webm, []byte("a webm nobody signed"))
		}},
		{"chunk digests do not fit the size", replay.AlertMalformed, func(t *testing.T, st store.Store, ks *manifest.KeySet, _ stored) {
			r := putRecording(t, st, ks, spec("cons-chunks"), now)
			r.statement.Predicate.Chunks.SHA256 = append(r.statement.Predicate.Chunks.SHA256, r.statement.Predicate.Chunks.SHA256[0])
			putBytes(t, st, r.manKey, rewriteEnvelope(t, r.envelope, func(e *dsse.Envelope) {
				b, _ := json.Marshal(r.statement)
				e.Payload = base64.StdEncoding.EncodeToString(b)
				e.Signatures[0].Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(ks.Keys[0].PrivateKey, dsse.PAE(e.PayloadType, b)))
			}))
		}},
		{"manifest is not JSON", replay.AlertMalformed, func(t *testing.T, st store.Store, ks *manifest.KeySet, _ stored) {
			r := putRecording(t, st, ks, spec("cons-junk"), now)
			putBytes(t, st, r.manKey, []byte("{not json"))
		}},
	}
}

func rewriteEnvelope(t *testing.T, b []byte, edit func(*dsse.Envelope)) []byte {
	t.Helper()
	var env dsse.Envelope
	if err := json.Unmarshal(b, &env); err != nil {
		t.Fatal(err)
	}
	edit(&env)
	out, err := json.Marshal(&env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestIndexHidesUnverifiable(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		ctx := context.Background()
		now := time.Now()
		ks := newSigningKeys(t, "current", now.Add(-time.Hour), now.Add(time.Hour))
		old, err := manifest.NewKey("old", now.Add(-3*time.Hour), now.Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		ks.Keys = append(ks.Keys, old)
		alerts := &alertCounter{}

		good := putRecording(t, st, ks, recSpec{pid: "patient-a", cid: "cons-good", clinicians: []string{"dr-1"}, body: []byte("good")}, now)
		b := putRecording(t, st, ks, recSpec{pid: "patient-b", cid: "cons-b", clinicians: []string{"dr-9"}, body: []byte("patient b's consultation")}, now)
		want := map[string]int{}
		for _, c := range tamperCases(now) {
			c.make(t, st, ks, b)
			want[c.reason]++
		}

		lib := newIndex(t, st, ks.Public(), alerts.alert)
		got := visible(lib, "patient-a", "patient")
		if !sameIDs(got, good.rid) {
			t.Errorf("patient-a sees %v, want only %s", ids(got), good.rid)
		}
		if n := alerts.take(); !maps.Equal(n, want) {
			t.Errorf("alerts = %v, want %v", n, want)
		}
		// dr-1 is a participant in every tampered recording: still hidden.
		if got := visible(lib, "dr-1", "clinician"); !sameIDs(got, good.rid) {
			t.Errorf("dr-1 sees %v, want only %s", ids(got), good.rid)
		}
		// Each is reported once, not on every refresh.
		if err := lib.Refresh(ctx, "patients/"); err != nil {
			t.Fatal(err)
		}
		if n := alerts.take(); len(n) != 0 {
			t.Errorf("alerts on a second refresh = %v, want none", n)
		}
		// The copy of b's recording carries b's rid: Find must not return
		// the copy to patient-a, nor the original.
		if e, err := find(lib, "patient-a", "patient", b.rid); !errors.Is(err, replay.ErrNotVisible) {
			t.Errorf("Find of b's rid as patient-a = %+v, %v", e, err)
		}
		if e, err := find(lib, "patient-b", "patient", b.rid); err != nil || e.Key != b.webmKey {
			t.Errorf("Find of b's rid as patient-b = %+v, %v; want the original", e, err)
		}
	})
}

func TestIndexClinicianSeesOwnConsultations(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		now := time.Now()
		ks := newSigningKeys(t, "k1", now.Add(-time.Hour), now.Add(time.Hour))
		r1 := putRecording(t, st, ks, recSpec{pid: "p1", cid: "c1", clinicians: []string{"dr-a"}, body: []byte("1")}, now)
		r2 := putRecording(t, st, ks, recSpec{pid: "p2", cid: "c2", clinicians: []string{"dr-a", "dr-b"}, body: []byte("2")}, now)
		r3 := putRecording(t, st, ks, recSpec{pid: "p3", cid: "c3", clinicians: []string{"dr-b"}, body: []byte("3")}, now)
		// dr-c appears in p4's recording only as a guest: not a clinician there.
		r4 := putRecording(t, st, ks, recSpec{pid: "p4", cid: "c4", guests: []string{"dr-c"}, body: []byte("4")}, now)

		lib := newIndex(t, st, ks.Public(), nil)
		cases := []struct {
			sub, role string
			want      []string
		}{
			{"dr-a", "clinician", []string{r1.rid, r2.rid}},
			{"dr-b", "clinician", []string{r2.rid, r3.rid}},
			{"dr-c", "clinician", nil},
			{"p4", "patient", []string{r4.rid}},
			{"p4", "clinician", nil}, // a patient id with a clinician role is not a participant as clinician
			{"dr-a", "patient", nil},
			{"dr-a", "guest", nil},
		}
		for _, c := range cases {
			if got := visible(lib, c.sub, c.role); !sameIDs(got, c.want...) {
				t.Errorf("%s as %s sees %v, want %v", c.sub, c.role, ids(got), c.want)
			}
		}
		if _, err := find(lib, "dr-a", "clinician", r3.rid); !errors.Is(err, replay.ErrNotVisible) {
			t.Errorf("dr-a finds r3 (not theirs): %v", err)
		}
		if e, err := find(lib, "dr-b", "clinician", r3.rid); err != nil || e.ID != r3.rid {
			t.Errorf("dr-b Find r3 = %+v, %v", e, err)
		}
	})
}

func TestIndexKeyRotation(t *testing.T) {
	st, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	k1, _ := manifest.NewKey("k1", now.Add(-3*time.Hour), now.Add(-30*time.Minute))
	k2, _ := manifest.NewKey("k2", now.Add(-40*time.Minute), now.Add(2*time.Hour))
	ks := &manifest.KeySet{Keys: []manifest.Key{k1, k2}}
	spec := func(cid string) recSpec { return recSpec{pid: "pat", cid: cid, body: []byte(cid)} }

	cases := []struct {
		cid      string
		signedAt time.Time
		keyID    string
	}{
		{"before-k2", now.Add(-time.Hour), "k1"},      // only k1 valid
		{"overlap", now.Add(-35 * time.Minute), "k2"}, // both valid: the newest signs
		{"after-k1-ended", now, "k2"},                 // k1 expired
		{"overlap-early", now.Add(-39 * time.Minute), "k2"},
	}
	var all []string
	for _, c := range cases {
		r := putRecording(t, st, ks, spec(c.cid), c.signedAt)
		all = append(all, r.rid)
		stmt, err := manifest.Verify(ks.Public(), r.envelope)
		if err != nil {
			t.Fatalf("%s: %v", c.cid, err)
		}
		if stmt.Predicate.KeyID != c.keyID {
			t.Errorf("%s: signed by %s, want %s", c.cid, stmt.Predicate.KeyID, c.keyID)
		}
	}
	lib := newIndex(t, st, ks.Public(), nil)
	if got := visible(lib, "pat", "patient"); !sameIDs(got, all...) {
		t.Errorf("with both keys: sees %v, want %v", ids(got), all)
	}

	// Revoking k1 (dropping it from the set) hides what it signed.
	alerts := &alertCounter{}
	revoked := newIndex(t, st, (&manifest.KeySet{Keys: []manifest.Key{k2}}).Public(), alerts.alert)
	if got := visible(revoked, "pat", "patient"); !sameIDs(got, all[1:]...) {
		t.Errorf("after revoking k1: sees %v, want %v", ids(got), all[1:])
	}
	if n := alerts.take(); !maps.Equal(n, map[string]int{replay.AlertUnknownKey: 1}) {
		t.Errorf("alerts after revoking k1 = %v", n)
	}
}

func TestIndexFiftyConcurrentConsultations(t *testing.T) {
	eachStore(t, func(t *testing.T, st store.Store) {
		const n = 50
		now := time.Now()
		ks := newSigningKeys(t, "k1", now.Add(-time.Hour), now.Add(time.Hour))
		up, err := recorder.NewUploader(recorder.UploaderOptions{Store: st, Keys: ks, Outbox: t.TempDir(), Version: "test", Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		runDone := make(chan struct{})
		go func() { defer close(runDone); up.Run(ctx) }()
		defer func() { cancel(); <-runDone }()

		dir := t.TempDir()
		recs := make([]*recorder.Recording, n)
		bodies := make([][]byte, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := range n {
			pid, cid := fmt.Sprintf("patient-%02d", i), fmt.Sprintf("cons-%02d", i)
			started := now.Add(-time.Duration(i) * time.Second).UTC()
			recs[i] = &recorder.Recording{
				ID: uuid.Must(uuid.NewV7()).String(), Consultation: cid, Patient: pid, Started: started, Ended: started.Add(time.Minute),
				Participants: []recorder.Participant{{ID: pid, Role: "patient", Joined: started}, {ID: fmt.Sprintf("dr-%02d", i), Role: "clinician", Joined: started}},
			}
			bodies[i] = []byte(strings.Repeat(fmt.Sprintf("webm bytes of %s/%s;", pid, cid), i+1))
			wg.Go(func() {
				path := fmt.Sprintf("%s/%d.webm", dir, i)
				if err := writeFile(path, bodies[i]); err != nil {
					errs <- err
					return
				}
				if err := up.Publish(ctx, recs[i], path); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for up.Pending() > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%d recordings still not stored after 60s", up.Pending())
			}
			time.Sleep(20 * time.Millisecond)
		}

		alerts := &alertCounter{}
		lib := newIndex(t, st, ks.Public(), alerts.alert)
		for i, rec := range recs {
			got := visible(lib, rec.Patient, "patient")
			if !sameIDs(got, rec.ID) || got[0].Consultation != rec.Consultation {
				t.Errorf("%s sees %+v, want only %s of %s", rec.Patient, got, rec.ID, rec.Consultation)
				continue
			}
			wantKey, manKey, _ := store.RecordingKeys(rec.Patient, rec.Consultation, rec.ID)
			if got[0].Key != wantKey {
				t.Errorf("%s's recording is at %s, want %s", rec.Patient, got[0].Key, wantKey)
			}
			r, err := lib.Open(ctx, got[0])
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(r)
			r.Close()
			if !bytes.Equal(b, bodies[i]) {
				t.Errorf("%s's recording holds other bytes (%d, want %d)", rec.Patient, len(b), len(bodies[i]))
			}
			env := readObject(t, st, manKey)
			stmt, err := manifest.VerifyObject(ks.Public(), env, wantKey, bytes.NewReader(b))
			if err != nil {
				t.Errorf("%s's manifest does not verify: %v", rec.Patient, err)
			} else if stmt.Predicate.Patient != rec.Patient || stmt.Predicate.Consultation != rec.Consultation {
				t.Errorf("%s's manifest names patient %q consultation %q", rec.Patient, stmt.Predicate.Patient, stmt.Predicate.Consultation)
			}
		}
		keys, err := st.List(ctx, "patients/")
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != 2*n {
			t.Errorf("store holds %d objects under patients/, want %d", len(keys), 2*n)
		}
		if a := alerts.take(); len(a) != 0 {
			t.Errorf("alerts: %v", a)
		}
	})
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o600) }

func readObject(t testing.TB, st store.Store, key string) []byte {
	t.Helper()
	r, _, err := st.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
