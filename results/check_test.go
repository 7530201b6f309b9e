package results

import (
	"math"
	"os"
	"strings"
	"testing"
	"time"
)

// goodRow is a row that holds every rule of Check, with some loss so that
// the loss ratio is not trivially 0.
func goodRow(transport string) Result {
	return Result{
		Schema: SchemaVersion, RunID: "r1", StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Transport: transport, Clients: 50, Rooms: 5, Publishers: 50, RateEPS: 50, PayloadBytes: 128,
		Duration: 5 * time.Second,
		Sent:     12500, Expected: 112500, Delivered: 112400, Missed: 100, Duplicates: 3, Reordered: 7,
		LossRatio: 100.0 / 112500, ThroughputEPS: 22480, GoodputBps: 22480 * 128,
		LatP50: 85 * time.Microsecond, LatP90: 120 * time.Microsecond, LatP99: 410 * time.Microsecond,
		LatP999: 2 * time.Millisecond, LatMax: 9 * time.Millisecond, LatMean: 95 * time.Microsecond,
		LatRawP99: 300 * time.Microsecond, SchedLagP99: 80 * time.Microsecond,
	}
}

// reliableTCP is the Reliable option of the tests: tcp is reliable, udp not.
func reliableTCP(transport string) bool { return transport == "tcp" }

