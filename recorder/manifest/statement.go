package manifest

import (
	"encoding/hex"
	"fmt"
	"time"

	"github.com/medcall/medcall/recorder/store"
	"github.com/medcall/medcall/sfu/ident"
)

// Identifiers of the envelope and statement formats.
const (
	// PayloadType is the DSSE payload type of a manifest.
	PayloadType = "application/vnd.in-toto+json"
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType identifies the medcall recording predicate.
	PredicateType = "urn:medcall:recording:v1"
)

// Statement is an in-toto Statement v1 about one recording.
type Statement struct {
	// Type is StatementType; Sign sets it.
	Type string `json:"_type"`
	// Subject is the recording's WebM object: exactly one entry.
	Subject []Subject `json:"subject"`
	// PredicateType is PredicateType; Sign sets it.
	PredicateType string `json:"predicateType"`
	// Predicate describes the recording.
	Predicate Predicate `json:"predicate"`
}

// Subject names an object and its digests.
type Subject struct {
	// Name is the object key.
	Name string `json:"name"`
	// Digest maps algorithm to lowercase hex digest; "sha256" is required.
	Digest map[string]string `json:"digest"`
}

// Predicate is the urn:medcall:recording:v1 predicate (see the package
// documentation). The recorder fills everything but KeyID and SignedAt,
// which Sign sets.
type Predicate struct {
	// Consultation is the consultation id from the server-side binding.
	Consultation string `json:"consultation"`
	// Patient is the patient id from the server-side binding.
	Patient string `json:"patient"`
	// RecordingID is the recording's UUID.
	RecordingID string `json:"recording_id"`
	// Started is when the recording started.
	Started time.Time `json:"started"`
	// Ended is when the recording ended.
	Ended time.Time `json:"ended"`
	// SizeBytes is the length of the WebM object.
	SizeBytes int64 `json:"size_bytes"`
	// Participants are everyone who joined while recording.
	Participants []Participant `json:"participants"`
	// Tracks are the WebM file's tracks.
	Tracks []Track `json:"tracks"`
	// Events are joins, leaves, upgrades, downgrades and audio on/off, in order.
	Events []Event `json:"events"`
	// RecorderVersion is the medcall version that wrote the file.
	RecorderVersion string `json:"recorder_version"`
	// KeyID names the signing key; set by Sign, covered by the signature.
	KeyID string `json:"key_id"`
	// SignedAt is the signing time; set by Sign.
	SignedAt time.Time `json:"signed_at"`
	// Recovered is true when the file was finalized from an orphaned spool.
	Recovered bool `json:"recovered"`
	// Chunks are the per-chunk digests replay checks every read against;
	// nil in manifests signed before they existed.
	Chunks *Chunks `json:"chunks,omitempty"`
	// Partial is true when the recording stopped early (its spool could not
	// be written, e.g. the disk was full): the file holds what was spooled.
	Partial bool `json:"partial,omitempty"`
	// Previous is the recording id of the segment this one continues (the
	// consultation's previous recording, e.g. on a node that was lost).
	Previous string `json:"previous,omitempty"`
}

// Participant is one person in the recorded consultation.
type Participant struct {
	// ID is the participant's pseudonymous id (the token's sub).
	ID string `json:"id"`
	// Role is patient, clinician or guest.
	Role string `json:"role"`
	// Joined is when the participant joined.
	Joined time.Time `json:"joined"`
	// Left is when the participant left; zero if still present at the end.
	Left time.Time `json:"left,omitzero"`
}

// Track is one WebM track: one participant's audio or video.
type Track struct {
	// Number is the WebM track number, from 1.
	Number int `json:"number"`
	// Participant is the id of the participant whose media this is.
	Participant string `json:"participant"`
	// Kind is audio or video.
	Kind string `json:"kind"`
	// Codec is opus, vp8 or vp9.
	Codec string `json:"codec"`
	// FirstMS is the offset of the first frame from Started.
	FirstMS int64 `json:"first_ms"`
	// LastMS is the offset of the last frame from Started.
	LastMS int64 `json:"last_ms"`
	// Frames is the number of frames written.
	Frames int64 `json:"frames"`
}

