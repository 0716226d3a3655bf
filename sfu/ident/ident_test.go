package ident

import (
	"strings"
	"testing"
)

func TestValid(t *testing.T) {
	for _, c := range []struct {
		id   string
		want bool
	}{
		{"p-1", true}, {"A_z-09", true}, {strings.Repeat("a", 64), true},
		{"", false}, {strings.Repeat("a", 65), false}, {"../p", false}, {"p/1", false},
		{"a@b.org", false}, {"p 1", false}, {"p\n", false}, {"é", false},
	} {
		if got := Valid(c.id); got != c.want {
			t.Errorf("Valid(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

func TestValidRecording(t *testing.T) {
	for _, c := range []struct {
		id   string
		want bool
	}{
		{"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", true},
		{"0190A1B2-C3D4-7E5F-8A9B-0C1D2E3F4A5B", false},
		{"0190a1b2c3d47e5f8a9b0c1d2e3f4a5b", false},
		{"../0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", false},
		{"", false},
	} {
		if got := ValidRecording(c.id); got != c.want {
			t.Errorf("ValidRecording(%q) = %v, want %v", c.id, got, c.want)
		}
	}
}

func TestParseRole(t *testing.T) {
	for _, s := range []string{"patient", "clinician", "guest"} {
		if r, err := ParseRole(s); err != nil || string(r) != s {
			t.Errorf("ParseRole(%q) = %q, %v", s, r, err)
		}
	}
	for _, s := range []string{"", "Patient", "admin"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
}
