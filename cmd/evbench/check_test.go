package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/evbench/evbench/results"
)

// checkRows are two rows that hold every rule of `evbench check`, with
// --reliable-zero-missed too: tcp missed nothing, udp lost a little.
func checkRows() []results.Result {
	row := func(transport string, missed int64) results.Result {
		const expected = 20000
		return results.Result{
			Schema: results.SchemaVersion, RunID: "20250102T030405Z-0a0b0c0d",
			StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Transport: transport,
			Clients: 50, Rooms: 5, Publishers: 50, RateEPS: 50, PayloadBytes: 128, Duration: 5 * time.Second,
			Sent: 2500, Expected: expected, Delivered: expected - missed, Missed: missed,
			LossRatio: float64(missed) / expected, ThroughputEPS: 4000, GoodputBps: 4000 * 128,
			LatP50: 80 * time.Microsecond, LatP90: 110 * time.Microsecond, LatP99: 300 * time.Microsecond,
			LatP999: time.Millisecond, LatMax: 4 * time.Millisecond, LatMean: 90 * time.Microsecond,
		}
	}
	return []results.Result{row("tcp", 0), row("udp", 7)}
}

// writeRows writes rows, changed by edit, to a results file in a new
// temporary directory and returns its path.
func writeRows(t *testing.T, edit func(rows []results.Result)) string {
	t.Helper()
	rows := checkRows()
	if edit != nil {
		edit(rows)
	}
	path := filepath.Join(t.TempDir(), "results.csv")
	if err := results.WriteCSVFile(path, rows); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeText writes text to a file in a new temporary directory.
func writeText(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// goodCSV is the text of a results file of checkRows.
func goodCSV(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(writeRows(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCheckGoodFile(t *testing.T) {
	path := writeRows(t, nil)
	for _, args := range [][]string{
		{"check", path},
		{"check", "--reliable-zero-missed", path},
		{"check", path, "--reliable-zero-missed"},
	} {
		code, stdout, stderr := runMain(context.Background(), args...)
		if code != exitOK || stdout != path+": 2 rows hold\n" || stderr != "" {
			t.Errorf("evbench %q: exit %d, stdout %q, stderr %q; want 0, %q and nothing on stderr",
				args, code, stdout, stderr, path+": 2 rows hold\n")
		}
	}
	one := writeRows(t, nil)
	if err := results.WriteCSVFile(one, checkRows()[:1]); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ := runMain(context.Background(), "check", one)
	if code != exitOK || stdout != one+": 1 row holds\n" {
		t.Errorf("one row: exit %d, stdout %q; want 0 and %q", code, stdout, one+": 1 row holds\n")
	}
}

// TestCheckBrokenFiles: a file that breaks a rule exits 1 with one line per
// broken row and rule, naming the file, the row, the transport and the rule.
func TestCheckBrokenFiles(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(rows []results.Result)
		flags []string
		want  []string // lines on stdout, after "FILE: "
	}{
		{"accounting", func(rows []results.Result) {
			rows[1].Delivered, rows[1].Missed, rows[1].Expected, rows[1].LossRatio = 10, 1, 12, 1.0/12
		},
			nil, []string{"row 2 (udp): accounting: delivered 10 + missed 1 != expected 12"}},
		{"nothing expected", func(rows []results.Result) { rows[0] = results.Result{Transport: "tcp"} },
			nil, []string{"row 1 (tcp): expected: expected is 0, want > 0 (or an error saying why)"}},
		{"loss ratio", func(rows []results.Result) { rows[1].LossRatio = 1.5 },
			nil, []string{"row 2 (udp): loss-ratio: loss_ratio 1.5 is not between 0 and 1"}},
		{"latency", func(rows []results.Result) { rows[0].LatMax = 500 * time.Microsecond },
			nil, []string{"row 1 (tcp): latency: lat_max_us 500.000 < lat_p999_us 1000.000: the percentiles decrease"}},
		{"counters", func(rows []results.Result) { rows[0].AckTimeouts = -1 },
			nil, []string{"row 1 (tcp): counters: ack_timeouts -1 is negative"}},
		{"saturated", func(rows []results.Result) { rows[1].NotSent = 3 },
			nil, []string{"row 2 (udp): saturated: not_sent 3 but saturated is false"}},
		{"reliable", func(rows []results.Result) {
			rows[0].Delivered, rows[0].Missed, rows[0].LossRatio = rows[0].Expected-2, 2, 2.0/float64(rows[0].Expected)
		}, []string{"--reliable-zero-missed"}, []string{"row 1 (tcp): reliable: tcp is reliable but missed 2 of 20000 expected deliveries"}},
		{"two rules, two rows", func(rows []results.Result) {
			rows[0].Missed = 1
			rows[1].NotSent = 3
		}, nil, []string{
			"row 1 (tcp): accounting: delivered 20000 + missed 1 != expected 20000",
			"row 1 (tcp): loss-ratio: loss_ratio 0 != missed 1 / expected 20000 = 0.00005",
			"row 2 (udp): saturated: not_sent 3 but saturated is false",
		}},
		{"no rows", func(rows []results.Result) {}, nil, []string{"no-rows: there are no rows, so nothing was measured"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeRows(t, tt.edit)
			if tt.name == "no rows" {
				if err := results.WriteCSVFile(path, nil); err != nil {
					t.Fatal(err)
				}
			}
			code, stdout, stderr := runMain(context.Background(), append(append([]string{"check"}, tt.flags...), path)...)
			var want strings.Builder
			for _, l := range tt.want {
				want.WriteString(path + ": " + l + "\n")
			}
			if code != exitFailed || stdout != want.String() || stderr != "" {
				t.Errorf("exit %d, stdout\n%s\nstderr %q; want exit 1, stdout\n%s\nand nothing on stderr", code, stdout, stderr, want.String())
			}
		})
	}
	// A missed delivery of a reliable transport is broken only with the flag.
	path := writeRows(t, func(rows []results.Result) {
		rows[0].Delivered, rows[0].Missed, rows[0].LossRatio = rows[0].Expected-2, 2, 2.0/float64(rows[0].Expected)
	})
	if code, stdout, _ := runMain(context.Background(), "check", path); code != exitOK {
		t.Errorf("tcp missed 2, without --reliable-zero-missed: exit %d, stdout %q; want 0", code, stdout)
	}
}

// TestCheckSeveralFiles: every file is reported, and the exit status is the
// worst of them.
func TestCheckSeveralFiles(t *testing.T) {
	good := writeRows(t, nil)
	bad := writeRows(t, func(rows []results.Result) { rows[1].NotSent = 3 })
	missing := filepath.Join(t.TempDir(), "missing.csv")

	code, stdout, stderr := runMain(context.Background(), "check", good, bad)
	want := good + ": 2 rows hold\n" + bad + ": row 2 (udp): saturated: not_sent 3 but saturated is false\n"
	if code != exitFailed || stdout != want || stderr != "" {
		t.Errorf("good and bad: exit %d, stdout %q, stderr %q; want 1 and %q", code, stdout, stderr, want)
	}

	code, stdout, stderr = runMain(context.Background(), "check", bad, missing, good)
	want = bad + ": row 2 (udp): saturated: not_sent 3 but saturated is false\n" + good + ": 2 rows hold\n"
	if code != exitUsage || stdout != want || stderr != "evbench check: "+missing+": cannot read: no such file or directory\n" {
		t.Errorf("bad, missing and good: exit %d, stdout %q, stderr %q; want 2, %q and one line for %s", code, stdout, stderr, want, missing)
	}
}

// TestCheckUsageErrors: no file, a bad flag, a file that cannot be read or
// is not a results CSV: exit 2 with one line on stderr naming what is wrong.
func TestCheckUsageErrors(t *testing.T) {
	good := goodCSV(t)
	lines := strings.SplitAfter(good, "\n")
	header := strings.Count(lines[0], ",") + 1
	// shortRow drops the last field of line 3, the second row.
	shortRow := lines[0] + lines[1] + lines[2][:strings.LastIndex(lines[2], ",")] + "\n"
	badValue := lines[0] + strings.Replace(lines[1], ",tcp,", ",tcp,x", 1) // clients = "x50"
	dir := t.TempDir()

	tests := []struct {
		name string
		args []string // after "check"; FILE is replaced by the file of text
		text string
		want []string // in the line on stderr
	}{
		{"no file", nil, "", []string{"evbench check: no file given"}},
		{"unknown flag", []string{"--bogus", "FILE"}, good, []string{"unknown flag: --bogus"}},
		{"missing file", []string{filepath.Join(dir, "missing.csv")}, "", []string{"missing.csv: cannot read: no such file or directory"}},
		{"directory", []string{dir}, "", []string{dir + ": cannot read: is a directory"}},
		{"empty file", []string{"FILE"}, "", []string{"FILE: not a results CSV: empty CSV: no header"}},
		{"not a CSV of results", []string{"FILE"}, "hello, world\n", []string{"FILE: not a results CSV: line 1: missing column schema"}},
		{"short row", []string{"FILE"}, shortRow, []string{"FILE: not a results CSV: line 3 has " +
			strconv.Itoa(header-1) + " fields, the header " + strconv.Itoa(header)}},
		{"bad value", []string{"FILE"}, badValue, []string{"FILE: not a results CSV: line 2, column clients: bad value \"x50\""}},
		{"bad quoting", []string{"FILE"}, lines[0] + "\"1,2\n", []string{"FILE: not a results CSV: ", "line 2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeText(t, "results.csv", tt.text)
			args := []string{"check"}
			for _, a := range tt.args {
				args = append(args, strings.ReplaceAll(a, "FILE", file))
			}
			code, stdout, stderr := runMain(context.Background(), args...)
			first, _, _ := strings.Cut(stderr, "\n")
			if code != exitUsage || stdout != "" {
				t.Errorf("evbench %q: exit %d, stdout %q; want 2 and nothing on stdout", args, code, stdout)
			}
			for _, w := range tt.want {
				if w = strings.ReplaceAll(w, "FILE", file); !strings.Contains(first, w) {
					t.Errorf("evbench %q: first line of stderr %q does not contain %q", args, first, w)
				}
			}
			if n := strings.Count(stderr, "\n"); n > 2 {
				t.Errorf("evbench %q: stderr has %d lines, want the reason and at most a hint:\n%s", args, n, stderr)
			}
		})
	}
}

func TestCheckStdin(t *testing.T) {
	old := checkStdin
	defer func() { checkStdin = old }()
	checkStdin = strings.NewReader(goodCSV(t))
	code, stdout, stderr := runMain(context.Background(), "check", "-")
	if code != exitOK || stdout != "stdin: 2 rows hold\n" || stderr != "" {
		t.Errorf("check -: exit %d, stdout %q, stderr %q; want 0 and \"stdin: 2 rows hold\"", code, stdout, stderr)
	}
}

// TestCheckHelp: --help exits 0, names every rule and the flag, and fits in
// 80 columns.
func TestCheckHelp(t *testing.T) {
	for _, args := range [][]string{{"check", "--help"}, {"check", "-h"}} {
		code, stdout, stderr := runMain(context.Background(), args...)
		if code != exitOK || stderr != "" {
			t.Errorf("evbench %q: exit %d, stderr %q; want 0 and nothing on stderr", args, code, stderr)
		}
		for _, w := range []string{"Usage: evbench check", "--reliable-zero-missed", "no-rows", "expected", "accounting",
			"loss-ratio", "latency", "counters", "saturated", "reliable", "standard input", "Exit status"} {
			if !strings.Contains(stdout, w) {
				t.Errorf("evbench %q: help lacks %q:\n%s", args, w, stdout)
			}
		}
		for line := range strings.Lines(stdout) {
			if n := len([]rune(strings.TrimSuffix(line, "\n"))); n > 80 {
				t.Errorf("evbench %q: help line is %d columns wide, want at most 80:\n%s", args, n, line)
			}
		}
	}
}

// TestCheckBinary runs the real process: its exit status and standard input.
func TestCheckBinary(t *testing.T) {
	good := writeRows(t, nil)
	bad := writeRows(t, func(rows []results.Result) { rows[1].NotSent = 3 })
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"check", good}, exitOK},
		{[]string{"check", bad}, exitFailed},
		{[]string{"check"}, exitUsage},
	} {
		if code, stdout, stderr := runBinary(t, 10*time.Second, nil, tt.args...); code != tt.code {
			t.Errorf("evbench %q: exit %d, want %d; stdout %q, stderr %q", tt.args, code, tt.code, stdout, stderr)
		}
	}
	data, err := os.ReadFile(bad)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "check", "-")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if cmd.ProcessState == nil {
		t.Fatalf("evbench check -: %v", err)
	}
	if want := "stdin: row 2 (udp): saturated: not_sent 3 but saturated is false\n"; cmd.ProcessState.ExitCode() != exitFailed || string(out) != want {
		t.Errorf("evbench check - < bad: %v, stdout %q; want exit 1 and %q", err, out, want)
	}
}
