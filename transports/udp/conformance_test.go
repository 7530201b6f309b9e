package udp

import (
	"testing"
	"time"

	"github.com/evbench/evbench/transports/transporttest"
)

// TestConformance runs the shared transport suite with short keepalive
// intervals, so that keepalives flow during the suite's pauses.
func TestConformance(t *testing.T) {
	transporttest.Run(t, New(Options{KeepaliveInterval: 50 * time.Millisecond, IdleTimeout: 2 * time.Second}))
}
