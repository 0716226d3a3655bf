package recorder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Recover finalizes the spools in dir (Options.SpoolDir when dir is empty)
// that belong to no recording in progress — those left by a crash. Each
// becomes a WebM with Recovered set, published like any other. A torn tail
// is cut at the last whole record. It returns what it finalized, failures
// included (Failed set).
func (r *Recorder) Recover(ctx context.Context, dir string) ([]*Recording, error) {
	if dir == "" {
		dir = r.opts.SpoolDir
	}
	paths, err := filepath.Glob(filepath.Join(dir, "*.spool"))
	if err != nil {
		return nil, err
	}
	var out []*Recording
	for _, p := range paths {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if r.isActive(p) {
			continue
		}
		r.log.Warn("recovering orphaned spool", "spool", filepath.Base(p))
		out = append(out, r.finalize(ctx, p, true))
	}
	return out, nil
}

// finalize turns the spool at path into a published WebM and removes the
// spool. On failure the recording is reported failed.
func (r *Recorder) finalize(ctx context.Context, path string, recovered bool) *Recording {
	partial := strings.HasSuffix(path, partialSuffix)
	sc, err := readSpool(path)
	if err != nil {
		rec := &Recording{ID: strings.TrimSuffix(strings.TrimSuffix(filepath.Base(path), ".spool"), ".partial"), Recovered: recovered}
		// Without a header there is no binding: the media (if any) belongs
		// to nobody we can name, so nothing can be published. Removing the
		// file keeps the spool directory (and medcall_spool_bytes) true.
		r.failed.Add(1)
		r.log.Error("spool unreadable (no valid header); removed", "spool", filepath.Base(path), "err", err)
		if rmErr := os.Remove(path); rmErr != nil {
			r.log.Error("could not remove unreadable spool", "spool", filepath.Base(path), "err", rmErr)
		}
		rec.Failed, rec.Err = true, err
		return rec
	}
	if sc.torn {
		r.log.Warn("spool has a torn tail; cutting it", "recording", sc.header.Recording,
			"valid_bytes", sc.validSize)
		if err := os.Truncate(path, sc.validSize); err != nil {
			r.log.Warn("could not cut torn spool tail", "recording", sc.header.Recording, "err", err)
		}
	}
	out := strings.TrimSuffix(path, ".spool") + ".webm"
	tracks, base, err := writeWebM(ctx, sc, path, out)
	rec := summarize(sc, tracks, base)
	rec.Recovered, rec.Partial = recovered, partial
	if err != nil {
		err = fmt.Errorf("recording %s (consultation %s): finalize: %w; recording marked failed",
			rec.ID, rec.Consultation, err)
		rec.Failed, rec.Err = true, err
		if errors.Is(err, ErrNoMedia) {
			r.log.Warn("recording has no media", "recording", rec.ID)
			os.Remove(path)
			r.failed.Add(1)
			r.publishFailed(ctx, rec)
			return rec
		}
		// The spool is intact: keep it so a later Recover can try again.
		r.failed.Add(1)
		r.log.Error("recording failed", "recording", rec.ID, "consultation", rec.Consultation, "err", err)
		r.publishFailed(ctx, rec)
		return rec
	}
	if err := r.opts.Publisher.Publish(ctx, rec, out); err != nil {
		err = fmt.Errorf("recording %s (consultation %s): publish: %w; spool kept for recovery",
			rec.ID, rec.Consultation, err)
		rec.Failed, rec.Err = true, err
		r.failed.Add(1)
		r.log.Error("recording failed", "recording", rec.ID, "err", err)
		os.Remove(out)
		return rec
	}
	os.Remove(path)
	if partial {
		r.partial.Add(1)
	} else {
		r.completed.Add(1)
	}
	if recovered {
		r.recovered.Add(1)
	}
	r.log.Info("recording published", "recording", rec.ID, "consultation", rec.Consultation,
		"tracks", len(rec.Tracks), "recovered", recovered, "partial", partial)
	return rec
}

// partialSuffix names a spool whose writing failed. What it holds is
// finalized as a partial recording, at once or by a later Recover.
const partialSuffix = ".partial.spool"

// finalizePartial keeps what a recording spooled before its spool could no
// longer be written (cause, e.g. a full disk): the spool is renamed so that
// even a crash now leaves it marked, then finalized as a partial recording.
func (r *Recorder) finalizePartial(ctx context.Context, path string, cause error) {
	p := strings.TrimSuffix(path, ".spool") + partialSuffix
	if err := os.Rename(path, p); err != nil {
		r.failed.Add(1)
		r.log.Error("recording failed: spool could not be marked partial", "spool", filepath.Base(path), "cause", cause, "err", err)
		return
	}
	r.log.Error("recording stopped early; keeping what was spooled as a partial recording",
		"spool", filepath.Base(p), "err", cause)
	r.finalize(ctx, p, false)
}

// summarize builds the Recording from a spool and its written tracks.
func summarize(sc *spoolContents, tracks []TrackSummary, baseMS int64) *Recording {
	h := sc.header
	rec := &Recording{
		ID: h.Recording, Consultation: h.Consultation, Patient: h.Patient, Previous: h.Previous,
		Started: h.Started.Add(msDuration(baseMS)), Tracks: tracks,
	}
	rec.Ended = rec.Started
	for _, t := range tracks {
		if e := rec.Started.Add(msDuration(t.LastMS)); e.After(rec.Ended) {
			rec.Ended = e
		}
	}
	if sc.end != nil {
		rec.Ended = sc.end.Ended
	}
	seen := map[string]int{}
	touch := func(id, role string, at time.Time) *Participant {
		i, ok := seen[id]
		if !ok {
			i = len(rec.Participants)
			seen[id] = i
			rec.Participants = append(rec.Participants, Participant{ID: id, Role: role})
		}
		p := &rec.Participants[i]
		if p.Role == "" {
			p.Role = role
		}
		if !at.IsZero() && (p.Joined.IsZero() || at.Before(p.Joined)) {
			p.Joined = at
		}
		return p
	}
	for _, e := range sc.events {
		rec.Events = append(rec.Events, EventSummary{
			Time: e.Time, OffsetMS: e.Time.Sub(rec.Started).Milliseconds(),
			Type: e.Type, Participant: e.Participant, Role: e.Role, Path: e.Path,
		})
		if e.Participant == "" {
			continue
		}
		if e.Type == "left" {
			p := touch(e.Participant, e.Role, time.Time{})
			p.Left = e.Time
			continue
		}
		touch(e.Participant, e.Role, e.Time)
	}
	for _, t := range tracks {
		touch(t.Participant, t.Role, rec.Started.Add(msDuration(t.FirstMS)))
	}
	return rec
}
