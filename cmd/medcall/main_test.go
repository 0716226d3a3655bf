package main

import "testing"

// TestSelfCommand: the hints a server prints name the command that runs
// it: go run's when started by go run, the binary's own path otherwise.
func TestSelfCommand(t *testing.T) {
	for arg0, want := range map[string]string{
		"/tmp/go-build1234567/b001/exe/medcall": "go run ./cmd/medcall",
		"/usr/local/bin/medcall":                "/usr/local/bin/medcall",
		"./medcall":                             "./medcall",
		"medcall":                               "medcall",
	} {
		if got := selfCommand(arg0); got != want {
			t.Errorf("selfCommand(%q) = %q, want %q", arg0, got, want)
		}
	}
}
