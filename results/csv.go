package results

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// column is one CSV column: its header name and how a Result field is
// formatted into it and parsed from it.
type column struct {
	name   string
	format func(r *Result) string
	parse  func(r *Result, s string) error
	// v1 is true for the columns of schema v1; a file must have every one.
	v1 bool
	// kind is how the JSON Lines format writes the formatted value.
	kind jsonKind
}

// columns lists every CSV column in file order: schema v1's columns, then the
// appended ones. It is the single source of truth for the writer, the reader
// and Columns.
var columns = []column{
	intCol("schema", func(r *Result) *int { return &r.Schema }),
	strCol("run_id", func(r *Result) *string { return &r.RunID }),
	timeCol("started_at", func(r *Result) *time.Time { return &r.StartedAt }),
	strCol("transport", func(r *Result) *string { return &r.Transport }),
	intCol("clients", func(r *Result) *int { return &r.Clients }),
	intCol("rooms", func(r *Result) *int { return &r.Rooms }),
	intCol("publishers", func(r *Result) *int { return &r.Publishers }),
	floatCol("rate_eps", func(r *Result) *float64 { return &r.RateEPS }),
	intCol("payload_bytes", func(r *Result) *int { return &r.PayloadBytes }),
	secondsCol("duration_s", func(r *Result) *time.Duration { return &r.Duration }),
	intCol("repeat", func(r *Result) *int { return &r.Repeat }),
	int64Col("sent", func(r *Result) *int64 { return &r.Sent }),
	int64Col("expected", func(r *Result) *int64 { return &r.Expected }),
	int64Col("delivered", func(r *Result) *int64 { return &r.Delivered }),
	int64Col("missed", func(r *Result) *int64 { return &r.Missed }),
	int64Col("duplicates", func(r *Result) *int64 { return &r.Duplicates }),
	int64Col("reordered", func(r *Result) *int64 { return &r.Reordered }),
	floatCol("loss_ratio", func(r *Result) *float64 { return &r.LossRatio }),
	floatCol("throughput_eps", func(r *Result) *float64 { return &r.ThroughputEPS }),
	floatCol("goodput_Bps", func(r *Result) *float64 { return &r.GoodputBps }),
	microsCol("lat_p50_us", func(r *Result) *time.Duration { return &r.LatP50 }),
	microsCol("lat_p90_us", func(r *Result) *time.Duration { return &r.LatP90 }),
	microsCol("lat_p99_us", func(r *Result) *time.Duration { return &r.LatP99 }),
	microsCol("lat_p999_us", func(r *Result) *time.Duration { return &r.LatP999 }),
	microsCol("lat_max_us", func(r *Result) *time.Duration { return &r.LatMax }),
	microsCol("lat_mean_us", func(r *Result) *time.Duration { return &r.LatMean }),
	microsCol("lat_raw_p99_us", func(r *Result) *time.Duration { return &r.LatRawP99 }),
	microsCol("connect_p50_us", func(r *Result) *time.Duration { return &r.ConnectP50 }),
	microsCol("connect_p99_us", func(r *Result) *time.Duration { return &r.ConnectP99 }),
	microsCol("ack_rtt_p50_us", func(r *Result) *time.Duration { return &r.AckRTTP50 }),
	microsCol("ack_rtt_p99_us", func(r *Result) *time.Duration { return &r.AckRTTP99 }),
	microsCol("sched_lag_p99_us", func(r *Result) *time.Duration { return &r.SchedLagP99 }),
	boolCol("saturated", func(r *Result) *bool { return &r.Saturated }),
	// Appended after schema v1: keep adding at the end, never reorder.
	appended(int64Col("not_sent", func(r *Result) *int64 { return &r.NotSent })),
	appended(int64Col("lat_overflow", func(r *Result) *int64 { return &r.LatOverflow })),
	appended(int64Col("queue_drops", func(r *Result) *int64 { return &r.QueueDrops })),
	appended(int64Col("ack_timeouts", func(r *Result) *int64 { return &r.AckTimeouts })),
	appended(int64Col("send_errors", func(r *Result) *int64 { return &r.SendErrors })),
	appended(int64Col("disconnects", func(r *Result) *int64 { return &r.Disconnects })),
	appended(strCol("error", func(r *Result) *string { return &r.Error })),
	// Added in schema v2.
	appended(intCol("rooms_per_client", func(r *Result) *int { return &r.RoomsPerClient })),
	appended(intCol("ack_every", func(r *Result) *int { return &r.AckEvery })),
	appended(secondsCol("warmup_s", func(r *Result) *time.Duration { return &r.Warmup })),
	appended(secondsCol("drain_s", func(r *Result) *time.Duration { return &r.Drain })),
	appended(int64Col("seed", func(r *Result) *int64 { return &r.Seed })),
	appended(intCol("send_queue", func(r *Result) *int { return &r.SendQueue })),
	appended(strCol("slow_consumer", func(r *Result) *string { return &r.SlowConsumer })),
	appended(microsCol("max_sched_lag_us", func(r *Result) *time.Duration { return &r.MaxSchedLag })),
	appended(secondsCol("connect_timeout_s", func(r *Result) *time.Duration { return &r.ConnectTimeout })),
	appended(boolCol("reliable", func(r *Result) *bool { return &r.CapsReliable })),
	appended(boolCol("reliable_control", func(r *Result) *bool { return &r.CapsReliableControl })),
	appended(boolCol("ordered", func(r *Result) *bool { return &r.CapsOrdered })),
	appended(boolCol("encrypted", func(r *Result) *bool { return &r.CapsEncrypted })),
	appended(boolCol("datagram", func(r *Result) *bool { return &r.CapsDatagram })),
	appended(intCol("max_frame_bytes", func(r *Result) *int { return &r.MaxFrameBytes })),
	appended(strCol("server", func(r *Result) *string { return &r.Server })),
	appended(int64Col("reply_drops", func(r *Result) *int64 { return &r.ReplyDrops })),
	appended(int64Col("oversize_drops", func(r *Result) *int64 { return &r.OversizeDrops })),
	appended(int64Col("protocol_errors", func(r *Result) *int64 { return &r.ProtocolErrors })),
	appended(int64Col("accept_errors", func(r *Result) *int64 { return &r.AcceptErrors })),
	appended(int64Col("server_closed_clean", func(r *Result) *int64 { return &r.ServerClosedClean })),
	appended(int64Col("server_closed_error", func(r *Result) *int64 { return &r.ServerClosedError })),
	appended(int64Col("server_closed_slow", func(r *Result) *int64 { return &r.ServerClosedSlow })),
	appended(strCol("evbench_version", func(r *Result) *string { return &r.Version })),
	appended(strCol("vcs_revision", func(r *Result) *string { return &r.Revision })),
	appended(strCol("go_version", func(r *Result) *string { return &r.GoVersion })),
	appended(intCol("gomaxprocs", func(r *Result) *int { return &r.GOMAXPROCS })),
	appended(strCol("kernel", func(r *Result) *string { return &r.Kernel })),
	appended(strCol("platform", func(r *Result) *string { return &r.Platform })),
	// Added in schema v3.
	appended(int64Col("send_queue_bytes", func(r *Result) *int64 { return &r.SendQueueBytes })),
	appended(int64Col("handshake_timeouts", func(r *Result) *int64 { return &r.HandshakeTimeouts })),
	appended(int64Col("read_timeouts", func(r *Result) *int64 { return &r.ReadTimeouts })),
	appended(int64Col("idle_closes", func(r *Result) *int64 { return &r.IdleCloses })),
	appended(int64Col("write_timeouts", func(r *Result) *int64 { return &r.WriteTimeouts })),
	appended(int64Col("unvalidated_drops", func(r *Result) *int64 { return &r.UnvalidatedDrops })),
	appended(int64Col("limit_refusals", func(r *Result) *int64 { return &r.LimitRefusals })),
	appended(int64Col("reconnect_attempts", func(r *Result) *int64 { return &r.ReconnectAttempts })),
	appended(int64Col("reconnects", func(r *Result) *int64 { return &r.Reconnects })),
}

