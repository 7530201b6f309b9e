package bench_test

import (
	"context"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports/tcp"
)

func TestRunTCP(t *testing.T) {
	res, err := bench.Run(context.Background(), tcp.Plain(), bench.Scenario{
		Clients: 50, Rooms: 5, RateEPS: 50, Duration: 2 * time.Second, Warmup: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", res)
	if res.Expected == 0 || res.Missed != 0 || res.Delivered != res.Expected {
		t.Errorf("expected %d delivered %d missed %d", res.Expected, res.Delivered, res.Missed)
	}
}
