package ws

import (
	"testing"

	"github.com/evbench/evbench/transports/transporttest"
)

// TestConformance runs the transports conformance suite against ws and wss.
func TestConformance(t *testing.T) {
	for _, tt := range both {
		t.Run(tt.name, func(t *testing.T) { transporttest.Run(t, tt.tr) })
	}
}
