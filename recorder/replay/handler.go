package replay

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/medcall/medcall/sfu/ident"
	"github.com/medcall/medcall/signaling/token"
)

// Handler serves the replay API (documented in openapi.yaml and the README):
//
//	GET  /v1/recordings          the caller's list
//	GET  /v1/recordings/{rid}    the original signed WebM, range-capable,
//	HEAD /v1/recordings/{rid}    every byte verified as it streams
//
// Access comes only from a replay token in "Authorization: Bearer"; tokens
// anywhere else are refused. Every refusal concerning a recording id looks
// exactly like a missing recording. Every list, view and refusal is
// audited; a view or list whose audit line cannot be written is not served.
//
// Recordings are always streamed through the server, from S3 too: a
// presigned URL would hand the bytes out unchecked, and "verified on every
// read" must hold for every read.
type Handler struct {
	// Verifier checks replay tokens.
	Verifier *token.Verifier
	// Index decides what each person may see and opens what they may.
	Index *Index
	// Audit receives one event per request (and one more when a stream is
	// stopped because its bytes were tampered with).
	Audit Auditor
	// Enabled is the operator switch; nil means on. When off, every
	// replay request is refused (audited with reason "replay_off").
	Enabled *atomic.Bool
	// Logger receives refusals and failures; nil means slog.Default().
	Logger *slog.Logger
	// Counted, if set, is called once per audit event with its action and
	// outcome, for metrics.
	Counted func(action, outcome string)
}

// Auditor writes audit events durably; an error means the event may be lost.
// *Audit is one.
type Auditor interface {
	Record(ev AuditEvent) error
}

// Bodies of replay error responses. notFoundBody is shared by every
// refusal of a recording id, so they are indistinguishable.
const (
	notFoundBody     = `{"error":"not_found"}` + "\n"
	unauthorizedBody = `{"error":"unauthorized"}` + "\n"
	unavailableBody  = `{"error":"unavailable"}` + "\n"
)

// Path is where the API is mounted; mount the Handler on Path and Path+"/".
const Path = "/v1/recordings"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")

	// The escaped path, so "%2e%2e%2f" stays what it is: not an id.
	path := r.URL.EscapedPath()
	list := path == Path
	rest, isView := strings.CutPrefix(path, Path+"/")
	if !list && !isView {
		h.refuse(w, refusal{reason: "bad_path"})
		return
	}
	id, part, _ := strings.Cut(rest, "/")
	ref := refusal{view: isView, part: part}
	if isView && ident.ValidRecording(id) {
		ref.id = id
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		ref.reason, ref.status, ref.body = "method", http.StatusMethodNotAllowed, `{"error":"method_not_allowed"}`+"\n"
		h.refuse(w, ref)
		return
	}
	if h.Enabled != nil && !h.Enabled.Load() {
		ref.reason = "replay_off"
		if v, err := h.authenticate(r); err == nil {
			ref.Viewer = v // for the audit line only
		}
		h.refuse(w, ref)
		return
	}
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		// These endpoints take no parameters; a token put in the URL
		// (where logs and browser history keep it) is refused, never used.
		ref.reason = "query_string"
		h.refuse(w, ref)
		return
	}
	v, err := h.authenticate(r)
	if err != nil {
		ref.reason = tokenReason(err)
		h.refuse(w, ref)
		return
	}
	ref.Viewer = v
	switch {
	case list:
		h.serveList(w, r, v)
	case ref.id == "":
		ref.reason = "bad_id"
		h.refuse(w, ref)
	case ref.part == "":
		h.serveRecording(w, r, ref)
	case ref.part == "timeline":
		h.serveTimeline(w, ref)
	case strings.HasSuffix(ref.part, ".webm") && labelPattern.MatchString(strings.TrimSuffix(ref.part, ".webm")):
		h.serveStream(w, r, ref, strings.TrimSuffix(ref.part, ".webm"))
	default:
		ref.reason = "bad_path"
		h.refuse(w, ref)
	}
}

// refusal describes a refused request; the zero status and body mean the
// defaults: 401 for the list without a usable token, else 404 not_found,
// the same body as a missing recording.
type refusal struct {
	Viewer
	view    bool
	id      string
	part    string // "", "timeline" or "{label}.webm"
	reason  string
	outcome string // default refused
	status  int
	body    string
}

// partIfID is the part asked for, for the audit line, when the request named
// a well-formed recording (anything else may hold arbitrary text).
func (f refusal) partIfID() string {
	if f.id == "" || (f.part != "timeline" && !labelPattern.MatchString(strings.TrimSuffix(f.part, ".webm"))) {
		return ""
	}
	return f.part
}

// refuse answers and audits a refused request. The request itself is never
// logged: its URL may hold a token.
func (h *Handler) refuse(w http.ResponseWriter, f refusal) {
	if f.status == 0 {
		f.status, f.body = http.StatusNotFound, notFoundBody
		if !f.view && (strings.HasPrefix(f.reason, "token_") || f.reason == "query_string") {
			f.status, f.body = http.StatusUnauthorized, unauthorizedBody
			w.Header().Set("WWW-Authenticate", `Bearer realm="medcall"`)
		}
	}
	if f.outcome == "" {
		f.outcome = OutcomeRefused
	}
	ev := AuditEvent{Sub: f.Sub, Role: string(f.Role), Action: AuditRefuse, Recording: f.id, Part: f.partIfID(), Outcome: f.outcome, Reason: f.reason}
	if err := h.record(ev); err != nil {
		h.log().Error("replay: audit log write failed", "err", err)
	}
	h.log().Info("replay refused", "sub", f.Sub, "recording", f.id, "reason", f.reason, "status", f.status)
	writeJSONBody(w, f.status, f.body)
}

