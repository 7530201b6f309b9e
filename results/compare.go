package results

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/perf/benchmath"
)

// Compared metrics, by the names Compare, ParseThresholds and WriteCompare
// use.
const (
	MetricLatP50     = "lat_p50"    // LatP50; lower is better; relative threshold
	MetricLatP99     = "lat_p99"    // LatP99; lower is better; relative threshold
	MetricLatP999    = "lat_p999"   // LatP999; lower is better; relative threshold
	MetricThroughput = "throughput" // ThroughputEPS; higher is better; relative threshold
	MetricLoss       = "loss"       // LossRatio; lower is better; absolute threshold
)

// CompareMetrics lists the metrics Compare compares, in the order it reports
// them.
var CompareMetrics = []string{MetricLatP50, MetricLatP99, MetricLatP999, MetricThroughput, MetricLoss}

// DefaultCompareAlpha is the significance level Compare uses when
// CompareOptions.Alpha is zero.
const DefaultCompareAlpha = 0.05

// DefaultCompareThresholds returns the thresholds Compare uses for the
// metrics CompareOptions.Thresholds does not name: a relative change of 10%
// for lat_p50, 20% for lat_p99 and 30% for lat_p999 (the tail is noisier:
// on a shared machine p99 moves by 2× between identical runs), 5% for
// throughput, and an absolute change of 0.001 (0.1 percentage point) for the
// loss ratio. The map is new on every call.
func DefaultCompareThresholds() map[string]float64 {
	return map[string]float64{
		MetricLatP50:     0.10,
		MetricLatP99:     0.20,
		MetricLatP999:    0.30,
		MetricThroughput: 0.05,
		MetricLoss:       0.001,
	}
}

// metricDef says how to read, judge and print one metric.
type metricDef struct {
	value       func(*Result) float64
	higherBest  bool // throughput; the others are lower-is-better
	absolute    bool // the threshold and delta are absolute (loss), not relative
	formatValue func(float64) string
}

var metricDefs = map[string]metricDef{
	MetricLatP50:     {value: func(r *Result) float64 { return float64(r.LatP50) }, formatValue: formatDurationValue},
	MetricLatP99:     {value: func(r *Result) float64 { return float64(r.LatP99) }, formatValue: formatDurationValue},
	MetricLatP999:    {value: func(r *Result) float64 { return float64(r.LatP999) }, formatValue: formatDurationValue},
	MetricThroughput: {value: func(r *Result) float64 { return r.ThroughputEPS }, higherBest: true, formatValue: formatEPSValue},
	MetricLoss:       {value: func(r *Result) float64 { return r.LossRatio }, absolute: true, formatValue: formatLossValue},
}

// MetricIsAbsolute reports whether metric's threshold and delta are absolute
// differences (loss) rather than relative ones; false for unknown metrics.
func MetricIsAbsolute(metric string) bool { return metricDefs[metric].absolute }

// ParseThresholds parses a comma-separated list of metric=value, e.g.
// "lat_p99=10%,throughput=5%,loss=0.001", into thresholds for
// CompareOptions. The relative metrics (latencies, throughput) take a
// percentage ("10%" is 0.10); loss takes an absolute ratio, as a number from
// 0 to 1 or a percentage ("0.1%" is 0.001). An empty spec gives an empty map.
func ParseThresholds(spec string) (map[string]float64, error) {
	out := map[string]float64{}
	if strings.TrimSpace(spec) == "" {
		return out, nil
	}
	for _, item := range strings.Split(spec, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("threshold %q is not metric=value", item)
		}
		def, known := metricDefs[name]
		if !known {
			return nil, fmt.Errorf("unknown metric %q in threshold (known: %s)", name, strings.Join(CompareMetrics, ", "))
		}
		pct := strings.HasSuffix(val, "%")
		num := strings.TrimSuffix(val, "%")
		f, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
			return nil, fmt.Errorf("threshold %s=%q: not a non-negative number", name, val)
		}
		if pct {
			f /= 100
		} else if !def.absolute {
			return nil, fmt.Errorf("threshold %s=%q: a relative threshold must be a percentage, e.g. %s=10%%", name, val, name)
		}
		if def.absolute && f > 1 {
			return nil, fmt.Errorf("threshold %s=%q: a loss ratio threshold must be at most 1", name, val)
		}
		out[name] = f
	}
	return out, nil
}

