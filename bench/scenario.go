// Package bench is evbench's harness: the Scenario that describes a run,
// the Runner that starts a Hub and a fleet of simulated clients on one
// transport in one process, the open-loop Schedule that paces publishers,
// and the Recorder that turns deliveries into HDR latency histograms and
// sequence accounting. Definitions follow docs/design.md ("What is measured").
package bench

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/evbench/evbench/transports"
)

// Scenario describes one run. The zero value works: a zero field means the
// default its comment names (WithDefaults fills them in). Where "none" is a
// meaningful choice distinct from the default, it has a named value:
// NoPublishers, NeverAck, NoWarmup, NoDrain.
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
	// default AllPublishers (0); NoPublishers for none.
	Publishers int
	// RateEPS is each publisher's target rate in events per second; default 10.
	RateEPS float64
	// AckEvery: every AckEvery-th emit of a publisher asks for an ACK whose
	// round trip is measured; default 10; NeverAck asks for none.
	AckEvery int
	// PayloadBytes is the size of every event's payload; default 128.
	PayloadBytes int
	// Warmup is how long publishers run before the measurement window;
	// default 1s, NoWarmup for none. Warm-up events are delivered but not
	// counted.
	Warmup time.Duration
	// Duration is the measurement window; default 5s.
	Duration time.Duration
	// Drain bounds the wait after the window for deliveries still in
	// flight; the run ends as soon as every expected delivery has arrived.
	// Default 2s, NoDrain for no wait.
	Drain time.Duration
	// Seed seeds the publishers' start phases and the payload bytes; any
	// value but 0, default 1.
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

// Named values of Scenario fields whose zero means "the default". The
// "none" values are the most negative of their type, so that no count or
// duration computed or typed by mistake (a -1) is taken for them.
const (
	AllPublishers               = 0             // Publishers: every client emits (the default)
	NoPublishers                = math.MinInt   // Publishers: no client emits
	NeverAck                    = math.MinInt   // AckEvery: no emit asks for an ACK
	NoWarmup      time.Duration = math.MinInt64 // Warmup: the window starts with the first slot
	NoDrain       time.Duration = math.MinInt64 // Drain: no wait for deliveries in flight
)

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

// FieldError is the error Validate returns: which field of the Scenario is
// wrong and why. It wraps ErrScenario.
type FieldError struct {
	// Field is the Scenario field's name, e.g. "RateEPS"; empty when the
	// fields are fine one by one but not together.
	Field string
	// Msg completes a sentence that starts with the field's name, e.g.
	// "must be between 0.001 and 1e+07 events/s per publisher, got 0"; with
	// Field empty it is a sentence of its own.
	Msg string
}

// Error is "invalid scenario: " followed by the field name and Msg.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return ErrScenario.Error() + ": " + e.Msg
	}
	return ErrScenario.Error() + ": " + e.Field + " " + e.Msg
}

// Unwrap returns ErrScenario.
func (e *FieldError) Unwrap() error { return ErrScenario }