// Columns returns the CSV header this package writes: schema v1's columns in
// DESIGN order, then the appended ones (those appended during v1, then those
// of v2). The caller may modify the slice.
func Columns() []string {
	names := make([]string, len(columns))
	for i, c := range columns {
		names[i] = c.name
	}
	return names
}

func appended(c column) column {
	c.v1 = false
	return c
}

func strCol(name string, f func(*Result) *string) column {
	return column{name: name, v1: true, kind: jsonString,
		format: func(r *Result) string { return *f(r) },
		parse:  func(r *Result, s string) error { *f(r) = s; return nil },
	}
}

func intCol(name string, f func(*Result) *int) column {
	return column{name: name, v1: true, kind: jsonNumber,
		format: func(r *Result) string { return strconv.Itoa(*f(r)) },
		parse: func(r *Result, s string) error {
			v, err := strconv.ParseInt(s, 10, 0)
			if err != nil {
				return unwrapNum(err)
			}
			*f(r) = int(v)
			return nil
		},
	}
}

func int64Col(name string, f func(*Result) *int64) column {
	return column{name: name, v1: true, kind: jsonNumber,
		format: func(r *Result) string { return strconv.FormatInt(*f(r), 10) },
		parse: func(r *Result, s string) error {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return unwrapNum(err)
			}
			*f(r) = v
			return nil
		},
	}
}

