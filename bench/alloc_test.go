package bench_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports/ws"
)

// TestC13SteadyStateAllocs is CASES.md C13 end to end: the whole
// per-delivery path (publisher, client write, ws transport, Hub fan-out,
// client read, Recorder) allocates nothing in steady state. Two runs that
// differ only in the window's length are compared, so connection set-up,
// histograms and teardown cancel out and what is left is the cost of the
// extra deliveries. The case's 500 clients × 100 events/s (about 5 million
// deliveries/s) is beyond a 2-core machine; 100 clients × 50 events/s in 5
// rooms (about 95,000 deliveries/s) exercises the same path.
func TestC13SteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items on purpose; allocation counts mean nothing under -race")
	}
	if testing.Short() {
		t.Skip("two 1-4 s runs")
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
			t.Fatalf("run of %v: %v %s", d, err, res.Error)
		}
		return after.Mallocs - before.Mallocs, res.Delivered
	}
	m1, d1 := run(time.Second)
	m2, d2 := run(4 * time.Second)
	perDelivery := (float64(m2) - float64(m1)) / float64(d2-d1)
	t.Logf("1 s: %d mallocs for %d deliveries; 4 s: %d for %d; %.4f allocations per extra delivery", m1, d1, m2, d2, perDelivery)
	// Timers, the Go runtime and the ws library may allocate now and
	// then; one allocation per hundred deliveries is the bound, where a
	// per-message timer, context or buffer would be one or more each.
	if perDelivery > 0.01 {
		t.Errorf("%.4f allocations per delivery in steady state, want about 0", perDelivery)
	}
}
