package signaling_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// session, peer connection and forwarding loop must end with its test.
// Started by a liveness test inside a network namespace, the test binary is
// instead a client (see nsClientMain).
func TestMain(m *testing.M) {
	if url := os.Getenv(nsClientURL); url != "" {
		os.Exit(nsClientMain(url, os.Getenv(nsClientToken)))
	}
	goleak.VerifyTestMain(m)
}
