// Package bench is evbench's harness: the Scenario that describes a run,
// the Runner that starts a Hub and a fleet of simulated clients on one
// transport in one process, the open-loop Schedule that paces publishers,
// and the Recorder that turns deliveries into HDR latency histograms and
// sequence accounting. Definitions follow DESIGN.md ("What is measured").
package bench

import (
	"errors"
	"fmt"
	"time"

	"github.com/evbench/evbench/transports"
)

// Scenario describes one run. The zero value works: each field's comment
// names its default.
type Scenario struct {
	// Clients is the number of simulated clients; default 50.
	Clients int
	// Rooms is the number of chat rooms; default 5. Clients are spread over
	// them round-robin; each is also in the room named by its own id.
	Rooms int
	// RoomsPerClient is how many of the rooms each client joins; default 1.
	// Client i joins rooms i, i+1, ... (mod Rooms).
	RoomsPerClient int
	// Publishers is how many clients emit (clients 0..Publishers-1);
	// default (0) every client; -1 means none.
	Publishers int
	// RateEPS is each publisher's target rate in events per second; default 10.
	RateEPS float64
	// AckEvery: every AckEvery-th emit of a publisher asks for an ACK whose
	// round trip is measured; default 10; -1 asks for none.
	AckEvery int
	// PayloadBytes is the size of every event's payload; default 128.
	PayloadBytes int
	// Warmup is how long publishers run before the measurement window;
	// default 1s, negative for none. Warm-up events are delivered but not
	// counted.
	Warmup time.Duration
	// Duration is the measurement window; default 5s.
	Duration time.Duration
	// Drain bounds the wait after the window for deliveries still in
	// flight; the run ends as soon as every expected delivery has arrived.
	// Default 2s, negative for no wait.
	Drain time.Duration
	// Seed seeds the publishers' start phases and the payload bytes; default 1.
	Seed int64
	// MaxSchedLag is the publishers' p99 scheduling lag above which a run is
	// marked saturated; default 10ms.
	MaxSchedLag time.Duration
	// SendQueue is the Hub's per-connection send queue in frames; default 4096.
	SendQueue int
	// SlowConsumer is the Hub's policy for a full send queue; default DropOldest.
	SlowConsumer transports.SlowConsumerPolicy
	// ConnectTimeout bounds each client's connection set-up and joins;
	// default 10s.
	ConnectTimeout time.Duration
}

// Namespace is the namespace every run's rooms live in.
const Namespace = "/bench"

// EventName is the name of every event a publisher emits.
const EventName = "message"

// WithDefaults returns s with every zero field set to its default.
func (s Scenario) WithDefaults() Scenario {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.Clients, 50)
	def(&s.Rooms, 5)
	def(&s.RoomsPerClient, 1)
	def(&s.AckEvery, 10)
	def(&s.PayloadBytes, 128)
	def(&s.SendQueue, 4096)
	if s.Publishers == 0 {
		s.Publishers = s.Clients
	}
	if s.RateEPS == 0 {
		s.RateEPS = 10
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	dur(&s.Warmup, time.Second)
	dur(&s.Duration, 5*time.Second)
	dur(&s.Drain, 2*time.Second)
	dur(&s.MaxSchedLag, 10*time.Millisecond)
	dur(&s.ConnectTimeout, 10*time.Second)
	if s.Seed == 0 {
		s.Seed = 1
	}
	return s
}

// ErrScenario is wrapped by every error Validate returns.
var ErrScenario = errors.New("invalid scenario")

