package results

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// CheckOptions selects the optional rules of Check.
type CheckOptions struct {
	// Reliable, when set, reports whether the named transport promises to
	// deliver every frame; Check then also applies rule "reliable" to the
	// rows of the transports for which it returns true. It is a function so
	// that this package needs no import of the transports.
	Reliable func(transport string) bool
}

// Violation is one rule of Check that one row breaks.
type Violation struct {
	// Row is the 1-based number of the data row, as a user counts them in
	// the file: row 1 is the first row after the header. It is 0 for a rule
	// about the rows as a whole ("no-rows").
	Row int
	// Transport is the row's transport; empty when Row is 0.
	Transport string
	// Rule is the rule's short, stable name, e.g. "accounting".
	Rule string
	// Detail says what is wrong, with the values involved.
	Detail string
}

// String formats v as `row 3 (udp): accounting: delivered 10 + missed 1 !=
// expected 12`, or `no-rows: ...` for a rule about the rows as a whole.
func (v Violation) String() string {
	if v.Row == 0 {
		return v.Rule + ": " + v.Detail
	}
	where := "row " + strconv.Itoa(v.Row)
	if v.Transport != "" {
		where += " (" + clean(v.Transport) + ")"
	}
	return where + ": " + v.Rule + ": " + v.Detail
}

// lossRatioTolerance is how far loss_ratio may be from missed / expected.
// The writer stores the exact float64 quotient, so this only absorbs the
// rounding of a writer that prints fewer digits.
const lossRatioTolerance = 1e-9

// Check applies the invariants of a results file to rows and returns the
// violations, ordered by row and then in the order of the rules below; none
// when every row holds. Each rule gives at most one Violation per row.
//
// A row whose error column is not empty is a failed measurement (an
// interrupted run, a set-up failure, disconnected clients) that says why it
// failed: rules "expected" and "reliable" do not apply to it, since its
// counts are only what was measured before the failure, but every other rule
// does, because they hold for any row the runner writes.
//
// The rules, by name:
//
//   - no-rows: there is at least one row (a header-only file fails this).
//   - expected: expected > 0: the scenario called for deliveries, so the
//     row measured something. Not applied to a row with an error.
//   - accounting: delivered + missed == expected.
//   - loss-ratio: 0 <= loss_ratio <= 1 (NaN fails), and loss_ratio equals
//     missed / expected within 1e-9; it is 0 when expected is 0.
//   - latency: the fan-out latency percentiles do not decrease: lat_p50_us
//     <= lat_p90_us <= lat_p99_us <= lat_p999_us <= lat_max_us. When anything
//     was delivered, lat_max_us is positive, and so is lat_p50_us unless
//     every sample overflowed the histogram (lat_overflow == delivered),
//     which leaves the percentiles at 0.
//   - counters: no counter is negative: sent, expected, delivered, missed,
//     duplicates, reordered, not_sent, lat_overflow, queue_drops,
//     ack_timeouts, send_errors, disconnects, and v2's server counters
//     reply_drops, oversize_drops, protocol_errors, accept_errors,
//     server_closed_clean, server_closed_error, server_closed_slow.
//   - saturated: saturated is true when not_sent > 0, since an unsent slot
//     means the load generator fell behind.
//   - reliable (only with CheckOptions.Reliable): a row of a reliable
//     transport has missed == 0. Deliveries the server's slow-consumer
//     policy dropped (queue_drops) count as missed too, so this rule is for
//     runs at a load the server keeps up with. Not applied to a row with an
//     error.
//
// Check reads nothing but rows; a file's structure (its header, field
// counts, values that do not parse) is checked by ReadCSV.
func Check(rows []Result, opts CheckOptions) []Violation {
	if len(rows) == 0 {
		return []Violation{{Rule: "no-rows", Detail: "there are no rows, so nothing was measured"}}
	}
	var vs []Violation
	for i := range rows {
		r := &rows[i]
		for _, rule := range checkRules {
			if detail := rule.check(r, &opts); detail != "" {
				vs = append(vs, Violation{Row: i + 1, Transport: r.Transport, Rule: rule.name, Detail: detail})
			}
		}
	}
	return vs
}

// checkRule is one per-row rule of Check: check returns what is wrong, or ""
// when r holds.
type checkRule struct {
	name  string
	check func(r *Result, opts *CheckOptions) string
}

// checkRules are Check's per-row rules, in the order Check documents them.
var checkRules = []checkRule{
	{"expected", checkExpected},
	{"accounting", checkAccounting},
	{"loss-ratio", checkLossRatio},
	{"latency", checkLatency},
	{"counters", checkCounters},
	{"saturated", checkSaturated},
	{"reliable", checkReliable},
}

