package results

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// resultFromBytes builds a Result from fuzz input, filling every field in
// declaration order: a string takes a length byte and that many bytes, an
// integer (a time.Duration too) or a float64 8 bytes, a bool one byte, a
// time.Time 8 bytes of Unix nanoseconds, in UTC. Fields past the end of data
// stay zero. It reports how many bytes it used.
func resultFromBytes(data []byte) (Result, int) {
	var r Result
	used := 0
	take := func(n int) []byte {
		n = min(n, len(data)-used)
		b := data[used : used+n]
		used += n
		return b
	}
	u64 := func() uint64 {
		var b [8]byte
		copy(b[:], take(8))
		return binary.BigEndian.Uint64(b[:])
	}
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		if used == len(data) {
			break
		}
		fv := v.Field(i)
		switch {
		case fv.Type() == reflect.TypeFor[time.Time]():
			fv.Set(reflect.ValueOf(time.Unix(0, int64(u64())).UTC()))
		case fv.Kind() == reflect.String:
			fv.SetString(string(take(int(take(1)[0]))))
		case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
			fv.SetInt(int64(u64()))
		case fv.Kind() == reflect.Float64:
			fv.SetFloat(math.Float64frombits(u64()))
		case fv.Kind() == reflect.Bool:
			fv.SetBool(take(1)[0]&1 == 1)
		default:
			panic("resultFromBytes: no rule for field " + v.Type().Field(i).Name)
		}
	}
	return r, used
}

// resultBytes is the inverse of resultFromBytes, for seeds: strings are cut
// to 255 bytes and times before 1678 or after 2262 do not fit.
func resultBytes(r *Result) []byte {
	var b []byte
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		fv := v.Field(i)
		switch {
		case fv.Type() == reflect.TypeFor[time.Time]():
			b = binary.BigEndian.AppendUint64(b, uint64(fv.Interface().(time.Time).UnixNano()))
		case fv.Kind() == reflect.String:
			s := fv.String()
			s = s[:min(len(s), 255)]
			b = append(append(b, byte(len(s))), s...)
		case fv.Kind() == reflect.Int || fv.Kind() == reflect.Int64:
			b = binary.BigEndian.AppendUint64(b, uint64(fv.Int()))
		case fv.Kind() == reflect.Float64:
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(fv.Float()))
		case fv.Kind() == reflect.Bool:
			b = append(b, map[bool]byte{false: 0, true: 1}[fv.Bool()])
		}
	}
	return b
}

// sameResult reports whether a and b are equal field by field, NaN equal
// to NaN, -0 different from 0, and times compared with Equal; on a
// difference it names the field.
func sameResult(a, b *Result) (field string, ok bool) {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		same := true
		switch {
		case fa.Type() == reflect.TypeFor[time.Time]():
			same = fa.Interface().(time.Time).Equal(fb.Interface().(time.Time))
		case fa.Kind() == reflect.Float64:
			x, y := fa.Float(), fb.Float()
			same = math.IsNaN(x) && math.IsNaN(y) || math.Float64bits(x) == math.Float64bits(y)
		default:
			same = fa.Equal(fb)
		}
		if !same {
			return va.Type().Field(i).Name, false
		}
	}
	return "", true
}

// sameResults is sameResult for whole files, failing t on a difference.
func sameResults(t *testing.T, what string, got, want []Result) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d rows, want %d", what, len(got), len(want))
	}
	for i := range got {
		if field, ok := sameResult(&got[i], &want[i]); !ok {
			t.Fatalf("%s: row %d differs in %s:\n got %+v\nwant %+v", what, i, field, got[i], want[i])
		}
	}
}

// afterCSV is what a row reads back as from CSVWriter's output: the schema
// the writer states, and each CRLF in a string field turned into LF (as
// encoding/csv reads a quoted line break).
func afterCSV(r Result) Result {
	r.Schema = SchemaVersion
	mapStrings(&r, func(s string) string { return strings.ReplaceAll(s, "\r\n", "\n") })
	return r
}

// afterJSON is what a row reads back as from JSONWriter's output: the schema
// the writer states, and each byte of invalid UTF-8 in a string field turned
// into U+FFFD (as encoding/json writes it).
func afterJSON(r Result) Result {
	r.Schema = SchemaVersion
	mapStrings(&r, func(s string) string { return string([]rune(s)) })
	return r
}

func mapStrings(r *Result, f func(string) string) {
	v := reflect.ValueOf(r).Elem()
	for i := range v.NumField() {
		if fv := v.Field(i); fv.Kind() == reflect.String {
			fv.SetString(f(fv.String()))
		}
	}
}