// Event is something that happened during the recording, at an offset.
type Event struct {
	// Type is joined, left, upgrade, downgrade, audio_on, audio_off or
	// ice_restart (a network change: the participant's media has a gap here).
	Type string `json:"type"`
	// Participant is the id of the participant it happened to.
	Participant string `json:"participant"`
	// OffsetMS is the offset from Started.
	OffsetMS int64 `json:"offset_ms"`
	// Path is how an upgrade happened: renegotiate or prenegotiated.
	Path string `json:"path,omitempty"`
}

// NewStatement returns a Statement about the WebM object of the recording
// that p describes, whose bytes have the given SHA-256 (lowercase hex).
// The subject key comes from store.RecordingKeys.
func NewStatement(p Predicate, sha256Hex string) (*Statement, error) {
	webm, _, err := store.RecordingKeys(p.Patient, p.Consultation, p.RecordingID)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	return &Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: webm, Digest: map[string]string{"sha256": sha256Hex}}},
		PredicateType: PredicateType,
		Predicate:     p,
	}, nil
}

// SHA256 returns the subject's SHA-256 (lowercase hex).
func (s *Statement) SHA256() string {
	if len(s.Subject) != 1 {
		return ""
	}
	return s.Subject[0].Digest["sha256"]
}

var (
	kinds = map[string]bool{"audio": true, "video": true}
)

// check reports the first way s is not a well-formed recording statement.
// Subject/key disagreements match ErrSubjectMismatch, everything else
// ErrMalformed.
func (s *Statement) check() error {
	if len(s.Subject) != 1 {
		return fmt.Errorf("%w: %d subjects, want exactly 1", ErrMalformed, len(s.Subject))
	}
	sum := s.Subject[0].Digest["sha256"]
	if b, err := hex.DecodeString(sum); err != nil || len(b) != 32 || hex.EncodeToString(b) != sum {
		return fmt.Errorf("%w: subject sha256 %q is not 64 lowercase hex digits", ErrMalformed, sum)
	}
	p := &s.Predicate
	webm, _, err := store.RecordingKeys(p.Patient, p.Consultation, p.RecordingID)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if s.Subject[0].Name != webm {
		return fmt.Errorf("%w: subject %q is not the key %q of the recording the predicate describes", ErrSubjectMismatch, s.Subject[0].Name, webm)
	}
	if p.Started.IsZero() || p.Ended.Before(p.Started) {
		return fmt.Errorf("%w: recording time %s..%s is not a valid interval", ErrMalformed, p.Started, p.Ended)
	}
	if p.SizeBytes < 0 {
		return fmt.Errorf("%w: size_bytes %d is negative", ErrMalformed, p.SizeBytes)
	}
	if err := p.Chunks.check(p.SizeBytes); err != nil {
		return err
	}
	known := make(map[string]bool, len(p.Participants))
	for _, pt := range p.Participants {
		if !ident.Valid(pt.ID) || !ident.Role(pt.Role).Valid() {
			return fmt.Errorf("%w: participant %q role %q; ids match %s, roles are patient, clinician, guest", ErrMalformed, pt.ID, pt.Role, ident.Pattern)
		}
		known[pt.ID] = true
	}
	for _, tr := range p.Tracks {
		if tr.Number < 1 || !known[tr.Participant] || !kinds[tr.Kind] || tr.Codec == "" || tr.Frames < 0 || tr.LastMS < tr.FirstMS {
			return fmt.Errorf("%w: track %d (%s/%s %s) is inconsistent or names an unlisted participant", ErrMalformed, tr.Number, tr.Participant, tr.Kind, tr.Codec)
		}
	}
	for _, ev := range p.Events {
		if ev.Type == "" || !known[ev.Participant] || ev.OffsetMS < 0 {
			return fmt.Errorf("%w: event %q of %q at %d ms is inconsistent or names an unlisted participant", ErrMalformed, ev.Type, ev.Participant, ev.OffsetMS)
		}
	}
	return nil
}
