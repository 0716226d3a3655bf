package recorder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
)

// Uploader is the Publisher that puts finished recordings into the object
// store next to a signed manifest. Publish only parks the recording in a
// durable local outbox; Run uploads what is parked, signs the manifest over
// the object's key and digest, verifies both in the store and only then
// deletes the local copy. A store outage loses nothing: uploads retry with
// backoff, and a restart resumes whatever the outbox holds.
type Uploader struct {
	store   store.Store
	keys    *manifest.KeySet
	outbox  string
	log     *slog.Logger
	version string
	obs     UploadObserver

	kick    chan struct{}
	pending atomic.Int64
	failed  atomic.Uint64 // upload attempts that failed
}

// UploadObserver receives the uploader's measurements; any field may be nil.
type UploadObserver struct {
	Uploaded func(d time.Duration) // a recording safely stored: time from parked to verified
	Failed   func()                // one failed upload attempt
	Signed   func()                // one manifest signed
	// Stored is called once a recording and its manifest are verified in
	// the store, before the local copy goes (so a crash repeats it).
	Stored func(rec *Recording, o StoredObjects)
	// RecordingFailed is called when a failed recording is set down.
	RecordingFailed func(rec *Recording)
}

// UploaderOptions configure an Uploader.
type UploaderOptions struct {
	Store    store.Store
	Keys     *manifest.KeySet // signing keys (with private halves)
	Outbox   string           // local directory for recordings waiting to be stored
	Version  string           // recorder version written into manifests
	Logger   *slog.Logger
	Observer UploadObserver
}

