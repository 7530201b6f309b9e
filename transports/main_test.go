package transports_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks, after all tests of package transports have run (the
// internal ones in frame_test.go as well as the external ones here, which
// share one test binary), that no goroutine is left behind: a Hub, Client,
// Listener or Conn that a test forgot to close, or one whose Close does not
// stop its goroutines, fails the run.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
