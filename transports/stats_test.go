package transports_test

import (
	"context"
	"errors"
	"testing"

	"github.com/evbench/evbench/transports"
)

// TestServerStats: a STATS request returns the Hub's counters over the
// protocol, on a reliable and on a datagram transport, and the Hub counts
// the connections that ended by reason.
func TestServerStats(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.Name(), func(t *testing.T) {
			s := startHub(t, tr, transports.HubConfig{})
			asker := s.dial(t, transports.ClientConfig{})
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()

			base, err := asker.c.ServerStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if base.Conns != 1 || base.ClosedClean != 0 || base.ClosedError != 0 {
				t.Fatalf("first snapshot %+v, want 1 connection and no closes", base)
			}

			// One client leaves cleanly, one breaks the protocol (tcp only:
			// a raw stream is how a peer sends a malformed frame).
			leaver := s.dial(t, transports.ClientConfig{})
			leaver.c.Close()
			waitStats(t, s.hub, "clean close", func(st transports.HubStats) bool { return st.ClosedClean == 1 })
			wantErrors := uint64(0)
			if tr.Name() == "tcp" {
				bad := dialRaw(t, s.addr)
				writeFrames(t, bad, encode(t, transports.Frame{Type: transports.FrameHello, Sender: 99}), []byte{transports.Version, 0xee})
				waitStats(t, s.hub, "protocol error", func(st transports.HubStats) bool { return st.ClosedError == 1 })
				bad.Close()
				wantErrors = 1
			}

			got, err := asker.c.ServerStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := transports.ServerStats{
				HubStats: s.hub.Stats(), SendQueue: 4096, SlowConsumer: "drop-oldest",
				SendQueueBytes:  transports.DefaultSendQueueBytes,
				MaxPayloadBytes: transports.DefaultMaxPayloadBytes,
				MaxRooms:        transports.DefaultMaxRooms, MaxNamespaces: transports.DefaultMaxNamespaces,
			}
			if got != want {
				t.Errorf("ServerStats = %+v, Hub.Stats = %+v", got, want)
			}
			d := got.Sub(base.HubStats)
			if d.ClosedClean != 1 || d.ClosedError != wantErrors || d.ProtocolErrors != wantErrors || d.ClosedSlow != 0 {
				t.Errorf("difference of the snapshots %+v, want 1 clean close and %d errors", d, wantErrors)
			}
			if n := asker.c.PendingAcks(); n != 0 {
				t.Errorf("PendingAcks = %d after ServerStats, want 0", n)
			}
		})
	}
}

// TestIDInUse: a HELLO with the id of a connected client is refused with a
// BYE that says why, so that a second fleet on the same server learns what
// happened; the client holding the id is not disturbed.
func TestIDInUse(t *testing.T) {
	for _, tr := range bothTransports {
		t.Run(tr.Name(), func(t *testing.T) {
			s := startHub(t, tr, transports.HubConfig{})
			first := s.dial(t, transports.ClientConfig{ID: 7})
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()
			c, err := transports.Dial(ctx, tr, s.addr, transports.ClientConfig{ID: 7})
			if err == nil {
				c.Close()
				t.Fatal("a second client with id 7 connected")
			}
			if !errors.Is(err, transports.ErrIDInUse) {
				t.Errorf("Dial = %v, want an error wrapping ErrIDInUse", err)
			}
			if _, err := first.c.ServerStats(ctx); err != nil {
				t.Errorf("the client holding id 7: %v", err)
			}
		})
	}
}
