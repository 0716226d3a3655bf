package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/recorder"
	"github.com/medcall/medcall/signaling"
	"github.com/medcall/medcall/signaling/token"
)

// replayLib adapts recorder.Library (which decides what a person may see) to
// the signaling package's ReplayLibrary, so signaling never imports recorder.
type replayLib struct{ lib *recorder.Library }

func toRecording(e *recorder.Entry) signaling.Recording {
	return signaling.Recording{ID: e.ID, Consultation: e.Consultation, Started: e.Started, Ended: e.Ended,
		DurationMS: e.DurationMS, Size: e.Size, Recovered: e.Recovered, Ref: e}
}

func notVisible(err error) error {
	if errors.Is(err, recorder.ErrNotVisible) {
		return signaling.ErrNotVisible
	}
	return err
}

func (a replayLib) Visible(ctx context.Context, sub, role string) ([]signaling.Recording, error) {
	es, err := a.lib.Visible(ctx, sub, role)
	out := make([]signaling.Recording, len(es))
	for i := range es {
		out[i] = toRecording(&es[i])
	}
	return out, err
}

func (a replayLib) Find(ctx context.Context, sub, role, id string) (signaling.Recording, error) {
	e, err := a.lib.Find(ctx, sub, role, id)
	if err != nil {
		return signaling.Recording{}, notVisible(err)
	}
	return toRecording(e), nil
}

func (a replayLib) Open(ctx context.Context, r signaling.Recording) (io.ReadSeekCloser, time.Time, error) {
	e, _ := r.Ref.(*recorder.Entry)
	rc, info, err := a.lib.Open(ctx, e)
	return rc, info.ModTime, notVisible(err)
}

func (a replayLib) Presign(ctx context.Context, r signaling.Recording, ttl time.Duration) (string, bool, error) {
	e, _ := r.Ref.(*recorder.Entry)
	u, ok, err := a.lib.Presign(ctx, e, ttl)
	return u, ok, notVisible(err)
}

// newReplay builds the replay API over the recording store, with its audit
// log under --data/audit and the operator switch.
func newReplay(data string, rec *recording, verifier *token.Verifier, on *atomic.Bool, met *metrics, log *slog.Logger) (*signaling.Replay, *recorder.Audit, error) {
	audit, err := recorder.OpenAudit(filepath.Join(data, "audit", "replay.jsonl"))
	if err != nil {
		return nil, nil, err
	}
	audit.OnRecord = func(action, outcome string) { met.audit.WithLabelValues(action, outcome).Inc() }
	lib := &recorder.Library{
		Store: rec.store, Keys: rec.keys.Public(), Logger: log,
		Alert: func(reason string) {
			met.verifyFailures.WithLabelValues(reason).Inc()
			log.Error("ALERT: a recording failed verification and is hidden", "reason", reason)
		},
	}
	return &signaling.Replay{
		Verifier: verifier, Library: replayLib{lib}, Enabled: on, Logger: log,
		Audit:   signaling.AuditFunc(func(ev signaling.AuditEvent) error { return audit.Record(recorder.AuditEvent(ev)) }),
		Counted: func(_, outcome string) { met.replay.WithLabelValues(outcome).Inc() },
	}, audit, nil
}

// withReplay routes the replay paths to the replay API before the mux sees
// them: the mux would answer a path with "../" with a redirect that is
// neither audited nor the uniform not-found.
func withReplay(replay http.Handler, mux http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/v1/recordings" || strings.HasPrefix(p, "/v1/recordings/") || strings.HasPrefix(r.URL.EscapedPath(), "/v1/recordings/") {
			replay.ServeHTTP(w, r)
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
