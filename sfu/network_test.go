package sfu

import (
	"net"
	"testing"
)

// TestParsePublicIP: a public address alone maps every local address of its
// family; PUBLIC/LOCAL maps one; anything else is refused with the form to use.
func TestParsePublicIP(t *testing.T) {
	for _, tc := range []struct {
		in            string
		public, local string // "" local: none; "" public: refused
	}{
		{"203.0.113.10", "203.0.113.10", ""},
		{"2001:db8::10", "2001:db8::10", ""},
		{"203.0.113.10/10.0.0.5", "203.0.113.10", "10.0.0.5"},
		{"2001:db8::10/fd00::5", "2001:db8::10", "fd00::5"},
		{"203.0.113.10/fd00::5", "", ""}, // families differ
		{"0.0.0.0", "", ""},
		{"medcall.example.org", "", ""},
		{"203.0.113.10/", "", ""},
		{"", "", ""},
	} {
		p, err := ParsePublicIP(tc.in)
		if tc.public == "" {
			if err == nil {
				t.Errorf("%q accepted as %v", tc.in, p)
			}
			continue
		}
		if err != nil || !p.Public.Equal(net.ParseIP(tc.public)) || (tc.local == "") != (p.Local == nil) || (tc.local != "" && !p.Local.Equal(net.ParseIP(tc.local))) {
			t.Errorf("%q: %v %v, want public %s local %q", tc.in, p, err, tc.public, tc.local)
		}
	}
}
