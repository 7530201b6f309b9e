package bench_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/udp"
)

// TestValidate: every bad field is an ErrScenario whose message names it;
// boundary values that are allowed pass. Scenarios go through WithDefaults
// first, as the CLI and Run do, so a zero field means its default and only
// out-of-range values are bad.
func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		sc   bench.Scenario
		want string // "" for valid; otherwise a word the message must contain
	}{
		{"zero value", bench.Scenario{}, ""},
		{"no publishers", bench.Scenario{Publishers: -1}, ""},
		{"every client publishes", bench.Scenario{Clients: 6, Publishers: 6}, ""},
		{"no publisher shares a room", bench.Scenario{Clients: 2, Rooms: 2}, "no publisher shares a room"},
		{"a publisher alone but another pair shares", bench.Scenario{Clients: 3, Rooms: 2, Publishers: 2}, ""},
		{"rate too low", bench.Scenario{RateEPS: 0.0009}, "rate"},
		{"largest payload", bench.Scenario{PayloadBytes: transports.MaxPayloadBytes}, ""},
		{"highest rate", bench.Scenario{RateEPS: 1e7}, ""},
		{"lowest rate", bench.Scenario{RateEPS: 1e-3}, ""},
		{"no acks", bench.Scenario{AckEvery: -1}, ""},
		{"each client in every room", bench.Scenario{Rooms: 3, RoomsPerClient: 3}, ""},

		{"clients", bench.Scenario{Clients: -1}, "clients"},
		{"rooms", bench.Scenario{Rooms: -2}, "rooms"},
		{"rooms per client over rooms", bench.Scenario{Rooms: 2, RoomsPerClient: 3}, "rooms-per-client"},
		{"rooms per client negative", bench.Scenario{RoomsPerClient: -1}, "rooms-per-client"},
		{"publishers below -1", bench.Scenario{Publishers: -2}, "publishers"},
		{"publishers over clients", bench.Scenario{Clients: 3, Publishers: 4}, "publishers"},
		{"rate negative", bench.Scenario{RateEPS: -1}, "rate"},
		{"rate NaN", bench.Scenario{RateEPS: math.NaN()}, "rate"},
		{"rate infinite", bench.Scenario{RateEPS: math.Inf(1)}, "rate"},
		{"rate too high", bench.Scenario{RateEPS: 1e7 + 1}, "rate"},
		{"ack-every", bench.Scenario{AckEvery: -2}, "ack-every"},
		{"payload negative", bench.Scenario{PayloadBytes: -1}, "payload"},
		{"payload over the codec's limit", bench.Scenario{PayloadBytes: transports.MaxPayloadBytes + 1}, "payload"},
		{"duration", bench.Scenario{Duration: -time.Second}, "duration"},
		{"negative warmup means none", bench.Scenario{Clients: 6, Warmup: -1}, ""},
		{"negative drain means no wait", bench.Scenario{Clients: 6, Drain: -1}, ""},
		{"max-sched-lag", bench.Scenario{MaxSchedLag: -1}, "max-sched-lag"},
		{"send-queue", bench.Scenario{SendQueue: -1}, "send-queue"},
		{"slow-consumer", bench.Scenario{SlowConsumer: 7}, "slow-consumer"},
		{"connect-timeout", bench.Scenario{ConnectTimeout: -1}, "connect-timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sc.WithDefaults().Validate("tcp", nil)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid scenario rejected: %v", err)
			case tt.want == "":
				return
			case err == nil:
				t.Fatalf("accepted; want an error naming %q", tt.want)
			case !errors.Is(err, bench.ErrScenario):
				t.Errorf("error %q does not wrap ErrScenario", err)
			case !strings.Contains(err.Error(), tt.want):
				t.Errorf("error %q does not name %q", err, tt.want)
			}
		})
	}
	// Without WithDefaults, zero counts and durations are errors too.
	if err := (bench.Scenario{}).Validate("tcp", nil); !errors.Is(err, bench.ErrScenario) {
		t.Errorf("raw zero scenario: %v, want ErrScenario", err)
	}
}

// TestValidateTransportLimit is CASES.md C6 before the run: a payload whose
// event frame is over the transport's MaxFrame is a configuration error that
// names the transport and the largest payload that fits.
func TestValidateTransportLimit(t *testing.T) {
	caps := udp.New(udp.Options{}).Caps()
	for _, rooms := range []int{5, 11} { // "room-10" is a byte longer than "room-4"
		sc := bench.Scenario{Rooms: rooms}.WithDefaults()
		sc.PayloadBytes = 0
		largest := caps.MaxFrame - sc.EventFrameBytes()
		sc.PayloadBytes = largest
		if err := sc.Validate("udp", &caps); err != nil {
			t.Errorf("rooms %d: the largest payload %d rejected: %v", rooms, largest, err)
		}
		if sc.EventFrameBytes() != caps.MaxFrame {
			t.Errorf("rooms %d: frame of the largest payload is %d bytes, want %d", rooms, sc.EventFrameBytes(), caps.MaxFrame)
		}
		sc.PayloadBytes = largest + 1
		err := sc.Validate("udp", &caps)
		if !errors.Is(err, bench.ErrScenario) {
			t.Fatalf("rooms %d: payload %d over udp: %v, want ErrScenario", rooms, largest+1, err)
		}
		for _, want := range []string{"udp", fmt.Sprintf("largest payload: %d bytes", largest), fmt.Sprint(caps.MaxFrame)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("rooms %d: error %q does not say %q", rooms, err, want)
			}
		}
	}
}
