// Package web serves medcall's browser client (static/medcall.js, an ES module
// that speaks signaling/PROTOCOL.md, and the modules beside it that it imports) and the demo page that uses it, from
// assets embedded in the binary. In development mode it also mints tokens for
// loopback callers (POST /dev/token), so the demo works without a booking
// backend.
package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"time"
)

//go:embed static
var static embed.FS

// ClientPath is the stable URL of the browser client module.
const ClientPath = "/client/medcall.js"

// CSP is the Content-Security-Policy of every response: scripts and styles
// only from this origin as files (no inline script or style, no eval), media
// from this origin or blob: (replayed recordings), network access only to
// this origin (the signaling WebSocket included), no framing.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
	"media-src 'self' blob:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Options configure Handler.
type Options struct {
	// Dev serves POST /dev/token, which mints tokens for loopback callers.
	// Never enable it on a server others can reach.
	Dev bool
	// Mint signs a token: a join token (role, sub, cid, pid, rec) or, with
	// replay set, a replay token (role and sub only). Required when Dev is set.
	Mint func(role, sub, cid, pid string, rec bool, replay bool) (string, error)
}

// asset is one embedded file ready to serve.
type asset struct {
	name  string // for http.ServeContent
	ctype string
	body  []byte
	etag  string
}

// routes maps request paths to embedded files. Anything else is 404: the
// handler is mounted at "/" and must not shadow typos with the index page.
var routes = map[string]string{
	"/":           "static/index.html",
	"/index.html": "static/index.html",
	"/app.js":     "static/app.js",
	"/style.css":  "static/style.css",
	"/replay.js":  "static/replay.js",
	"/tokens.js":  "static/tokens.js",
	"/view.js":    "static/view.js",
	ClientPath:    "static/medcall.js",
	// Imported by app.js.
	"/recordings.js": "static/recordings.js",
	// The modules medcall.js imports as './NAME.js' (and they from each
	// other); TestClientImportsServed keeps this list complete.
	"/client/remote.js":    "static/remote.js",
	"/client/netwatch.js":  "static/netwatch.js",
	"/client/protocol.js":  "static/protocol.js",
	"/client/signaling.js": "static/signaling.js",
	"/client/negotiate.js": "static/negotiate.js",
	"/client/recovery.js":  "static/recovery.js",
	"/client/stats.js":     "static/stats.js",
	"/client/media.js":     "static/media.js",
	"/client/sendscale.js": "static/sendscale.js",
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

// Handler serves the demo page at /, the client module at ClientPath, a small
// config document at /config.json and, with o.Dev, POST /dev/token.
func Handler(o Options) http.Handler {
	assets := map[string]*asset{}
	for p, file := range routes {
		b, err := fs.ReadFile(static, file)
		if err != nil {
			panic("web: embedded asset missing: " + file) // a build fault, caught by every test
		}
		sum := sha256.Sum256(b)
		assets[p] = &asset{name: path.Base(file), ctype: contentTypes[path.Ext(file)], body: b,
			etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
	}
	cfg, _ := json.Marshal(map[string]any{"dev": o.Dev, "signal": "/v1/signal", "client": ClientPath})
	mux := http.NewServeMux()
	for p, a := range assets {
		pattern := "GET " + p
		if p == "/" {
			pattern = "GET /{$}"
		}
		mux.Handle(pattern, a)
	}
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(cfg)
	})
	if o.Dev {
		mux.Handle("POST /dev/token", &devToken{mint: o.Mint})
	}
	return secure(mux)
}

// ServeHTTP serves the asset with its fixed content type and an ETag; the
// browser revalidates every time, so a new binary's assets are picked up.
func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", a.ctype)
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// secure adds the security headers to every response, errors included.
func secure(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", CSP)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Permissions-Policy", "camera=(self), microphone=(self), geolocation=()")
		h.ServeHTTP(w, r)
	})
}
