package results

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// compareRows synthesizes n repeats of one scenario on transport, with a
// little deterministic variation around the given p99 latency, throughput
// and loss ratio.
func compareRows(transport string, n int, p99 time.Duration, tput, loss float64) []Result {
	rows := make([]Result, n)
	for i := range rows {
		f := 1 + 0.01*float64(i-n/2) // ±2% for n=5
		rows[i] = Result{
			Transport: transport, Clients: 100, Rooms: 2, Publishers: 10, RateEPS: 50, PayloadBytes: 64,
			Repeat:        i,
			LatP50:        time.Duration(float64(time.Millisecond) * f),
			LatP99:        time.Duration(float64(p99) * f),
			LatP999:       time.Duration(float64(3*p99) * f),
			ThroughputEPS: tput * f,
			LossRatio:     loss + 0.0001*float64(i),
		}
	}
	return rows
}

// rowFor returns the report row of transport and metric.
func rowFor(t *testing.T, rep CompareReport, transport, metric string) CompareRow {
	t.Helper()
	for _, r := range rep.Rows {
		if r.Transport == transport && r.Metric == metric {
			return r
		}
	}
	t.Fatalf("no row for %s %s in %+v", transport, metric, rep.Rows)
	return CompareRow{}
}

func TestCompareIdentical(t *testing.T) {
	rows := compareRows("tcp", 5, 5*time.Millisecond, 10000, 0)
	rep := Compare(rows, rows, CompareOptions{})
	if got := len(rep.Rows); got != len(CompareMetrics) {
		t.Fatalf("rows = %d, want %d", got, len(CompareMetrics))
	}
	for _, r := range rep.Rows {
		if r.Verdict != VerdictSame || r.Significant || r.Delta != 0 {
			t.Errorf("%s: verdict %q significant %v delta %v, want ~, false, 0", r.Metric, r.Verdict, r.Significant, r.Delta)
		}
	}
	if rep.Regressions() != 0 || rep.TooFew() != 0 {
		t.Errorf("regressions %d too few %d, want 0 0", rep.Regressions(), rep.TooFew())
	}
}

func TestCompareLatencyRegression(t *testing.T) {
	old := compareRows("ws", 5, 4*time.Millisecond, 10000, 0)
	new := compareRows("ws", 5, 6*time.Millisecond, 10000, 0)
	rep := Compare(old, new, CompareOptions{})
	r := rowFor(t, rep, "ws", MetricLatP99)
	if r.Verdict != VerdictRegression || !r.Significant || math.Abs(r.Delta-0.5) > 1e-9 {
		t.Errorf("lat_p99: %+v, want a significant regression of +50%%", r)
	}
	if r.P >= 0.05 {
		t.Errorf("p = %v, want < 0.05", r.P)
	}
	if v := rowFor(t, rep, "ws", MetricLatP50).Verdict; v != VerdictSame {
		t.Errorf("lat_p50 verdict %q, want ~", v)
	}
	// The other way round it is an improvement.
	if v := rowFor(t, Compare(new, old, CompareOptions{}), "ws", MetricLatP99).Verdict; v != VerdictImprovement {
		t.Errorf("reversed lat_p99 verdict %q, want improvement", v)
	}
	// A threshold above the change makes it no regression.
	rep = Compare(old, new, CompareOptions{Thresholds: map[string]float64{MetricLatP99: 0.6}})
	if v := rowFor(t, rep, "ws", MetricLatP99).Verdict; v != VerdictSame {
		t.Errorf("with a 60%% threshold lat_p99 verdict %q, want ~", v)
	}
}

func TestCompareThroughputDrop(t *testing.T) {
	old := compareRows("udp", 5, 4*time.Millisecond, 10000, 0)
	new := compareRows("udp", 5, 4*time.Millisecond, 8000, 0)
	rep := Compare(old, new, CompareOptions{})
	if r := rowFor(t, rep, "udp", MetricThroughput); r.Verdict != VerdictRegression {
		t.Errorf("throughput: %+v, want a regression", r)
	}
	if rep.Regressions() != 1 {
		t.Errorf("regressions = %d, want 1", rep.Regressions())
	}
}

