package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadinessStates: 503 while starting or draining, 200 "degraded: store
// unreachable" while the store does not answer, 200 "ready" otherwise.
func TestReadinessStates(t *testing.T) {
	up, down := &storeLink{}, &storeLink{}
	up.up.Store(true)
	for _, c := range []struct {
		name    string
		serving bool
		store   *storeLink
		code    int
		body    string
	}{
		{"starting", false, nil, http.StatusServiceUnavailable, "not ready: starting or draining"},
		{"draining", false, up, http.StatusServiceUnavailable, "not ready: starting or draining"},
		{"store not linked yet", true, nil, http.StatusOK, "degraded: store unreachable"},
		{"store down", true, down, http.StatusOK, "degraded: store unreachable"},
		{"ready", true, up, http.StatusOK, "ready"},
	} {
		var r readiness
		r.serving.Store(c.serving)
		if c.store != nil {
			r.store.Store(c.store)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		if w.Code != c.code || strings.TrimSpace(w.Body.String()) != c.body {
			t.Errorf("%s: %d %q, want %d %q", c.name, w.Code, w.Body.String(), c.code, c.body)
		}
	}
}
