package udp

import (
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/transporttest"
)

// TestConformance runs the shared transport suite with short keepalive
// intervals, so that keepalives flow during the suite's pauses, over kernel
// sockets and over sockets wrapped in a type that is not a *net.UDPConn
// (server and clients both), as a network impairment would be.
func TestConformance(t *testing.T) {
	opts := Options{KeepaliveInterval: 50 * time.Millisecond, IdleTimeout: 2 * time.Second}
	tests := []struct {
		name string
		cfg  transports.Config
	}{
		{"kernel sockets", transports.Config{}},
		{"wrapped sockets", plainConfig},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			transporttest.Run(t, newT(t, tc.cfg, opts))
		})
	}
}
