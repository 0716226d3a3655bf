package recorder

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Audit actions and outcomes (DESIGN §6: every list, view and refusal).
const (
	AuditList   = "list"
	AuditView   = "view"
	AuditRefuse = "refuse"

	OutcomeOK      = "ok"
	OutcomeRefused = "refused"
	OutcomeError   = "error"
)

// AuditEvent is one line of the replay audit log. It never carries a token.
// signaling.AuditEvent has the same fields in the same order, so one
// converts to the other with a plain conversion.
type AuditEvent struct {
	// Time is when it happened; Record fills it in when zero.
	Time time.Time `json:"time"`
	// Sub and Role are who asked, from a verified token; empty when the
	// request carried no valid token.
	Sub  string `json:"sub,omitempty"`
	Role string `json:"role,omitempty"`
	// Action is list, view or refuse.
	Action string `json:"action"`
	// Recording is the recording id asked for, when there was one.
	Recording string `json:"recording,omitempty"`
	// Outcome is ok, refused or error.
	Outcome string `json:"outcome"`
	// Reason says why a request was refused or failed, from a small fixed
	// set chosen by the caller (e.g. "not_visible", "replay_off").
	Reason string `json:"reason,omitempty"`
}

// Audit is an append-only JSON-lines audit log. Each Record is one line,
// written with a single write and synced to disk before Record returns, so
// a line that Record reported as written survives a crash. Safe for
// concurrent use.
type Audit struct {
	// OnRecord, if set, is called after each line is written, for counters.
	OnRecord func(action, outcome string)

	mu   sync.Mutex
	f    *os.File
	path string
}

// OpenAudit opens (creating, mode 0600, with its directory 0700) the audit
// log at path for appending.
func OpenAudit(path string) (*Audit, error) {
	if path == "" {
		return nil, errors.New("recorder: audit log path is empty")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("recorder: create audit log directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("recorder: open audit log: %w", err)
	}
	return &Audit{f: f, path: path}, nil
}

// Record appends ev as one line and syncs the file. An error means the
// event may not be on disk; callers serving recordings refuse to serve then.
func (a *Audit) Record(ev AuditEvent) error {
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ev.Time = ev.Time.UTC()
	if err := a.Append(ev); err != nil {
		return err
	}
	if a.OnRecord != nil {
		a.OnRecord(ev.Action, ev.Outcome)
	}
	return nil
}

// Append writes v as one JSON line and syncs the file, for audit records of
// another shape (join refusals); Record is Append for replay events.
func (a *Audit) Append(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("recorder: encode audit event: %w", err)
	}
	b = append(b, '\n')
	a.mu.Lock()
	if a.f == nil {
		a.mu.Unlock()
		return fmt.Errorf("recorder: audit log %s is closed", a.path)
	}
	_, werr := a.f.Write(b)
	serr := a.f.Sync()
	a.mu.Unlock()
	if err := errors.Join(werr, serr); err != nil {
		return fmt.Errorf("recorder: write audit log %s: %w", a.path, err)
	}
	return nil
}

// Close closes the log; later Records fail.
func (a *Audit) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}
