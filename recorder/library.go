package recorder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
)

// ErrNotVisible means the recording asked for does not exist or the caller
// may not see it. The two cases share one error on purpose: a caller must
// never be able to tell someone else's recording from a missing one.
var ErrNotVisible = errors.New("recorder: recording not found")

// Alert reasons passed to Library.Alert: a small fixed set, fit for a metric
// label.
const (
	AlertBadSignature    = "bad_signature"
	AlertUnknownKey      = "unknown_key"
	AlertExpiredKey      = "expired_key" // signed outside the key's window
	AlertPayloadType     = "payload_type"
	AlertSubjectMismatch = "subject_mismatch"
	AlertDigestMismatch  = "digest_mismatch"
	AlertPatientMismatch = "patient_mismatch"
	AlertNoManifest      = "no_manifest"
	AlertMalformed       = "malformed"
)

// digestCacheAge bounds how long a verified digest is trusted without a
// re-read. The cache is keyed on (key, size, modtime, digest), and S3
// modtimes have one-second resolution, so a same-size rewrite within that
// second would otherwise pass until the entry ages out.
const digestCacheAge = 10 * time.Minute

// digestCacheMax bounds the cache; when full it is emptied.
const digestCacheMax = 10000

// Library is the replay view of the object store: it lists and opens only
// recordings whose signed manifest verifies against Keys and that the asking
// person may see (DESIGN §6). The zero value is not usable; set Store and
// Keys. A Library is safe for concurrent use.
type Library struct {
	// Store holds the recordings and their manifests.
	Store store.Store
	// Keys verifies manifests; public keys are enough.
	Keys *manifest.KeySet
	// Alert, if set, is called once for every recording hidden because its
	// manifest or object failed verification, with one of the Alert*
	// reasons.
	Alert func(reason string)
	// Logger receives a warning per hidden recording; nil means
	// slog.Default().
	Logger *slog.Logger

	mu      sync.Mutex
	digests map[string]digestOK // webm key -> last successful digest check
}

// digestOK records that an object with this size, modtime and digest was
// read in full and hashed.
type digestOK struct {
	size    int64
	modTime time.Time
	sha256  string
	checked time.Time
}

// Entry is one recording a person may see. Only Library.Visible and
// Library.Find make Entries that Open and Presign accept.
type Entry struct {
	// ID is the recording id (a UUIDv7).
	ID string
	// Consultation is the consultation id.
	Consultation string
	// Started and Ended bound the recording, wall-clock.
	Started, Ended time.Time
	// DurationMS is Ended - Started in milliseconds.
	DurationMS int64
	// Size is the WebM object's length in bytes.
	Size int64
	// Key is the WebM object's key. It names the patient, so it is for the
	// server's use and never sent to clients.
	Key string
	// Recovered is true when the file was finalized after a crash.
	Recovered bool
	// Participants are the people in the recording. ID is set only for the
	// viewer themself: nobody learns another person's id from replay.
	Participants []EntryParticipant

	lib     *Library  // the library that verified this entry
	modTime time.Time // the verified object's modtime
}

// EntryParticipant is one person in a recording, as the viewer sees them.
type EntryParticipant struct {
	ID     string // empty unless this is the viewer
	Role   string
	Joined time.Time
	Left   time.Time
}

// Visible returns the recordings sub (with role) may see, oldest first.
// A patient sees recordings under their own prefix whose manifest verifies,
// names that very object and names them as the patient. A clinician sees
// recordings whose verified manifest lists them as a clinician participant.
// Anyone else sees nothing. Recordings that fail verification are hidden
// and reported through Alert.
func (l *Library) Visible(ctx context.Context, sub, role string) ([]Entry, error) {
	prefix, err := l.scanPrefix(sub, role)
	if err != nil || prefix == "" {
		return nil, err
	}
	keys, err := l.Store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("recorder: list recordings under %s: %w", prefix, err)
	}
	var out []Entry
	for _, key := range keys {
		e, err := l.check(ctx, key, sub, role)
		if errors.Is(err, ErrNotVisible) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *e)
	}
	return out, nil
}

// Find returns recording rid if sub (with role) may see it, by the same
// rules as Visible. Missing, forbidden, unverifiable and malformed ids all
// yield ErrNotVisible; any other error is a failure to list the store and
// says nothing about rid.
func (l *Library) Find(ctx context.Context, sub, role, rid string) (*Entry, error) {
	if u, err := uuid.Parse(rid); err != nil || u.String() != rid {
		return nil, ErrNotVisible
	}
	prefix, err := l.scanPrefix(sub, role)
	if err != nil {
		return nil, err
	}
	if prefix == "" {
		return nil, ErrNotVisible
	}
	keys, err := l.Store.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("recorder: list recordings under %s: %w", prefix, err)
	}
	suffix := "/" + rid + ".webm"
	for _, key := range keys {
		if !strings.HasSuffix(key, suffix) {
			continue
		}
		e, err := l.check(ctx, key, sub, role)
		if err == nil {
			return e, nil
		}
		if !errors.Is(err, ErrNotVisible) {
			// An I/O error here would reveal that rid exists somewhere.
			l.logger().Error("replay: cannot check recording", "key", key, "err", err)
		}
	}
	return nil, ErrNotVisible
}