func (h *Handler) serveRecording(w http.ResponseWriter, r *http.Request, ref refusal) {
	rec, ok := h.find(w, ref)
	if !ok {
		return
	}
	// The access check has passed; only now may bytes be read.
	body, err := h.Index.Open(r.Context(), rec)
	if err == nil && r.Method == http.MethodGet {
		err = body.CheckAt(rangeStart(r.Header.Get("Range"), rec.Size))
	}
	if err != nil {
		if body != nil {
			body.Close()
		}
		h.refuseUnreadable(w, ref, err)
		return
	}
	defer body.Close()
	if !h.audited(w, AuditEvent{Sub: ref.Sub, Role: string(ref.Role), Action: AuditView, Recording: rec.ID, Outcome: OutcomeOK}) {
		return
	}
	body.OnTampered = func(detail string) {
		if err := h.record(AuditEvent{Sub: ref.Sub, Role: string(ref.Role), Action: AuditView, Recording: rec.ID, Outcome: OutcomeError, Reason: "integrity"}); err != nil {
			h.log().Error("replay: audit log write failed", "err", err)
		}
	}
	w.Header().Set("Content-Type", "video/webm")
	w.Header().Set("ETag", `"`+rec.sha256+`"`)
	http.ServeContent(w, r, "", rec.Ended, body)
	if body.Err() != nil {
		// Headers and part of the body are out; cut the connection so the
		// client sees a failed download, never a short "complete" one.
		h.log().Error("replay: stream stopped", "recording", rec.ID, "err", body.Err())
		panic(http.ErrAbortHandler)
	}
}

// find applies the access rule to the recording ref names, refusing it
// (as if missing) when the viewer may not see it.
func (h *Handler) find(w http.ResponseWriter, ref refusal) (*Recording, bool) {
	rec, err := h.Index.Find(ref.Viewer, ref.id)
	if err != nil {
		ref.reason = "not_visible"
		h.refuse(w, ref)
		return nil, false
	}
	return rec, true
}

// findConsultation applies the access rule to the recording ref names, as
// find does, and returns the consultation this viewer sees that holds it.
func (h *Handler) findConsultation(w http.ResponseWriter, ref refusal) (Consultation, bool) {
	c, err := h.Index.FindConsultation(ref.Viewer, ref.id)
	if err != nil {
		ref.reason = "not_visible"
		h.refuse(w, ref)
		return Consultation{}, false
	}
	return c, true
}

// auditedViews audits a view of ref.part of every segment of c (what is
// served comes from each of them), as audited does.
func (h *Handler) auditedViews(w http.ResponseWriter, ref refusal, c Consultation) bool {
	for _, s := range c.Segments {
		if !h.audited(w, AuditEvent{Sub: ref.Sub, Role: string(ref.Role), Action: AuditView, Recording: s.ID, Part: ref.part, Outcome: OutcomeOK}) {
			return false
		}
	}
	return true
}

// audited writes ev, or answers 503 and reports false when it cannot: what
// is not audited is not served.
func (h *Handler) audited(w http.ResponseWriter, ev AuditEvent) bool {
	if err := h.record(ev); err != nil {
		h.log().Error("replay: audit log write failed; not served", "err", err)
		writeJSONBody(w, http.StatusServiceUnavailable, unavailableBody)
		return false
	}
	return true
}

// refuseUnreadable answers a recording that may be seen but cannot be
// served: tampered bytes look missing (and are hidden from now on), a
// store failure is a 503.
func (h *Handler) refuseUnreadable(w http.ResponseWriter, ref refusal, err error) {
	switch {
	case errors.Is(err, ErrTampered):
		ref.reason = "integrity"
	case errors.Is(err, ErrNotVisible):
		ref.reason = "not_visible"
	default:
		h.log().Error("replay: reading recording failed", "sub", ref.Sub, "recording", ref.id, "err", err)
		ref.reason, ref.outcome, ref.status, ref.body = "store", OutcomeError, http.StatusServiceUnavailable, unavailableBody
	}
	h.refuse(w, ref)
}

// rangeStart is where the first range of a Range header starts, so that
// chunk is checked before headers go out; 0 when absent or unparsable
// (ServeContent then answers the header as it sees fit).
func rangeStart(hdr string, size int64) int64 {
	spec, ok := strings.CutPrefix(hdr, "bytes=")
	if !ok {
		return 0
	}
	first, _, _ := strings.Cut(spec, ",")
	from, to, _ := strings.Cut(strings.TrimSpace(first), "-")
	if from == "" { // suffix range: the last N bytes
		n, err := strconv.ParseInt(to, 10, 64)
		if err != nil {
			return 0
		}
		return max(size-n, 0)
	}
	n, err := strconv.ParseInt(from, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// authenticate verifies the replay token in the Authorization header.
func (h *Handler) authenticate(r *http.Request) (Viewer, error) {
	auth := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(auth, " ")
	if auth == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return Viewer{}, token.ErrMissing
	}
	if h.Verifier == nil {
		return Viewer{}, errors.New("replay: handler has no token verifier")
	}
	c, err := h.Verifier.VerifyReplay(strings.TrimSpace(raw))
	if err != nil {
		return Viewer{}, err
	}
	return Viewer{Sub: c.Subject, Role: ident.Role(c.Role)}, nil
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

func (h *Handler) record(ev AuditEvent) error {
	ev.Time = time.Now().UTC()
	var err error
	if h.Audit == nil {
		err = errors.New("replay: handler has no audit log")
	} else {
		err = h.Audit.Record(ev)
	}
	if h.Counted != nil {
		outcome := ev.Outcome
		if err != nil {
			outcome = OutcomeError
		}
		h.Counted(ev.Action, outcome)
	}
	return err
}

func (h *Handler) log() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

func writeJSONBody(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
