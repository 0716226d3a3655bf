// Package token verifies and mints the JWTs that admit people to consultations
// and to replay. A backend mints them; medcall only verifies. Each key is pinned
// to one algorithm (EdDSA or HS256), so "alg: none" and algorithm confusion are
// refused by construction.
package token

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Audience is the only accepted "aud" claim.
const Audience = "medcall"

// Leeway is the clock skew tolerated on exp and nbf.
const Leeway = 30 * time.Second

// Roles a token may carry.
const (
	RolePatient   = "patient"
	RoleClinician = "clinician"
	RoleGuest     = "guest"
)

// Errors returned by Verify; each maps to one protocol error code.
var (
	ErrMissing = errors.New("token missing")
	ErrExpired = errors.New("token expired")
	ErrInvalid = errors.New("token invalid")
	ErrBadID   = errors.New("bad id")
	ErrRole    = errors.New("role not allowed")
)

var idPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidID reports whether s is a well-formed pseudonymous id.
func ValidID(s string) bool { return idPattern.MatchString(s) }

// Claims are the medcall claims of a join or replay token.
type Claims struct {
	Role         string `json:"role"`
	Consultation string `json:"cid,omitempty"`
	Patient      string `json:"pid,omitempty"`
	Record       bool   `json:"rec"` // always written: a join token without rec is refused
	jwt.RegisteredClaims
}

// Join is what a verified join token grants.
type Join struct {
	Participant  string
	Role         string
	Consultation string
	Patient      string
	Record       bool
	Expires      time.Time
}

// Replay is what a verified replay token grants.
type Replay struct {
	Subject string
	Role    string
	Expires time.Time
}

// Verifier checks tokens against a key set.
type Verifier struct {
	Keys *KeySet
	Now  func() time.Time // for tests; nil means time.Now
}

func (v *Verifier) parse(raw string) (*Claims, error) {
	if raw == "" {
		return nil, ErrMissing
	}
	var claims Claims
	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg(), jwt.SigningMethodHS256.Alg()}),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithStrictDecoding(),
	}
	if v.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(v.Now))
	}
	_, err := jwt.ParseWithClaims(raw, &claims, v.Keys.keyFunc, opts...)
	switch {
	case err == nil:
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, fmt.Errorf("%w: %v", ErrExpired, err)
	default:
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if !ValidID(claims.Subject) {
		return nil, fmt.Errorf("%w: sub must match %s", ErrBadID, idPattern)
	}
	switch claims.Role {
	case RolePatient, RoleClinician, RoleGuest:
	default:
		return nil, fmt.Errorf("%w: unknown role %q", ErrInvalid, claims.Role)
	}
	return &claims, nil
}

// VerifyJoin checks a join token: signature, algorithm, aud, exp/nbf, id syntax,
// and that a patient joins only their own consultation (sub == pid).
func (v *Verifier) VerifyJoin(raw string) (*Join, error) {
	c, err := v.parse(raw)
	if err != nil {
		return nil, err
	}
	if c.Consultation == "" || c.Patient == "" {
		return nil, fmt.Errorf("%w: a join token needs cid and pid", ErrInvalid)
	}
	if !hasClaim(raw, "rec") {
		// Absent is not "do not record": the backend must say which.
		return nil, fmt.Errorf("%w: a join token needs rec (true or false)", ErrInvalid)
	}
	if !ValidID(c.Consultation) || !ValidID(c.Patient) {
		return nil, fmt.Errorf("%w: cid and pid must match %s", ErrBadID, idPattern)
	}
	if c.Role == RolePatient && c.Subject != c.Patient {
		return nil, fmt.Errorf("%w: a patient token must have sub == pid", ErrRole)
	}
	return &Join{
		Participant: c.Subject, Role: c.Role, Consultation: c.Consultation,
		Patient: c.Patient, Record: c.Record, Expires: c.ExpiresAt.Time,
	}, nil
}

// hasClaim reports whether the payload of raw, a token whose signature has
// been verified, names claim.
func hasClaim(raw, claim string) bool {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(payload, &obj) != nil {
		return false
	}
	_, ok := obj[claim]
	return ok
}

// VerifyReplay checks a replay token: like a join token but without cid, pid or rec.
func (v *Verifier) VerifyReplay(raw string) (*Replay, error) {
	c, err := v.parse(raw)
	if err != nil {
		return nil, err
	}
	if c.Consultation != "" || c.Patient != "" {
		return nil, fmt.Errorf("%w: a replay token carries no cid or pid", ErrInvalid)
	}
	if c.Role == RoleGuest {
		return nil, fmt.Errorf("%w: guests have no replay", ErrRole)
	}
	return &Replay{Subject: c.Subject, Role: c.Role, Expires: c.ExpiresAt.Time}, nil
}