func csvBytes(t testing.TB, rows []Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	cw := NewCSVWriter(&buf)
	for i := range rows {
		if err := cw.Write(&rows[i]); err != nil {
			t.Fatalf("CSVWriter.Write: %v", err)
		}
	}
	if err := cw.Flush(); err != nil {
		t.Fatalf("CSVWriter.Flush: %v", err)
	}
	return buf.Bytes()
}

func jsonBytes(t testing.TB, rows []Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	jw := NewJSONWriter(&buf)
	for i := range rows {
		if err := jw.Write(&rows[i]); err != nil {
			t.Fatalf("JSONWriter.Write: %v", err)
		}
	}
	return buf.Bytes()
}

// checkRoundTrips writes rows with both writers and checks that each reader
// reads them back as afterCSV and afterJSON say.
func checkRoundTrips(t *testing.T, rows []Result) {
	t.Helper()
	p := csvBytes(t, rows)
	got, err := ReadCSV(bytes.NewReader(p))
	if err != nil {
		t.Fatalf("ReadCSV of CSVWriter's output: %v\n%q", err, p)
	}
	want := make([]Result, len(rows))
	for i := range rows {
		want[i] = afterCSV(rows[i])
	}
	sameResults(t, "CSV round trip", got, want)

	p = jsonBytes(t, rows)
	got, err = ReadJSON(bytes.NewReader(p))
	if err != nil {
		t.Fatalf("ReadJSON of JSONWriter's output: %v\n%q", err, p)
	}
	for i := range rows {
		want[i] = afterJSON(rows[i])
	}
	sameResults(t, "JSON round trip", got, want)
}

// edgeRow has the extremes of every kind of field: the largest and smallest
// integers and durations, NaN, infinities and -0, and text that needs
// quoting in CSV or escaping in JSON.
func edgeRow() Result {
	r := fullRow()
	r.RunID, r.Transport = " leading space", `\.`
	r.Error = "quote \" comma , CRLF \r\n lone CR \r LF \n tab \t \x00 <&> \u2028 end\r"
	r.Server, r.Kernel = "\ufeffbom", "trailing space "
	r.StartedAt = time.Unix(0, math.MinInt64).UTC()
	r.Clients, r.Rooms, r.Sent, r.Missed = math.MaxInt, math.MinInt, math.MaxInt64, math.MinInt64
	r.Duration, r.Warmup, r.LatP50, r.LatMax = math.MaxInt64, math.MinInt64, math.MinInt64, math.MaxInt64
	r.RateEPS, r.LossRatio, r.ThroughputEPS, r.GoodputBps = math.NaN(), math.Copysign(0, -1), math.Inf(1), math.Inf(-1)
	return r
}

// FuzzResultsRoundTrip builds rows from the fuzz input (resultFromBytes,
// up to three rows) and checks that the CSV and JSON Lines writers' output
// reads back as the same rows (checkRoundTrips).
func FuzzResultsRoundTrip(f *testing.F) {
	seeds := append(append(sampleRows(), sampleRowsV1()...), fullRow(), edgeRow(), Result{})
	for i := range seeds {
		f.Add(resultBytes(&seeds[i]))
	}
	f.Add(append(resultBytes(&seeds[0]), resultBytes(&seeds[1])...))
	f.Add([]byte{})
	f.Add([]byte{0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		var rows []Result
		for len(data) > 0 && len(rows) < 3 {
			r, n := resultFromBytes(data)
			rows = append(rows, r)
			data = data[n:]
		}
		checkRoundTrips(t, rows)
	})
}

// fileSeeds are the inputs of the reader fuzz targets: the golden files,
// writers' output, and files every reader rule rejects or forgives.
func fileSeeds(f *testing.F, ext string) [][]byte {
	var seeds [][]byte
	names, err := filepath.Glob(filepath.Join("testdata", "*."+ext))
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range names {
		p, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, p)
	}
	return seeds
}

// checkSplitRead reads data whole with read and again in two chunks cut at
// cut, and fails t unless both give the same rows and the same error. It
// returns the rows and error of the whole read.
func checkSplitRead(t *testing.T, read func(io.Reader) ([]Result, error), data []byte, cut uint16) ([]Result, error) {
	t.Helper()
	rows, err := read(bytes.NewReader(data))
	k := int(cut) % (len(data) + 1)
	rows2, err2 := read(io.MultiReader(bytes.NewReader(data[:k]), bytes.NewReader(data[k:])))
	if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() {
		t.Fatalf("read whole: %v; read in two chunks cut at %d: %v", err, k, err2)
	}
	sameResults(t, "read in two chunks", rows2, rows)
	return rows, err
}

