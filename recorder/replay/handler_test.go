package replay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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

// replayRig is a replay Handler over a real store, with its own manifest
// and token keys and an audit log in a temporary directory.
type replayRig struct {
	t         *testing.T
	st        store.Store
	mkeys     *manifest.KeySet
	tkeys     *token.KeySet
	auditPath string
	idx       *replay.Index
	alerts    *alertCounter
	rp        *replay.Handler
	enabled   atomic.Bool
	counted   atomic.Int64
	url       string
	client    *http.Client
}

func newReplayRig(t *testing.T, st store.Store) *replayRig {
	t.Helper()
	now := time.Now()
	mk, err := manifest.NewKey("m1", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	g := &replayRig{t: t, st: st, mkeys: &manifest.KeySet{Keys: []manifest.Key{mk}},
		tkeys:     &token.KeySet{Keys: []token.Key{{ID: "ed1", Alg: "EdDSA", Public: priv.Public().(ed25519.PublicKey), Private: priv}}},
		auditPath: filepath.Join(t.TempDir(), "audit", "replay.jsonl")}
	audit, err := replay.OpenAudit(g.auditPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	g.alerts = &alertCounter{}
	g.idx = &replay.Index{Store: st, Keys: g.mkeys.Public(), Logger: quiet, Alert: g.alerts.alert}
	g.enabled.Store(true)
	g.rp = &replay.Handler{
		Verifier: &token.Verifier{Keys: g.tkeys.Public()},
		Index:    g.idx,
		Audit:    audit,
		Enabled:  &g.enabled,
		Logger:   quiet,
		Counted:  func(string, string) { g.counted.Add(1) },
	}
	srv := httptest.NewServer(g.rp)
	tr := &http.Transport{}
	g.url, g.client = srv.URL, &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	return g
}

// put stores a recording of patient pid with clinician participants and a
// manifest signed by the rig's key, lets the index pick it up (as its
// periodic refresh would) and returns the recording id.
func (g *replayRig) put(pid, cid string, body []byte, clinicians ...string) string {
	g.t.Helper()
	r := putRecording(g.t, g.st, g.mkeys, recSpec{pid: pid, cid: cid, clinicians: clinicians, body: body}, time.Now())
	g.refresh()
	return r.rid
}

// refresh makes the index pick up what the store holds now.
func (g *replayRig) refresh() {
	g.t.Helper()
	if err := g.idx.Refresh(context.Background(), "patients/"); err != nil {
		g.t.Fatal(err)
	}
}

// token mints a replay token (no cid, no pid) expiring at exp.
func (g *replayRig) token(sub, role string, exp time.Time) string {
	g.t.Helper()
	return g.mint(token.Claims{Role: role, RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(time.Now())}})
}

func (g *replayRig) mint(c token.Claims) string {
	g.t.Helper()
	s, err := g.tkeys.Mint("ed1", c)
	if err != nil {
		g.t.Fatal(err)
	}
	return s
}

type replayResp struct {
	status int
	header http.Header
	body   []byte
}

// get requests path (appended raw to the server URL) with tok as a bearer
// token when tok is not empty, plus extra headers as name, value pairs.
func (g *replayRig) get(path, tok string, extra ...string) replayResp {
	g.t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.url+path, nil)
	if err != nil {
		g.t.Fatal(err)
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := g.client.Do(req)
	if err != nil {
		g.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		g.t.Fatal(err)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		g.t.Errorf("GET %s: Cache-Control %q, want no-store", path, cc)
	}
	return replayResp{resp.StatusCode, resp.Header, b}
}

// auditLines returns the audit log's raw lines and their decoded events.
func (g *replayRig) auditLines() ([]string, []replay.AuditEvent) {
	g.t.Helper()
	b, err := os.ReadFile(g.auditPath)
	if err != nil {
		g.t.Fatal(err)
	}
	raw := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(b) == 0 {
		raw = nil
	}
	evs := make([]replay.AuditEvent, len(raw))
	for i, l := range raw {
		if err := json.Unmarshal([]byte(l), &evs[i]); err != nil {
			g.t.Fatalf("audit line %q: %v", l, err)
		}
	}
	return raw, evs
}

// expectAudit asserts that exactly one line was added since `before` lines,
// with the given fields, and that it holds none of the secrets.
func (g *replayRig) expectAudit(what string, before int, want replay.AuditEvent, secrets ...string) {
	g.t.Helper()
	raw, evs := g.auditLines()
	if len(evs) != before+1 {
		g.t.Errorf("%s: %d audit lines written, want 1", what, len(evs)-before)
		return
	}
	got := evs[before]
	got.Time = time.Time{}
	if got != want {
		g.t.Errorf("%s: audit %+v, want %+v", what, got, want)
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(raw[before], s) {
			g.t.Errorf("%s: audit line holds a token: %s", what, raw[before])
		}
	}
}

func (g *replayRig) auditCount() int { _, evs := g.auditLines(); return len(evs) }

type listBody struct {
	Recordings []struct {
		ID           string `json:"id"`
		Consultation string `json:"consultation"`
		DurationMS   int64  `json:"duration_ms"`
		Size         int64  `json:"size"`
		URL          string `json:"url"`
	} `json:"recordings"`
}

func (g *replayRig) list(tok string) listBody {
	g.t.Helper()
	r := g.get("/v1/recordings", tok)
	if r.status != http.StatusOK {
		g.t.Fatalf("list: %d %s", r.status, r.body)
	}
	var lb listBody
	if err := json.Unmarshal(r.body, &lb); err != nil {
		g.t.Fatalf("list body %s: %v", r.body, err)
	}
	return lb
}

// eachReplayStore runs fn over a local store and a real MinIO.
func eachReplayStore(t *testing.T, fn func(t *testing.T, g *replayRig)) {
	eachStore(t, func(t *testing.T, st store.Store) { fn(t, newReplayRig(t, st)) })
}

// localRig is a rig over a local store holding one recording of
// patient-a; it returns the recording id and a replay token of patient-a.
func localRig(t *testing.T) (g *replayRig, rid, tok string) {
	t.Helper()
	st, err := store.NewLocal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g = newReplayRig(t, st)
	return g, g.put("patient-a", "cons-a", []byte("a's recording")), g.token("patient-a", token.RolePatient, time.Now().Add(time.Hour))
}

const replayNotFound = `{"error":"not_found"}` + "\n"

func TestReplayOwnRecording(t *testing.T) {
	eachReplayStore(t, func(t *testing.T, g *replayRig) {
		body := []byte("patient a's consultation, in webm")
		rid := g.put("patient-a", "cons-a", body, "dr-1")
		g.put("patient-b", "cons-b", []byte("patient b's consultation"), "dr-2")
		tok := g.token("patient-a", token.RolePatient, time.Now().Add(time.Hour))

		n := g.auditCount()
		lb := g.list(tok)
		if len(lb.Recordings) != 1 || lb.Recordings[0].ID != rid || lb.Recordings[0].Consultation != "cons-a" ||
			lb.Recordings[0].URL != "/v1/recordings/"+rid || lb.Recordings[0].Size != int64(len(body)) || lb.Recordings[0].DurationMS != 90000 {
			t.Fatalf("patient-a's list = %+v", lb)
		}
		g.expectAudit("list", n, replay.AuditEvent{Sub: "patient-a", Role: "patient", Action: "list", Outcome: "ok"}, tok)

		n = g.auditCount()
		r := g.get(lb.Recordings[0].URL, tok)
		g.expectAudit("view", n, replay.AuditEvent{Sub: "patient-a", Role: "patient", Action: "view", Recording: rid, Outcome: "ok"}, tok)
		got := r.body
		// S3 too is streamed through the server, never redirected to a
		// presigned URL: only a read through the server can be verified.
		if r.status != http.StatusOK || r.header.Get("Content-Type") != "video/webm" || r.header.Get("Location") != "" {
			t.Fatalf("view: %d %q %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		part := g.get(lb.Recordings[0].URL, tok, "Range", "bytes=2-9")
		if part.status != http.StatusPartialContent || !bytes.Equal(part.body, body[2:10]) {
			t.Errorf("range request: %d %q, want 206 %q", part.status, part.body, body[2:10])
		}
		if !bytes.Equal(got, body) {
			t.Fatalf("served %q, want %q", got, body)
		}
		_, man, _ := store.RecordingKeys("patient-a", "cons-a", rid)
		webm, _, _ := store.RecordingKeys("patient-a", "cons-a", rid)
		mr, _, err := g.st.Get(context.Background(), man)
		if err != nil {
			t.Fatal(err)
		}
		env, _ := io.ReadAll(mr)
		mr.Close()
		if _, err := manifest.VerifyObject(g.mkeys.Public(), env, webm, bytes.NewReader(got)); err != nil {
			t.Errorf("served bytes do not verify: %v", err)
		}
	})
}

func TestReplayRefusalsLookMissing(t *testing.T) {
	eachReplayStore(t, func(t *testing.T, g *replayRig) {
		ridA := g.put("patient-a", "cons-a", []byte("a's recording"), "dr-1")
		ridB := g.put("patient-b", "cons-b", []byte("b's recording"), "dr-2")
		bare := uuid.Must(uuid.NewV7()).String()
		missing := uuid.Must(uuid.NewV7()).String()
		bareKey, _, _ := store.RecordingKeys("patient-a", "cons-bare", bare)
		if _, err := g.st.Put(context.Background(), bareKey, strings.NewReader("unsigned"), 8); err != nil {
			t.Fatal(err)
		}
		keyB, _, _ := store.RecordingKeys("patient-b", "cons-b", ridB)
		soon := time.Now().Add(time.Hour)
		tokA := g.token("patient-a", token.RolePatient, soon)
		expired := g.token("patient-a", token.RolePatient, time.Now().Add(-5*time.Minute))
		joinForB := g.mint(token.Claims{Role: token.RoleClinician, Consultation: "cons-b", Patient: "patient-b",
			RegisteredClaims: jwt.RegisteredClaims{Subject: "patient-a", ExpiresAt: jwt.NewNumericDate(soon)}})
		joinOwn := g.mint(token.Claims{Role: token.RolePatient, Consultation: "cons-a", Patient: "patient-a",
			RegisteredClaims: jwt.RegisteredClaims{Subject: "patient-a", ExpiresAt: jwt.NewNumericDate(soon)}})
		_, rogue, _ := ed25519.GenerateKey(rand.Reader)
		foreign, _ := (&token.KeySet{Keys: []token.Key{{ID: "ed1", Alg: "EdDSA", Private: rogue, Public: rogue.Public().(ed25519.PublicKey)}}}).
			Mint("ed1", token.Claims{Role: token.RolePatient, RegisteredClaims: jwt.RegisteredClaims{Subject: "patient-a", ExpiresAt: jwt.NewNumericDate(soon)}})
		tokDr2 := g.token("dr-2", token.RoleClinician, soon)

		cases := []struct {
			name, path, tok string
			hdr             []string
			sub, role, id   string // expected audit attribution
			reason          string
		}{
			{"missing recording", "/v1/recordings/" + missing, tokA, nil, "patient-a", "patient", missing, "not_visible"},
			{"another patient's recording", "/v1/recordings/" + ridB, tokA, nil, "patient-a", "patient", ridB, "not_visible"},
			{"another patient's recording, range", "/v1/recordings/" + ridB, tokA, []string{"Range", "bytes=0-3"}, "patient-a", "patient", ridB, "not_visible"},
			{"clinician not in the consultation", "/v1/recordings/" + ridA, tokDr2, nil, "dr-2", "clinician", ridA, "not_visible"},
			{"webm without manifest", "/v1/recordings/" + bare, tokA, nil, "patient-a", "patient", bare, "not_visible"},
			{"guessed object key", "/v1/recordings/" + keyB, tokA, nil, "patient-a", "patient", "", "bad_id"},
			{"dot-dot", "/v1/recordings/../../" + keyB, tokA, nil, "patient-a", "patient", "", "bad_id"},
			{"encoded dot-dot", "/v1/recordings/..%2F..%2F" + strings.ReplaceAll(keyB, "/", "%2F"), tokA, nil, "patient-a", "patient", "", "bad_id"},
			{"encoded dots", "/v1/recordings/%2e%2e%2f" + ridB, tokA, nil, "patient-a", "patient", "", "bad_id"},
			{"upper-case id", "/v1/recordings/" + strings.ToUpper(ridA), tokA, nil, "patient-a", "patient", "", "bad_id"},
			{"no id", "/v1/recordings/", tokA, nil, "patient-a", "patient", "", "bad_id"},
			{"join token for b's consultation", "/v1/recordings/" + ridB, joinForB, nil, "", "", ridB, "token_invalid"},
			{"join token for own consultation", "/v1/recordings/" + ridA, joinOwn, nil, "", "", ridA, "token_invalid"},
			{"expired token", "/v1/recordings/" + ridA, expired, nil, "", "", ridA, "token_expired"},
			{"token from another issuer", "/v1/recordings/" + ridA, foreign, nil, "", "", ridA, "token_invalid"},
			{"no token", "/v1/recordings/" + ridA, "", nil, "", "", ridA, "token_missing"},
			{"basic auth", "/v1/recordings/" + ridA, "", []string{"Authorization", "Basic " + tokA}, "", "", ridA, "token_missing"},
			{"token in query", "/v1/recordings/" + ridA + "?access_token=" + tokA, "", nil, "", "", ridA, "query_string"},
			{"token in query and header", "/v1/recordings/" + ridA + "?token=" + tokA, tokA, nil, "", "", ridA, "query_string"},
			{"outside replay", "/v1/other", tokA, nil, "", "", "", "bad_path"},
		}
		for _, c := range cases {
			n := g.auditCount()
			r := g.get(c.path, c.tok, c.hdr...)
			if r.status != http.StatusNotFound || string(r.body) != replayNotFound || r.header.Get("Location") != "" ||
				r.header.Get("Content-Type") != "application/json" {
				t.Errorf("%s: %d %q Location=%q; want 404 %q", c.name, r.status, r.body, r.header.Get("Location"), replayNotFound)
			}
			g.expectAudit(c.name, n, replay.AuditEvent{Sub: c.sub, Role: c.role, Action: "refuse", Recording: c.id, Outcome: "refused", Reason: c.reason}, c.tok, tokA)
		}

		// The list refuses bad tokens with a generic 401.
		for _, c := range []struct{ name, path, tok, reason string }{
			{"no token", "/v1/recordings", "", "token_missing"},
			{"expired", "/v1/recordings", expired, "token_expired"},
			{"join token", "/v1/recordings", joinOwn, "token_invalid"},
			{"token in query", "/v1/recordings?token=" + tokA, "", "query_string"},
		} {
			n := g.auditCount()
			r := g.get(c.path, c.tok)
			if r.status != http.StatusUnauthorized || string(r.body) != `{"error":"unauthorized"}`+"\n" {
				t.Errorf("list, %s: %d %s; want 401", c.name, r.status, r.body)
			}
			g.expectAudit("list, "+c.name, n, replay.AuditEvent{Action: "refuse", Outcome: "refused", Reason: c.reason}, c.tok, tokA)
		}
		if _, evs := g.auditLines(); g.counted.Load() != int64(len(evs)) {
			t.Errorf("Counted called %d times for %d audit lines", g.counted.Load(), len(evs))
		}
	})
}

func TestReplayClinicianSeesTheirConsultations(t *testing.T) {
	eachReplayStore(t, func(t *testing.T, g *replayRig) {
		r1 := g.put("patient-a", "cons-a", []byte("a"), "dr-1")
		r2 := g.put("patient-b", "cons-b", []byte("b"), "dr-1", "dr-2")
		r3 := g.put("patient-c", "cons-c", []byte("c"), "dr-2")
		for _, c := range []struct {
			sub  string
			want []string
		}{{"dr-1", []string{r1, r2}}, {"dr-2", []string{r2, r3}}, {"dr-3", nil}} {
			r := g.get("/v1/recordings", g.token(c.sub, token.RoleClinician, time.Now().Add(time.Hour)))
			var lb listBody
			if err := json.Unmarshal(r.body, &lb); err != nil {
				t.Fatalf("%s: %d %s", c.sub, r.status, r.body)
			}
			var got []string
			for _, rec := range lb.Recordings {
				got = append(got, rec.ID)
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("%s sees %v, want %v", c.sub, got, c.want)
			}
			if bytes.Contains(r.body, []byte("patient-")) {
				t.Errorf("%s's list names patients: %s", c.sub, r.body)
			}
		}
		tok := g.token("dr-2", token.RoleClinician, time.Now().Add(time.Hour))
		if r := g.get("/v1/recordings/"+r3, tok); r.status != http.StatusOK {
			t.Errorf("dr-2 views r3: %d %s", r.status, r.body)
		}
		if r := g.get("/v1/recordings/"+r1, tok); r.status != http.StatusNotFound || string(r.body) != replayNotFound {
			t.Errorf("dr-2 views r1 (not theirs): %d %s", r.status, r.body)
		}
	})
}

func TestReplaySwitchOff(t *testing.T) {
	g, rid, tok := localRig(t)

	g.enabled.Store(false)
	for _, path := range []string{"/v1/recordings", "/v1/recordings/" + rid} {
		n := g.auditCount()
		r := g.get(path, tok)
		if r.status != http.StatusNotFound || string(r.body) != replayNotFound {
			t.Errorf("replay off, GET %s: %d %s; want 404 %s", path, r.status, r.body, replayNotFound)
		}
		id := ""
		if path != "/v1/recordings" {
			id = rid
		}
		g.expectAudit("replay off "+path, n, replay.AuditEvent{Sub: "patient-a", Role: "patient", Action: "refuse", Recording: id, Outcome: "refused", Reason: "replay_off"}, tok)
	}
	g.enabled.Store(true)
	if lb := g.list(tok); len(lb.Recordings) != 1 || lb.Recordings[0].ID != rid {
		t.Errorf("replay back on: list %+v", lb)
	}
	if r := g.get("/v1/recordings/"+rid, tok); r.status != http.StatusOK || string(r.body) != "a's recording" {
		t.Errorf("replay back on: view %d %q", r.status, r.body)
	}
}

func TestReplayNothingServedWithoutAudit(t *testing.T) {
	g, rid, tok := localRig(t)
	g.rp.Audit = failingAudit{}
	for _, path := range []string{"/v1/recordings", "/v1/recordings/" + rid} {
		r := g.get(path, tok)
		if r.status != http.StatusServiceUnavailable || bytes.Contains(r.body, []byte("recording")) || bytes.Contains(r.body, []byte(rid)) {
			t.Errorf("GET %s with a failing audit log: %d %s; want 503 and nothing served", path, r.status, r.body)
		}
	}
}

// failingAudit is an audit log whose disk is full.
type failingAudit struct{}

func (failingAudit) Record(replay.AuditEvent) error { return errors.New("disk full") }
