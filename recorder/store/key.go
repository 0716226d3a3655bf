package store

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/medcall/medcall/sfu/ident"
)

// MaxKeyLen is the longest key accepted, in bytes (the S3 limit).
const MaxKeyLen = 1024

// idPattern is quoted in error messages; ident validates.
const idPattern = ident.Pattern

// RecordingKeys returns the object keys of a recording's WebM file and its
// manifest (DESIGN §5):
//
//	patients/{pid}/consultations/{cid}/{rid}.webm
//	patients/{pid}/consultations/{cid}/{rid}.manifest.json
//
// pid and cid must match ^[A-Za-z0-9_-]{1,64}$ and rid must be a lowercase
// canonical UUID. This is the only place recording keys are built; pid and
// cid must come from the server-side consultation binding, never from
// anything a client sent.
func RecordingKeys(pid, cid, rid string) (webm, manifest string, err error) {
	if !ident.Valid(pid) {
		return "", "", fmt.Errorf("%w: patient id %q must match %s", ErrInvalidKey, pid, idPattern)
	}
	if !ident.Valid(cid) {
		return "", "", fmt.Errorf("%w: consultation id %q must match %s", ErrInvalidKey, cid, idPattern)
	}
	if !ident.ValidRecording(rid) {
		return "", "", fmt.Errorf("%w: recording id %q must be a lowercase UUID such as 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", ErrInvalidKey, rid)
	}
	base := "patients/" + pid + "/consultations/" + cid + "/" + rid
	return base + ".webm", base + ".manifest.json", nil
}

// PatientPrefix returns the key prefix that holds every object of patient
// pid, for listing one patient's recordings.
func PatientPrefix(pid string) (string, error) {
	if !ident.Valid(pid) {
		return "", fmt.Errorf("%w: patient id %q must match %s", ErrInvalidKey, pid, idPattern)
	}
	return "patients/" + pid + "/", nil
}

// ValidateKey reports whether key is safe to use as an object key in every
// store: non-empty, at most MaxKeyLen bytes of UTF-8, relative, made of
// non-empty "/"-separated segments none of which is "." or ".." or starts
// with "." (hidden names are reserved for temporary files), with no
// backslash, NUL or other control character. The error says which rule
// failed and matches ErrInvalidKey.
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	if strings.HasSuffix(key, "/") {
		return fmt.Errorf("%w: key %q ends with \"/\"; name an object, not a folder", ErrInvalidKey, key)
	}
	return validatePath(key)
}

// ValidatePrefix reports whether prefix is a valid List prefix: empty, or
// whole key segments followed by "/".
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("%w: prefix %q must end with \"/\" so it matches whole segments", ErrInvalidKey, prefix)
	}
	return validatePath(strings.TrimSuffix(prefix, "/"))
}

func validatePath(p string) error {
	if len(p) > MaxKeyLen {
		return fmt.Errorf("%w: key is %d bytes; at most %d allowed", ErrInvalidKey, len(p), MaxKeyLen)
	}
	if !utf8.ValidString(p) {
		return fmt.Errorf("%w: key %q is not valid UTF-8", ErrInvalidKey, p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("%w: key %q contains control byte 0x%02x", ErrInvalidKey, p, c)
		}
	}
	if strings.ContainsRune(p, '\\') {
		return fmt.Errorf("%w: key %q contains a backslash; use \"/\" between segments", ErrInvalidKey, p)
	}
	if strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: key %q is absolute; keys are relative to the store root", ErrInvalidKey, p)
	}
	for seg := range strings.SplitSeq(p, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("%w: key %q has an empty segment (\"//\")", ErrInvalidKey, p)
		case seg == "." || seg == "..":
			return fmt.Errorf("%w: key %q has a %q segment; keys cannot leave the store root", ErrInvalidKey, p, seg)
		case seg[0] == '.':
			return fmt.Errorf("%w: key %q has hidden segment %q; names starting with \".\" are reserved", ErrInvalidKey, p, seg)
		}
	}
	return nil
}
