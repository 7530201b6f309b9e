package results

import (
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// GoBenchPkg is the value of the pkg configuration line of the Go benchmark
// format.
const GoBenchPkg = "github.com/evbench/evbench"

// goBenchUnit is one measurement of a Go benchmark format line.
type goBenchUnit struct {
	unit   string
	better string // "lower" or "higher"
	// value appends the row's value; ok is false to leave the measurement
	// out of the line (not measured, or not a finite number).
	value func(b []byte, r *Result) (_ []byte, ok bool)
}

// goBenchUnits lists the measurements of a line, in line order. Units ending
// in -ns are nanoseconds (benchfmt tidies them to -sec).
var goBenchUnits = []goBenchUnit{
	nsUnit("p50-ns", func(r *Result) time.Duration { return r.LatP50 }),
	nsUnit("p90-ns", func(r *Result) time.Duration { return r.LatP90 }),
	nsUnit("p99-ns", func(r *Result) time.Duration { return r.LatP99 }),
	nsUnit("p999-ns", func(r *Result) time.Duration { return r.LatP999 }),
	nsUnit("max-ns", func(r *Result) time.Duration { return r.LatMax }),
	floatUnit("deliveries/s", "higher", func(r *Result) float64 { return r.ThroughputEPS }),
	floatUnit("goodput-B/s", "higher", func(r *Result) float64 { return r.GoodputBps }),
	floatUnit("loss-ratio", "lower", func(r *Result) float64 { return r.LossRatio }),
	{unit: "missed", better: "lower", value: func(b []byte, r *Result) ([]byte, bool) {
		return strconv.AppendInt(b, r.Missed, 10), true
	}},
	nsUnit("ack-rtt-p50-ns", func(r *Result) time.Duration { return r.AckRTTP50 }),
	nsUnit("connect-p50-ns", func(r *Result) time.Duration { return r.ConnectP50 }),
}

// nsUnit is a duration in integer nanoseconds. A duration of 0 is left out:
// it means nothing was measured (no ACK asked for, nothing delivered, a v1
// row), and benchfmt would read a 0 under the untidied unit ("p50-ns" rather
// than "p50-sec"), apart from the other rows' values.
func nsUnit(unit string, f func(*Result) time.Duration) goBenchUnit {
	return goBenchUnit{unit: unit, better: "lower", value: func(b []byte, r *Result) ([]byte, bool) {
		d := f(r)
		if d == 0 {
			return b, false
		}
		return strconv.AppendInt(b, int64(d), 10), true
	}}
}

func floatUnit(unit, better string, f func(*Result) float64) goBenchUnit {
	return goBenchUnit{unit: unit, better: better, value: func(b []byte, r *Result) ([]byte, bool) {
		v := f(r)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return b, false
		}
		return strconv.AppendFloat(b, v, 'f', -1, 64), true
	}}
}

// GoBenchUnits returns the units of the Go benchmark format's measurements,
// in line order. The caller may modify the slice.
func GoBenchUnits() []string {
	units := make([]string, len(goBenchUnits))
	for i, u := range goBenchUnits {
		units[i] = u.unit
	}
	return units
}

// GoBenchName returns the benchmark name WriteGoBench gives r, from
// "Benchmark" up to the iteration count, e.g.
// "BenchmarkFanout/transport=tcp+tls/clients=50/rooms=5/rooms-per-client=1/publishers=5/rate=50/payload=128-8".
// It holds the scenario's keys only, never the repeat, so that benchstat
// groups the repeats of a scenario; see the package documentation.
func GoBenchName(r *Result) string {
	b := []byte("BenchmarkFanout")
	key := func(k, v string) {
		b = append(b, '/')
		b = append(b, k...)
		b = append(b, '=')
		b = appendNameValue(b, v)
	}
	key("transport", r.Transport)
	if r.Server != "" && r.Server != "in-process" {
		key("server", r.Server)
	}
	key("clients", strconv.Itoa(r.Clients))
	key("rooms", strconv.Itoa(r.Rooms))
	key("rooms-per-client", strconv.Itoa(r.RoomsPerClient))
	key("publishers", strconv.Itoa(r.Publishers))
	key("rate", formatFloat(r.RateEPS))
	// payload is last: an integer, so the name never ends in something
	// benchfmt would take for a -GOMAXPROCS suffix.
	key("payload", strconv.Itoa(r.PayloadBytes))
	if r.GOMAXPROCS > 0 {
		b = append(b, '-')
		b = strconv.AppendInt(b, int64(r.GOMAXPROCS), 10)
	}
	return string(b)
}

// appendNameValue appends v for a benchmark name: every byte that is not
// printable ASCII, and '%' and '/', as %XX (uppercase hex), so the name has
// no space and its '/' only separate keys. Registry names such as tcp+tls
// and quic-dgram, and host:port addresses, are kept as they are.
func appendNameValue(b []byte, v string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '/' {
			b = append(b, '%', hex[c>>4], hex[c&15])
			continue
		}
		b = append(b, c)
	}
	return b
}