// Validate is the one place that checks a scenario. It checks s as given
// (call it on WithDefaults() unless every field is set: a zero count or
// duration is out of range here, the named values above are not), and, when caps is not nil, against the
// limits of the transport named name, so that an impossible run fails
// before anything starts. It returns nil or a *FieldError. An event larger
// than the transport's MaxFrame is a configuration error, never counted as
// loss (docs/cases.md C6).
func (s Scenario) Validate(name string, caps *transports.Caps) error {
	bad := func(field, format string, a ...any) error {
		return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
	}
	switch {
	case s.Clients < 1 || s.Clients > MaxClients:
		return bad("Clients", "must be between 1 and %d, got %d", MaxClients, s.Clients)
	case s.Rooms < 1 || s.Rooms > MaxRooms:
		return bad("Rooms", "must be between 1 and %d, got %d", MaxRooms, s.Rooms)
	case s.RoomsPerClient < 1 || s.RoomsPerClient > s.Rooms:
		return bad("RoomsPerClient", "must be between 1 and the number of rooms (%d), got %d", s.Rooms, s.RoomsPerClient)
	case s.Clients*s.RoomsPerClient > MaxMemberships:
		return bad("RoomsPerClient", "makes %d clients × %d rooms = %d memberships, over %d", s.Clients, s.RoomsPerClient, s.Clients*s.RoomsPerClient, MaxMemberships)
	case s.Publishers != NoPublishers && (s.Publishers < AllPublishers || s.Publishers > s.Clients):
		return bad("Publishers", "must be between 1 and the number of clients (%d), got %d", s.Clients, s.Publishers)
	case !(s.RateEPS >= MinRateEPS && s.RateEPS <= MaxRateEPS): // NaN too
		return bad("RateEPS", "must be between %v and %v events/s per publisher, got %v", MinRateEPS, MaxRateEPS, s.RateEPS)
	case s.AckEvery != NeverAck && s.AckEvery < 1:
		return bad("AckEvery", "must be at least 1 emit, got %d", s.AckEvery)
	case s.PayloadBytes < 1 || s.PayloadBytes > transports.MaxPayloadBytes:
		return bad("PayloadBytes", "must be between 1 and %d bytes, got %d", transports.MaxPayloadBytes, s.PayloadBytes)
	case s.Warmup != NoWarmup && s.Warmup <= 0:
		return bad("Warmup", "must be positive, got %v", s.Warmup)
	case s.Duration <= 0:
		return bad("Duration", "must be positive, got %v", s.Duration)
	case s.Drain != NoDrain && s.Drain <= 0:
		return bad("Drain", "must be positive, got %v", s.Drain)
	case s.Seed == 0:
		return bad("Seed", "must not be 0")
	case s.MaxSchedLag <= 0:
		return bad("MaxSchedLag", "must be positive, got %v", s.MaxSchedLag)
	case s.SendQueue < 1 || s.SendQueue > MaxSendQueue:
		return bad("SendQueue", "must be between 1 and %d frames, got %d", MaxSendQueue, s.SendQueue)
	case s.SlowConsumer != transports.DropOldest && s.SlowConsumer != transports.Disconnect:
		return bad("SlowConsumer", "must be drop-oldest or disconnect, got %d", s.SlowConsumer)
	case s.ConnectTimeout <= 0:
		return bad("ConnectTimeout", "must be positive, got %v", s.ConnectTimeout)
	}
	if s.Publishers != NoPublishers && !s.fanOutPossible() {
		return bad("", "no publisher shares a room with another client, so no event could be delivered (%d clients, %d rooms, %d per client, %d publishers): use more clients than rooms",
			s.Clients, s.Rooms, s.RoomsPerClient, s.PublisherCount())
	}
	if caps != nil {
		if n := s.EventFrameBytes(); n > caps.MaxFrame {
			return bad("PayloadBytes", "of %d bytes makes %d-byte event frames, over %s's limit of %d bytes per frame (largest payload: %d bytes)",
				s.PayloadBytes, n, name, caps.MaxFrame, caps.MaxFrame-(n-s.PayloadBytes))
		}
	}
	return nil
}

// PublisherCount is the number of clients that emit: Clients for
// AllPublishers, 0 for NoPublishers, Publishers otherwise.
func (s Scenario) PublisherCount() int {
	switch s.Publishers {
	case AllPublishers:
		return s.Clients
	case NoPublishers:
		return 0
	}
	return s.Publishers
}

// MaxSendQueue bounds Scenario.SendQueue: the Hub allocates each
// connection's two queues at full size, 8 bytes a slot.
const MaxSendQueue = 1 << 20

// Bounds of a scenario's size, so that a mistyped count is refused at once
// instead of allocating per client or per room without limit.
const (
	MaxClients     = 1 << 20 // Scenario.Clients
	MaxRooms       = 1 << 20 // Scenario.Rooms
	MaxMemberships = 1 << 22 // Clients × RoomsPerClient
)

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
	for p := range s.PublisherCount() {
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
