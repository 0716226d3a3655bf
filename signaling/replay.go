package signaling

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/signaling/token"
)

// ErrNotVisible is what a ReplayLibrary returns for a recording that does
// not exist or that the caller may not see; the two are one error so that
// nobody can tell them apart.
var ErrNotVisible = errors.New("signaling: recording not found")

// MaxPresignTTL caps the lifetime of a presigned recording URL (DESIGN §6).
const MaxPresignTTL = 5 * time.Minute

// Recording is one recording as replay shows it. It never names the
// patient: a clinician's list must not teach them other people's ids.
type Recording struct {
	ID           string
	Consultation string
	Started      time.Time
	Ended        time.Time
	DurationMS   int64
	Size         int64
	Recovered    bool
	// Ref is the library's own handle on the verified recording, handed
	// back to Open and Presign; opaque to this package.
	Ref any
}

// ReplayLibrary finds recordings people may see and opens them. Replay
// relies on it for every access decision: Visible and Find must apply the
// rules of DESIGN §6, and Open and Presign accept only recordings that Find
// returned. cmd adapts recorder.Library to it.
type ReplayLibrary interface {
	// Visible lists the recordings sub (with role) may see.
	Visible(ctx context.Context, sub, role string) ([]Recording, error)
	// Find returns recording id if sub may see it, else ErrNotVisible.
	Find(ctx context.Context, sub, role, id string) (Recording, error)
	// Open opens a found recording for streaming; it returns its modtime.
	Open(ctx context.Context, rec Recording) (io.ReadSeekCloser, time.Time, error)
	// Presign returns a URL for a found recording valid for ttl; ok is
	// false when the store cannot presign.
	Presign(ctx context.Context, rec Recording, ttl time.Duration) (url string, ok bool, err error)
}

// AuditEvent is one replay audit record. It has the fields of
// recorder.AuditEvent in the same order, so cmd converts one to the other
// with a plain conversion. It never carries a token.
type AuditEvent struct {
	Time      time.Time `json:"time"`
	Sub       string    `json:"sub,omitempty"`
	Role      string    `json:"role,omitempty"`
	Action    string    `json:"action"`              // list, view or refuse
	Recording string    `json:"recording,omitempty"` // a well-formed id, when one was asked for
	Outcome   string    `json:"outcome"`             // ok, refused or error
	Reason    string    `json:"reason,omitempty"`
}

// Auditor writes audit events durably; an error means the event may be lost.
type Auditor interface {
	Record(ev AuditEvent) error
}

// AuditFunc adapts a function to Auditor.
type AuditFunc func(ev AuditEvent) error

// Record calls f(ev).
func (f AuditFunc) Record(ev AuditEvent) error { return f(ev) }

// Replay serves GET /v1/recordings (the caller's list) and
// GET /v1/recordings/{id} (one recording: streamed with range support from a
// local store, or a 302 to a short-lived presigned URL from S3). Mount it
// on both "/v1/recordings" and "/v1/recordings/".
//
// Access comes only from a replay token in "Authorization: Bearer"; tokens
// anywhere else are refused. Every refusal concerning a recording id looks
// exactly like a missing recording. Every list, view and refusal is
// audited; a view or list whose audit line cannot be written is not served.
type Replay struct {
	// Verifier checks replay tokens.
	Verifier *token.Verifier
	// Library decides what each person may see.
	Library ReplayLibrary
	// Audit receives one event per request.
	Audit Auditor
	// Enabled is the operator switch; nil means on. When off, every
	// replay request is refused (audited with reason "replay_off").
	Enabled *atomic.Bool
	// PresignTTL is how long presigned URLs live; 0 or more than
	// MaxPresignTTL means MaxPresignTTL.
	PresignTTL time.Duration
	// Logger receives refusals and failures; nil means slog.Default().
	Logger *slog.Logger
	// Counted, if set, is called once per request with its audit action
	// and outcome, for metrics.
	Counted func(action, outcome string)
}

// Bodies of replay error responses. notFoundBody is shared by every
// refusal of a recording id, so they are indistinguishable.
const (
	notFoundBody     = `{"error":"not_found"}` + "\n"
	unauthorizedBody = `{"error":"unauthorized"}` + "\n"
	unavailableBody  = `{"error":"unavailable"}` + "\n"
)

