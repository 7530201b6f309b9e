package results

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

func writeJSON(t *testing.T, rows []Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	jw := NewJSONWriter(&buf)
	for i := range rows {
		if err := jw.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// jsonObject is one JSON Lines object: its keys in order and their raw values.
type jsonObject struct {
	keys []string
	vals map[string]json.RawMessage
}

// readObjects parses JSON Lines strictly, keeping each object's key order.
func readObjects(t *testing.T, data []byte) []jsonObject {
	t.Helper()
	var objs []jsonObject
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("line %d is not valid JSON: %s", i+1, line)
		}
		dec := json.NewDecoder(strings.NewReader(line))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			t.Fatalf("line %d is not a JSON object: %s", i+1, line)
		}
		obj := jsonObject{vals: map[string]json.RawMessage{}}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				t.Fatal(err)
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				t.Fatal(err)
			}
			obj.keys = append(obj.keys, tok.(string))
			obj.vals[tok.(string)] = raw
		}
		objs = append(objs, obj)
	}
	return objs
}

func TestJSONRoundTrip(t *testing.T) {
	rows := sampleRows()
	got, err := ReadJSON(bytes.NewReader(writeJSON(t, rows)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("round trip differs:\ngot  %+v\nwant %+v", got, rows)
	}
}

// TestJSONRoundTripV2Full writes a row with every field set, none zero
// (TestCSVRoundTripV2Full checks fullRow is so), and reads back the same row.
func TestJSONRoundTripV2Full(t *testing.T) {
	in := fullRow()
	got, err := ReadJSON(bytes.NewReader(writeJSON(t, []Result{in})))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], in) {
		t.Fatalf("round trip differs:\ngot  %+v\nwant %+v", got, in)
	}
}

// TestJSONKeysAreColumns checks each line's keys are exactly Columns(), in
// order.
func TestJSONKeysAreColumns(t *testing.T) {
	data := writeJSON(t, append(sampleRows(), fullRow()))
	if n := bytes.Count(data, []byte("\n")); n != 4 || !bytes.HasSuffix(data, []byte("}\n")) {
		t.Fatalf("%d lines, want 4, each an object ending in a newline:\n%s", n, data)
	}
	for i, obj := range readObjects(t, data) {
		if !reflect.DeepEqual(obj.keys, Columns()) {
			t.Errorf("line %d keys\n%q\nwant Columns()\n%q", i+1, obj.keys, Columns())
		}
	}
}

// TestJSONValuesMatchCSV checks every JSON value against the CSV field of the
// same row: numbers are the CSV text as a JSON number (so lat_p50_us is in
// microseconds with three fraction digits, duration_s in seconds), booleans
// are JSON booleans, and text and started_at are JSON strings of the CSV
// text.
func TestJSONValuesMatchCSV(t *testing.T) {
	rows := append(sampleRows(), fullRow())
	recs := readRecords(t, writeCSV(t, rows))
	boolean := map[string]bool{"saturated": true, "reliable": true, "reliable_control": true,
		"ordered": true, "encrypted": true, "datagram": true}
	for n, obj := range readObjects(t, writeJSON(t, rows)) {
		for i, name := range recs[0] {
			csvText, raw := recs[n+1][i], obj.vals[name]
			var v any
			if err := json.Unmarshal(raw, &v); err != nil {
				t.Fatal(err)
			}
			switch v := v.(type) {
			case string:
				if v != csvText {
					t.Errorf("row %d %s = %q, CSV has %q", n, name, v, csvText)
				}
				if columns[i].kind != jsonString {
					t.Errorf("row %d %s is a JSON string %s, want a number or boolean", n, name, raw)
				}
			case float64:
				if string(raw) != csvText || columns[i].kind == jsonString || boolean[name] {
					t.Errorf("row %d %s = JSON number %s, CSV has %q", n, name, raw, csvText)
				}
			case bool:
				if !boolean[name] || string(raw) != csvText {
					t.Errorf("row %d %s = JSON boolean %s, CSV has %q", n, name, raw, csvText)
				}
			default:
				t.Errorf("row %d %s = %s: not a string, number or boolean", n, name, raw)
			}
		}
		for _, name := range []string{"lat_p50_us", "duration_s", "clients", "loss_ratio"} {
			if raw := obj.vals[name]; len(raw) == 0 || raw[0] == '"' {
				t.Errorf("row %d %s = %s, want a JSON number", n, name, raw)
			}
		}
		if raw := obj.vals["started_at"]; len(raw) == 0 || raw[0] != '"' {
			t.Errorf("row %d started_at = %s, want a JSON string", n, raw)
		}
	}
	// A sample value, spelled out.
	line := string(writeJSON(t, sampleRows()[:1]))
	for _, want := range []string{`"lat_p50_us":85.300,`, `"duration_s":30,`, `"started_at":"2025-01-02T03:04:05.123456789Z",`,
		`"saturated":false,`, `"transport":"tcp",`, `"rate_eps":1000,`, `"schema":3,`} {
		if !strings.Contains(line, want) {
			t.Errorf("line lacks %s:\n%s", want, line)
		}
	}
}

