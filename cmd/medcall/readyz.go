package main

import (
	"fmt"
	"net/http"
	"sync/atomic"
)

// readiness answers /readyz on the admin listener:
//
//	503 "not ready: starting or draining"  do not send calls here
//	200 "degraded: store unreachable"      calls work; recordings wait in the outbox
//	200 "ready"                            everything answers
//
// A degraded server stays in rotation: calls need no store until a recording
// is finished, and taking every server out of rotation because the shared
// store is down would stop all calls. The Kubernetes readinessProbe reads
// only the status; the body and medcall_store_up tell an operator why.
type readiness struct {
	serving atomic.Bool
	store   atomic.Pointer[storeLink]
}

func (r *readiness) storeUp() bool {
	l := r.store.Load()
	return l != nil && l.Up()
}

// ServeHTTP answers /readyz.
func (r *readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	switch {
	case !r.serving.Load():
		http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
	case !r.storeUp():
		fmt.Fprintln(w, "degraded: store unreachable")
	default:
		fmt.Fprintln(w, "ready")
	}
}