// NewUploader prepares an uploader and counts what its outbox already holds.
func NewUploader(o UploaderOptions) (*Uploader, error) {
	if o.Store == nil || o.Keys == nil || o.Outbox == "" {
		return nil, errors.New("recorder: uploader needs a store, signing keys and an outbox directory")
	}
	if _, err := o.Keys.Signer(); err != nil {
		return nil, fmt.Errorf("recorder: uploader: %w", err)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if err := os.MkdirAll(filepath.Join(o.Outbox, "failed"), 0o750); err != nil {
		return nil, fmt.Errorf("recorder: outbox: %w", err)
	}
	u := &Uploader{store: o.Store, keys: o.Keys, outbox: o.Outbox, log: o.Logger, version: o.Version, obs: o.Observer, kick: make(chan struct{}, 1)}
	ids, err := u.parked()
	if err != nil {
		return nil, err
	}
	u.pending.Store(int64(len(ids)))
	if len(ids) > 0 {
		u.log.Info("recordings waiting for upload from before the restart", "pending", len(ids))
	}
	return u, nil
}

// Pending is the number of recordings not yet safely stored.
func (u *Uploader) Pending() int64 { return u.pending.Load() }

// Publish implements Publisher: a failed recording is set down as failed
// (never signed, never stored as a recording); a finished one is parked in
// the outbox for Run.
func (u *Uploader) Publish(ctx context.Context, rec *Recording, webmPath string) error {
	if !idPattern.MatchString(rec.ID) {
		return fmt.Errorf("recording %q: %w", rec.ID, ErrBadID)
	}
	if rec.Failed {
		note := struct {
			*Recording
			Error string `json:"error,omitempty"`
		}{Recording: rec}
		if rec.Err != nil {
			note.Error = rec.Err.Error()
		}
		b, _ := json.MarshalIndent(note, "", "  ")
		if u.obs.RecordingFailed != nil {
			defer u.obs.RecordingFailed(rec)
		}
		return writeFileSync(filepath.Join(u.outbox, "failed", rec.ID+".json"), b)
	}
	if webmPath == "" {
		return errors.New("publish: no file for a finished recording")
	}
	if _, _, err := store.RecordingKeys(rec.Patient, rec.Consultation, rec.ID); err != nil {
		return err
	}
	// The WebM first, then the JSON: the JSON's presence marks a complete parcel.
	if err := moveFile(ctx, webmPath, filepath.Join(u.outbox, rec.ID+".webm")); err != nil {
		return err
	}
	b, err := json.Marshal(parcel{Recording: rec, Parked: time.Now()})
	if err != nil {
		return err
	}
	if err := writeFileSync(filepath.Join(u.outbox, rec.ID+".json"), b); err != nil {
		return err
	}
	u.pending.Add(1)
	select {
	case u.kick <- struct{}{}:
	default:
	}
	return nil
}

// parcel is a recording waiting in the outbox.
type parcel struct {
	*Recording
	Parked time.Time `json:"parked"`
}

func (u *Uploader) parked() ([]string, error) {
	entries, err := os.ReadDir(u.outbox)
	if err != nil {
		return nil, fmt.Errorf("recorder: outbox: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids) // UUIDv7: oldest first
	return ids, nil
}

// Run uploads parked recordings until ctx ends, retrying failures with
// backoff (1 s doubling to 30 s).
func (u *Uploader) Run(ctx context.Context) {
	backoff := time.Second
	for {
		ids, err := u.parked()
		if err != nil {
			u.log.Error("cannot read the outbox", "err", err)
		}
		ok := true
		for _, id := range ids {
			if ctx.Err() != nil {
				return
			}
			if err := u.upload(ctx, id); err != nil {
				ok = false
				u.failed.Add(1)
				if u.obs.Failed != nil {
					u.obs.Failed()
				}
				u.log.Warn("upload failed; will retry", "recording", id, "pending", u.Pending(), "retry_in", backoff, "err", err)
				break
			}
		}
		wait := time.Duration(1 << 62)
		if !ok {
			wait = backoff
			backoff = min(2*backoff, 30*time.Second)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-u.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// upload stores one parcel: WebM, then the signed manifest, then checks both
// read back from the store before deleting the local copy.
func (u *Uploader) upload(ctx context.Context, id string) error {
	b, err := os.ReadFile(filepath.Join(u.outbox, id+".json"))
	if err != nil {
		return err
	}
	var p parcel
	if err := json.Unmarshal(b, &p); err != nil || p.Recording == nil {
		return fmt.Errorf("outbox entry %s unreadable: %v", id, err)
	}
	rec := p.Recording
	webmKey, manKey, err := store.RecordingKeys(rec.Patient, rec.Consultation, rec.ID)
	if err != nil {
		return err
	}
	webmPath := filepath.Join(u.outbox, id+".webm")
	f, err := os.Open(webmPath)
	if err != nil {
		return err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	info, err := u.store.Put(ctx, webmKey, f, st.Size())
	f.Close()
	if err != nil {
		return fmt.Errorf("upload %s: %w", webmKey, err)
	}
	stmt, err := manifest.NewStatement(predicate(rec, info.Size, u.version), info.SHA256)
	if err != nil {
		return err
	}
	env, err := manifest.Sign(u.keys, stmt)
	if err != nil {
		return err
	}
	if u.obs.Signed != nil {
		u.obs.Signed()
	}
	if _, err := u.store.Put(ctx, manKey, bytes.NewReader(env), int64(len(env))); err != nil {
		return fmt.Errorf("upload %s: %w", manKey, err)
	}
	if err := u.verifyStored(ctx, webmKey, manKey); err != nil {
		return err
	}
	if u.obs.Stored != nil {
		u.obs.Stored(rec, storedObjects(webmKey, manKey, info, env))
	}
	if err := errors.Join(os.Remove(webmPath), os.Remove(filepath.Join(u.outbox, id+".json"))); err != nil {
		u.log.Warn("stored, but the local copy could not be removed", "recording", id, "err", err)
	}
	u.pending.Add(-1)
	if u.obs.Uploaded != nil && !p.Parked.IsZero() {
		u.obs.Uploaded(time.Since(p.Parked))
	}
	u.log.Info("recording stored", "recording", id, "consultation", rec.Consultation, "bytes", info.Size)
	return nil
}

// verifyStored reads the manifest and the object back and checks signature and digest.
func (u *Uploader) verifyStored(ctx context.Context, webmKey, manKey string) error {
	mr, _, err := u.store.Get(ctx, manKey)
	if err != nil {
		return fmt.Errorf("verify %s: %w", manKey, err)
	}
	env, err := io.ReadAll(mr)
	mr.Close()
	if err != nil {
		return fmt.Errorf("verify %s: %w", manKey, err)
	}
	wr, _, err := u.store.Get(ctx, webmKey)
	if err != nil {
		return fmt.Errorf("verify %s: %w", webmKey, err)
	}
	defer wr.Close()
	if _, err := manifest.VerifyObject(u.keys.Public(), env, webmKey, wr); err != nil {
		return fmt.Errorf("verify %s: %w", webmKey, err)
	}
	return nil
}

// predicate turns a Recording into the signed manifest's predicate.
func predicate(rec *Recording, size int64, version string) manifest.Predicate {
	p := manifest.Predicate{
		Consultation: rec.Consultation, Patient: rec.Patient, RecordingID: rec.ID,
		Started: rec.Started, Ended: rec.Ended, SizeBytes: size,
		RecorderVersion: version, Recovered: rec.Recovered,
		Participants: []manifest.Participant{}, Tracks: []manifest.Track{}, Events: []manifest.Event{},
	}
	for _, x := range rec.Participants {
		p.Participants = append(p.Participants, manifest.Participant{ID: x.ID, Role: x.Role, Joined: x.Joined, Left: x.Left})
	}
	for _, t := range rec.Tracks {
		p.Tracks = append(p.Tracks, manifest.Track{Number: t.Number, Participant: t.Participant, Kind: t.Kind,
			Codec: t.Codec, FirstMS: t.FirstMS, LastMS: t.LastMS, Frames: int64(t.Frames)})
	}
	for _, e := range rec.Events {
		// An event before the first media (a join) is at offset 0 of the file.
		p.Events = append(p.Events, manifest.Event{Type: e.Type, Participant: e.Participant, OffsetMS: max(e.OffsetMS, 0), Path: e.Path})
	}
	return p
}