// Open opens e's object for playback. The object must still be the one that
// was verified (same size and modtime); otherwise ErrNotVisible.
func (l *Library) Open(ctx context.Context, e *Entry) (io.ReadSeekCloser, store.Info, error) {
	if e == nil || e.lib != l {
		return nil, store.Info{}, ErrNotVisible
	}
	r, info, err := l.Store.Get(ctx, e.Key)
	if errors.Is(err, store.ErrNotFound) {
		return nil, store.Info{}, ErrNotVisible
	}
	if err != nil {
		return nil, store.Info{}, fmt.Errorf("recorder: open recording %s: %w", e.ID, err)
	}
	if info.Size != e.Size || !info.ModTime.Equal(e.modTime) {
		r.Close()
		l.logger().Warn("replay: recording changed after it was verified; refused", "key", e.Key)
		return nil, store.Info{}, ErrNotVisible
	}
	return r, info, nil
}

// Presign returns a URL that serves e's object for ttl (at most, and by
// default, store.MaxPresignTTL). ok is false when the store cannot presign;
// serve through Open then. The object must still be the verified one.
func (l *Library) Presign(ctx context.Context, e *Entry, ttl time.Duration) (string, bool, error) {
	if e == nil || e.lib != l {
		return "", false, ErrNotVisible
	}
	if ttl <= 0 || ttl > store.MaxPresignTTL {
		ttl = store.MaxPresignTTL
	}
	info, err := l.Store.Stat(ctx, e.Key)
	if errors.Is(err, store.ErrNotFound) {
		return "", false, ErrNotVisible
	}
	if err != nil {
		return "", false, fmt.Errorf("recorder: presign recording %s: %w", e.ID, err)
	}
	if info.Size != e.Size || !info.ModTime.Equal(e.modTime) {
		l.logger().Warn("replay: recording changed after it was verified; refused", "key", e.Key)
		return "", false, ErrNotVisible
	}
	u, ok, err := l.Store.PresignGet(ctx, e.Key, ttl)
	if err != nil {
		return "", false, fmt.Errorf("recorder: presign recording %s: %w", e.ID, err)
	}
	return u, ok, nil
}

// scanPrefix is where sub's recordings can be: their own prefix for a
// patient; every patient for a clinician, since the object layout is by
// patient. That scan costs one List of the whole store plus one manifest
// read per recording on every request; an index by participant is the fix
// when stores grow large. "" means the role sees nothing.
func (l *Library) scanPrefix(sub, role string) (string, error) {
	switch role {
	case "patient":
		p, err := store.PatientPrefix(sub)
		if err != nil {
			return "", nil // an id that cannot own a prefix owns nothing
		}
		return p, nil
	case "clinician":
		if _, err := store.PatientPrefix(sub); err != nil {
			return "", nil
		}
		return "patients/", nil
	}
	return "", nil
}

// check verifies the recording whose WebM object is key and decides whether
// sub may see it. It returns ErrNotVisible (having alerted when a check
// failed) or another error when the store could not be read.
func (l *Library) check(ctx context.Context, key, sub, role string) (*Entry, error) {
	pid, cid, rid, ok := parseWebmKey(key)
	if !ok {
		return nil, ErrNotVisible // manifests, stray files
	}
	if role == "patient" && pid != sub {
		return nil, ErrNotVisible
	}
	webmKey, manKey, err := store.RecordingKeys(pid, cid, rid)
	if err != nil || webmKey != key {
		return nil, ErrNotVisible
	}
	env, err := l.read(ctx, manKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, l.hide(key, AlertNoManifest, "no manifest beside the object")
	}
	if err != nil {
		return nil, err
	}
	st, err := manifest.Verify(l.Keys, env)
	if err != nil {
		return nil, l.hide(key, reasonOf(err), err.Error())
	}
	p := &st.Predicate
	switch {
	case st.Subject[0].Name != key:
		return nil, l.hide(key, AlertSubjectMismatch, "manifest is about "+st.Subject[0].Name)
	case p.Patient != pid || (role == "patient" && p.Patient != sub):
		return nil, l.hide(key, AlertPatientMismatch, "manifest names another patient")
	case p.Consultation != cid || p.RecordingID != rid:
		return nil, l.hide(key, AlertSubjectMismatch, "manifest names another consultation or recording")
	}
	if role == "clinician" && !hasClinician(p.Participants, sub) {
		return nil, ErrNotVisible
	}
	info, err := l.checkDigest(ctx, key, st)
	if err != nil {
		return nil, err
	}
	e := &Entry{
		ID: rid, Consultation: cid, Started: p.Started, Ended: p.Ended,
		DurationMS: p.Ended.Sub(p.Started).Milliseconds(), Size: info.Size, Key: key,
		Recovered: p.Recovered, lib: l, modTime: info.ModTime,
	}
	for _, pt := range p.Participants {
		ep := EntryParticipant{Role: pt.Role, Joined: pt.Joined, Left: pt.Left}
		if pt.ID == sub {
			ep.ID = sub
		}
		e.Participants = append(e.Participants, ep)
	}
	return e, nil
}