func TestCheckRules(t *testing.T) {
	withReliable := CheckOptions{Reliable: reliableTCP}
	tests := []struct {
		name   string
		row    func(r *Result) // changes row 2 of three good rows
		opts   CheckOptions
		rule   string // the one rule row 2 breaks; "" when it holds
		detail string // in the violation's detail
	}{
		{"good row", func(r *Result) {}, CheckOptions{}, "", ""},
		{"good row, reliable option", func(r *Result) {}, withReliable, "", ""},

		{"expected zero", func(r *Result) { *r = Result{Transport: "udp"} }, CheckOptions{}, "expected", "expected is 0"},
		{"expected zero with an error", func(r *Result) { *r = Result{Transport: "udp", Error: "interrupted"} }, CheckOptions{}, "", ""},
		{"set-up failure", func(r *Result) { *r = Result{Transport: "udp", Error: "listen udp: address in use"} }, CheckOptions{}, "", ""},

		{"accounting broken", func(r *Result) { r.Delivered, r.Missed, r.Expected, r.LossRatio = 10, 1, 12, 1.0/12 },
			CheckOptions{}, "accounting", "delivered 10 + missed 1 != expected 12"},
		{"accounting with an error still applies", func(r *Result) { r.Error, r.Delivered = "interrupted", 10 },
			CheckOptions{}, "accounting", "delivered 10 + missed 100 != expected 112500"},

		{"loss ratio above 1", func(r *Result) { r.LossRatio = 1.5 }, CheckOptions{}, "loss-ratio", "1.5 is not between 0 and 1"},
		{"loss ratio negative", func(r *Result) { r.LossRatio = -0.1 }, CheckOptions{}, "loss-ratio", "not between 0 and 1"},
		{"loss ratio NaN", func(r *Result) { r.LossRatio = math.NaN() }, CheckOptions{}, "loss-ratio", "NaN"},
		{"loss ratio differs", func(r *Result) { r.LossRatio = 0.01 }, CheckOptions{}, "loss-ratio",
			"loss_ratio 0.01 != missed 100 / expected 112500"},
		{"loss ratio within rounding", func(r *Result) { r.LossRatio = 0.000888889 }, CheckOptions{}, "", ""},
		{"loss ratio without expected", func(r *Result) { *r = Result{Transport: "udp", Error: "x", LossRatio: 0.5} },
			CheckOptions{}, "loss-ratio", "with expected 0, want 0"},

		{"latency decreases", func(r *Result) { r.LatP99 = 100 * time.Microsecond }, CheckOptions{}, "latency",
			"lat_p99_us 100.000 < lat_p90_us 120.000"},
		{"latency max below p99.9", func(r *Result) { r.LatMax = time.Millisecond }, CheckOptions{}, "latency",
			"lat_max_us 1000.000 < lat_p999_us 2000.000"},
		{"latency zero with deliveries", func(r *Result) { r.LatP50, r.LatP90, r.LatP99, r.LatP999, r.LatMax = 0, 0, 0, 0, 0 },
			CheckOptions{}, "latency", "lat_max_us 0.000 with 112400 delivered"},
		{"latency p50 zero", func(r *Result) { r.LatP50 = 0 }, CheckOptions{}, "latency", "lat_p50_us 0.000 with 112400 delivered"},
		{"latency negative", func(r *Result) { r.LatP50 = -time.Microsecond }, CheckOptions{}, "latency", "lat_p50_us -1.000"},
		{"latency all overflowed", func(r *Result) {
			r.LatOverflow = r.Delivered
			r.LatP50, r.LatP90, r.LatP99, r.LatP999 = 0, 0, 0, 0
		}, CheckOptions{}, "", ""},
		{"latency zero without deliveries", func(r *Result) { *r = Result{Transport: "udp", Error: "interrupted"} }, CheckOptions{}, "", ""},

		{"counter negative", func(r *Result) { r.Duplicates = -1 }, CheckOptions{}, "counters", "duplicates -1 is negative"},
		{"counters negative", func(r *Result) { r.QueueDrops, r.Disconnects = -2, -3 }, CheckOptions{}, "counters",
			"queue_drops -2, disconnects -3 are negative"},
		{"v2 server counter negative", func(r *Result) { r.ServerClosedSlow = -4 }, CheckOptions{}, "counters",
			"server_closed_slow -4 is negative"},

		{"not sent without saturated", func(r *Result) { r.NotSent = 4 }, CheckOptions{}, "saturated", "not_sent 4 but saturated is false"},
		{"not sent and saturated", func(r *Result) { r.NotSent, r.Saturated = 4, true }, CheckOptions{}, "", ""},
		{"saturated by lag alone", func(r *Result) { r.Saturated = true }, CheckOptions{}, "", ""},

		{"reliable missed", func(r *Result) { r.Transport = "tcp" }, withReliable, "reliable",
			"tcp is reliable but missed 100 of 112500 expected deliveries"},
		{"reliable missed, queue drops", func(r *Result) { r.Transport, r.QueueDrops = "tcp", 100 }, withReliable, "reliable",
			"the server dropped 100"},
		{"reliable missed without the option", func(r *Result) { r.Transport = "tcp" }, CheckOptions{}, "", ""},
		{"reliable missed with an error", func(r *Result) { r.Transport, r.Error = "tcp", "interrupted" }, withReliable, "", ""},
		{"reliable missed nothing", func(r *Result) { r.Transport, r.Delivered, r.Missed, r.LossRatio = "tcp", r.Expected, 0, 0 },
			withReliable, "", ""},
		{"unreliable missed", func(r *Result) {}, withReliable, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows := []Result{goodRow("udp"), goodRow("udp"), goodRow("udp")}
			tt.row(&rows[1])
			got := Check(rows, tt.opts)
			if tt.rule == "" {
				if len(got) != 0 {
					t.Errorf("Check = %v, want no violations", got)
				}
				return
			}
			if len(got) != 1 {
				t.Fatalf("Check = %v, want one violation of %q in row 2", got, tt.rule)
			}
			v := got[0]
			if v.Row != 2 || v.Transport != rows[1].Transport || v.Rule != tt.rule || !strings.Contains(v.Detail, tt.detail) {
				t.Errorf("Check = %+v, want row 2 (%s), rule %q, a detail containing %q", v, rows[1].Transport, tt.rule, tt.detail)
			}
			wantPrefix := "row 2 (" + rows[1].Transport + "): " + tt.rule + ": "
			if s := v.String(); !strings.HasPrefix(s, wantPrefix) || !strings.Contains(s, tt.detail) {
				t.Errorf("String() = %q, want it to start with %q and contain %q", s, wantPrefix, tt.detail)
			}
		})
	}
}