func floatCol(name string, f func(*Result) *float64) column {
	return column{name: name, v1: true, kind: jsonFloat,
		format: func(r *Result) string { return formatFloat(*f(r)) },
		parse: func(r *Result, s string) error {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				return unwrapNum(err)
			}
			*f(r) = v
			return nil
		},
	}
}

func boolCol(name string, f func(*Result) *bool) column {
	return column{name: name, v1: true, kind: jsonBool,
		format: func(r *Result) string { return strconv.FormatBool(*f(r)) },
		parse: func(r *Result, s string) error {
			v, err := strconv.ParseBool(s)
			if err != nil {
				return unwrapNum(err)
			}
			*f(r) = v
			return nil
		},
	}
}

func timeCol(name string, f func(*Result) *time.Time) column {
	return column{name: name, v1: true, kind: jsonString,
		format: func(r *Result) string { return f(r).UTC().Format(time.RFC3339Nano) },
		parse: func(r *Result, s string) error {
			v, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return errors.New("not an RFC 3339 timestamp")
			}
			*f(r) = v.UTC()
			return nil
		},
	}
}

func microsCol(name string, f func(*Result) *time.Duration) column {
	return column{name: name, v1: true, kind: jsonNumber,
		format: func(r *Result) string { return formatMicros(*f(r)) },
		parse: func(r *Result, s string) error {
			v, err := parseDecimalDuration(s, "us")
			if err != nil {
				return err
			}
			*f(r) = v
			return nil
		},
	}
}

func secondsCol(name string, f func(*Result) *time.Duration) column {
	return column{name: name, v1: true, kind: jsonNumber,
		format: func(r *Result) string { return formatSeconds(*f(r)) },
		parse: func(r *Result, s string) error {
			v, err := parseDecimalDuration(s, "s")
			if err != nil {
				return err
			}
			*f(r) = v
			return nil
		},
	}
}

// unwrapNum drops strconv's repetition of the input and function name from a
// *strconv.NumError, since FieldError already shows the value.
func unwrapNum(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return ne.Err
	}
	return err
}

// formatFloat writes v in the shortest decimal form that reads back as the
// same float64, without an exponent and with '.' as the decimal separator.
// NaN and infinities are written as strconv spells them ("NaN", "+Inf",
// "-Inf"), which strconv.ParseFloat and most CSV readers accept.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// absDuration returns |d| as an unsigned count of nanoseconds; it is exact
// for math.MinInt64 too.
func absDuration(d time.Duration) (abs uint64, neg bool) {
	if d < 0 {
		return uint64(-(d + 1)) + 1, true
	}
	return uint64(d), false
}

