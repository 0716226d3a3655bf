package webhook

import (
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
)

// Event types, the payload's "type".
const (
	ConsultationStarted = "consultation.started"
	ConsultationEnded   = "consultation.ended"
	RecordingStored     = "recording.stored"
	RecordingFailed     = "recording.failed"
)

// payload is the body of every request, in the specification's shape.
type payload struct {
	Type      string    `json:"type"`
	Timestamp time.Time `json:"timestamp"`
	Data      any       `json:"data"`
}

// Consultation is the data of consultation.started and consultation.ended.
// Session pairs the two events of one session of the consultation.
type Consultation struct {
	Consultation string `json:"consultation"`
	Patient      string `json:"patient"`
	Session      string `json:"session"`
	Recorded     bool   `json:"recorded"`
}

// Recording is the data of recording.stored (every field) and
// recording.failed (the ids only: a failed recording is never stored).
type Recording struct {
	Recording    string `json:"recording"`
	Consultation string `json:"consultation"`
	Patient      string `json:"patient"`
	// ObjectKey is the WebM's key in the object store.
	ObjectKey string `json:"object_key,omitempty"`
	// ManifestKey is the signed manifest's key.
	ManifestKey string `json:"manifest_key,omitempty"`
	// ManifestSHA256 is the hex SHA-256 of the stored manifest (a DSSE
	// envelope); ObjectSHA256 that of the WebM, as the manifest signs it.
	ManifestSHA256 string `json:"manifest_sha256,omitempty"`
	ObjectSHA256   string `json:"object_sha256,omitempty"`
	SizeBytes      int64  `json:"size_bytes,omitempty"`
	Recovered      bool   `json:"recovered,omitempty"`
}

// NewSession returns an id for one session of a consultation.
func NewSession() string { return uuid.Must(uuid.NewV7()).String() }

// Started queues consultation.started.
func (s *Sender) Started(c Consultation) error {
	return s.send("msg_started_"+c.Session, ConsultationStarted, c)
}

// Ended queues consultation.ended.
func (s *Sender) Ended(c Consultation) error {
	return s.send("msg_ended_"+c.Session, ConsultationEnded, c)
}

// Stored queues recording.stored. Its webhook-id is derived from the
// recording id, so a recording stored twice (an upload repeated after a
// crash) is one event to a receiver that drops repeated ids.
func (s *Sender) Stored(r Recording) error {
	return s.send("msg_stored_"+r.Recording, RecordingStored, r)
}

// RecordingFailed queues recording.failed.
func (s *Sender) RecordingFailed(r Recording) error {
	return s.send("msg_failed_"+r.Recording, RecordingFailed, r)
}

// idPattern is what a webhook-id may hold: it names the queue file.
var idPattern = regexp.MustCompile(`^msg_[a-z]+_[A-Za-z0-9_-]{1,64}$`)

func (s *Sender) send(id, typ string, data any) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("webhook: %s for id %q: ids must match ^[A-Za-z0-9_-]{1,64}$", typ, id)
	}
	b, err := json.Marshal(payload{Type: typ, Timestamp: time.Now().UTC(), Data: data})
	if err != nil {
		return err
	}
	return s.enqueue(id, b)
}