// checkDigest checks that key's bytes have the manifest's size and SHA-256,
// re-reading the object only when it changed since the last good check.
func (l *Library) checkDigest(ctx context.Context, key string, st *manifest.Statement) (store.Info, error) {
	info, err := l.Store.Stat(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Info{}, ErrNotVisible // deleted since it was listed
	}
	if err != nil {
		return store.Info{}, fmt.Errorf("recorder: stat %s: %w", key, err)
	}
	want := st.SHA256()
	if info.Size != st.Predicate.SizeBytes {
		return store.Info{}, l.hide(key, AlertDigestMismatch, fmt.Sprintf("object has %d bytes, manifest says %d", info.Size, st.Predicate.SizeBytes))
	}
	l.mu.Lock()
	c, hit := l.digests[key]
	l.mu.Unlock()
	if hit && c.size == info.Size && c.modTime.Equal(info.ModTime) && c.sha256 == want && time.Since(c.checked) < digestCacheAge {
		return info, nil
	}
	r, rinfo, err := l.Store.Get(ctx, key)
	if errors.Is(err, store.ErrNotFound) {
		return store.Info{}, ErrNotVisible
	}
	if err != nil {
		return store.Info{}, fmt.Errorf("recorder: read %s to check its digest: %w", key, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return store.Info{}, fmt.Errorf("recorder: read %s to check its digest: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want || n != st.Predicate.SizeBytes {
		return store.Info{}, l.hide(key, AlertDigestMismatch, fmt.Sprintf("object has %d bytes sha256 %s, manifest says sha256 %s", n, got, want))
	}
	l.mu.Lock()
	if l.digests == nil || len(l.digests) >= digestCacheMax {
		l.digests = make(map[string]digestOK)
	}
	l.digests[key] = digestOK{size: rinfo.Size, modTime: rinfo.ModTime, sha256: want, checked: time.Now()}
	l.mu.Unlock()
	return rinfo, nil
}

// read returns the whole object at key (a manifest: small).
func (l *Library) read(ctx context.Context, key string) ([]byte, error) {
	r, _, err := l.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("recorder: read manifest %s: %w", key, err)
	}
	return b, nil
}

// hide reports a recording hidden for reason and returns ErrNotVisible.
func (l *Library) hide(key, reason, detail string) error {
	l.logger().Warn("replay: recording hidden: it failed verification", "key", key, "reason", reason, "detail", detail)
	if l.Alert != nil {
		l.Alert(reason)
	}
	return ErrNotVisible
}

func (l *Library) logger() *slog.Logger {
	if l.Logger != nil {
		return l.Logger
	}
	return slog.Default()
}

// reasonOf maps a manifest verification error to its alert reason.
func reasonOf(err error) string {
	switch {
	case errors.Is(err, manifest.ErrBadSignature):
		return AlertBadSignature
	case errors.Is(err, manifest.ErrUnknownKey):
		return AlertUnknownKey
	case errors.Is(err, manifest.ErrKeyExpired), errors.Is(err, manifest.ErrKeyNotYetValid):
		return AlertExpiredKey
	case errors.Is(err, manifest.ErrPayloadType):
		return AlertPayloadType
	case errors.Is(err, manifest.ErrSubjectMismatch):
		return AlertSubjectMismatch
	case errors.Is(err, manifest.ErrDigestMismatch):
		return AlertDigestMismatch
	}
	return AlertMalformed
}

// parseWebmKey splits patients/{pid}/consultations/{cid}/{rid}.webm.
func parseWebmKey(key string) (pid, cid, rid string, ok bool) {
	parts := strings.Split(key, "/")
	if len(parts) != 5 || parts[0] != "patients" || parts[2] != "consultations" {
		return "", "", "", false
	}
	rid, ok = strings.CutSuffix(parts[4], ".webm")
	return parts[1], parts[3], rid, ok
}

func hasClinician(ps []manifest.Participant, sub string) bool {
	for _, p := range ps {
		if p.ID == sub && p.Role == "clinician" {
			return true
		}
	}
	return false
}