func TestCompareLossAbsolute(t *testing.T) {
	old := compareRows("quic", 5, 4*time.Millisecond, 10000, 0.001)
	new := compareRows("quic", 5, 4*time.Millisecond, 10000, 0.004)
	r := rowFor(t, Compare(old, new, CompareOptions{}), "quic", MetricLoss)
	if r.Verdict != VerdictRegression || math.Abs(r.Delta-0.003) > 1e-9 {
		t.Errorf("loss +0.003: %+v, want a regression with delta 0.003", r)
	}
	// Significant, but within 0.001 absolute (though +50% relative).
	new = compareRows("quic", 5, 4*time.Millisecond, 10000, 0.0015)
	r = rowFor(t, Compare(old, new, CompareOptions{}), "quic", MetricLoss)
	if r.Verdict != VerdictSame || !r.Significant {
		t.Errorf("loss +0.0005: %+v, want a significant ~", r)
	}
}

func TestCompareOneSideOnly(t *testing.T) {
	old := compareRows("tcp", 5, 4*time.Millisecond, 10000, 0)
	new := append(compareRows("tcp", 5, 4*time.Millisecond, 10000, 0), compareRows("kcp", 5, 9*time.Millisecond, 100, 0.5)...)
	old = append(old, compareRows("gone", 2, time.Millisecond, 1, 0)...)
	rep := Compare(old, new, CompareOptions{})
	var onlyNew, onlyOld int
	for _, r := range rep.Rows {
		switch {
		case r.Transport == "kcp":
			if r.Verdict != VerdictOnlyInNew || r.New.N != 5 || r.Metric != "" {
				t.Errorf("kcp row %+v, want only in new with n=5", r)
			}
			onlyNew++
		case r.Transport == "gone":
			if r.Verdict != VerdictOnlyInOld || r.Old.N != 2 {
				t.Errorf("gone row %+v, want only in old with n=2", r)
			}
			onlyOld++
		}
	}
	if onlyNew != 1 || onlyOld != 1 || rep.Regressions() != 0 {
		t.Errorf("only new %d, only old %d, regressions %d; want 1 1 0", onlyNew, onlyOld, rep.Regressions())
	}
}

func TestCompareTooFew(t *testing.T) {
	old := compareRows("tcp", 3, 4*time.Millisecond, 10000, 0)
	new := compareRows("tcp", 3, 8*time.Millisecond, 10000, 0)
	rep := Compare(old, new, CompareOptions{})
	if rep.TooFew() != len(CompareMetrics) || rep.Regressions() != 0 {
		t.Errorf("too few %d regressions %d, want %d 0", rep.TooFew(), rep.Regressions(), len(CompareMetrics))
	}
	// At alpha 0.6, 3 against 3 can be significant even after Holm's
	// correction over the 5 metrics (smallest p 0.1 ≤ 0.6/5).
	rep = Compare(old, new, CompareOptions{Alpha: 0.6})
	if rep.TooFew() != 0 || rowFor(t, rep, "tcp", MetricLatP99).Verdict != VerdictRegression {
		t.Errorf("alpha 0.6: %+v, want a lat_p99 regression and no too few", rep.Rows)
	}
	// At alpha 0.2 one comparison alone could be significant, but not five
	// with the correction: 0.1 > 0.2/5.
	if rep = Compare(old, new, CompareOptions{Alpha: 0.2}); rep.TooFew() != len(CompareMetrics) {
		t.Errorf("alpha 0.2: too few %d, want all %d (Holm's first level is 0.04)", rep.TooFew(), len(CompareMetrics))
	}
}