// TestCheckAccountingWraps: a sum that wraps around the int64 range onto
// expected does not add up. (The row breaks other rules too.)
func TestCheckAccountingWraps(t *testing.T) {
	for _, r := range []Result{
		{Delivered: math.MaxInt64, Missed: math.MaxInt64, Expected: -2},
		{Delivered: math.MinInt64, Missed: math.MinInt64, Expected: 0},
	} {
		if checkAccounting(&r, nil) == "" {
			t.Errorf("accounting holds for delivered %d + missed %d = expected %d", r.Delivered, r.Missed, r.Expected)
		}
	}
}

func TestCheckNoRows(t *testing.T) {
	for _, rows := range [][]Result{nil, {}} {
		got := Check(rows, CheckOptions{Reliable: reliableTCP})
		if len(got) != 1 || got[0].Row != 0 || got[0].Rule != "no-rows" {
			t.Fatalf("Check(%#v) = %v, want one no-rows violation", rows, got)
		}
		if s := got[0].String(); !strings.HasPrefix(s, "no-rows: ") {
			t.Errorf("String() = %q, want it to start with \"no-rows: \"", s)
		}
	}
}

// TestCheckOrder: violations come by row, then in the documented rule order,
// one per rule and row.
func TestCheckOrder(t *testing.T) {
	rows := []Result{goodRow("tcp"), goodRow("udp"), goodRow("tcp")}
	rows[0].Missed = 5 // breaks accounting, loss-ratio, reliable
	rows[2].NotSent, rows[2].Sent, rows[2].Reordered = 1, -1, -1
	var got []string
	for _, v := range Check(rows, CheckOptions{Reliable: reliableTCP}) {
		got = append(got, v.String())
	}
	want := []string{
		"row 1 (tcp): accounting: delivered 112400 + missed 5 != expected 112500",
		"row 1 (tcp): loss-ratio: loss_ratio 0.0008888888888888889 != missed 5 / expected 112500 = 0.000044444444444444447",
		"row 1 (tcp): reliable: tcp is reliable but missed 5 of 112500 expected deliveries",
		"row 3 (tcp): counters: sent -1, reordered -1 are negative",
		"row 3 (tcp): saturated: not_sent 1 but saturated is false",
		"row 3 (tcp): reliable: tcp is reliable but missed 100 of 112500 expected deliveries",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Check gives\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCheckRulesDocumented keeps Check's doc comment in step with its rules:
// each rule name has an item "//   - name:" in check.go.
func TestCheckRulesDocumented(t *testing.T) {
	names := []string{"no-rows"}
	for _, r := range checkRules {
		names = append(names, r.name)
	}
	data, err := os.ReadFile("check.go")
	if err != nil {
		t.Fatal(err)
	}
	src := string(data)
	for _, name := range names {
		if !strings.Contains(src, "//   - "+name+":") && !strings.Contains(src, "//   - "+name+" (") {
			t.Errorf("Check's doc comment does not document rule %q", name)
		}
	}
}

// TestViolationString covers the forms of String not met above.
func TestViolationString(t *testing.T) {
	tests := []struct {
		v    Violation
		want string
	}{
		{Violation{Row: 3, Transport: "udp", Rule: "accounting", Detail: "delivered 10 + missed 1 != expected 12"},
			"row 3 (udp): accounting: delivered 10 + missed 1 != expected 12"},
		{Violation{Row: 1, Rule: "expected", Detail: "expected is 0"}, "row 1: expected: expected is 0"},
		{Violation{Row: 2, Transport: "u\ndp", Rule: "r", Detail: "d"}, "row 2 (u dp): r: d"},
	}
	for _, tt := range tests {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.v, got, tt.want)
		}
	}
}
