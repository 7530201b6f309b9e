package results

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"
)

// tableHeader names the columns of WriteTable, in order.
var tableHeader = []string{
	"transport", "rep", "sent", "expected", "delivered", "missed", "dup", "reord",
	"loss%", "ev/s", "p50", "p99", "p99.9", "max", "ack.p50", "sat", "error",
}

// tablePadding is the number of spaces between columns. Numbers are
// right-aligned, so one space keeps them apart and the table narrow.
const tablePadding = 1

// WriteTable writes rows to w as a text table for a terminal: a header line,
// then one line per row, columns aligned with text/tabwriter, numbers
// right-aligned. A row fits in 120 columns while counts stay below 10^15 and
// latencies below 10,000 s.
//
// Columns: transport; rep (repeat); sent, expected, delivered, missed, dup
// (duplicates) and reord (reordered), exact below 100,000 and otherwise with
// three significant digits and an SI prefix (305k, 2.97M, 124G); loss%
// (loss_ratio as a percentage with two decimals, "<0.01" for a loss too small
// to show); ev/s (throughput, deliveries per second, shown like a count); the
// fan-out latency p50, p99, p99.9 and max, and ack.p50 (the ack round trip),
// each with its unit (whole ns, or three significant digits of µs, ms or s)
// and "-" when zero, which means not measured; sat, "yes" for a saturated row;
// error, a reference "[n]" to the row's error message, printed in full below
// the table so that the table stays narrow. Control characters in text are
// shown as spaces. The CSV has the exact values.
//
// The first error from writing to w is returned.
func WriteTable(w io.Writer, rows []Result) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, tablePadding, ' ', tabwriter.AlignRight)

	width := utf8.RuneCountInString(tableHeader[0])
	for i := range rows {
		width = max(width, utf8.RuneCountInString(clean(rows[i].Transport)))
	}
	cells := make([]string, len(tableHeader))
	writeLine := func() {
		cells[0] += strings.Repeat(" ", width-utf8.RuneCountInString(cells[0]))
		for _, c := range cells {
			tw.Write([]byte(c)) // a bytes.Buffer does not fail
			tw.Write([]byte{'\t'})
		}
		tw.Write([]byte{'\n'})
	}

	copy(cells, tableHeader)
	writeLine()
	var notes []string
	for i := range rows {
		r := &rows[i]
		ref := ""
		if r.Error != "" {
			notes = append(notes, fmt.Sprintf("%s repeat %d: %s", clean(r.Transport), r.Repeat, r.Error))
			ref = "[" + strconv.Itoa(len(notes)) + "]"
		}
		sat := ""
		if r.Saturated {
			sat = "yes"
		}
		copy(cells, []string{
			clean(r.Transport), strconv.Itoa(r.Repeat),
			tableCount(r.Sent), tableCount(r.Expected), tableCount(r.Delivered),
			tableCount(r.Missed), tableCount(r.Duplicates), tableCount(r.Reordered),
			tableLossPercent(r.LossRatio), tableRate(r.ThroughputEPS),
			tableDuration(r.LatP50), tableDuration(r.LatP99), tableDuration(r.LatP999),
			tableDuration(r.LatMax), tableDuration(r.AckRTTP50), sat, ref,
		})
		writeLine()
	}
	tw.Flush()

	// With AlignRight, tabwriter pads every cell on its left, the first one
	// too, and pads empty trailing cells: trim both ends of each line.
	var out bytes.Buffer
	pad := bytes.Repeat([]byte{' '}, tablePadding)
	for line := range bytes.Lines(buf.Bytes()) {
		out.Write(bytes.TrimRight(bytes.TrimPrefix(line, pad), " \n"))
		out.WriteByte('\n')
	}
	if len(notes) > 0 {
		out.WriteByte('\n')
		for i, n := range notes {
			fmt.Fprintf(&out, "[%d] %s\n", i+1, cleanLines(n))
		}
	}
	if _, err := w.Write(out.Bytes()); err != nil {
		return fmt.Errorf("results: write table: %w", err)
	}
	return nil
}

// clean replaces control characters (tabs, line breaks, escapes) by spaces so
// a cell cannot break the table or drive the terminal.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// cleanLines is clean for a message that may span lines: each further line is
// indented by four spaces under the first.
func cleanLines(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	lines := strings.Split(s, "\n")
	for i := range lines {
		lines[i] = strings.TrimRight(clean(lines[i]), " ")
	}
	return strings.Join(lines, "\n    ")
}

// siUnits scales counts of 100,000 and more.
var siUnits = []unit{{1e3, "k"}, {1e6, "M"}, {1e9, "G"}, {1e12, "T"}, {1e15, "P"}, {1e18, "E"}}

// durationUnits scales durations of 1µs and more, in nanoseconds.
var durationUnits = []unit{{1e3, "µs"}, {1e6, "ms"}, {1e9, "s"}}

type unit struct {
	scale  float64
	suffix string
}

// tableCount shows n exactly below 100,000 (in magnitude), otherwise with
// three significant digits and an SI prefix.
func tableCount(n int64) string {
	if n > -1e5 && n < 1e5 {
		return strconv.FormatInt(n, 10)
	}
	return scaled(float64(n), 3, siUnits)
}

// tableRate shows a rate like a count, rounded to a whole number; "-" when
// it is not a finite number.
func tableRate(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	if r := math.Round(v); math.Abs(r) < 1e5 {
		return strconv.FormatFloat(r, 'f', 0, 64)
	}
	return scaled(v, 3, siUnits)
}

// tableLossPercent shows a loss ratio as a percentage with two decimals, "0"
// for no loss, "<0.01" for a loss that would round to zero, "-" for NaN.
func tableLossPercent(ratio float64) string {
	p := ratio * 100
	switch {
	case math.IsNaN(p):
		return "-"
	case p == 0:
		return "0"
	case p > 0 && p < 0.005:
		return "<0.01"
	}
	return strconv.FormatFloat(p, 'f', 2, 64)
}

// tableDuration shows d in whole nanoseconds below 1µs, otherwise with three
// significant digits in µs, ms or s; "-" for zero, which means not measured.
func tableDuration(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	if d > -time.Microsecond && d < time.Microsecond {
		return strconv.FormatInt(int64(d), 10) + "ns"
	}
	return scaled(float64(d), 3, durationUnits)
}

// scaled formats v in the largest of units that keeps the number at least 1
// (or the first unit), with sig significant digits and no exponent, moving
// to the next unit when rounding reaches 1000.
func scaled(v float64, sig int, units []unit) string {
	sign := ""
	if v < 0 {
		sign, v = "-", -v
	}
	i := 0
	for i+1 < len(units) && v >= units[i+1].scale {
		i++
	}
	for {
		x := v / units[i].scale
		prec := sig - 1
		for t := 10.0; x >= t-0.5*math.Pow(10, -float64(prec)) && prec > 0; t *= 10 {
			prec--
		}
		s := strconv.FormatFloat(x, 'f', prec, 64)
		if f, _ := strconv.ParseFloat(s, 64); f >= 1000 && i+1 < len(units) && units[i+1].scale == 1000*units[i].scale {
			i++
			continue
		}
		return sign + s + units[i].suffix
	}
}