// Validate checks s (after WithDefaults) against itself and, when caps is
// not nil, against a transport's limits, so that an impossible run fails
// before anything starts. An event larger than the transport's MaxFrame is a
// configuration error, never counted as loss (CASES.md C6).
func (s Scenario) Validate(name string, caps *transports.Caps) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrScenario}, a...)...)
	}
	switch {
	case s.Clients < 1:
		return bad("clients must be at least 1, got %d", s.Clients)
	case s.Rooms < 1:
		return bad("rooms must be at least 1, got %d", s.Rooms)
	case s.RoomsPerClient < 1 || s.RoomsPerClient > s.Rooms:
		return bad("rooms-per-client must be between 1 and rooms (%d), got %d", s.Rooms, s.RoomsPerClient)
	case s.Publishers < -1 || s.Publishers > s.Clients:
		return bad("publishers must be -1 (none) or between 1 and clients (%d), got %d", s.Clients, s.Publishers)
	case !(s.RateEPS >= MinRateEPS) || s.RateEPS > MaxRateEPS:
		return bad("rate must be between %v and %v events/s per publisher, got %v", MinRateEPS, MaxRateEPS, s.RateEPS)
	case s.AckEvery < -1:
		return bad("ack-every must be -1 (never) or at least 1, got %d", s.AckEvery)
	case s.PayloadBytes < 0 || s.PayloadBytes > transports.MaxPayloadBytes:
		return bad("payload must be between 0 and %d bytes, got %d", transports.MaxPayloadBytes, s.PayloadBytes)
	case s.Duration <= 0:
		return bad("duration must be positive, got %v", s.Duration)
	case s.MaxSchedLag < 0:
		return bad("max-sched-lag must not be negative, got %v", s.MaxSchedLag)
	case s.SendQueue < 1 || s.SendQueue > MaxSendQueue:
		return bad("send-queue must be between 1 and %d frames, got %d", MaxSendQueue, s.SendQueue)
	case s.SlowConsumer != transports.DropOldest && s.SlowConsumer != transports.Disconnect:
		return bad("slow-consumer must be drop-oldest or disconnect, got %d", s.SlowConsumer)
	case s.ConnectTimeout < 0:
		return bad("connect-timeout must not be negative, got %v", s.ConnectTimeout)
	}
	if s.Publishers > 0 && !s.fanOutPossible() {
		return bad("no publisher shares a room with another client, so no event could be delivered (%d clients, %d rooms, %d per client, %d publishers): use more clients than rooms",
			s.Clients, s.Rooms, s.RoomsPerClient, s.Publishers)
	}
	if caps != nil {
		if n := s.EventFrameBytes(); n > caps.MaxFrame {
			return bad("a %d-byte payload makes %d-byte event frames, over %s's limit of %d bytes per frame (largest payload: %d bytes)",
				s.PayloadBytes, n, name, caps.MaxFrame, caps.MaxFrame-(n-s.PayloadBytes))
		}
	}
	return nil
}

// MaxSendQueue bounds Scenario.SendQueue: the Hub allocates each
// connection's two queues at full size, 8 bytes a slot.
const MaxSendQueue = 1 << 20

// Bounds of Scenario.RateEPS, in events per second per publisher.
const (
	MinRateEPS = 0.001 // one event in 1,000 s
	MaxRateEPS = 1e7
)

// rooms returns client i's rooms: i, i+1, ... (mod Rooms).
func (s Scenario) rooms(i int) []int {
	rs := make([]int, s.RoomsPerClient)
	for j := range rs {
		rs[j] = (i + j) % s.Rooms
	}
	return rs
}

// fanOutPossible reports whether some publisher shares a room with another
// client, i.e. whether any event could be delivered at all.
func (s Scenario) fanOutPossible() bool {
	members := make([]int, s.Rooms)
	for i := range s.Clients {
		for _, r := range s.rooms(i) {
			members[r]++
		}
	}
	for p := range s.Publishers {
		for _, r := range s.rooms(p) {
			if members[r] >= 2 {
				return true
			}
		}
	}
	return false
}

// EventFrameBytes is the encoded size of one of the scenario's events.
func (s Scenario) EventFrameBytes() int {
	return transports.EventFrameBytes(len(Namespace)+len(roomName(s.Rooms-1))+len(EventName), s.PayloadBytes)
}

// roomName is the name of room i.
func roomName(i int) string { return fmt.Sprintf("room-%d", i) }