// TestCompareHolm: of two transports with the same p-value, Holm's
// correction calls both significant when the smaller passes alpha/2 and the
// other alpha/1, and neither when the smallest fails alpha/m.
func TestCompareHolm(t *testing.T) {
	rep := CompareReport{Alpha: 0.05, Rows: []CompareRow{
		{Metric: MetricLatP50, P: 0.02, Delta: 0.5, Threshold: 0.1, Old: CompareStat{N: 10}, New: CompareStat{N: 10}},
		{Metric: MetricLatP99, P: 0.04, Delta: 0.5, Threshold: 0.1, Old: CompareStat{N: 10}, New: CompareStat{N: 10}},
		{Metric: MetricLatP999, P: 0.03, Delta: 0.5, Threshold: 0.1, Old: CompareStat{N: 10}, New: CompareStat{N: 10}},
	}}
	rep.judge()
	// Sorted: 0.02 ≤ 0.05/3 fails (0.0167), so nothing is significant.
	if rep.Regressions() != 0 {
		t.Errorf("%d regressions, want 0: 0.02 is above 0.05/3", rep.Regressions())
	}
	rep.Rows[0].P = 0.01 // ≤ 0.0167; next 0.03 ≤ 0.025 fails: one significant
	for i := range rep.Rows {
		rep.Rows[i].Significant = false
	}
	rep.judge()
	if rep.Regressions() != 1 || rep.Rows[0].Verdict != VerdictRegression {
		t.Errorf("verdicts %v %v %v, want only the first a regression", rep.Rows[0].Verdict, rep.Rows[1].Verdict, rep.Rows[2].Verdict)
	}
}

func TestCompareMinUTestP(t *testing.T) {
	for _, c := range []struct {
		n1, n2 int
		want   float64
	}{{0, 5, 1}, {1, 1, 1}, {2, 2, 1.0 / 3}, {3, 3, 0.1}, {4, 4, 2.0 / 70}, {5, 5, 2.0 / 252}, {3, 10, 2.0 / 286}} {
		if got := minUTestP(c.n1, c.n2); math.Abs(got-c.want) > 1e-12 {
			t.Errorf("minUTestP(%d, %d) = %v, want %v", c.n1, c.n2, got, c.want)
		}
	}
}

func TestCompareSkipsErrorRows(t *testing.T) {
	old := compareRows("tcp", 5, 4*time.Millisecond, 10000, 0)
	new := compareRows("tcp", 5, 4*time.Millisecond, 10000, 0)
	bad := compareRows("tcp", 2, time.Hour, 1, 1)
	for i := range bad {
		bad[i].Error = "connect: refused"
	}
	new = append(new, bad...)
	old = append(old, bad[0])
	rep := Compare(old, new, CompareOptions{})
	if rep.SkippedOld != 1 || rep.SkippedNew != 2 || rep.Regressions() != 0 {
		t.Errorf("skipped %d %d regressions %d, want 1 2 0", rep.SkippedOld, rep.SkippedNew, rep.Regressions())
	}
	if r := rowFor(t, rep, "tcp", MetricLatP99); r.New.N != 5 {
		t.Errorf("new n = %d, want 5", r.New.N)
	}
}

