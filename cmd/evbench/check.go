package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
)

// checkStdin is what `evbench check -` reads; tests replace it.
var checkStdin io.Reader = os.Stdin

// checkHelp is the text of `evbench check --help` before the flags. Its lines
// fit in 80 columns; the rules are those of results.Check.
const checkHelp = `Usage: evbench check [--reliable-zero-missed] FILE...

Checks that results CSV files, as 'evbench run -o' writes them, hold the
invariants of their columns. A FILE of - reads standard input. For each file
it prints "FILE: N rows hold", or one line per broken row and rule, such as
"FILE: row 3 (udp): accounting: delivered 10 + missed 1 != expected 12",
where row 1 is the first row after the header.

Rules:
  no-rows     the file has at least one row, not only a header
  expected    expected > 0, unless the row's error says why it failed
  accounting  delivered + missed = expected
  loss-ratio  0 <= loss_ratio <= 1, and loss_ratio = missed / expected
  latency     lat_p50_us <= lat_p90_us <= lat_p99_us <= lat_p999_us <=
              lat_max_us, all positive when anything was delivered
  counters    no count (sent, expected, delivered, missed, duplicates, ...)
              is negative
  saturated   saturated is true when not_sent > 0
  reliable    only with --reliable-zero-missed: a reliable transport missed
              nothing, unless the row's error says why it failed; deliveries
              the server's slow-consumer policy dropped count as missed

Exit status: 0 every file holds, 1 a row breaks a rule, 2 usage error (no
file, a bad flag, or a file that cannot be read or is not a results CSV).

Flags:
`

// checkOptions are the flags of `evbench check`.
type checkOptions struct {
	reliableZeroMissed bool
}

func checkFlags(o *checkOptions) *pflag.FlagSet {
	flags := pflag.NewFlagSet("evbench check", pflag.ContinueOnError)
	flags.BoolVar(&o.reliableZeroMissed, "reliable-zero-missed", false,
		"also check that the reliable transports ("+strings.Join(reliableNames(), ", ")+") missed nothing")
	flags.SortFlags = false
	flags.Usage = func() {
		fmt.Fprint(flags.Output(), checkHelp+flags.FlagUsagesWrapped(80))
	}
	return flags
}

// reliableTransport is results.CheckOptions.Reliable from the transport
// registry. A name the registry does not know is not reliable.
func reliableTransport(name string) bool {
	tr, err := transports.Lookup(name)
	return err == nil && tr.Caps().Reliable
}

// reliableNames lists the registered reliable transports.
func reliableNames() []string {
	var names []string
	for _, name := range transports.Names() {
		if reliableTransport(name) {
			names = append(names, name)
		}
	}
	return names
}

// checkCmd is `evbench check`; see checkHelp.
func checkCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	var o checkOptions
	flags := checkFlags(&o)
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "evbench check: "+format+"\nRun 'evbench check --help' for usage.\n", a...)
		return exitUsage
	}
	if help, err := parseFlagsAndArgs(flags, args, stdout); help {
		return exitOK
	} else if err != nil {
		return usageErr("%v", err)
	}
	files := flags.Args()
	if len(files) == 0 {
		return usageErr("no file given")
	}
	var opts results.CheckOptions
	if o.reliableZeroMissed {
		opts.Reliable = reliableTransport
	}

	code := exitOK
	for _, file := range files {
		name, rows, err := readResultsFile(file)
		if err != nil {
			fmt.Fprintf(stderr, "evbench check: %s: %v\n", name, err)
			code = exitUsage
			continue
		}
		vs := results.Check(rows, opts)
		for _, v := range vs {
			fmt.Fprintf(stdout, "%s: %s\n", name, v)
		}
		switch {
		case len(vs) > 0:
			code = max(code, exitFailed)
		case len(rows) == 1:
			fmt.Fprintf(stdout, "%s: 1 row holds\n", name)
		default:
			fmt.Fprintf(stdout, "%s: %d rows hold\n", name, len(rows))
		}
	}
	return code
}

// readResultsFile reads the results file at path, CSV or JSON Lines (a
// file whose first character is '{'), or standard input for "-".
// It returns the name to report the file by and an error that says, on one
// line, what is wrong: the file cannot be read, or it is not a results CSV
// (naming the line).
func readResultsFile(path string) (name string, rows []results.Result, err error) {
	name = path
	var data []byte
	if path == "-" {
		name = "stdin"
		data, err = io.ReadAll(checkStdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return name, nil, fmt.Errorf("cannot read: %w", err)
	}
	if trimmed := bytes.TrimLeft(data, "\ufeff \t\r\n"); len(trimmed) > 0 && trimmed[0] == '{' {
		// JSON Lines (--format json).
		if rows, err = results.ReadJSON(bytes.NewReader(data)); err != nil {
			return name, nil, fmt.Errorf("not a results JSON Lines file: %s", strings.TrimPrefix(err.Error(), "results: "))
		}
		return name, rows, nil
	}
	rows, err = results.ReadCSV(bytes.NewReader(data))
	if err != nil {
		return name, nil, errors.New(describeReadError(data, err))
	}
	return name, rows, nil
}

// describeReadError says what results.ReadCSV found wrong with data, without
// the package prefixes of its errors, and for a record whose field count
// differs from the header's, both counts.
func describeReadError(data []byte, err error) string {
	var pe *csv.ParseError
	if errors.As(err, &pe) && errors.Is(pe.Err, csv.ErrFieldCount) {
		if n, header, ok := fieldCounts(data, pe.StartLine); ok {
			return fmt.Sprintf("not a results CSV: line %d has %d fields, the header %d", pe.StartLine, n, header)
		}
		return fmt.Sprintf("not a results CSV: line %d: %v", pe.StartLine, pe.Err)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "results: ")
	msg = strings.TrimPrefix(msg, "read CSV: ")
	return "not a results CSV: " + msg
}

// fieldCounts returns the number of fields of the record that starts at line
// of data, and of the header.
func fieldCounts(data []byte, line int) (n, header int, ok bool) {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.FieldsPerRecord = -1
	for first := true; ; first = false {
		rec, err := cr.Read()
		if err != nil {
			return 0, 0, false
		}
		if first {
			header = len(rec)
			continue
		}
		if l, _ := cr.FieldPos(0); l == line {
			return len(rec), header, true
		}
	}
}