// CompareOptions configures Compare.
type CompareOptions struct {
	// Thresholds maps a metric (see CompareMetrics) to the smallest change
	// that counts: relative for the latencies and throughput (0.10 is 10%),
	// absolute for loss. Metrics it does not name take
	// DefaultCompareThresholds.
	Thresholds map[string]float64
	// Alpha is the family-wise significance level: the chance that any of
	// the report's comparisons is called significant when nothing changed
	// stays below it, by Holm's step-down correction over every comparison
	// of the report (S. Holm, "A simple sequentially rejective multiple test
	// procedure", Scand. J. Statist. 6, 1979). Zero means
	// DefaultCompareAlpha.
	Alpha float64
}

// Verdict is the outcome of one comparison.
type Verdict string

// Verdicts.
const (
	VerdictRegression  Verdict = "regression"  // worse beyond the threshold, and significant
	VerdictImprovement Verdict = "improvement" // better beyond the threshold, and significant
	VerdictSame        Verdict = "~"           // not significant, or within the threshold
	VerdictTooFew      Verdict = "too few"     // too few repeats to ever be significant at the corrected alpha
	VerdictOnlyInOld   Verdict = "only in old" // the key has no usable rows in new
	VerdictOnlyInNew   Verdict = "only in new" // the key has no usable rows in old
)

// CompareStat is the summary of one side's sample of a metric.
type CompareStat struct {
	// N is the number of rows (repeats) in the sample.
	N int
	// Center is the sample median.
	Center float64
	// Lo and Hi bound the 95% confidence interval of the median; they are
	// infinite when the sample is too small for one.
	Lo, Hi float64
}

// CompareRow is one line of a CompareReport: one metric of one key, or, for
// VerdictOnlyInOld and VerdictOnlyInNew, the key alone (Metric is empty).
type CompareRow struct {
	// Key is the (scenario, transport) key, GoBenchName of its rows.
	Key string
	// Transport is the rows' transport.
	Transport string
	// Metric is the metric compared (see CompareMetrics).
	Metric string
	// Old and New summarize the two samples.
	Old, New CompareStat
	// Delta is the change of the centers: relative ((new-old)/old) for the
	// relative metrics, absolute (new-old) for loss. It is ±Inf for a
	// relative change from 0.
	Delta float64
	// Threshold is the threshold the delta was judged against.
	Threshold float64
	// P is the Mann-Whitney U test's p-value.
	P float64
	// Significant is whether P passes Holm's step-down test at the report's
	// alpha: the k-th smallest of the report's m p-values (from k = 1) is
	// significant when it and every smaller one is at most alpha/(m−k+1).
	Significant bool
	// Verdict is the outcome.
	Verdict Verdict
}

// CompareReport is the result of Compare.
type CompareReport struct {
	// Rows are the comparisons: keys in order of first appearance in old,
	// then the keys only in new; metrics in CompareMetrics order.
	Rows []CompareRow
	// Alpha is the significance level used.
	Alpha float64
	// Thresholds are the thresholds used, one per metric.
	Thresholds map[string]float64
	// SkippedOld and SkippedNew count the rows with an Error, left out.
	SkippedOld, SkippedNew int
	// Mismatches name, per key compared, the settings outside the key in
	// which its old and new rows differ (such as "duration_s 1 vs 30"):
	// the comparison may then measure the settings, not the change.
	Mismatches []string
}