func TestJSONNaNAndInf(t *testing.T) {
	in := Result{Schema: SchemaVersion, Transport: "udp", LossRatio: math.NaN(), ThroughputEPS: math.Inf(1), GoodputBps: math.Inf(-1)}
	data := writeJSON(t, []Result{in})
	if !json.Valid(bytes.TrimSpace(data)) {
		t.Fatalf("not valid JSON: %s", data)
	}
	for _, want := range []string{`"loss_ratio":"NaN"`, `"throughput_eps":"+Inf"`, `"goodput_Bps":"-Inf"`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Errorf("line lacks %s: %s", want, data)
		}
	}
	got, err := ReadJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(got[0].LossRatio) || !math.IsInf(got[0].ThroughputEPS, 1) || !math.IsInf(got[0].GoodputBps, -1) {
		t.Errorf("read back %v %v %v, want NaN +Inf -Inf", got[0].LossRatio, got[0].ThroughputEPS, got[0].GoodputBps)
	}
}

// TestJSONText checks text that JSON must escape, and that HTML characters
// are left as they are.
func TestJSONText(t *testing.T) {
	texts := []string{"a, b", `say "hi"`, "line one\nline two\r\n", `back\slash`, "<tag> & more", "tab\there", "ünïcode ✓", ""}
	var rows []Result
	for _, s := range texts {
		rows = append(rows, Result{Schema: SchemaVersion, Transport: "tcp", Error: s, Kernel: s, StartedAt: time.Unix(0, 0).UTC()})
	}
	data := writeJSON(t, rows)
	if n := bytes.Count(data, []byte("\n")); n != len(texts) {
		t.Fatalf("%d lines for %d rows: a line break was not escaped", n, len(texts))
	}
	if !bytes.Contains(data, []byte(`"<tag> & more"`)) {
		t.Errorf("HTML characters escaped:\n%s", data)
	}
	got, err := ReadJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].Error != texts[i] || got[i].Kernel != texts[i] {
			t.Errorf("text %q read back as %q, %q", texts[i], got[i].Error, got[i].Kernel)
		}
	}
}

// TestJSONWriterSchemaAndZone: as for CSV, schema is always SchemaVersion and
// started_at is in UTC.
func TestJSONWriterSchemaAndZone(t *testing.T) {
	in := Result{Schema: 0, StartedAt: time.Date(2025, 6, 1, 12, 0, 0, 5, time.FixedZone("CET", 3600)), Transport: "ws"}
	obj := readObjects(t, writeJSON(t, []Result{in}))[0]
	if s := string(obj.vals["schema"]); s != "3" {
		t.Errorf("schema = %s, want 3", s)
	}
	if s := string(obj.vals["started_at"]); s != `"2025-06-01T11:00:00.000000005Z"` {
		t.Errorf("started_at = %s", s)
	}
}

// writeCalls records each Write call.
type writeCalls struct{ calls []string }

func (w *writeCalls) Write(p []byte) (int, error) {
	w.calls = append(w.calls, string(p))
	return len(p), nil
}

