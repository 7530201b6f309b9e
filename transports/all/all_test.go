package all_test

import (
	"slices"
	"testing"

	"github.com/evbench/evbench/transports"
	_ "github.com/evbench/evbench/transports/all"
)

// TestRegistry pins the registry's contents and order, which the CLI's
// default --transports, the reports and the README follow.
func TestRegistry(t *testing.T) {
	want := []string{"tcp", "tcp+tls", "udp", "ws", "wss", "quic", "quic-dgram"}
	if got := transports.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
	for _, name := range want {
		tr, err := transports.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		if tr.Name() != name {
			t.Errorf("Lookup(%q).Name() = %q", name, tr.Name())
		}
	}
	if _, err := transports.Lookup("sctp"); err == nil {
		t.Error(`Lookup("sctp") succeeded, want an error naming the known transports`)
	}
}