// FuzzReadCSV checks ReadCSV on arbitrary bytes, read whole and in two
// chunks cut at a fuzzed index: it never panics, both reads agree, and rows
// it accepts survive a round trip through both writers.
func FuzzReadCSV(f *testing.F) {
	header := strings.Join(Columns(), ",")
	v1 := strings.Split(designV1, ", ")
	seeds := fileSeeds(f, "csv")
	seeds = append(seeds,
		[]byte(header+"\n"),
		[]byte("\ufeff"+header+"\r\n"),
		[]byte(strings.Join(v1, ",")+"\n"+strings.Repeat("1,", len(v1)-1)+"true\n"),
		[]byte(strings.Join(v1, ",")+",unknown\n1,r,2025-01-02T03:04:05Z,tcp,1,1,1,1.5,1,0.5,0,1,1,1,0,0,0,NaN,+Inf,-Inf,1.5,-0.001,.5,1,1,1,1,1,1,1,1,1,F,x\n"),
		[]byte(strings.Join(v1, ",")+"\n"+strings.Repeat("1,", len(v1)-1)+"true\n"+strings.Repeat("1,", len(v1)-2)+"1,5,true\n"), // decimal comma
		[]byte(strings.Join(v1, ",")+"\n0"+strings.Repeat(",1", len(v1)-2)+",true\n"),                                            // schema 0
		[]byte(strings.Join(v1[1:], ",")+"\n"),                  // a v1 column missing
		[]byte(header+",schema\n"),                              // a column twice
		[]byte(header+"\n\"unterminated\n"),                     // bad quoting
		[]byte(header+"\n1,2\n"),                                // a wrong number of fields
		[]byte(strings.Join(v1, ",")+"\n\"1\",\"a\"\"b\r\nc\""), // cut short inside a record
		nil,
	)
	seeds = append(seeds, csvBytes(f, sampleRows()), csvBytes(f, []Result{edgeRow()}))
	for i, p := range seeds {
		f.Add(p, uint16(i*37))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		rows, err := checkSplitRead(t, ReadCSV, data, cut)
		if err != nil {
			return
		}
		for i := range rows {
			if rows[i].Schema < 1 {
				t.Fatalf("row %d: schema %d accepted", i, rows[i].Schema)
			}
		}
		checkRoundTrips(t, rows)
	})
}

// FuzzReadJSON checks ReadJSON on arbitrary bytes as FuzzReadCSV does
// ReadCSV.
func FuzzReadJSON(f *testing.F) {
	golden := fileSeeds(f, "jsonl")
	line := jsonBytes(f, sampleRows()[:1])
	seeds := append(golden,
		jsonBytes(f, sampleRows()),
		jsonBytes(f, []Result{edgeRow()}),
		append(append([]byte("\ufeff\n\r\n"), bytes.ReplaceAll(line, []byte("\n"), []byte("\r\n"))...), '\n'),
		bytes.Replace(line, []byte(`"schema":3`), []byte(`"schema":3,"schema":3`), 1),     // a key twice
		bytes.Replace(line, []byte(`"run_id":`), []byte(`"run_idx":`), 1),                 // a v1 key missing
		bytes.Replace(line, []byte(`"clients":100`), []byte(`"clients":"100"`), 1),        // a string for a number
		bytes.Replace(line, []byte(`"rate_eps":1000`), []byte(`"rate_eps":"NaN"`), 1),     // NaN, as the writer spells it
		bytes.Replace(line, []byte(`"lat_p50_us":85.300`), []byte(`"lat_p50_us":1e3`), 1), // an exponent
		bytes.Replace(line, []byte("}\n"), []byte("} {}\n"), 1),                           // two values on a line
		[]byte("[]\n"),
		[]byte("{\"schema\":\n"),
		[]byte("\n\n"),
		nil,
	)
	for i, p := range seeds {
		f.Add(p, uint16(i*53))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		rows, err := checkSplitRead(t, ReadJSON, data, cut)
		if err != nil {
			return
		}
		checkRoundTrips(t, rows)
	})
}