const recordingsPath = "/v1/recordings"

var recordingID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// ServeHTTP implements http.Handler.
func (rp *Replay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")

	// The escaped path, so "%2e%2e%2f" stays what it is: not an id.
	path := r.URL.EscapedPath()
	list := path == recordingsPath
	id, isView := strings.CutPrefix(path, recordingsPath+"/")
	if !list && !isView {
		rp.refuse(w, refusal{reason: "bad_path"})
		return
	}
	ref := refusal{view: isView}
	if isView && recordingID.MatchString(id) {
		ref.id = id
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		ref.reason, ref.status, ref.body = "method", http.StatusMethodNotAllowed, `{"error":"method_not_allowed"}`+"\n"
		rp.refuse(w, ref)
		return
	}
	if rp.Enabled != nil && !rp.Enabled.Load() {
		ref.reason = "replay_off"
		if claims, err := rp.authenticate(r); err == nil {
			ref.sub, ref.role = claims.Subject, claims.Role // for the audit line only
		}
		rp.refuse(w, ref)
		return
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		// These endpoints take no parameters; a token put in the URL
		// (where logs and browser history keep it) is refused, never used.
		ref.reason = "query_string"
		rp.refuse(w, ref)
		return
	}
	claims, err := rp.authenticate(r)
	if err != nil {
		ref.reason = tokenReason(err)
		rp.refuse(w, ref)
		return
	}
	ref.sub, ref.role = claims.Subject, claims.Role
	if list {
		rp.serveList(w, r, claims)
		return
	}
	if ref.id == "" {
		ref.reason = "bad_id"
		rp.refuse(w, ref)
		return
	}
	rp.serveRecording(w, r, claims, ref)
}

// refusal describes a refused request; the zero status and body mean the
// defaults: 401 for the list without a usable token, else 404 not_found,
// the same body as a missing recording.
type refusal struct {
	view      bool
	id        string
	sub, role string
	reason    string
	outcome   string // default refused
	status    int
	body      string
}

// refuse answers and audits a refused request. The request itself is never
// logged: its URL may hold a token.
func (rp *Replay) refuse(w http.ResponseWriter, f refusal) {
	if f.status == 0 {
		f.status, f.body = http.StatusNotFound, notFoundBody
		if !f.view && (strings.HasPrefix(f.reason, "token_") || f.reason == "query_string") {
			f.status, f.body = http.StatusUnauthorized, unauthorizedBody
			w.Header().Set("WWW-Authenticate", `Bearer realm="medcall"`)
		}
	}
	if f.outcome == "" {
		f.outcome = "refused"
	}
	ev := AuditEvent{Sub: f.sub, Role: f.role, Action: "refuse", Recording: f.id, Outcome: f.outcome, Reason: f.reason}
	if err := rp.record(ev); err != nil {
		rp.log().Error("replay: audit log write failed", "err", err)
	}
	rp.log().Info("replay refused", "sub", f.sub, "recording", f.id, "reason", f.reason, "status", f.status)
	writeJSONBody(w, f.status, f.body)
}

func (rp *Replay) serveList(w http.ResponseWriter, r *http.Request, c *token.Replay) {
	recs, err := rp.Library.Visible(r.Context(), c.Subject, c.Role)
	if err != nil {
		rp.log().Error("replay: list recordings failed", "sub", c.Subject, "err", err)
		rp.refuse(w, refusal{sub: c.Subject, role: c.Role, reason: "store", outcome: "error", status: http.StatusServiceUnavailable, body: unavailableBody})
		return
	}
	type item struct {
		ID           string    `json:"id"`
		Consultation string    `json:"consultation"`
		Started      time.Time `json:"started"`
		Ended        time.Time `json:"ended"`
		DurationMS   int64     `json:"duration_ms"`
		Size         int64     `json:"size"`
		Recovered    bool      `json:"recovered,omitempty"`
		URL          string    `json:"url"`
	}
	out := struct {
		Recordings []item `json:"recordings"`
	}{Recordings: make([]item, 0, len(recs))}
	for _, rec := range recs {
		out.Recordings = append(out.Recordings, item{
			ID: rec.ID, Consultation: rec.Consultation, Started: rec.Started.UTC(), Ended: rec.Ended.UTC(),
			DurationMS: rec.DurationMS, Size: rec.Size, Recovered: rec.Recovered, URL: recordingsPath + "/" + rec.ID,
		})
	}
	b, err := json.Marshal(out)
	if err != nil {
		rp.refuse(w, refusal{sub: c.Subject, role: c.Role, reason: "encode", outcome: "error", status: http.StatusInternalServerError, body: unavailableBody})
		return
	}
	if err := rp.record(AuditEvent{Sub: c.Subject, Role: c.Role, Action: "list", Outcome: "ok"}); err != nil {
		rp.log().Error("replay: audit log write failed; list not served", "err", err)
		writeJSONBody(w, http.StatusServiceUnavailable, unavailableBody)
		return
	}
	writeJSONBody(w, http.StatusOK, string(b)+"\n")
}

