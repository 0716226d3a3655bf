package signaling_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// session, peer connection and forwarding loop must end with its test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
