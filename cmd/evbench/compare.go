package main

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/spf13/pflag"

	"github.com/evbench/evbench/results"
)

// compareHelp is the text of `evbench compare --help` before the flags.
const compareHelp = `Usage: evbench compare [--threshold SPEC] [--alpha A] [--allow-few] OLD NEW

Compares two results files (CSV or JSON Lines; - for standard input) as
benchstat does: rows are grouped by scenario and transport, the repeats of
each forming a sample, and for lat_p50, lat_p99, lat_p999, throughput and
loss (loss_ratio) it prints the old and new medians with their 95%
confidence interval, the change, the Mann-Whitney U test's p-value and a
verdict. A change is a regression when it is in the worse direction, beyond
the metric's threshold and significant at alpha after Holm's correction
over every comparison of the report (so that alpha bounds the chance of any
false alarm, not of each). Rows with an error are skipped and counted; a
scenario or transport in one file only is reported as such, never as a
regression. Settings outside the key (duration, warm-up, drain, ack-every,
seed, send queue, slow-consumer policy) that differ between the files are
named in a note.

Thresholds (--threshold metric=value,...): relative for the latencies and
throughput, as a percentage; absolute for loss, as a ratio. The defaults are
lat_p50=10%,lat_p99=20%,lat_p999=30%,throughput=5%,loss=0.001.

With the U test, 5 repeats against 5 give at best p = 0.008: enough for
one transport's 5 metrics (0.05/5), too few for 4 transports' 20
(0.05/20); 8 against 8 give 0.00016. Such comparisons are marked "too few".

Exit status: 0 no regression; 1 a regression, a scenario or transport of
OLD missing from NEW or rows of NEW with an error (without --allow-missing),
nothing compared, or (without --allow-few) too few repeats to ever be
significant; 2 usage error or a file that is not a results file.

Flags:
`

// compareCmd is `evbench compare`; see compareHelp.
func compareCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	flags := pflag.NewFlagSet("evbench compare", pflag.ContinueOnError)
	threshold := flags.String("threshold", "", "per-metric thresholds, e.g. lat_p99=10%,throughput=5%,loss=0.001 (others keep their defaults)")
	alpha := flags.Float64("alpha", results.DefaultCompareAlpha, "significance level: a change is significant when p < alpha (0 < alpha < 1)")
	allowFew := flags.Bool("allow-few", false, "exit 0 even when some comparison has too few repeats to ever be significant")
	allowMissing := flags.Bool("allow-missing", false, "exit 0 even when a scenario or transport of OLD has no row without an error in NEW")
	flags.SortFlags = false
	flags.Usage = func() { fmt.Fprint(flags.Output(), compareHelp+flags.FlagUsagesWrapped(80)) }
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "evbench compare: "+format+"\nRun 'evbench compare --help' for usage.\n", a...)
		return exitUsage
	}
	if help, err := parseFlagsAndArgs(flags, args, stdout); help {
		return exitOK
	} else if err != nil {
		return usageErr("%v", err)
	}
	thresholds, err := results.ParseThresholds(*threshold)
	if err != nil {
		return usageErr("--threshold: %v", err)
	}
	if !(*alpha > 0 && *alpha < 1) || math.IsNaN(*alpha) {
		return usageErr("--alpha must be between 0 and 1 (exclusive), got %v", *alpha)
	}
	if flags.NArg() != 2 {
		return usageErr("want two files, OLD and NEW, got %d", flags.NArg())
	}
	if flags.Arg(0) == "-" && flags.Arg(1) == "-" {
		return usageErr("at most one of OLD and NEW can be standard input")
	}
	var sides [2][]results.Result
	for i, file := range flags.Args() {
		name, rows, err := readResultsFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "evbench compare: %s: %v\n", name, err)
			return exitUsage
		}
		sides[i] = rows
	}
	report := results.Compare(sides[0], sides[1], results.CompareOptions{Thresholds: thresholds, Alpha: *alpha})
	if len(report.Rows) == 0 {
		fmt.Fprintf(stderr, "evbench compare: nothing to compare: no rows without an error (%d old and %d new skipped)\n", report.SkippedOld, report.SkippedNew)
		return exitUsage
	}
	if err := results.WriteCompare(stdout, report); err != nil {
		fmt.Fprintf(stderr, "evbench compare: %v\n", err)
		return exitFailed
	}
	code := exitOK
	// A transport that stopped working, or a scenario that changed, would
	// otherwise pass unseen: a key of old without a usable row in new,
	// rows of new with an error, and nothing compared at all fail the gate.
	missing := report.Count(results.VerdictOnlyInOld)
	switch {
	case report.Comparisons() == 0:
		fmt.Fprintln(stderr, "evbench compare: nothing was compared: no scenario and transport has rows without an error in both files")
		code = exitFailed
	case missing > 0 || report.SkippedNew > 0:
		msg := fmt.Sprintf("evbench compare: %s of OLD missing from NEW, %s of NEW with an error", plural(missing, "scenario/transport"), plural(report.SkippedNew, "row"))
		if *allowMissing {
			fmt.Fprintln(stderr, msg+"; allowed by --allow-missing")
		} else {
			fmt.Fprintln(stderr, msg+" (pass --allow-missing to accept that)")
			code = exitFailed
		}
	}
	if n := report.Regressions(); n > 0 {
		fmt.Fprintf(stderr, "evbench compare: %s\n", plural(n, "regression"))
		code = exitFailed
	}
	if n := report.TooFew(); n > 0 {
		msg := fmt.Sprintf("evbench compare: %s with too few repeats to ever be significant at alpha %v over %d comparisons (Holm's first level is %.2g); run more repeats", plural(n, "comparison"), report.Alpha, report.Comparisons(), report.Alpha/float64(report.Comparisons()))
		if *allowFew {
			fmt.Fprintln(stderr, msg+"; allowed by --allow-few")
		} else {
			fmt.Fprintln(stderr, msg+", or pass --allow-few to accept them")
			code = exitFailed
		}
	}
	return code
}
