package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/recorder/replay"
	"github.com/medcall/medcall/signaling/token"
)

// newReplay builds the replay API over the recording store, with its audit
// log under --data/audit and the operator switch. The index is built from
// the store in the background and refreshed until ctx ends.
func newReplay(ctx context.Context, data string, rec *recording, verifier *token.Verifier, on *atomic.Bool, met *metrics, log *slog.Logger) (*replay.Handler, *replay.Audit, error) {
	audit, err := replay.OpenAudit(filepath.Join(data, "audit", "replay.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	audit.OnRecord = func(action, outcome string) { met.audit.WithLabelValues(action, outcome).Inc() }
	idx := &replay.Index{
		Store: rec.store, Keys: rec.keys.Public(), Logger: log, OrphanGrace: time.Minute,
		Alert: func(reason string) {
			met.verifyFailures.WithLabelValues(reason).Inc()
			log.Error("ALERT: a recording failed verification and is hidden", "reason", reason)
		},
	}
	go func() {
		// In the background: a store that is down must not hold up start-up.
		if err := idx.Rebuild(ctx); err != nil {
			log.Warn("replay index not built yet; will retry", "err", err)
		}
		idx.Run(ctx, replayRefresh)
	}()
	return &replay.Handler{
		Verifier: verifier, Index: idx, Enabled: on, Logger: log, Audit: audit,
		Counted: func(_, outcome string) { met.replay.WithLabelValues(outcome).Inc() },
	}, audit, nil
}

// replayRefresh is how often the replay index picks up recordings stored
// since start-up (a patient's own list picks up theirs at once).
const replayRefresh = 10 * time.Second

// withReplay routes the replay paths to the replay API before the mux sees
// them: the mux would answer a path with "../" with a redirect that is
// neither audited nor the uniform not-found.
func withReplay(h http.Handler, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == replay.Path || strings.HasPrefix(p, replay.Path+"/") || strings.HasPrefix(r.URL.EscapedPath(), replay.Path+"/") {
			h.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// replaySwitch is the operator's admin endpoint: GET shows the state, PUT with
// body "on" or "off" changes it at once.
func replaySwitch(on *atomic.Bool, log *slog.Logger) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			b, _ := io.ReadAll(io.LimitReader(r.Body, 16))
			switch strings.TrimSpace(string(b)) {
			case "on":
				on.Store(true)
			case "off":
				on.Store(false)
			default:
				http.Error(w, `body must be "on" or "off"`, http.StatusBadRequest)
				return
			}
			log.Warn("replay switched by the operator", "on", on.Load())
		}
		state := "off"
		if on.Load() {
			state = "on"
		}
		fmt.Fprintln(w, state)
	}
}