// Count returns the number of rows with verdict v.
func (r *CompareReport) Count(v Verdict) int {
	n := 0
	for i := range r.Rows {
		if r.Rows[i].Verdict == v {
			n++
		}
	}
	return n
}

// Regressions returns the number of regressions.
func (r *CompareReport) Regressions() int { return r.Count(VerdictRegression) }

// TooFew returns the number of comparisons with too few repeats to ever be
// significant.
func (r *CompareReport) TooFew() int { return r.Count(VerdictTooFew) }

// group is the usable rows of one key on one side.
type group struct {
	transport string
	rows      []*Result
}

// groupRows groups the rows without an Error by GoBenchName, returning the
// keys in order of first appearance and the number of rows skipped.
func groupRows(rows []Result) (keys []string, groups map[string]*group, skipped int) {
	groups = map[string]*group{}
	for i := range rows {
		r := &rows[i]
		if r.Error != "" {
			skipped++
			continue
		}
		k := GoBenchName(r)
		g := groups[k]
		if g == nil {
			g = &group{transport: r.Transport}
			groups[k] = g
			keys = append(keys, k)
		}
		g.rows = append(g.rows, r)
	}
	return keys, groups, skipped
}

// Compare compares the rows of old with those of new, as benchstat does:
// rows are grouped by (scenario, transport), the key GoBenchName gives
// (repeats of one key form a sample), and rows with an Error are skipped and
// counted. For each key on both sides and each metric of CompareMetrics it
// summarizes both samples by their median with a 95% confidence interval
// and tests them with the Mann-Whitney U test (benchmath.AssumeNothing). The
// verdict is a regression when the change is in the worse direction, beyond
// the metric's threshold, and significant (Holm-corrected over every
// comparison of the report, see CompareOptions.Alpha); an improvement the
// same in the better direction; "too few" when the sample sizes cannot give
// a p-value small enough however different the values (5 against 5
// repeats give at best p = 0.008, below 0.05 but not below 0.05/20 for 4
// transports × 5 metrics; 10 against 10 give 1.1e-5); "~" otherwise. A key on one side only gets one
// row, "only in old" or "only in new", and is never a regression.
func Compare(old, new []Result, opts CompareOptions) CompareReport {
	alpha := opts.Alpha
	if alpha == 0 {
		alpha = DefaultCompareAlpha
	}
	thresholds := DefaultCompareThresholds()
	for k, v := range opts.Thresholds {
		thresholds[k] = v
	}
	rep := CompareReport{Alpha: alpha, Thresholds: thresholds}
	oldKeys, oldGroups, skippedOld := groupRows(old)
	newKeys, newGroups, skippedNew := groupRows(new)
	rep.SkippedOld, rep.SkippedNew = skippedOld, skippedNew
	bt := benchmath.DefaultThresholds
	bt.CompareAlpha = alpha
	for _, k := range oldKeys {
		og := oldGroups[k]
		ng := newGroups[k]
		if ng == nil {
			rep.Rows = append(rep.Rows, CompareRow{Key: k, Transport: og.transport, Old: CompareStat{N: len(og.rows)}, Verdict: VerdictOnlyInOld})
			continue
		}
		for _, m := range CompareMetrics {
			rep.Rows = append(rep.Rows, compareMetric(k, og, ng, m, thresholds[m], &bt))
		}
		if d := settingsDiff(og.rows[0], ng.rows[0]); d != "" {
			rep.Mismatches = append(rep.Mismatches, strings.TrimPrefix(k, "BenchmarkFanout/")+": "+d)
		}
	}
	rep.judge()
	for _, k := range newKeys {
		if oldGroups[k] == nil {
			ng := newGroups[k]
			rep.Rows = append(rep.Rows, CompareRow{Key: k, Transport: ng.transport, New: CompareStat{N: len(ng.rows)}, Verdict: VerdictOnlyInNew})
		}
	}
	return rep
}

