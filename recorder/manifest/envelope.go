package manifest

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// Verification and signing errors; check them with errors.Is.
var (
	// ErrMalformed means the envelope or statement is not well-formed.
	ErrMalformed = errors.New("manifest: malformed")
	// ErrPayloadType means the envelope's payloadType is not PayloadType.
	ErrPayloadType = errors.New("manifest: wrong payload type")
	// ErrStatementType means the statement's _type is not StatementType.
	ErrStatementType = errors.New("manifest: wrong statement type")
	// ErrPredicateType means the statement's predicateType is not
	// PredicateType.
	ErrPredicateType = errors.New("manifest: wrong predicate type")
	// ErrUnknownKey means the key_id in the payload names no key in the set.
	ErrUnknownKey = errors.New("manifest: unknown signing key")
	// ErrBadSignature means no signature verifies with the named key.
	ErrBadSignature = errors.New("manifest: bad signature")
	// ErrKeyExpired means signed_at is at or after the key's not_after.
	ErrKeyExpired = errors.New("manifest: signing key had expired at signing time")
	// ErrKeyNotYetValid means signed_at is before the key's not_before.
	ErrKeyNotYetValid = errors.New("manifest: signing key was not yet valid at signing time")
	// ErrSubjectMismatch means the subject is not the object being checked,
	// or not the key of the recording the predicate describes.
	ErrSubjectMismatch = errors.New("manifest: subject does not match the object")
	// ErrDigestMismatch means the object's bytes do not have the subject's
	// SHA-256 or the predicate's size.
	ErrDigestMismatch = errors.New("manifest: object digest does not match the manifest")
	// ErrNoSigningKey means the key set has no private key valid now.
	ErrNoSigningKey = errors.New("manifest: no signing key valid")
)

// Sign signs st with ks's current key (see KeySet.Signer) and returns the
// DSSE envelope as JSON. It sets the statement and predicate types and the
// predicate's key_id and signed_at; st itself is not modified.
func Sign(ks *KeySet, st *Statement) ([]byte, error) {
	return SignAt(ks, st, time.Now())
}

// SignAt is Sign as if the time were now; tests use it to make manifests
// signed at chosen times.
func SignAt(ks *KeySet, st *Statement, now time.Time) ([]byte, error) {
	key, err := ks.SignerAt(now)
	if err != nil {
		return nil, err
	}
	s := *st
	s.Type, s.PredicateType = StatementType, PredicateType
	s.Predicate.KeyID, s.Predicate.SignedAt = key.ID, now.UTC()
	if err := s.check(); err != nil {
		return nil, fmt.Errorf("manifest: refusing to sign recording %s: %w", st.Predicate.RecordingID, err)
	}
	payload, err := json.Marshal(&s)
	if err != nil {
		return nil, fmt.Errorf("manifest: encode statement: %w", err)
	}
	return signPayload(key, PayloadType, payload)
}

func signPayload(key Key, payloadType string, payload []byte) ([]byte, error) {
	signer, err := dsse.NewEnvelopeSigner(ed25519SV{key})
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	env, err := signer.SignPayload(context.Background(), payloadType, payload)
	if err != nil {
		return nil, fmt.Errorf("manifest: sign with key %s: %w", key.ID, err)
	}
	return json.Marshal(env)
}

// Verify checks envelopeJSON against ks and returns its statement: the
// payload type, the signature by the key its key_id names, that signed_at
// lies in that key's validity window, the statement and predicate types,
// and that the subject is the key of the recording the predicate describes.
// It does not look at the object's bytes; VerifyObject does.
func Verify(ks *KeySet, envelopeJSON []byte) (*Statement, error) {
	var env dsse.Envelope
	if err := json.Unmarshal(envelopeJSON, &env); err != nil {
		return nil, fmt.Errorf("%w: envelope is not JSON: %w", ErrMalformed, err)
	}
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("%w: %q, want %q", ErrPayloadType, env.PayloadType, PayloadType)
	}
	payload, err := env.DecodeB64Payload()
	if err != nil {
		return nil, fmt.Errorf("%w: payload is not base64: %w", ErrMalformed, err)
	}
	// key_id is read before the signature is checked only to choose the
	// key; nothing else in the payload is trusted until it verifies.
	var hint struct {
		Predicate struct {
			KeyID string `json:"key_id"`
		} `json:"predicate"`
	}
	if err := json.Unmarshal(payload, &hint); err != nil || hint.Predicate.KeyID == "" {
		return nil, fmt.Errorf("%w: payload has no predicate.key_id", ErrMalformed)
	}
	key, ok := ks.Key(hint.Predicate.KeyID)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not in the key set (unknown or revoked); add its public key to verify", ErrUnknownKey, hint.Predicate.KeyID)
	}
	ev, err := dsse.NewEnvelopeVerifier(ed25519SV{key})
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	if _, err := ev.Verify(context.Background(), &env); err != nil {
		return nil, fmt.Errorf("%w: key %s: %w", ErrBadSignature, key.ID, err)
	}

	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return nil, fmt.Errorf("%w: statement: %w", ErrMalformed, err)
	}
	if st.Type != StatementType {
		return nil, fmt.Errorf("%w: %q, want %q", ErrStatementType, st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("%w: %q, want %q", ErrPredicateType, st.PredicateType, PredicateType)
	}
	at := st.Predicate.SignedAt
	switch {
	case at.Before(key.NotBefore):
		return nil, fmt.Errorf("%w: signed_at %s, key %s valid from %s", ErrKeyNotYetValid, at.Format(time.RFC3339), key.ID, key.NotBefore.Format(time.RFC3339))
	case !at.Before(key.NotAfter):
		return nil, fmt.Errorf("%w: signed_at %s, key %s valid until %s", ErrKeyExpired, at.Format(time.RFC3339), key.ID, key.NotAfter.Format(time.RFC3339))
	}
	if err := st.check(); err != nil {
		return nil, err
	}
	return &st, nil
}

// VerifyObject is Verify plus a check that the manifest is about this
// object: the subject name must equal objectKey and webm's bytes must have
// the subject's SHA-256 and the predicate's size.
func VerifyObject(ks *KeySet, envelopeJSON []byte, objectKey string, webm io.Reader) (*Statement, error) {
	st, err := Verify(ks, envelopeJSON)
	if err != nil {
		return nil, err
	}
	if st.Subject[0].Name != objectKey {
		return nil, fmt.Errorf("%w: manifest is about %q, object is %q", ErrSubjectMismatch, st.Subject[0].Name, objectKey)
	}
	h := sha256.New()
	n, err := io.Copy(h, webm)
	if err != nil {
		return nil, fmt.Errorf("manifest: read %s to check its digest: %w", objectKey, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != st.SHA256() || n != st.Predicate.SizeBytes {
		return nil, fmt.Errorf("%w: %s has %d bytes sha256 %s, manifest says %d bytes sha256 %s", ErrDigestMismatch, objectKey, n, got, st.Predicate.SizeBytes, st.SHA256())
	}
	return st, nil
}

// ed25519SV adapts a Key to dsse's Signer and Verifier.
type ed25519SV struct{ k Key }

func (s ed25519SV) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.k.PrivateKey, data), nil
}

func (s ed25519SV) Verify(_ context.Context, data, sig []byte) error {
	if !ed25519.Verify(s.k.PublicKey, data, sig) {
		return errors.New("ed25519 signature does not verify")
	}
	return nil
}

func (s ed25519SV) KeyID() (string, error)   { return s.k.ID, nil }
func (s ed25519SV) Public() crypto.PublicKey { return s.k.PublicKey }
