package main

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/evbench/evbench/results"
)

// Formats of results files and streams (--format): CSV (RFC 4180, the
// default), JSON Lines (one object per row, keys the CSV column names), and
// the Go benchmark format that benchstat reads (rows with an error are left
// out of it).
var formats = []string{"csv", "json", "gobench"}

// checkFormat reports a --format value that is not one of formats.
func checkFormat(format string) error {
	if !slices.Contains(formats, format) {
		return fmt.Errorf("--format must be one of %s, got %q", strings.Join(formats, ", "), format)
	}
	return nil
}

// encodeRows writes rows to w in format, as a whole file.
func encodeRows(w io.Writer, format string, rows []results.Result) error {
	switch format {
	case "json":
		jw := results.NewJSONWriter(w)
		for i := range rows {
			if err := jw.Write(&rows[i]); err != nil {
				return err
			}
		}
		return nil
	case "gobench":
		return results.WriteGoBench(w, rows)
	}
	cw := results.NewCSVWriter(w)
	for i := range rows {
		if err := cw.Write(&rows[i]); err != nil {
			return err
		}
	}
	return cw.Flush()
}

// rowStream writes one row at a time to w in format, each as soon as it is
// given, so that a reader of a pipe sees every finished row.
func rowStream(w io.Writer, format string) func(*results.Result) error {
	switch format {
	case "json":
		return results.NewJSONWriter(w).Write
	case "gobench":
		return results.NewGoBenchWriter(w).Write
	}
	cw := results.NewCSVWriter(w)
	return func(r *results.Result) error {
		if err := cw.Write(r); err != nil {
			return err
		}
		return cw.Flush()
	}
}

// errorRows counts the rows with an error, which the gobench format leaves
// out.
func errorRows(rows []results.Result) int {
	n := 0
	for _, r := range rows {
		if r.Error != "" {
			n++
		}
	}
	return n
}
