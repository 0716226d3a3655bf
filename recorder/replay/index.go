package replay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/medcall/medcall/recorder/manifest"
	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/sfu/ident"
)

// Alert reasons passed to Index.Alert: a small fixed set, fit for a metric
// label.
const (
	AlertBadSignature    = "bad_signature"
	AlertUnknownKey      = "unknown_key"
	AlertExpiredKey      = "expired_key" // signed outside the key's window
	AlertPayloadType     = "payload_type"
	AlertSubjectMismatch = "subject_mismatch"
	AlertDigestMismatch  = "digest_mismatch" // bytes served differ from the signed ones
	AlertPatientMismatch = "patient_mismatch"
	AlertNoManifest      = "no_manifest"
	AlertMalformed       = "malformed"
)

// Index answers "which recordings may this person see" from memory: it holds
// only recordings whose signed manifest verified, keyed by id, patient and
// clinician, so a request costs the same whatever the store's size and never
// lists the store. Rebuild fills it from the store; Refresh adds what
// appeared since. Safe for concurrent use; set the exported fields before
// the first call.
type Index struct {
	// Store holds the recordings and their manifests.
	Store store.Store
	// Keys verifies manifests; public keys are enough.
	Keys *manifest.KeySet
	// Alert, if set, is called once per recording hidden because its
	// manifest or bytes failed verification, with one of the Alert*
	// reasons.
	Alert func(reason string)
	// Logger receives a warning per hidden recording; nil means
	// slog.Default().
	Logger *slog.Logger
	// OrphanGrace is how long a WebM may sit without its manifest before it
	// is reported (the uploader stores the WebM first). Zero reports at once.
	OrphanGrace time.Duration

	mu          sync.RWMutex // guards everything below; no I/O under it
	byID        map[string]*Recording
	byPatient   map[string][]*Recording
	byClinician map[string][]*Recording
	all         []*Recording            // every indexed recording, for Find's decoy
	examined    map[string]bool         // object keys verified or rejected; not looked at again
	orphans     map[string]time.Time    // WebM keys first seen without a manifest
	hidden      map[string]bool         // recording ids hidden after a failed read
	successors  map[string][]*Recording // recordings by the id they name as previous (chain.go)
}

// Rebuild forgets what the index holds and reads every manifest in the
// store again. Recordings hidden after a failed read stay hidden.
func (x *Index) Rebuild(ctx context.Context) error {
	x.mu.Lock()
	x.byID, x.byPatient, x.byClinician, x.examined, x.all, x.successors = nil, nil, nil, nil, nil, nil
	x.mu.Unlock()
	return x.Refresh(ctx, "patients/")
}

// Refresh lists prefix ("patients/" or one patient's prefix) and adds every
// recording whose manifest it has not examined yet. Its cost grows with
// what lies under prefix, so requests call it only with the asking
// patient's own prefix.
func (x *Index) Refresh(ctx context.Context, prefix string) error {
	keys, err := x.Store.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("replay: list recordings under %s: %w", prefix, err)
	}
	present := make(map[string]bool, len(keys))
	for _, k := range keys {
		present[k] = true
	}
	var todo []string // manifests to examine
	for _, key := range keys {
		webmKey, isManifest := strings.CutSuffix(key, ".manifest.json")
		if !isManifest {
			if strings.HasSuffix(key, ".webm") && !present[strings.TrimSuffix(key, ".webm")+".manifest.json"] {
				x.orphan(key)
			}
			continue
		}
		if !x.wasExamined(key) && present[webmKey+".webm"] {
			todo = append(todo, key) // a manifest whose WebM is not there yet waits
		}
	}
	return x.examineAll(ctx, todo)
}

// examiners bounds how many manifests are read and verified at once: a
// start-up over S3 is bound by round trips, not CPU.
const examiners = 8

// examineAll examines the manifests in todo, several at a time, and adds
// each to the index; the first store error stops it (what was examined
// stays added, the rest is looked at next time).
func (x *Index) examineAll(ctx context.Context, todo []string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	keys := make(chan string)
	errs := make(chan error, examiners)
	var wg sync.WaitGroup
	for range min(examiners, len(todo)) {
		wg.Go(func() {
			for key := range keys {
				webmKey := strings.TrimSuffix(key, ".manifest.json") + ".webm"
				rec, err := x.examine(ctx, key, webmKey)
				if err != nil {
					errs <- err
					cancel()
					return
				}
				x.add(key, rec)
				if rec != nil {
					x.checkChain(rec)
				}
			}
		})
	}
feed:
	for _, key := range todo {
		select {
		case keys <- key:
		case <-ctx.Done():
			break feed
		}
	}
	close(keys)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// Run refreshes the whole index every interval until ctx ends, so
// recordings stored after start-up appear for clinicians too.
func (x *Index) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := x.Refresh(ctx, "patients/"); err != nil && ctx.Err() == nil {
				x.logger().Warn("replay: index refresh failed; will retry", "err", err)
			}
		}
	}
}

// Visible returns the recordings v may see, oldest first.
func (x *Index) Visible(v Viewer) []*Recording {
	x.mu.RLock()
	var candidates []*Recording
	switch v.Role {
	case ident.Patient:
		candidates = x.byPatient[v.Sub]
	case ident.Clinician:
		candidates = x.byClinician[v.Sub]
	}
	out := make([]*Recording, 0, len(candidates))
	for _, r := range candidates {
		if mayView(v, r) && !x.hidden[r.ID] {
			out = append(out, r)
		}
	}
	x.mu.RUnlock()
	slices.SortFunc(out, func(a, b *Recording) int { return cmp.Or(a.Started.Compare(b.Started), strings.Compare(a.ID, b.ID)) })
	return out
}