// exactDecimalNs is the reference for parseDecimalDuration: s, already
// known to be an optional '-', digits and at most one '.', times unit
// nanoseconds, truncated toward zero; ok is false when that is outside
// the range of a time.Duration.
func exactDecimalNs(s string, unit int64) (ns int64, ok bool) {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	intPart, frac, _ := strings.Cut(s, ".")
	n, _ := new(big.Int).SetString("0"+intPart+frac, 10)
	n.Mul(n, big.NewInt(unit))
	n.Quo(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(len(frac))), nil))
	if neg {
		n.Neg(n)
	}
	if !n.IsInt64() {
		return 0, false
	}
	return n.Int64(), true
}

// TestParseDecimalDurationLongFraction: fraction digits beyond nanosecond
// precision are truncated, however many there are. Found by
// FuzzParseDecimalDuration: time.ParseDuration scales a long fraction in
// floating point, so from 14 fraction digits on the value can be 1ns off:
// ".00100000000000" µs reads as 0 rather than 1ns, "1.9999999999999999" µs
// as 2000ns rather than 1999ns, and a value that truncates to the largest
// duration is rejected as out of range. The parser now truncates the
// fraction to whole nanoseconds before time.ParseDuration sees it.
func TestParseDecimalDurationLongFraction(t *testing.T) {
	tests := []struct {
		s, unit string
		want    time.Duration
	}{
		{".00100000000000", "us", 1},
		{"0.95000000000000", "us", 950},
		{"1.9999999999999999", "us", 1999},
		{"1.9999999999999999", "s", 1999999999},
		{"0.9999999999999999999", "us", 999},
		{"9223372036854775.8079999999999999999", "us", math.MaxInt64},
		{"9223372036.8547758079999999999", "s", math.MaxInt64},
		{"-9223372036.8547758089999999999", "s", math.MinInt64},
	}
	var failed []string
	for _, tt := range tests {
		if got, err := parseDecimalDuration(tt.s, tt.unit); err != nil || got != tt.want {
			failed = append(failed, fmt.Sprintf("parseDecimalDuration(%q, %q) = %d, %v; want %d", tt.s, tt.unit, int64(got), err, int64(tt.want)))
		}
	}
	if len(failed) > 0 {
		t.Error(strings.Join(failed, "\n"))
	}
}

// FuzzParseDecimalDuration checks the duration parser of the _us and _s
// columns against exact decimal arithmetic: it accepts exactly the plain
// decimal numbers (an optional '-', digits, at most one '.', at least one
// digit) whose value is in range, gives their value truncated to the
// nanosecond, and reads the writers' formatting of that value back
// unchanged.
func FuzzParseDecimalDuration(f *testing.F) {
	for _, s := range []string{
		"0", "1", "1.5", ".5", "5.", "-0.25", "0.0015", "1234.567", "-1.500",
		"9223372036854775.807", "-9223372036854775.808", "9223372036854775.808",
		"9223372036.854775807", "-9223372036.854775808", "9223372036.854775808",
		"0.000000001", "0.0000000009", "00000000000000000000001", "1." + strings.Repeat("9", 40),
		"", "-", ".", "-.", "1,5", "1e3", "5ms", "1h2", "+5", " 5", "1-2", "1.2.3", "NaN", "--1",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, seconds bool) {
		unit, unitNs := "us", int64(time.Microsecond)
		if seconds {
			unit, unitNs = "s", int64(time.Second)
		}
		d, err := parseDecimalDuration(s, unit)
		plain := strings.Count(s, ".") <= 1 && strings.Trim(s, "0123456789.") == "" ||
			strings.HasPrefix(s, "-") && strings.Count(s, ".") <= 1 && strings.Trim(s[1:], "0123456789.") == ""
		plain = plain && strings.ContainsAny(s, "0123456789")
		if !plain {
			if err == nil {
				t.Fatalf("parseDecimalDuration(%q, %q) = %d, want an error", s, unit, int64(d))
			}
			return
		}
		want, inRange := exactDecimalNs(s, unitNs)
		if !inRange {
			if err == nil {
				t.Fatalf("parseDecimalDuration(%q, %q) = %d, want an out of range error", s, unit, int64(d))
			}
			return
		}
		if err != nil || int64(d) != want {
			t.Fatalf("parseDecimalDuration(%q, %q) = %d, %v; want %d", s, unit, int64(d), err, want)
		}
		format := formatMicros
		if seconds {
			format = formatSeconds
		}
		if back, err := parseDecimalDuration(format(d), unit); err != nil || back != d {
			t.Fatalf("%d formatted as %q reads back as %d, %v", int64(d), format(d), int64(back), err)
		}
	})
}