// judge decides each comparison's significance with Holm's step-down
// correction over the report's m comparisons, and its verdict. A
// comparison whose sample sizes cannot give a p-value at or below alpha/m,
// the first step's level, is "too few": every comparison of a report has
// the same sizes in the common case, so none of them could be significant.
func (rep *CompareReport) judge() {
	var family []int
	for i := range rep.Rows {
		if rep.Rows[i].Metric != "" {
			family = append(family, i)
		}
	}
	m := len(family)
	slices.SortStableFunc(family, func(a, b int) int { return cmp.Compare(rep.Rows[a].P, rep.Rows[b].P) })
	for k, i := range family {
		if rep.Rows[i].P > rep.Alpha/float64(m-k) {
			break
		}
		rep.Rows[i].Significant = true
	}
	for _, i := range family {
		row := &rep.Rows[i]
		def := metricDefs[row.Metric]
		worse := row.Delta > row.Threshold
		better := row.Delta < -row.Threshold
		if def.higherBest {
			worse, better = better, worse
		}
		switch {
		case minUTestP(row.Old.N, row.New.N) > rep.Alpha/float64(m):
			row.Verdict = VerdictTooFew
		case row.Significant && worse:
			row.Verdict = VerdictRegression
		case row.Significant && better:
			row.Verdict = VerdictImprovement
		default:
			row.Verdict = VerdictSame
		}
	}
}

// Comparisons is the number of metric comparisons in the report, the m of
// Holm's correction.
func (rep *CompareReport) Comparisons() int {
	n := 0
	for i := range rep.Rows {
		if rep.Rows[i].Metric != "" {
			n++
		}
	}
	return n
}

// settingsDiff names the scenario settings outside the compare key in which
// rows a and b differ, as "column a vs b", or is "".
func settingsDiff(a, b *Result) string {
	var diffs []string
	for _, c := range columns {
		switch c.name {
		case "duration_s", "warmup_s", "drain_s", "ack_every", "seed", "send_queue", "slow_consumer",
			"max_sched_lag_us", "connect_timeout_s":
			if va, vb := c.format(a), c.format(b); va != vb {
				diffs = append(diffs, c.name+" "+va+" vs "+vb)
			}
		}
	}
	return strings.Join(diffs, ", ")
}

// compareMetric compares one metric of one key; judge gives the verdict.
func compareMetric(key string, og, ng *group, metric string, threshold float64, bt *benchmath.Thresholds) CompareRow {
	def := metricDefs[metric]
	sample := func(g *group) *benchmath.Sample {
		vs := make([]float64, len(g.rows))
		for i, r := range g.rows {
			vs[i] = def.value(r)
		}
		return benchmath.NewSample(vs, bt)
	}
	so, sn := sample(og), sample(ng)
	stat := func(s *benchmath.Sample) CompareStat {
		sum := benchmath.AssumeNothing.Summary(s, 0.95)
		return CompareStat{N: len(s.Values), Center: sum.Center, Lo: sum.Lo, Hi: sum.Hi}
	}
	row := CompareRow{Key: key, Transport: ng.transport, Metric: metric, Old: stat(so), New: stat(sn), Threshold: threshold}
	row.P = benchmath.AssumeNothing.Compare(so, sn).P
	diff := row.New.Center - row.Old.Center
	switch {
	case def.absolute:
		row.Delta = diff
	case diff == 0:
		row.Delta = 0
	case row.Old.Center == 0:
		row.Delta = math.Inf(int(math.Copysign(1, diff)))
	default:
		row.Delta = diff / math.Abs(row.Old.Center)
	}
	return row
}

// minUTestP returns the smallest two-sided p-value the exact Mann-Whitney U
// test can give for samples of n1 and n2 values, when the samples do not
// overlap at all: 2/C(n1+n2, n1), at most 1.
func minUTestP(n1, n2 int) float64 {
	if n1 == 0 || n2 == 0 {
		return 1
	}
	// C(n1+n2, n1) as a float, which is exact enough here.
	c := 1.0
	for i := 1; i <= n1; i++ {
		c = c * float64(n2+i) / float64(i)
	}
	return math.Min(1, 2/c)
}

