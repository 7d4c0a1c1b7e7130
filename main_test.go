package primus_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if any test leaves a goroutine behind: every
// spark's reader and writer, every heartbeat and every client must be gone.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
