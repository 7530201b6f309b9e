package bench_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports/ws"
)

// docs/cases.md C13 (the per-delivery path allocates nothing in steady state) is
// checked where the allocations would be made, by tests that run each part
// synchronously with testing.AllocsPerRun and fail on a single allocation:
// TestRecordNoAlloc (the Recorder), and in package transports
// TestC13ClientAllocs (Client.Emit and the Client's handling of a received
// EVENT or ACK) and TestHubBroadcastDoesNotAllocate (the Hub's fan-out). An
// end-to-end count over a whole run includes every goroutine of the process
// (timers, the runtime, the ws library, whatever else the machine makes the
// scheduler do), so it is a figure, BenchmarkSteadyStateAllocs, not a test.

// BenchmarkSteadyStateAllocs is C13 end to end: the whole per-delivery path
// (publisher, client write, ws transport, Hub fan-out, client read,
// Recorder). Each iteration makes two runs that differ only in the window's
// length, so that connection set-up, histograms and teardown cancel out, and
// reports the mallocs of the process per extra delivery (allocs/delivery;
// about 0 is expected, where a per-message timer, context or buffer would
// be 1 or more). The case's 500 clients × 100 events/s (about 5 million
// deliveries/s) is beyond a 2-core machine; 100 clients × 50 events/s in 5
// rooms (about 95,000 deliveries/s) exercises the same path. Under the race
// detector sync.Pool drops items on purpose, so the figure means nothing
// there. Run it with: go test -run '^$' -bench SteadyStateAllocs ./bench/
func BenchmarkSteadyStateAllocs(b *testing.B) {
	if raceEnabled {
		b.Skip("the race detector's sync.Pool drops items on purpose; allocation counts mean nothing under -race")
	}
	run := func(d time.Duration) (mallocs uint64, delivered int64) {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		res, err := bench.Run(context.Background(), ws.Plain(), bench.Scenario{
			Clients: 100, Rooms: 5, RateEPS: 50, Duration: d, Warmup: 500 * time.Millisecond,
		})
		runtime.ReadMemStats(&after)
		if err != nil || res.Error != "" {
			b.Fatalf("run of %v: %v %s", d, err, res.Error)
		}
		return after.Mallocs - before.Mallocs, res.Delivered
	}
	var extraMallocs, extraDelivered float64
	for b.Loop() {
		m1, d1 := run(time.Second)
		m2, d2 := run(3 * time.Second)
		b.Logf("1 s: %d mallocs for %d deliveries; 3 s: %d for %d", m1, d1, m2, d2)
		extraMallocs += float64(m2) - float64(m1)
		extraDelivered += float64(d2 - d1)
	}
	if extraDelivered <= 0 {
		b.Fatalf("the longer runs delivered %.0f more events than the shorter, want more", extraDelivered)
	}
	b.ReportMetric(extraMallocs/extraDelivered, "allocs/delivery")
	b.ReportMetric(extraDelivered/float64(b.N), "deliveries/op")
}
