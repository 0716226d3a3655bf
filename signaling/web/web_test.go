package web_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/medcall/medcall/signaling/token"
	"github.com/medcall/medcall/signaling/web"
)

// recordingMint remembers what it was asked to mint.
type recordingMint struct {
	calls []string
	err   error
}

func (m *recordingMint) mint(role, sub, cid, pid string, rec, replay bool) (string, error) {
	m.calls = append(m.calls, strings.Join([]string{role, sub, cid, pid, map[bool]string{true: "rec"}[rec], map[bool]string{true: "replay"}[replay]}, "|"))
	if m.err != nil {
		return "", m.err
	}
	return "header.claims.signature", nil
}

func serve(h http.Handler, method, target, body string, edit func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	r.RemoteAddr = "127.0.0.1:50000"
	r.Host = "127.0.0.1:8080"
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	if edit != nil {
		edit(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestAssets checks every page asset is served with its content type and the
// security headers, and that unknown paths are 404 (still with the CSP).
func TestAssets(t *testing.T) {
	h := web.Handler(web.Options{})
	cases := []struct {
		path, ctype, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="/app.js">`},
		{"/index.html", "text/html; charset=utf-8", "Switch to video"},
		{"/app.js", "text/javascript; charset=utf-8", "from '/client/medcall.js'"},
		{web.ClientPath, "text/javascript; charset=utf-8", "export class MedcallClient"},
		{"/style.css", "text/css; charset=utf-8", ".tile"},
		{"/tokens.js", "text/javascript; charset=utf-8", "export function tokenClaims"},
		{"/recordings.js", "text/javascript; charset=utf-8", "export function parseRecordings"},
		{"/view.js", "text/javascript; charset=utf-8", "export function attach"},
		{"/client/remote.js", "text/javascript; charset=utf-8", "export class RemoteMedia"},
		{"/config.json", "application/json", `"dev":false`},
	}
	for _, c := range cases {
		w := serve(h, "GET", c.path, "", nil)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: status %d", c.path, w.Code)
			continue
		}
		if got := w.Header().Get("Content-Type"); got != c.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.ctype)
		}
		if !strings.Contains(w.Body.String(), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
		checkSecurityHeaders(t, "GET "+c.path, w.Header())
	}
	for _, p := range []string{"/nope", "/static/index.html", "/client/", "/dev/token"} {
		w := serve(h, "GET", p, "", nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, w.Code)
		}
		checkSecurityHeaders(t, "GET "+p, w.Header())
	}
	// Revalidation with the ETag avoids sending the module again.
	first := serve(h, "GET", web.ClientPath, "", nil)
	again := serve(h, "GET", web.ClientPath, "", func(r *http.Request) { r.Header.Set("If-None-Match", first.Header().Get("ETag")) })
	if again.Code != http.StatusNotModified {
		t.Errorf("conditional GET: status %d, want 304", again.Code)
	}
}

// TestClientImportsServed checks every module the browser client imports
// (static/medcall.js and the modules beside it) is served next to it under
// /client/, so `import ... from '/client/medcall.js'` loads in a page.
func TestClientImportsServed(t *testing.T) {
	h := web.Handler(web.Options{})
	mods := clientModules(t)
	if len(mods) < 2 {
		t.Fatalf("found no imports in medcall.js (%v): is the import pattern stale?", mods)
	}
	for _, f := range mods {
		p := path.Join(path.Dir(web.ClientPath), f)
		w := serve(h, "GET", p, "", nil)
		if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "text/javascript; charset=utf-8" {
			t.Errorf("GET %s: status %d, Content-Type %q; medcall.js imports %s: add it to routes in web.go",
				p, w.Code, w.Header().Get("Content-Type"), f)
		}
	}
	// The README tells people hosting the client elsewhere which files to serve.
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range mods {
		if !strings.Contains(string(readme), "`"+f+"`") {
			t.Errorf("README.md does not name the client module `%s` among the files to serve", f)
		}
	}
}

func checkSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	csp := h.Get("Content-Security-Policy")
	if csp != web.CSP {
		t.Errorf("%s: CSP %q", what, csp)
	}
	for _, bad := range []string{"'unsafe-inline'", "'unsafe-eval'", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("%s: CSP allows %s", what, bad)
		}
	}
	for _, want := range []string{"script-src 'self'", "default-src 'none'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("%s: CSP lacks %s", what, want)
		}
	}
	if h.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%s: no X-Content-Type-Options: nosniff", what)
	}
}

// TestModuleImportsAreServed: every module a served script imports is served
// too (a missing route would break the page only in a browser).
func TestModuleImportsAreServed(t *testing.T) {
	h := web.Handler(web.Options{})
	imports := regexp.MustCompile(`(?m)^import .* from '([^']+)';$`)
	for _, p := range []string{"/app.js", web.ClientPath} {
		body := serve(h, "GET", p, "", nil).Body.String()
		ms := imports.FindAllStringSubmatch(body, -1)
		if len(ms) == 0 {
			t.Errorf("%s imports nothing; the pattern no longer matches its import lines", p)
		}
		for _, m := range ms {
			target := path.Join(path.Dir(p), m[1])
			if strings.HasPrefix(m[1], "/") {
				target = m[1]
			}
			if w := serve(h, "GET", target, "", nil); w.Code != http.StatusOK {
				t.Errorf("%s imports %s (%s): status %d", p, m[1], target, w.Code)
			}
		}
	}
}

// TestPageHasNoInlineScript keeps the page compatible with the CSP: no inline
// scripts, event-handler attributes or inline styles, and nothing external.
func TestPageHasNoInlineScript(t *testing.T) {
	body := serve(web.Handler(web.Options{}), "GET", "/", "", nil).Body.String()
	for _, bad := range []string{"<script>", " onclick=", " onload=", " style=", "<style", "http://", "https://", "javascript:"} {
		if strings.Contains(body, bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
}

// TestDevTokenDisabled: without Dev there is no token endpoint at all.
func TestDevTokenDisabled(t *testing.T) {
	m := &recordingMint{}
	h := web.Handler(web.Options{Mint: m.mint})
	w := serve(h, "POST", "/dev/token", `{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1"}`, nil)
	if w.Code != http.StatusNotFound && w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /dev/token without Dev: status %d", w.Code)
	}
	if len(m.calls) != 0 {
		t.Errorf("minted without Dev: %v", m.calls)
	}
	if strings.Contains(serve(h, "GET", "/config.json", "", nil).Body.String(), `"dev":true`) {
		t.Error("config says dev without Dev")
	}
}

// TestDevToken covers who may mint and what input is accepted.
func TestDevToken(t *testing.T) {
	cases := []struct {
		name   string
		body   string
		edit   func(*http.Request)
		status int
		msg    string // part of the error message, or of the minted call on success
	}{
		{"patient join", `{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1","rec":true}`, nil, 200, "patient|p-1|c-1|p-1|rec|"},
		{"patient sub defaults to pid", `{"role":"patient","cid":"c-1","pid":"p-1"}`, nil, 200, "patient|p-1|c-1|p-1||"},
		{"clinician join", `{"role":"clinician","sub":"d-1","cid":"c-1","pid":"p-1"}`, nil, 200, "clinician|d-1|c-1|p-1||"},
		{"patient replay", `{"role":"patient","sub":"p-1","replay":true}`, nil, 200, "patient|p-1||||replay"},
		{"ipv6 loopback", `{"role":"clinician","sub":"d-1","cid":"c-1","pid":"p-1"}`, func(r *http.Request) { r.RemoteAddr = "[::1]:5000"; r.Host = "[::1]:8080" }, 200, "clinician|d-1"},
		{"localhost host", `{"role":"clinician","sub":"d-1","cid":"c-1","pid":"p-1"}`, func(r *http.Request) { r.Host = "localhost:8080" }, 200, "clinician|d-1"},

		{"remote caller", `{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1"}`, func(r *http.Request) { r.RemoteAddr = "192.0.2.7:5000" }, 403, "loopback"},
		{"through a proxy", `{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1"}`, func(r *http.Request) { r.Header.Set("X-Forwarded-For", "192.0.2.7") }, 403, "proxy"},
		{"rebound host name", `{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1"}`, func(r *http.Request) { r.Host = "evil.example:8080" }, 403, "localhost"},
		{"form post", `role=patient`, func(r *http.Request) { r.Header.Set("Content-Type", "application/x-www-form-urlencoded") }, 415, "application/json"},
		{"not json", `{"role":`, nil, 400, "malformed request"},
		{"unknown field", `{"role":"patient","sub":"p-1","cid":"c-1","pid":"p-1","admin":true}`, nil, 400, "unknown field"},
		{"no role", `{"sub":"p-1","cid":"c-1","pid":"p-1"}`, nil, 400, "role is required"},
		{"bad role", `{"role":"admin","sub":"p-1","cid":"c-1","pid":"p-1"}`, nil, 400, `role "admin"`},
		{"e-mail as sub", `{"role":"clinician","sub":"dr@example.org","cid":"c-1","pid":"p-1"}`, nil, 400, "sub must match"},
		{"missing cid", `{"role":"clinician","sub":"d-1","pid":"p-1"}`, nil, 400, "cid must match"},
		{"long pid", `{"role":"clinician","sub":"d-1","cid":"c-1","pid":"` + strings.Repeat("x", 65) + `"}`, nil, 400, "pid must match"},
		{"patient for another", `{"role":"patient","sub":"p-2","cid":"c-1","pid":"p-1"}`, nil, 400, "sub must equal pid"},
		{"replay with cid", `{"role":"patient","sub":"p-1","cid":"c-1","replay":true}`, nil, 400, "replay token takes no"},
		{"guest replay", `{"role":"guest","sub":"g-1","replay":true}`, nil, 400, "guests have no replay"},
		{"huge body", `{"role":"patient","sub":"` + strings.Repeat("a", 5000) + `"}`, nil, 400, "malformed request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := &recordingMint{}
			h := web.Handler(web.Options{Dev: true, Mint: m.mint})
			w := serve(h, "POST", "/dev/token", c.body, c.edit)
			if w.Code != c.status {
				t.Fatalf("status %d, want %d; body %s", w.Code, c.status, w.Body)
			}
			if w.Header().Get("Cache-Control") != "no-store" {
				t.Error("token response may be cached")
			}
			var out struct{ Token, Error string }
			if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
				t.Fatalf("body is not JSON: %v: %s", err, w.Body)
			}
			if c.status == 200 {
				if out.Token != "header.claims.signature" || len(m.calls) != 1 || !strings.HasPrefix(m.calls[0], c.msg) {
					t.Errorf("token %q, mint calls %v, want a call starting %q", out.Token, m.calls, c.msg)
				}
				return
			}
			if !strings.Contains(out.Error, c.msg) {
				t.Errorf("error %q does not say %q", out.Error, c.msg)
			}
			if len(m.calls) != 0 {
				t.Errorf("minted on a refused request: %v", m.calls)
			}
		})
	}
}

// TestDevTokenMintFailure: a signing failure is a 500 that names the cause.
func TestDevTokenMintFailure(t *testing.T) {
	m := &recordingMint{err: errors.New("no key \"ed1\" in the key set")}
	w := serve(web.Handler(web.Options{Dev: true, Mint: m.mint}), "POST", "/dev/token", `{"role":"clinician","sub":"d-1","cid":"c-1","pid":"p-1"}`, nil)
	b, _ := io.ReadAll(w.Body)
	if w.Code != http.StatusInternalServerError || !strings.Contains(string(b), "could not mint a token: no key") {
		t.Errorf("status %d body %s", w.Code, b)
	}
}

// TestDevTokenVerifies: a token minted through the endpoint with the test
// server's minting function is accepted by the verifier the server uses.
func TestDevTokenVerifies(t *testing.T) {
	keys := testKeys(t)
	h := web.Handler(web.Options{Dev: true, Mint: devMint(keys)})
	w := serve(h, "POST", "/dev/token", `{"role":"clinician","sub":"d-1","cid":"c-9","pid":"p-9","rec":true}`, nil)
	var out struct{ Token string }
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Token == "" {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	g, err := (&token.Verifier{Keys: keys.Public()}).VerifyJoin(out.Token)
	if err != nil {
		t.Fatal(err)
	}
	if g.Participant != "d-1" || g.Consultation != "c-9" || g.Patient != "p-9" || !g.Record || g.Role != token.RoleClinician {
		t.Errorf("claims %+v", g)
	}
}

func devMint(keys *token.KeySet) func(role, sub, cid, pid string, rec, replay bool) (string, error) {
	return func(role, sub, cid, pid string, rec, replay bool) (string, error) {
		now := time.Now()
		c := token.Claims{Role: role, Consultation: cid, Patient: pid, Record: rec,
			RegisteredClaims: jwt.RegisteredClaims{Subject: sub, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour))}}
		return keys.Mint("ed1", c)
	}
}

func testKeys(t *testing.T) *token.KeySet {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &token.KeySet{Keys: []token.Key{{ID: "ed1", Alg: "EdDSA", Public: priv.Public().(ed25519.PublicKey), Private: priv}}}
}