// TestJSONWriterStreams checks each row reaches the writer at once, whole,
// in one Write call: output can be followed, and a run cut short leaves only
// complete lines.
func TestJSONWriterStreams(t *testing.T) {
	var w writeCalls
	jw := NewJSONWriter(&w)
	rows := sampleRows()
	for i := range rows {
		if err := jw.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
		if len(w.calls) != i+1 {
			t.Fatalf("after row %d: %d Write calls, want %d", i, len(w.calls), i+1)
		}
		last := w.calls[i]
		if strings.Count(last, "\n") != 1 || !strings.HasSuffix(last, "}\n") || !json.Valid([]byte(last)) {
			t.Fatalf("Write call %d is not one complete line: %q", i, last)
		}
		got, err := ReadJSON(strings.NewReader(strings.Join(w.calls, "")))
		if err != nil || len(got) != i+1 {
			t.Fatalf("output so far reads as %d rows, %v", len(got), err)
		}
	}
}

func TestJSONWriterErrors(t *testing.T) {
	boom := errors.New("disk full")
	r := sampleRows()[0]
	if err := NewJSONWriter(failWriter{boom}).Write(&r); !errors.Is(err, boom) {
		t.Errorf("Write = %v, want an error wrapping %v", err, boom)
	}
	if err := NewJSONWriter(io.Discard).Write(nil); err == nil {
		t.Error("Write(nil): no error")
	}
}

// TestJSONReadLenient reads what another writer may produce: keys in another
// order, unknown keys, no appended keys, blank lines, CRLF, a BOM.
func TestJSONReadLenient(t *testing.T) {
	rows := sampleRows()
	v1 := len(strings.Split(designV1, ", "))
	var b strings.Builder
	b.WriteString("\ufeff")
	for _, obj := range readObjects(t, writeJSON(t, rows)) {
		b.WriteString(`{"host":{"name":"x","cpus":[1,2]},"future_us":1.5`)
		for i := v1 - 1; i >= 0; i-- {
			k := obj.keys[i]
			b.WriteString(`, "` + k + `" : ` + string(obj.vals[k]))
		}
		b.WriteString("}\r\n\r\n   \n")
	}
	got, err := ReadJSON(strings.NewReader(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		rows[i] = onlyV1(rows[i])
	}
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("lenient read differs:\ngot  %+v\nwant %+v", got, rows)
	}
	for _, in := range []string{"", "\n\n", "\ufeff"} {
		if got, err := ReadJSON(strings.NewReader(in)); err != nil || len(got) != 0 {
			t.Errorf("ReadJSON(%q) = %v, %v; want no rows, no error", in, got, err)
		}
	}
	// A last line without its newline still reads.
	data := bytes.TrimSuffix(writeJSON(t, sampleRows()), []byte("\n"))
	if got, err := ReadJSON(bytes.NewReader(data)); err != nil || len(got) != 3 {
		t.Errorf("without the final newline: %d rows, %v", len(got), err)
	}
}

