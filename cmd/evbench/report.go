package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"

	"github.com/evbench/evbench/results"
)

// reportHelp is the text of `evbench report --help` before the flags.
const reportHelp = `Usage: evbench report [--format table|csv|json|gobench] FILE...

Reads results files (CSV or JSON Lines, as evbench run writes them; - for
standard input) and writes their rows, in the order given, to stdout: as the
text table (the default), CSV, JSON Lines, or the Go benchmark format, which
benchstat compares (benchstat old.txt new.txt; rows with an error are left
out of it and counted on stderr).

Exit status: 0 ok, 2 usage error or a file that is not a results file.

Flags:
`

// reportCmd is `evbench report`; see reportHelp.
func reportCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	flags := pflag.NewFlagSet("evbench report", pflag.ContinueOnError)
	format := flags.String("format", "table", "output: table, csv, json (JSON Lines) or gobench (the Go benchmark format)")
	flags.SortFlags = false
	flags.Usage = func() { fmt.Fprint(flags.Output(), reportHelp+flags.FlagUsagesWrapped(80)) }
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "evbench report: "+format+"\nRun 'evbench report --help' for usage.\n", a...)
		return exitUsage
	}
	if help, err := parseFlagsAndArgs(flags, args, stdout); help {
		return exitOK
	} else if err != nil {
		return usageErr("%v", err)
	}
	if *format != "table" {
		if err := checkFormat(*format); err != nil {
			return usageErr("--format must be table, csv, json or gobench, got %q", *format)
		}
	}
	if flags.NArg() == 0 {
		return usageErr("no file given")
	}
	var rows []results.Result
	for _, file := range flags.Args() {
		name, rs, err := readResultsFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "evbench report: %s: %v\n", name, err)
			return exitUsage
		}
		rows = append(rows, rs...)
	}
	var err error
	if *format == "table" {
		err = results.WriteTable(stdout, rows)
	} else {
		err = encodeRows(stdout, *format, rows)
	}
	if err != nil {
		fmt.Fprintf(stderr, "evbench report: %v\n", err)
		return exitFailed
	}
	if n := errorRows(rows); n > 0 && *format == "gobench" {
		fmt.Fprintf(stderr, "evbench report: %s with an error left out of the gobench output\n", plural(n, "row"))
	}
	return exitOK
}