func TestCompareParseThresholds(t *testing.T) {
	got, err := ParseThresholds("lat_p99=10%, throughput=5%,loss=0.001,lat_p999=2.5%")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{MetricLatP99: 0.10, MetricThroughput: 0.05, MetricLoss: 0.001, MetricLatP999: 0.025}
	for k, v := range want {
		if math.Abs(got[k]-v) > 1e-12 {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := ParseThresholds("loss=0.1%"); err != nil || math.Abs(got[MetricLoss]-0.001) > 1e-12 {
		t.Errorf("loss=0.1%% = %v, %v; want 0.001", got, err)
	}
	for _, bad := range []string{"lat_p98=10%", "lat_p99", "lat_p99=10", "lat_p99=x%", "lat_p99=-1%", "loss=2", "throughput=NaN%", "lat_p99=10%,"} {
		if _, err := ParseThresholds(bad); err == nil {
			t.Errorf("ParseThresholds(%q) = nil error", bad)
		}
	}
}

func TestCompareWrite(t *testing.T) {
	old := compareRows("tcp+tls", 5, 4*time.Millisecond, 10000, 0)
	new := append(compareRows("tcp+tls", 5, 6*time.Millisecond, 10000, 0), compareRows("kcp", 5, time.Millisecond, 1, 0)...)
	var buf bytes.Buffer
	if err := WriteCompare(&buf, Compare(old, new, CompareOptions{})); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"KEY", "transport=tcp+tls/clients=100", "lat_p99", "4ms ± ∞", "6ms ± ∞", "+50.0%", "regression", "transport=kcp", "only in new", "regressions: 2"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "BenchmarkFanout") {
		t.Errorf("output keeps the BenchmarkFanout prefix:\n%s", out)
	}
	t.Logf("\n%s", out)
}

// TestCompareAA is docs/cases.md C11: an A/A comparison, old and new drawn
// from one distribution (log-normal latencies, normal throughput, seeded),
// at 10 repeats a side reports no regression or improvement in at least 4
// of 5 tries, and at 3 repeats says the count is too small to ever be
// significant.
func TestCompareAA(t *testing.T) {
	draw := func(rng *rand.Rand, n int) []Result {
		rows := make([]Result, n)
		for i := range rows {
			lat := func(med float64) time.Duration {
				return time.Duration(med * math.Exp(0.3*rng.NormFloat64()) * float64(time.Microsecond))
			}
			rows[i] = Result{
				Transport: "tcp", Clients: 50, Rooms: 5, Publishers: 50, RateEPS: 50, PayloadBytes: 128, Repeat: i,
				LatP50: lat(250), LatP99: lat(900), LatP999: lat(3000),
				ThroughputEPS: 22500 * (1 + 0.01*rng.NormFloat64()), LossRatio: 0,
			}
		}
		return rows
	}
	clean := 0
	for try := range 5 {
		rng := rand.New(rand.NewPCG(uint64(try), 11))
		rep := Compare(draw(rng, 10), draw(rng, 10), CompareOptions{})
		if rep.Regressions() == 0 && rep.Count(VerdictImprovement) == 0 && rep.TooFew() == 0 {
			clean++
		}
	}
	if clean < 4 {
		t.Errorf("A/A at 10 repeats: %d of 5 tries without a change reported, want at least 4", clean)
	}
	rng := rand.New(rand.NewPCG(99, 11))
	if rep := Compare(draw(rng, 3), draw(rng, 3), CompareOptions{}); rep.TooFew() == 0 {
		t.Errorf("A/A at 3 repeats: no comparison marked too few: %+v", rep.Rows)
	}
}

// TestCompareSettingsMismatch: rows compared under one key but measured
// with other settings (window, seed) are named in a note, and judged as
// usual.
func TestCompareSettingsMismatch(t *testing.T) {
	old := compareRows("tcp", 5, 4*time.Millisecond, 10000, 0)
	new := compareRows("tcp", 5, 4*time.Millisecond, 10000, 0)
	for i := range new {
		new[i].Duration, new[i].Seed = 30*time.Second, 7
	}
	rep := Compare(old, new, CompareOptions{})
	if len(rep.Mismatches) != 1 || !strings.Contains(rep.Mismatches[0], "duration_s 0 vs 30") || !strings.Contains(rep.Mismatches[0], "seed 0 vs 7") {
		t.Errorf("mismatches %q, want duration_s and seed named", rep.Mismatches)
	}
	var buf bytes.Buffer
	if err := WriteCompare(&buf, rep); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "note: old and new differ outside the key") {
		t.Errorf("output lacks the note:\n%s", buf.String())
	}
	if rep = Compare(old, old, CompareOptions{}); len(rep.Mismatches) != 0 {
		t.Errorf("identical settings: mismatches %q", rep.Mismatches)
	}
}