func checkExpected(r *Result, _ *CheckOptions) string {
	if r.Error != "" || r.Expected > 0 {
		return ""
	}
	return fmt.Sprintf("expected is %d, want > 0 (or an error saying why)", r.Expected)
}

func checkAccounting(r *Result, _ *CheckOptions) string {
	d, m := r.Delivered, r.Missed
	sum := d + m
	// A sum that wraps around the int64 range does not add up, even if it
	// happens to wrap onto expected.
	wrapped := (d > 0 && m > 0 && sum < 0) || (d < 0 && m < 0 && sum >= 0)
	if sum == r.Expected && !wrapped {
		return ""
	}
	return fmt.Sprintf("delivered %d + missed %d != expected %d", r.Delivered, r.Missed, r.Expected)
}

func checkLossRatio(r *Result, _ *CheckOptions) string {
	lr := r.LossRatio
	if !(lr >= 0 && lr <= 1) {
		return fmt.Sprintf("loss_ratio %s is not between 0 and 1", formatFloat(lr))
	}
	if r.Expected <= 0 {
		if lr != 0 {
			return fmt.Sprintf("loss_ratio %s with expected %d, want 0", formatFloat(lr), r.Expected)
		}
		return ""
	}
	want := float64(r.Missed) / float64(r.Expected)
	if math.Abs(lr-want) > lossRatioTolerance {
		return fmt.Sprintf("loss_ratio %s != missed %d / expected %d = %s", formatFloat(lr), r.Missed, r.Expected, formatFloat(want))
	}
	return ""
}

func checkLatency(r *Result, _ *CheckOptions) string {
	lat := []struct {
		name string
		d    time.Duration
	}{
		{"lat_p50_us", r.LatP50}, {"lat_p90_us", r.LatP90}, {"lat_p99_us", r.LatP99},
		{"lat_p999_us", r.LatP999}, {"lat_max_us", r.LatMax},
	}
	for i := 1; i < len(lat); i++ {
		if lat[i].d < lat[i-1].d {
			return fmt.Sprintf("%s %s < %s %s: the percentiles decrease",
				lat[i].name, formatMicros(lat[i].d), lat[i-1].name, formatMicros(lat[i-1].d))
		}
	}
	switch {
	case r.Delivered > 0 && r.LatMax <= 0:
		return fmt.Sprintf("lat_max_us %s with %d delivered, want > 0", formatMicros(r.LatMax), r.Delivered)
	case r.Delivered > r.LatOverflow && r.LatP50 <= 0:
		return fmt.Sprintf("lat_p50_us %s with %d delivered, want > 0", formatMicros(r.LatP50), r.Delivered)
	}
	return ""
}

func checkCounters(r *Result, _ *CheckOptions) string {
	counters := []struct {
		name string
		n    int64
	}{
		{"sent", r.Sent}, {"expected", r.Expected}, {"delivered", r.Delivered}, {"missed", r.Missed},
		{"duplicates", r.Duplicates}, {"reordered", r.Reordered}, {"not_sent", r.NotSent},
		{"lat_overflow", r.LatOverflow}, {"queue_drops", r.QueueDrops}, {"ack_timeouts", r.AckTimeouts},
		{"send_errors", r.SendErrors}, {"disconnects", r.Disconnects},
		{"reply_drops", r.ReplyDrops}, {"oversize_drops", r.OversizeDrops}, {"protocol_errors", r.ProtocolErrors},
		{"accept_errors", r.AcceptErrors}, {"server_closed_clean", r.ServerClosedClean},
		{"server_closed_error", r.ServerClosedError}, {"server_closed_slow", r.ServerClosedSlow},
	}
	var neg []string
	for _, c := range counters {
		if c.n < 0 {
			neg = append(neg, fmt.Sprintf("%s %d", c.name, c.n))
		}
	}
	switch len(neg) {
	case 0:
		return ""
	case 1:
		return neg[0] + " is negative"
	}
	return strings.Join(neg, ", ") + " are negative"
}

func checkSaturated(r *Result, _ *CheckOptions) string {
	if r.NotSent > 0 && !r.Saturated {
		return fmt.Sprintf("not_sent %d but saturated is false", r.NotSent)
	}
	return ""
}

func checkReliable(r *Result, opts *CheckOptions) string {
	if opts.Reliable == nil || r.Error != "" || r.Missed == 0 || !opts.Reliable(r.Transport) {
		return ""
	}
	detail := fmt.Sprintf("%s is reliable but missed %d of %d expected deliveries", clean(r.Transport), r.Missed, r.Expected)
	if r.QueueDrops > 0 {
		detail += fmt.Sprintf(" (the server dropped %d under its slow-consumer policy: queue_drops)", r.QueueDrops)
	}
	return detail
}