// goBenchConfig returns the configuration lines' keys and values for r, in
// line order. An empty value means the row does not record it.
func goBenchConfig(r *Result) [][2]string {
	goos, goarch, _ := strings.Cut(r.Platform, "/")
	return [][2]string{
		{"goos", goos},
		{"goarch", goarch},
		{"pkg", GoBenchPkg},
		{"evbench-version", r.Version},
		{"vcs-revision", r.Revision},
		{"go-version", r.GoVersion},
		{"kernel", r.Kernel},
	}
}

// configValue makes v fit on a configuration line: control characters (a
// line break among them) become spaces, and surrounding space is trimmed.
func configValue(v string) string {
	v = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, v)
	return strings.TrimSpace(v)
}

// GoBenchWriter writes Results in the Go benchmark format (as
// golang.org/x/perf/benchfmt reads it and benchstat compares it): one line
// per row, preceded by Unit metadata lines and by configuration lines, which
// it repeats whenever a row's environment differs from the previous row's.
// See the package documentation. A row whose Error is not empty is skipped:
// its numbers do not measure the scenario. Each row reaches the underlying
// writer in one Write call. It is not safe for concurrent use.
type GoBenchWriter struct {
	w       io.Writer
	header  bool
	config  map[string]string // configuration in effect
	skipped int
	buf     []byte
}

// NewGoBenchWriter returns a GoBenchWriter that writes to w.
func NewGoBenchWriter(w io.Writer) *GoBenchWriter {
	return &GoBenchWriter{w: w, config: map[string]string{}}
}

// Write writes r as one benchmark line, after any configuration lines its
// environment calls for and, before the first row, the Unit lines. A row
// whose Error is not empty writes nothing and counts in Skipped; the caller
// reports it.
func (gw *GoBenchWriter) Write(r *Result) error {
	if r == nil {
		return errors.New("results: GoBenchWriter.Write of a nil *Result")
	}
	if r.Error != "" {
		gw.skipped++
		return nil
	}
	b := gw.appendConfig(gw.buf[:0], r)
	b = gw.appendHeader(b)
	b = append(b, GoBenchName(r)...)
	b = append(b, " 1"...)
	for _, u := range goBenchUnits {
		n := len(b)
		b = append(b, ' ')
		var ok bool
		if b, ok = u.value(b, r); !ok {
			b = b[:n]
			continue
		}
		b = append(b, ' ')
		b = append(b, u.unit...)
	}
	b = append(b, '\n')
	gw.buf = b
	return gw.write(b)
}

// Flush writes the Unit lines and the pkg line if no row has been written,
// so that output with no rows is still a valid, if empty, benchmark file.
// Rows are not buffered: each is written by its Write.
func (gw *GoBenchWriter) Flush() error {
	if gw.header {
		return nil
	}
	b := gw.appendConfig(nil, &Result{})
	return gw.write(gw.appendHeader(b))
}

// Skipped returns how many rows Write skipped because their Error was not
// empty.
func (gw *GoBenchWriter) Skipped() int { return gw.skipped }

func (gw *GoBenchWriter) write(b []byte) error {
	if _, err := gw.w.Write(b); err != nil {
		return fmt.Errorf("results: write Go benchmark format: %w", err)
	}
	return nil
}

// appendHeader appends the Unit lines, once.
func (gw *GoBenchWriter) appendHeader(b []byte) []byte {
	if gw.header {
		return b
	}
	gw.header = true
	for _, u := range goBenchUnits {
		b = fmt.Appendf(b, "Unit %s better=%s\n", u.unit, u.better)
	}
	return b
}

// appendConfig appends a configuration line for each key whose value for r
// differs from the one in effect; an empty line value ("key:") clears a key.
func (gw *GoBenchWriter) appendConfig(b []byte, r *Result) []byte {
	for _, kv := range goBenchConfig(r) {
		k, v := kv[0], configValue(kv[1])
		if gw.config[k] == v {
			continue
		}
		gw.config[k] = v
		b = append(b, k...)
		b = append(b, ':')
		if v != "" {
			b = append(b, ' ')
			b = append(b, v...)
		}
		b = append(b, '\n')
	}
	return b
}

// WriteGoBench writes rows in the Go benchmark format (see GoBenchWriter):
// the Unit lines, then each row's line with the configuration lines it needs.
// Rows whose Error is not empty are left out; the caller reports them. With
// no rows written it writes the Unit lines and the pkg line alone.
func WriteGoBench(w io.Writer, rows []Result) error {
	gw := NewGoBenchWriter(w)
	for i := range rows {
		if err := gw.Write(&rows[i]); err != nil {
			return err
		}
	}
	return gw.Flush()
}
