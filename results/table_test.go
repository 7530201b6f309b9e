package results

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestTableDuration(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "-"},
		{1, "1ns"},
		{999, "999ns"},
		{-999, "-999ns"},
		{1000, "1.00µs"},
		{1234, "1.23µs"},
		{12345, "12.3µs"},
		{85300, "85.3µs"},
		{999499, "999µs"},
		{999500, "1.00ms"}, // rounds up into the next unit
		{9996000, "10.0ms"},
		{1234567, "1.23ms"},
		{412345678, "412ms"},
		{29*time.Second + 999*time.Millisecond, "30.0s"},
		{1000 * time.Second, "1000s"},
		{-1500 * time.Microsecond, "-1.50ms"},
	}
	for _, tt := range tests {
		if got := tableDuration(tt.d); got != tt.want {
			t.Errorf("tableDuration(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}

func TestTableCount(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0"},
		{99999, "99999"},
		{-99999, "-99999"},
		{100000, "100k"},
		{305000, "305k"},
		{999499, "999k"},
		{999500, "1.00M"}, // rounds up into the next prefix
		{1234567, "1.23M"},
		{29700000, "29.7M"},
		{123_456_789_012, "123G"},
		{999_999_999_999_999, "1.00P"},
		{math.MaxInt64, "9.22E"},
		{-2_500_000, "-2.50M"},
	}
	for _, tt := range tests {
		if got := tableCount(tt.n); got != tt.want {
			t.Errorf("tableCount(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestTableRateAndLoss(t *testing.T) {
	rates := []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{98983.6, "98984"},
		{99999.4, "99999"},
		{99999.6, "100k"},
		{-2.5, "-3"},
		{82266666666.67, "82.3G"},
		{math.NaN(), "-"},
		{math.Inf(1), "-"},
	}
	for _, tt := range rates {
		if got := tableRate(tt.v); got != tt.want {
			t.Errorf("tableRate(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	losses := []struct {
		ratio float64
		want  string
	}{
		{0, "0"},
		{1e-9, "<0.01"},
		{0.00005, "0.01"},
		{0.1234, "12.34"},
		{1, "100.00"},
		{math.NaN(), "-"},
	}
	for _, tt := range losses {
		if got := tableLossPercent(tt.ratio); got != tt.want {
			t.Errorf("tableLossPercent(%v) = %q, want %q", tt.ratio, got, tt.want)
		}
	}
}

// tableRows are sampleRows plus rows that stress the layout within
// WriteTable's stated limits: a transport name with control characters, a
// long error, the widest cells.
func tableRows() []Result {
	rows := sampleRows()
	rows = append(rows,
		Result{Transport: "tcp+tls", Repeat: 10, Error: strings.Repeat("a long error message ", 10)},
		Result{Transport: "ws\tbad\x1b[31m", Repeat: 999, Sent: 999_499_999_999_999, Expected: 999_499_999_999_999,
			Delivered: 99_999, Missed: 999_499_999_999_999, Duplicates: 99_999, Reordered: 99_999,
			LossRatio: 1, ThroughputEPS: 999_499_999_999_999, LatP50: 99_949 * time.Millisecond, LatP99: 9_994 * time.Second,
			LatP999: 999_499 * time.Nanosecond, LatMax: 9_999 * time.Second, AckRTTP50: 99_949 * time.Millisecond,
			Saturated: true, Error: "x"},
	)
	return rows
}

func TestWriteTableGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, tableRows()); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "table.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("WriteTable output differs from %s (go test -update rewrites it):\ngot\n%s\nwant\n%s", golden, buf.Bytes(), want)
	}
}

// TestWriteTableShape checks the table's promises on the stress rows: at most
// 120 columns, no trailing spaces, no control characters, one header line
// plus one line per row, and every error message in the notes below.
func TestWriteTableShape(t *testing.T) {
	rows := tableRows()
	var buf bytes.Buffer
	if err := WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	table, notes, _ := strings.Cut(buf.String(), "\n\n")
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != len(rows)+1 {
		t.Errorf("%d table lines, want %d", len(lines), len(rows)+1)
	}
	for i, l := range lines {
		if n := utf8.RuneCountInString(l); n > 120 {
			t.Errorf("line %d is %d columns wide, want at most 120:\n%s", i, n, l)
		}
		if strings.TrimRight(l, " ") != l {
			t.Errorf("line %d ends in spaces: %q", i, l)
		}
		if strings.ContainsAny(l, "\t\x1b\r") {
			t.Errorf("line %d holds a control character: %q", i, l)
		}
	}
	for i := range rows {
		if rows[i].Error == "" {
			continue
		}
		first, _, _ := strings.Cut(rows[i].Error, "\n")
		first = strings.TrimSpace(first)
		if !strings.Contains(notes, first) {
			t.Errorf("notes lack row %d's error %q:\n%s", i, first, notes)
		}
	}
	// Columns line up: every line puts the "missed" column's right edge at
	// the same place as the header.
	edge := strings.Index(lines[0], "missed") + len("missed")
	for i, l := range lines[1:] {
		if edge > len(l) || l[edge-1] == ' ' || (edge < len(l) && l[edge] != ' ') {
			t.Errorf("row %d: missed column not right-aligned at %d:\n%s\n%s", i, edge, lines[0], l)
		}
	}
}

func TestWriteTableWriteError(t *testing.T) {
	boom := errors.New("broken pipe")
	if err := WriteTable(failWriter{boom}, sampleRows()); !errors.Is(err, boom) {
		t.Errorf("WriteTable = %v, want an error wrapping %v", err, boom)
	}
}

// TestWriteTableExtremes: values beyond the stated limits (negative, the
// int64 extremes, NaN) still give one aligned line per row.
func TestWriteTableExtremes(t *testing.T) {
	rows := []Result{{Transport: "udp", Sent: math.MaxInt64, Expected: math.MinInt64, Missed: -5,
		LossRatio: math.NaN(), ThroughputEPS: math.Inf(-1), LatP50: math.MinInt64, LatP99: math.MaxInt64, LatMax: -1}}
	var buf bytes.Buffer
	if err := WriteTable(&buf, rows); err != nil {
		t.Fatal(err)
	}
	want := "transport rep  sent expected delivered missed dup reord loss% ev/s          p50         p99 p99.9  max ack.p50 sat error\n" +
		"udp         0 9.22E   -9.22E         0     -5   0     0     -    - -9223372037s 9223372037s     - -1ns       -\n"
	if buf.String() != want {
		t.Errorf("got\n%s\nwant\n%s", buf.String(), want)
	}
}