// formatMicros writes d in microseconds with exactly three fraction digits,
// e.g. 1234567ns as "1234.567". It is exact: no float rounding.
func formatMicros(d time.Duration) string {
	abs, neg := absDuration(d)
	var b []byte
	if neg {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, abs/1000, 10)
	frac := abs % 1000
	b = append(b, '.', byte('0'+frac/100), byte('0'+frac/10%10), byte('0'+frac%10))
	return string(b)
}

// formatSeconds writes d in seconds, exactly, with trailing fraction zeros
// (and a bare '.') trimmed: 30s as "30", 1.5s as "1.5", 1ns as "0.000000001".
func formatSeconds(d time.Duration) string {
	abs, neg := absDuration(d)
	var b []byte
	if neg {
		b = append(b, '-')
	}
	b = strconv.AppendUint(b, abs/1e9, 10)
	if frac := abs % 1e9; frac != 0 {
		b = append(b, '.')
		digits := strconv.AppendUint(nil, frac+1e9, 10)[1:] // 9 digits, zero-padded
		b = append(b, strings.TrimRight(string(digits), "0")...)
	}
	return string(b)
}

// parseDecimalDuration reads a plain decimal number of the given unit ("us"
// or "s"): an optional '-', digits, and an optional '.' with more digits.
// Fraction digits beyond nanosecond precision are truncated. Anything else —
// a decimal comma, an exponent, a unit suffix — is an error.
func parseDecimalDuration(s, unit string) (time.Duration, error) {
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot:
			dot = true
		case c == '-' && i == 0:
		default:
			return 0, fmt.Errorf("not a decimal number of %s", unitName(unit))
		}
	}
	if digits == 0 {
		return 0, fmt.Errorf("not a decimal number of %s", unitName(unit))
	}
	// Truncate the fraction to whole nanoseconds first (9 digits of
	// seconds, 3 of microseconds): time.ParseDuration scales the fraction
	// in floating point, which is exact only that far.
	if i := strings.IndexByte(s, '.'); i >= 0 {
		keep := 3
		if unit == "s" {
			keep = 9
		}
		s = s[:min(len(s), i+1+keep)]
	}
	d, err := time.ParseDuration(s + unit)
	if err != nil {
		return 0, errors.New("out of range")
	}
	return d, nil
}

func unitName(unit string) string {
	if unit == "us" {
		return "microseconds"
	}
	return "seconds"
}

// FieldError reports a value that ReadCSV or ReadJSON could not parse, or a
// column the input lacks. It gives the 1-based line (for CSV as encoding/csv
// counts lines, so a record spanning lines reports where the field starts;
// for JSON Lines the line of the object) and the column name, which in JSON
// Lines is the key.
type FieldError struct {
	Line   int    // 1-based line number in the input
	Column string // column name from the header, or the JSON key
	Value  string // the offending value (JSON text for ReadJSON); empty for a missing column
	Err    error  // what is wrong with it

	json bool // from ReadJSON: say "key" rather than "column"
}

// Error gives the line, the column and what is wrong, e.g.
// `results: line 3, column lat_p99_us: bad value "1,5": not a decimal number
// of microseconds`; for ReadJSON it says "key" instead of "column".
func (e *FieldError) Error() string {
	what := "column"
	if e.json {
		what = "key"
	}
	if errors.Is(e.Err, errMissingColumn) {
		return fmt.Sprintf("results: line %d: missing %s %s", e.Line, what, e.Column)
	}
	return fmt.Sprintf("results: line %d, %s %s: bad value %q: %v", e.Line, what, e.Column, e.Value, e.Err)
}

// Unwrap returns the underlying cause, e.g. strconv.ErrSyntax or
// strconv.ErrRange for a bad integer.
func (e *FieldError) Unwrap() error { return e.Err }

var errMissingColumn = errors.New("missing column")

// CSVWriter writes Results as CSV records (RFC 4180) in the column order of
// Columns, preceded by the header. It is not safe for concurrent use. Output
// is buffered: call Flush when done.
type CSVWriter struct {
	w      *csv.Writer
	header bool
	record []string
}

// NewCSVWriter returns a CSVWriter that writes to w.
func NewCSVWriter(w io.Writer) *CSVWriter {
	return &CSVWriter{w: csv.NewWriter(w), record: make([]string, len(columns))}
}