// nobody is checked against when the index is empty.
var nobody = &Recording{Participants: []Participant{{}}}

// Find returns recording rid if v may see it, else ErrNotVisible. It does
// the same work for a missing id as for another person's recording: an
// unknown id is checked against a decoy, a real recording picked by the
// id's hash, so both paths read one cold recording from memory.
func (x *Index) Find(v Viewer, rid string) (*Recording, error) {
	x.mu.RLock()
	decoy := nobody
	if len(x.all) > 0 { // picked for every id, so both paths hash
		h := fnv.New32a()
		h.Write([]byte(rid))
		decoy = x.all[h.Sum32()%uint32(len(x.all))]
	}
	r, ok := x.byID[rid]
	if !ok {
		r = decoy
	}
	// Comparing the ids reads the candidate's id bytes, as the map's key
	// comparison did on a hit.
	visible := mayView(v, r) && r.ID == rid && ok && !x.hidden[rid]
	x.mu.RUnlock()
	if !visible {
		return nil, ErrNotVisible
	}
	return r, nil
}

// Hide removes r from every answer from now on (it failed a read check) and
// raises the alert.
func (x *Index) Hide(r *Recording, reason, detail string) {
	x.mu.Lock()
	if x.hidden == nil {
		x.hidden = map[string]bool{}
	}
	already := x.hidden[r.ID]
	x.hidden[r.ID] = true
	x.mu.Unlock()
	if !already {
		x.alert(r.Key, reason, detail)
	}
}

// examine verifies the manifest at manKey and returns the recording it
// describes, or nil (having alerted) when it must not be shown. An error
// means the store could not be read; the manifest is looked at again later.
func (x *Index) examine(ctx context.Context, manKey, webmKey string) (*Recording, error) {
	pid, cid, rid, ok := parseWebmKey(webmKey)
	if !ok {
		return nil, nil // stray object, not a recording
	}
	if want, _, err := store.RecordingKeys(pid, cid, rid); err != nil || want != webmKey {
		return nil, nil
	}
	env, err := x.read(ctx, manKey)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // deleted since it was listed
	}
	if err != nil {
		return nil, err
	}
	st, err := manifest.Verify(x.Keys, env)
	if err != nil {
		x.alert(webmKey, reasonOf(err), err.Error())
		return nil, nil
	}
	p := &st.Predicate
	switch {
	case st.Subject[0].Name != webmKey:
		x.alert(webmKey, AlertSubjectMismatch, "manifest is about "+st.Subject[0].Name)
		return nil, nil
	case p.Patient != pid:
		x.alert(webmKey, AlertPatientMismatch, "manifest names another patient")
		return nil, nil
	case p.Consultation != cid || p.RecordingID != rid:
		x.alert(webmKey, AlertSubjectMismatch, "manifest names another consultation or recording")
		return nil, nil
	}
	return newRecording(webmKey, st)
}

// add puts rec (nil: rejected) into the index under the manifest key.
func (x *Index) add(manKey string, rec *Recording) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.examined == nil {
		x.examined = map[string]bool{}
		x.byID = map[string]*Recording{}
		x.byPatient = map[string][]*Recording{}
		x.byClinician = map[string][]*Recording{}
	}
	x.examined[manKey] = true
	if rec == nil {
		return
	}
	if _, dup := x.byID[rec.ID]; dup {
		return // a second signed object with one id cannot happen; keep the first
	}
	x.byID[rec.ID] = rec
	x.all = append(x.all, rec)
	x.byPatient[rec.Patient] = append(x.byPatient[rec.Patient], rec)
	x.link(rec)
	for _, p := range rec.Participants {
		if p.Role == ident.Clinician && !slices.Contains(x.byClinician[p.ID], rec) {
			x.byClinician[p.ID] = append(x.byClinician[p.ID], rec)
		}
	}
}

func (x *Index) wasExamined(manKey string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.examined[manKey]
}

// orphan reports a WebM without a manifest once it has waited OrphanGrace.
func (x *Index) orphan(key string) {
	x.mu.Lock()
	if x.orphans == nil {
		x.orphans = map[string]time.Time{}
	}
	first, seen := x.orphans[key]
	if !seen {
		first = time.Now()
		x.orphans[key] = first
	}
	report := !first.IsZero() && time.Since(first) >= x.OrphanGrace
	if report {
		x.orphans[key] = time.Time{} // reported; never again
	}
	x.mu.Unlock()
	if report {
		x.alert(key, AlertNoManifest, "no manifest beside the object")
	}
}

// read returns the whole object at key (a manifest: small).
func (x *Index) read(ctx context.Context, key string) ([]byte, error) {
	r, _, err := x.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("replay: read manifest %s: %w", key, err)
	}
	return b, nil
}

func (x *Index) alert(key, reason, detail string) {
	x.logger().Warn("replay: recording hidden: it failed verification", "key", key, "reason", reason, "detail", detail)
	if x.Alert != nil {
		x.Alert(reason)
	}
}

func (x *Index) logger() *slog.Logger {
	if x.Logger != nil {
		return x.Logger
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
