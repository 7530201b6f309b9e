package bench_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/udp"
)

// TestValidate: every bad field is a *FieldError naming it, wrapping
// ErrScenario; boundary values and the named "none" values pass. Scenarios
// go through WithDefaults first, as Run does, so a zero field means its
// default and only out-of-range values are bad.
func TestValidate(t *testing.T) {
	tests := []struct {
		name  string
		sc    bench.Scenario
		field string // "" for valid; otherwise the FieldError's Field ("-" for the scenario as a whole)
	}{
		{"zero value", bench.Scenario{}, ""},
		{"no publishers", bench.Scenario{Publishers: bench.NoPublishers}, ""},
		{"every client publishes", bench.Scenario{Clients: 6, Publishers: 6}, ""},
		{"no publisher shares a room", bench.Scenario{Clients: 2, Rooms: 2}, "-"},
		{"a publisher alone but another pair shares", bench.Scenario{Clients: 3, Rooms: 2, Publishers: 2}, ""},
		{"largest payload", bench.Scenario{PayloadBytes: transports.MaxPayloadBytes}, ""},
		{"highest rate", bench.Scenario{RateEPS: bench.MaxRateEPS}, ""},
		{"lowest rate", bench.Scenario{RateEPS: bench.MinRateEPS}, ""},
		{"no acks", bench.Scenario{AckEvery: bench.NeverAck}, ""},
		{"each client in every room", bench.Scenario{Rooms: 3, RoomsPerClient: 3}, ""},
		{"no warm-up", bench.Scenario{Clients: 6, Warmup: bench.NoWarmup}, ""},
		{"no drain", bench.Scenario{Clients: 6, Drain: bench.NoDrain}, ""},

		{"clients", bench.Scenario{Clients: -1}, "Clients"},
		{"rooms", bench.Scenario{Rooms: -2}, "Rooms"},
		{"rooms per client over rooms", bench.Scenario{Rooms: 2, RoomsPerClient: 3}, "RoomsPerClient"},
		{"rooms per client negative", bench.Scenario{RoomsPerClient: -1}, "RoomsPerClient"},
		{"publishers below NoPublishers", bench.Scenario{Publishers: -2}, "Publishers"},
		{"publishers over clients", bench.Scenario{Clients: 3, Publishers: 4}, "Publishers"},
		{"rate too low", bench.Scenario{RateEPS: 0.0009}, "RateEPS"},
		{"rate negative", bench.Scenario{RateEPS: -1}, "RateEPS"},
		{"rate NaN", bench.Scenario{RateEPS: math.NaN()}, "RateEPS"},
		{"rate infinite", bench.Scenario{RateEPS: math.Inf(1)}, "RateEPS"},
		{"rate too high", bench.Scenario{RateEPS: 1e7 + 1}, "RateEPS"},
		{"ack-every", bench.Scenario{AckEvery: -2}, "AckEvery"},
		{"payload negative", bench.Scenario{PayloadBytes: -1}, "PayloadBytes"},
		{"payload over the codec's limit", bench.Scenario{PayloadBytes: transports.MaxPayloadBytes + 1}, "PayloadBytes"},
		{"duration", bench.Scenario{Duration: -time.Second}, "Duration"},
		{"warm-up negative but not NoWarmup", bench.Scenario{Warmup: -time.Second}, "Warmup"},
		{"drain negative but not NoDrain", bench.Scenario{Drain: -2}, "Drain"},
		{"max-sched-lag", bench.Scenario{MaxSchedLag: -1}, "MaxSchedLag"},
		{"send-queue", bench.Scenario{SendQueue: -1}, "SendQueue"},
		{"send-queue too big", bench.Scenario{SendQueue: bench.MaxSendQueue + 1}, "SendQueue"},
		{"slow-consumer", bench.Scenario{SlowConsumer: 7}, "SlowConsumer"},
		{"connect-timeout", bench.Scenario{ConnectTimeout: -1}, "ConnectTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.sc.WithDefaults().Validate("tcp", nil)
			var fe *bench.FieldError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("valid scenario rejected: %v", err)
			case tt.field == "":
				return
			case err == nil:
				t.Fatalf("accepted; want an error for %s", tt.field)
			case !errors.Is(err, bench.ErrScenario) || !errors.As(err, &fe):
				t.Errorf("error %q is not a *FieldError wrapping ErrScenario", err)
			case fe.Field != strings.TrimPrefix(tt.field, "-"):
				t.Errorf("error %q names field %q, want %q", err, fe.Field, tt.field)
			case !strings.Contains(err.Error(), fe.Field+" "+fe.Msg):
				t.Errorf("error %q does not read %q", err, fe.Field+" "+fe.Msg)
			}
		})
	}
}

