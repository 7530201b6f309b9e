package quic

import (
	"testing"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/transporttest"
)

// TestConformance runs the shared transport conformance suite against both
// transports of this package.
func TestConformance(t *testing.T) {
	for _, tr := range []transports.Transport{Stream(), Datagram()} {
		t.Run(tr.Name(), func(t *testing.T) {
			transporttest.Run(t, tr)
		})
	}
}
