// Package ident holds the identifiers every part of medcall agrees on: the
// pseudonymous id syntax, recording ids and participant roles. It is a leaf
// (standard library only) so the SFU, the recorder, the store, the manifest
// and token verification all share one validator instead of copies.
package ident

import (
	"fmt"
	"regexp"
)

// Pattern is the syntax of every pseudonymous id (participant, patient,
// consultation, key id): 1 to 64 letters, digits, "_" or "-". It keeps ids
// safe as object-key segments and free of names or e-mail addresses.
const Pattern = `^[A-Za-z0-9_-]{1,64}$`

var (
	idRE  = regexp.MustCompile(Pattern)
	ridRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
)

// Valid reports whether s is a well-formed pseudonymous id (see Pattern).
func Valid(s string) bool { return idRE.MatchString(s) }

// ValidRecording reports whether s is a recording id: a lowercase canonical
// UUID such as 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b.
func ValidRecording(s string) bool { return ridRE.MatchString(s) }

// Role is what a person is in a consultation.
type Role string

// The roles a token may carry.
const (
	Patient   Role = "patient"
	Clinician Role = "clinician"
	Guest     Role = "guest"
)

// Valid reports whether r is one of the known roles.
func (r Role) Valid() bool { return r == Patient || r == Clinician || r == Guest }

// ParseRole returns s as a Role, or an error naming the roles allowed.
func ParseRole(s string) (Role, error) {
	if r := Role(s); r.Valid() {
		return r, nil
	}
	return "", fmt.Errorf("unknown role %q: roles are patient, clinician, guest", s)
}