func (rp *Replay) serveRecording(w http.ResponseWriter, r *http.Request, c *token.Replay, ref refusal) {
	ctx := r.Context()
	rec, err := rp.Library.Find(ctx, c.Subject, c.Role, ref.id)
	if err != nil {
		ref.reason = "not_visible"
		if !errors.Is(err, ErrNotVisible) {
			rp.log().Error("replay: find recording failed", "sub", c.Subject, "recording", ref.id, "err", err)
			ref.reason, ref.outcome, ref.status, ref.body = "store", "error", http.StatusServiceUnavailable, unavailableBody
		}
		rp.refuse(w, ref)
		return
	}
	// The access check has passed; only now may a URL or stream exist.
	url, presigned, err := rp.Library.Presign(ctx, rec, rp.presignTTL())
	var body io.ReadSeekCloser
	var modTime time.Time
	if err == nil && !presigned {
		body, modTime, err = rp.Library.Open(ctx, rec)
	}
	if err != nil {
		ref.reason = "not_visible"
		if !errors.Is(err, ErrNotVisible) {
			rp.log().Error("replay: open recording failed", "sub", c.Subject, "recording", ref.id, "err", err)
			ref.reason, ref.outcome, ref.status, ref.body = "store", "error", http.StatusServiceUnavailable, unavailableBody
		}
		rp.refuse(w, ref)
		return
	}
	if body != nil {
		defer body.Close()
	}
	if err := rp.record(AuditEvent{Sub: c.Subject, Role: c.Role, Action: "view", Recording: rec.ID, Outcome: "ok"}); err != nil {
		rp.log().Error("replay: audit log write failed; recording not served", "err", err)
		writeJSONBody(w, http.StatusServiceUnavailable, unavailableBody)
		return
	}
	if presigned {
		w.Header().Set("Location", url)
		w.WriteHeader(http.StatusFound)
		return
	}
	w.Header().Set("Content-Type", "video/webm")
	http.ServeContent(w, r, "", modTime, body)
}

// authenticate verifies the replay token in the Authorization header.
func (rp *Replay) authenticate(r *http.Request) (*token.Replay, error) {
	auth := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, token.ErrMissing
	}
	if rp.Verifier == nil {
		return nil, errors.New("signaling: replay has no token verifier")
	}
	return rp.Verifier.VerifyReplay(strings.TrimSpace(raw))
}

// tokenReason names why a token was refused, for the audit log.
func tokenReason(err error) string {
	switch {
	case errors.Is(err, token.ErrMissing):
		return "token_missing"
	case errors.Is(err, token.ErrExpired):
		return "token_expired"
	}
	return "token_invalid"
}

func (rp *Replay) record(ev AuditEvent) error {
	ev.Time = time.Now().UTC()
	var err error
	if rp.Audit == nil {
		err = errors.New("signaling: replay has no audit log")
	} else {
		err = rp.Audit.Record(ev)
	}
	if rp.Counted != nil {
		outcome := ev.Outcome
		if err != nil {
			outcome = "error"
		}
		rp.Counted(ev.Action, outcome)
	}
	return err
}

func (rp *Replay) presignTTL() time.Duration {
	if rp.PresignTTL <= 0 || rp.PresignTTL > MaxPresignTTL {
		return MaxPresignTTL
	}
	return rp.PresignTTL
}

func (rp *Replay) log() *slog.Logger {
	if rp.Logger != nil {
		return rp.Logger
	}
	return slog.Default()
}

func writeJSONBody(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