// TestValidateAsGiven: without WithDefaults a zero field is out of range,
// which is how the CLI, which sets every field, refuses --rate 0 or
// --clients 0; WithDefaults then makes the same scenario valid.
func TestValidateAsGiven(t *testing.T) {
	full := bench.Scenario{}.WithDefaults()
	if err := full.Validate("tcp", nil); err != nil {
		t.Fatalf("the defaults are invalid: %v", err)
	}
	for _, field := range []string{"Clients", "Rooms", "RoomsPerClient", "RateEPS", "AckEvery", "PayloadBytes",
		"Warmup", "Duration", "Drain", "Seed", "MaxSchedLag", "SendQueue", "ConnectTimeout"} {
		sc := full
		v := reflect.ValueOf(&sc).Elem().FieldByName(field)
		v.SetZero()
		var fe *bench.FieldError
		if err := sc.Validate("tcp", nil); !errors.As(err, &fe) || fe.Field != field {
			t.Errorf("%s zero: %v, want a FieldError for %s", field, err, field)
		}
		if err := sc.WithDefaults().Validate("tcp", nil); err != nil {
			t.Errorf("%s zero, after WithDefaults: %v", field, err)
		}
	}
}

// TestValidateTransportLimit is docs/cases.md C6 before the run: a payload whose
// event frame is over the transport's MaxFrame is a configuration error that
// names the transport and the largest payload that fits.
func TestValidateTransportLimit(t *testing.T) {
	caps := udp.New(udp.Options{}).Caps()
	for _, rooms := range []int{5, 11} { // "room-10" is a byte longer than "room-4"
		sc := bench.Scenario{Rooms: rooms}.WithDefaults()
		sc.PayloadBytes = 0
		largest := caps.MaxFrame - sc.EventFrameBytes()
		var fe *bench.FieldError
		sc.PayloadBytes = largest
		if err := sc.Validate("udp", &caps); err != nil {
			t.Errorf("rooms %d: the largest payload %d rejected: %v", rooms, largest, err)
		}
		if sc.EventFrameBytes() != caps.MaxFrame {
			t.Errorf("rooms %d: frame of the largest payload is %d bytes, want %d", rooms, sc.EventFrameBytes(), caps.MaxFrame)
		}
		sc.PayloadBytes = largest + 1
		err := sc.Validate("udp", &caps)
		if !errors.As(err, &fe) || fe.Field != "PayloadBytes" {
			t.Fatalf("rooms %d: payload %d over udp: %v, want a FieldError for PayloadBytes", rooms, largest+1, err)
		}
		for _, want := range []string{"udp", fmt.Sprintf("largest payload: %d bytes", largest), fmt.Sprint(caps.MaxFrame)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("rooms %d: error %q does not say %q", rooms, err, want)
			}
		}
	}
}

// TestValidateSizeBounds: counts far beyond what a process can hold are
// refused before any work or memory per client or room.
func TestValidateSizeBounds(t *testing.T) {
	for _, tt := range []struct {
		sc    bench.Scenario
		field string
	}{
		{bench.Scenario{Clients: 99999999999}, "Clients"},
		{bench.Scenario{Clients: 5, Rooms: 99999999999}, "Rooms"},
		{bench.Scenario{Clients: 100, Rooms: 1000000, RoomsPerClient: 1000000}, "RoomsPerClient"},
	} {
		var fe *bench.FieldError
		if err := tt.sc.WithDefaults().Validate("tcp", nil); !errors.As(err, &fe) || fe.Field != tt.field {
			t.Errorf("%+v: %v, want a FieldError for %s", tt.sc, err, tt.field)
		}
	}
}