func TestJSONReadErrors(t *testing.T) {
	lines := strings.SplitAfter(string(writeJSON(t, sampleRows()[:2])), "\n")
	row1, row2 := lines[0], lines[1]
	// set replaces key's value on line with raw JSON text.
	set := func(line, key, raw string) string {
		obj := readObjects(t, []byte(line))[0]
		var parts []string
		for _, k := range obj.keys {
			v := string(obj.vals[k])
			if k == key {
				v = raw
			}
			parts = append(parts, `"`+k+`":`+v)
		}
		return "{" + strings.Join(parts, ",") + "}\n"
	}
	drop := func(line, key string) string {
		obj := readObjects(t, []byte(line))[0]
		var parts []string
		for _, k := range obj.keys {
			if k != key {
				parts = append(parts, `"`+k+`":`+string(obj.vals[k]))
			}
		}
		return "{" + strings.Join(parts, ",") + "}\n"
	}
	tests := []struct {
		name  string
		input string
		line  int    // line of the error
		key   string // for a *FieldError; "" for a malformed line
	}{
		{name: "micros as string", input: row1 + set(row2, "lat_p99_us", `"412.345"`), line: 2, key: "lat_p99_us"},
		{name: "micros exponent", input: set(row1, "lat_p99_us", `4.12345e2`), line: 1, key: "lat_p99_us"},
		{name: "seconds as string", input: set(row1, "duration_s", `"30s"`), line: 1, key: "duration_s"},
		{name: "fractional count", input: set(row1, "sent", `1.5`), line: 1, key: "sent"},
		{name: "int as string", input: set(row1, "clients", `"100"`), line: 1, key: "clients"},
		{name: "int overflow", input: set(row1, "missed", `9223372036854775808`), line: 1, key: "missed"},
		{name: "null", input: set(row1, "rooms", `null`), line: 1, key: "rooms"},
		{name: "bool as string", input: set(row1, "saturated", `"true"`), line: 1, key: "saturated"},
		{name: "bool as number", input: set(row1, "reliable", `1`), line: 1, key: "reliable"},
		{name: "text as number", input: set(row1, "transport", `7`), line: 1, key: "transport"},
		{name: "text as object", input: set(row1, "error", `{}`), line: 1, key: "error"},
		{name: "bad time", input: set(row1, "started_at", `"2025-01-02 03:04:05"`), line: 1, key: "started_at"},
		{name: "time as number", input: set(row1, "started_at", `1735787045`), line: 1, key: "started_at"},
		{name: "float as other string", input: set(row1, "loss_ratio", `"0.5"`), line: 1, key: "loss_ratio"},
		{name: "float as bool", input: set(row1, "loss_ratio", `false`), line: 1, key: "loss_ratio"},
		{name: "bad v2 seconds", input: set(row1, "warmup_s", `1e0`), line: 1, key: "warmup_s"},
		{name: "bad JSON number", input: set(row1, "warmup_s", `-`), line: 1},
		{name: "bad v2 micros", input: set(row1, "max_sched_lag_us", `"10"`), line: 1, key: "max_sched_lag_us"},
		{name: "schema 0", input: set(row1, "schema", `0`), line: 1, key: "schema"},
		{name: "missing v1 key", input: row1 + "\n" + drop(row2, "lat_p90_us"), line: 3, key: "lat_p90_us"},
		{name: "duplicate key", input: strings.Replace(row1, `"rooms":`, `"clients":`, 1), line: 1, key: "clients"},
		{name: "not an object", input: row1 + "[1,2]\n", line: 2},
		{name: "a string", input: `"schema"` + "\n", line: 1},
		{name: "truncated line", input: row1 + row2[:len(row2)/2], line: 2},
		{name: "two objects on a line", input: strings.TrimSuffix(row1, "\n") + row2, line: 1},
		{name: "trailing comma", input: strings.TrimSuffix(row1, "}\n") + ",}\n", line: 1},
		{name: "pretty-printed", input: "{\n" + row1[1:], line: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadJSON(strings.NewReader(tt.input))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if want := "line " + strconv.Itoa(tt.line); !strings.Contains(msg, want+":") && !strings.Contains(msg, want+",") {
				t.Errorf("message %q does not name line %d", msg, tt.line)
			}
			var fe *FieldError
			if tt.key == "" {
				if errors.As(err, &fe) {
					t.Errorf("malformed line gave a *FieldError: %v", err)
				}
				return
			}
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Line != tt.line || fe.Column != tt.key {
				t.Errorf("error at line %d key %q, want line %d key %q (%v)", fe.Line, fe.Column, tt.line, tt.key, err)
			}
			if !strings.Contains(msg, "key "+tt.key) {
				t.Errorf("message %q does not name the key %s", msg, tt.key)
			}
		})
	}
}

// TestJSONGolden pins the exact bytes of the JSON Lines format (go test
// -update rewrites testdata/results.golden.jsonl), and checks the pinned file
// still reads back as the rows.
func TestJSONGolden(t *testing.T) {
	got := writeJSON(t, sampleRows())
	golden := filepath.Join("testdata", "results.golden.jsonl")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("JSON output differs from %s (go test -update rewrites it):\ngot\n%s\nwant\n%s", golden, got, want)
	}
	rows, err := ReadJSON(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rows, sampleRows()) {
		t.Errorf("%s reads back as\n%+v\nwant\n%+v", golden, rows, sampleRows())
	}
}
