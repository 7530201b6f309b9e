package bench_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/tcp"
)

// TestScenarioFromResult: a row written to CSV and read back alone rebuilds
// the scenario it was measured with, the named "none" values included; a v1
// row, which does not record its whole scenario, is refused.
func TestScenarioFromResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		sc   bench.Scenario
	}{
		{"defaults", bench.Scenario{}},
		{"every field set", bench.Scenario{
			Clients: 12, Rooms: 3, RoomsPerClient: 2, Publishers: 4, RateEPS: 12.5, AckEvery: 3,
			PayloadBytes: 700, Warmup: 250 * time.Millisecond, Duration: 1500 * time.Millisecond,
			Drain: 750 * time.Millisecond, Seed: -42, MaxSchedLag: 3 * time.Millisecond, SendQueue: 17,
			SlowConsumer: transports.Disconnect, ConnectTimeout: 4 * time.Second,
		}},
		{"none values", bench.Scenario{
			Clients: 3, Rooms: 1, Publishers: bench.NoPublishers, AckEvery: bench.NeverAck,
			Warmup: bench.NoWarmup, Drain: bench.NoDrain,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A run that fails at once still describes its scenario: the
			// row is what a file would hold, and nothing is measured here.
			sc := tc.sc.WithDefaults()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			row, _ := bench.Run(ctx, tcp.Plain(), sc)
			var buf bytes.Buffer
			w := results.NewCSVWriter(&buf)
			if err := w.Write(&row); err != nil {
				t.Fatal(err)
			}
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			rows, err := results.ReadCSV(&buf)
			if err != nil {
				t.Fatal(err)
			}
			got, err := bench.ScenarioFromResult(rows[0])
			if err != nil {
				t.Fatal(err)
			}
			if got != sc {
				t.Errorf("rebuilt\n%+v\nwant\n%+v", got, sc)
			}
			if rows[0].Transport != "tcp" || !rows[0].CapsReliable || rows[0].MaxFrameBytes != tcp.MaxFrameBytes ||
				rows[0].Server != bench.InProcess || rows[0].GoVersion == "" || rows[0].GOMAXPROCS < 1 || rows[0].Kernel == "" {
				t.Errorf("row does not say how it was made: transport %q reliable %v max frame %d server %q go %q gomaxprocs %d kernel %q",
					rows[0].Transport, rows[0].CapsReliable, rows[0].MaxFrameBytes, rows[0].Server, rows[0].GoVersion, rows[0].GOMAXPROCS, rows[0].Kernel)
			}
		})
	}
	if _, err := bench.ScenarioFromResult(results.Result{Schema: 1, Clients: 5, Rooms: 1}); err == nil {
		t.Error("a schema 1 row rebuilt a scenario, want an error saying it does not record one")
	}
}