// WriteCompare writes report as a text table: one line per key and metric
// with the old and new medians ± their confidence interval (as a percentage
// of the median; ∞ when the sample is too small for one), the change, the
// p-value and sample sizes, and the verdict. The key is printed without the
// "BenchmarkFanout/" prefix, on the first line of its group only. A summary
// line follows: regressions, improvements, too few, keys on one side only
// and rows skipped for an error.
func WriteCompare(w io.Writer, report CompareReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tMETRIC\tOLD\tNEW\tDELTA\tP\tVERDICT")
	prev := ""
	for i := range report.Rows {
		r := &report.Rows[i]
		key := strings.TrimPrefix(r.Key, "BenchmarkFanout/")
		if r.Key == prev {
			key = ""
		}
		prev = r.Key
		switch r.Verdict {
		case VerdictOnlyInOld:
			fmt.Fprintf(tw, "%s\t-\tn=%d\t-\t-\t-\t%s\n", key, r.Old.N, r.Verdict)
			continue
		case VerdictOnlyInNew:
			fmt.Fprintf(tw, "%s\t-\t-\tn=%d\t-\t-\t%s\n", key, r.New.N, r.Verdict)
			continue
		}
		def := metricDefs[r.Metric]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\tp=%.3f n=%d+%d\t%s\n", key, r.Metric,
			formatStat(def, r.Old), formatStat(def, r.New), formatDelta(def, r.Delta),
			r.P, r.Old.N, r.New.N, r.Verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range report.Mismatches {
		if _, err := fmt.Fprintf(w, "\nnote: old and new differ outside the key: %s", m); err != nil {
			return err
		}
	}
	only := report.Count(VerdictOnlyInOld) + report.Count(VerdictOnlyInNew)
	_, err := fmt.Fprintf(w, "\nregressions: %d, improvements: %d, too few: %d, on one side only: %d; alpha %v (Holm, %d comparisons); rows skipped for an error: %d old, %d new\n",
		report.Regressions(), report.Count(VerdictImprovement), report.TooFew(), only, report.Alpha, report.Comparisons(), report.SkippedOld, report.SkippedNew)
	return err
}

// formatStat formats a sample summary as "center ± ci%".
func formatStat(def metricDef, s CompareStat) string {
	sum := benchmath.Summary{Center: s.Center, Lo: s.Lo, Hi: s.Hi}
	ci := sum.PctRangeString()
	if ci != "∞" && ci != "?" && def.absolute {
		// A loss ratio's CI as an absolute half-width reads better.
		ci = def.formatValue(math.Max(s.Hi-s.Center, s.Center-s.Lo))
	}
	return def.formatValue(s.Center) + " ± " + ci
}

// formatDelta formats a change: a signed percentage for relative metrics, a
// signed ratio for absolute ones.
func formatDelta(def metricDef, d float64) string {
	if def.absolute {
		return fmt.Sprintf("%+.4f", d)
	}
	if math.IsInf(d, 0) {
		return fmt.Sprintf("%+v", d)
	}
	return fmt.Sprintf("%+.1f%%", 100*d)
}

// formatDurationValue formats nanoseconds as a duration, to 3 significant
// digits or so.
func formatDurationValue(v float64) string {
	d := time.Duration(math.Round(v))
	switch {
	case d >= 100*time.Millisecond:
		d = d.Round(time.Millisecond)
	case d >= 100*time.Microsecond:
		d = d.Round(time.Microsecond)
	case d >= 100*time.Nanosecond:
		d = d.Round(100 * time.Nanosecond)
	}
	return d.String()
}

// formatEPSValue formats events per second.
func formatEPSValue(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) + "/s" }

// formatLossValue formats a loss ratio.
func formatLossValue(v float64) string { return strconv.FormatFloat(v, 'f', 4, 64) }
