package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/perf/benchfmt"

	"github.com/evbench/evbench/results"
)

// TestFormats: one run with --count 2 in each --format, and `evbench
// report` converting the CSV file: JSON Lines read back to the same rows
// (each written as it completes), and gobench parses with x/perf's benchfmt
// as benchstat reads it, repeats under one name per transport and units
// with their better=lower/higher metadata.
func TestFormats(t *testing.T) {
	dir := t.TempDir()
	base := []string{"run", "--transports", "tcp,udp", "--count", "2", "--clients", "4", "--rooms", "2",
		"--rate", "20", "--duration", "200ms", "--warmup", "0", "-q"}
	csvFile := filepath.Join(dir, "out.csv")
	if code, _, stderr := runMain(context.Background(), append(base, "-o", csvFile)...); code != exitOK {
		t.Fatalf("run: exit %d\n%s", code, stderr)
	}
	rows := readRows(t, csvFile)

	// JSON Lines on stdout, one line per row.
	code, stdout, stderr := runMain(context.Background(), append(base, "--format", "json", "-o", "-")...)
	if code != exitOK {
		t.Fatalf("run --format json: exit %d\n%s", code, stderr)
	}
	if n := strings.Count(stdout, "\n"); n != 4 {
		t.Errorf("run --format json -o - wrote %d lines, want one per row (4):\n%s", n, stdout)
	}
	if got, err := results.ReadJSON(strings.NewReader(stdout)); err != nil || len(got) != 4 {
		t.Errorf("reading run's JSON Lines: %d rows, %v", len(got), err)
	}

	// report converts the saved CSV file; JSON round-trips it.
	code, stdout, stderr = runMain(context.Background(), "report", "--format", "json", csvFile)
	if code != exitOK {
		t.Fatalf("report --format json: exit %d\n%s", code, stderr)
	}
	back, err := results.ReadJSON(strings.NewReader(stdout))
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != len(rows) {
		t.Fatalf("report --format json: %d rows, want %d", len(back), len(rows))
	}
	for i := range rows {
		if back[i].Transport != rows[i].Transport || back[i].Repeat != rows[i].Repeat || back[i].Delivered != rows[i].Delivered || back[i].LatP99 != rows[i].LatP99 {
			t.Errorf("row %d: JSON %s/%d delivered %d p99 %v, CSV %s/%d delivered %d p99 %v", i,
				back[i].Transport, back[i].Repeat, back[i].Delivered, back[i].LatP99,
				rows[i].Transport, rows[i].Repeat, rows[i].Delivered, rows[i].LatP99)
		}
	}
	jsonFile := filepath.Join(dir, "out.jsonl")
	if err := os.WriteFile(jsonFile, []byte(stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runMain(context.Background(), "check", jsonFile); code != exitOK {
		t.Errorf("check of a JSON Lines file: exit %d\n%s%s", code, stdout, stderr)
	}

	code, stdout, stderr = runMain(context.Background(), "report", "--format", "gobench", csvFile)
	if code != exitOK {
		t.Fatalf("report --format gobench: exit %d\n%s", code, stderr)
	}
	r := benchfmt.NewReader(bytes.NewReader([]byte(stdout)), "report")
	names := map[string]int{}
	for r.Scan() {
		switch rec := r.Result().(type) {
		case *benchfmt.SyntaxError:
			t.Errorf("benchfmt: %v", rec)
		case *benchfmt.Result:
			names[string(rec.Name.Full())]++
			if _, ok := rec.Value("p99-sec"); !ok {
				t.Errorf("%s: no p99 value (units %v)", rec.Name.Full(), rec.Values)
			}
		}
	}
	if err := r.Err(); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if len(names) != 2 {
		t.Errorf("gobench names %v, want one per transport", names)
	}
	for name, n := range names {
		if n != 2 || !strings.HasPrefix(name, "Fanout/transport=") {
			t.Errorf("gobench %q: %d results, want the 2 repeats under one name", name, n)
		}
	}
	if !strings.Contains(stdout, "Unit p99-ns better=lower") || !strings.Contains(stdout, "Unit deliveries/s better=higher") {
		t.Errorf("gobench output lacks the unit metadata:\n%s", stdout)
	}
}

// TestReportErrors: bad input exits 2 with one line naming the problem.
func TestReportErrors(t *testing.T) {
	notResults := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(notResults, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"report"}, "no file given"},
		{[]string{"report", "--format", "xml", notResults}, `--format must be table, csv, json or gobench, got "xml"`},
		{[]string{"report", notResults}, "not a results CSV"},
		{[]string{"report", "/nonexistent/r.csv"}, "cannot read"},
		{[]string{"run", "--format", "xml"}, `--format must be one of csv, json, gobench, got "xml"`},
	} {
		code, _, stderr := runMain(context.Background(), tc.args...)
		if first, _, _ := strings.Cut(stderr, "\n"); code != exitUsage || !strings.Contains(first, tc.want) {
			t.Errorf("evbench %q: exit %d, first line %q; want %d and %q", tc.args, code, first, exitUsage, tc.want)
		}
	}
}