// Write writes r as one record, writing the header first if it has not been
// written yet. The schema column is always SchemaVersion. An error from the
// underlying writer may surface only at Flush.
func (cw *CSVWriter) Write(r *Result) error {
	if r == nil {
		return errors.New("results: CSVWriter.Write of a nil *Result")
	}
	if err := cw.writeHeader(); err != nil {
		return err
	}
	row := *r
	row.Schema = SchemaVersion
	for i, c := range columns {
		cw.record[i] = c.format(&row)
	}
	if err := cw.w.Write(cw.record); err != nil {
		return fmt.Errorf("results: write CSV record: %w", err)
	}
	return nil
}

// Flush writes the header if no row was written, so an empty result set is
// still a valid file, then writes any buffered data to the underlying writer
// and returns the first error met while writing.
func (cw *CSVWriter) Flush() error {
	if err := cw.writeHeader(); err != nil {
		return err
	}
	cw.w.Flush()
	if err := cw.w.Error(); err != nil {
		return fmt.Errorf("results: write CSV: %w", err)
	}
	return nil
}

func (cw *CSVWriter) writeHeader() error {
	if cw.header {
		return nil
	}
	cw.header = true
	if err := cw.w.Write(Columns()); err != nil {
		return fmt.Errorf("results: write CSV header: %w", err)
	}
	return nil
}

// ReadCSV reads a results CSV written by CSVWriter, of any schema version
// from 1 on: v1 files, files of this version and of later ones. It maps
// columns by the names in the header, so column order does not matter;
// unknown columns are ignored; columns appended after schema v1 (v2's among
// them) may be missing, whatever the rows' schema says, and their fields stay
// zero; but every v1 column must be present. Each Result's Schema is its
// row's schema column as the file states it, never SchemaVersion by default.
// A UTF-8 byte order mark before the header is skipped.
//
// A bad value or a missing column is a *FieldError naming the line and the
// column; a malformed record (bad quoting, a wrong number of fields) is a
// *csv.ParseError with its line. Empty input is an error: a results file
// always has a header. A header with no rows gives no Results and no error.
func ReadCSV(r io.Reader) ([]Result, error) {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("results: empty CSV: no header")
	}
	if err != nil {
		return nil, fmt.Errorf("results: read CSV header: %w", err)
	}
	headerLine, _ := cr.FieldPos(0)
	// index[i] is the position in the record of columns[i], or -1.
	index, err := mapHeader(header, headerLine)
	if err != nil {
		return nil, err
	}
	var rows []Result
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return rows, nil
		}
		if err != nil {
			return nil, fmt.Errorf("results: read CSV: %w", err)
		}
		var res Result
		for i, c := range columns {
			pos := index[i]
			if pos < 0 {
				continue
			}
			if err := c.parse(&res, rec[pos]); err != nil {
				line, _ := cr.FieldPos(pos)
				return nil, &FieldError{Line: line, Column: c.name, Value: rec[pos], Err: err}
			}
		}
		if res.Schema < 1 {
			line, _ := cr.FieldPos(index[0])
			return nil, &FieldError{Line: line, Column: "schema", Value: rec[index[0]],
				Err: errors.New("schema versions start at 1")}
		}
		rows = append(rows, res)
	}
}

// mapHeader returns, for each entry of columns, its position in header or -1.
// line is the header's line number, for errors.
func mapHeader(header []string, line int) ([]int, error) {
	pos := make(map[string]int, len(header))
	for i, name := range header {
		if i == 0 {
			name = strings.TrimPrefix(name, "\ufeff")
		}
		name = strings.TrimSpace(name)
		if _, dup := pos[name]; dup {
			return nil, &FieldError{Line: line, Column: name, Value: name, Err: errors.New("column appears twice in the header")}
		}
		pos[name] = i
	}
	index := make([]int, len(columns))
	for i, c := range columns {
		p, ok := pos[c.name]
		switch {
		case ok:
			index[i] = p
		case c.v1:
			return nil, &FieldError{Line: line, Column: c.name, Err: errMissingColumn}
		default:
			index[i] = -1
		}
	}
	return index, nil
}
