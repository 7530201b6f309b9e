package bench

import (
	"fmt"
	"time"

	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
)

// describe returns a row that holds sc, the transport and where its server
// is: everything about the run but its measurements.
func describe(sc Scenario, name string, caps transports.Caps, server string) results.Result {
	env := HostEnvironment()
	if server == "" {
		server = InProcess
	}
	return results.Result{
		Schema: results.SchemaVersion, StartedAt: time.Now().UTC(), Transport: name,
		Clients: sc.Clients, Rooms: sc.Rooms, Publishers: sc.PublisherCount(), RateEPS: sc.RateEPS,
		PayloadBytes: sc.PayloadBytes, Duration: sc.Duration,

		RoomsPerClient: sc.RoomsPerClient, AckEvery: max(sc.AckEvery, 0),
		Warmup: max(sc.Warmup, 0), Drain: max(sc.Drain, 0), Seed: sc.Seed,
		SendQueue: sc.SendQueue, SlowConsumer: sc.SlowConsumer.String(),
		MaxSchedLag: sc.MaxSchedLag, ConnectTimeout: sc.ConnectTimeout,

		CapsReliable: caps.Reliable, CapsReliableControl: caps.ReliableControl, CapsOrdered: caps.Ordered,
		CapsEncrypted: caps.Encrypted, CapsDatagram: caps.Datagram, MaxFrameBytes: caps.MaxFrame,
		Server: server,

		Version: env.Version, Revision: env.Revision, GoVersion: env.GoVersion,
		GOMAXPROCS: env.GOMAXPROCS, Kernel: env.Kernel, Platform: env.Platform,
	}
}

// ScenarioFromResult rebuilds the Scenario a row was measured with, from
// the row alone: a saved results file says how it was made. The columns'
// zeros that mean "none" become the named values (ack_every 0 is NeverAck,
// warmup_s 0 NoWarmup, drain_s 0 NoDrain, publishers 0 NoPublishers), and
// a publishers count equal to clients becomes AllPublishers. It returns an
// error for a row without the scenario columns (schema v1) or with a value
// Validate refuses, naming the column.
func ScenarioFromResult(res results.Result) (Scenario, error) {
	if res.Schema < 2 || res.RoomsPerClient == 0 {
		return Scenario{}, fmt.Errorf("%w: the row (schema %d) does not record its whole scenario (rooms_per_client and the columns after it came with schema 2)", ErrScenario, res.Schema)
	}
	sc := Scenario{
		Clients: res.Clients, Rooms: res.Rooms, RoomsPerClient: res.RoomsPerClient,
		Publishers: res.Publishers, RateEPS: res.RateEPS, AckEvery: res.AckEvery,
		PayloadBytes: res.PayloadBytes, Warmup: res.Warmup, Duration: res.Duration, Drain: res.Drain,
		Seed: res.Seed, MaxSchedLag: res.MaxSchedLag, SendQueue: res.SendQueue,
		ConnectTimeout: res.ConnectTimeout,
	}
	switch {
	case res.Publishers == res.Clients:
		sc.Publishers = AllPublishers
	case res.Publishers == 0:
		sc.Publishers = NoPublishers
	}
	if res.AckEvery == 0 {
		sc.AckEvery = NeverAck
	}
	if res.Warmup == 0 {
		sc.Warmup = NoWarmup
	}
	if res.Drain == 0 {
		sc.Drain = NoDrain
	}
	switch res.SlowConsumer {
	case transports.DropOldest.String():
		sc.SlowConsumer = transports.DropOldest
	case transports.Disconnect.String():
		sc.SlowConsumer = transports.Disconnect
	default:
		return Scenario{}, fmt.Errorf("%w: slow_consumer %q is neither drop-oldest nor disconnect", ErrScenario, res.SlowConsumer)
	}
	if err := sc.Validate("", nil); err != nil {
		return Scenario{}, fmt.Errorf("the row's scenario: %w", err)
	}
	return sc, nil
}
