package results

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
)

// jsonKind is how the JSON Lines format writes a column's formatted value.
type jsonKind int

const (
	// jsonString: a JSON string holding the formatted value (text and
	// timestamps).
	jsonString jsonKind = iota
	// jsonNumber: the formatted value itself, which is always a JSON number
	// (integers, _us and _s durations).
	jsonNumber
	// jsonFloat: a JSON number, or for NaN and the infinities, which JSON
	// numbers cannot express, the string "NaN", "+Inf" or "-Inf".
	jsonFloat
	// jsonBool: true or false.
	jsonBool
)

// appendJSON appends the JSON value of column c of r.
func (c *column) appendJSON(b []byte, r *Result) []byte {
	s := c.format(r)
	switch c.kind {
	case jsonNumber, jsonBool:
		return append(b, s...)
	case jsonFloat:
		if v, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return append(b, s...)
		}
	}
	return appendJSONString(b, s)
}

// appendJSONString appends s as a JSON string. Unlike json.Marshal it leaves
// <, > and & unescaped; invalid UTF-8 becomes U+FFFD, as with json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	return append(b, bytes.TrimSuffix(buf.Bytes(), []byte("\n"))...)
}

// parseJSON sets column c of r from raw, the JSON text of its value.
func (c *column) parseJSON(r *Result, raw json.RawMessage) error {
	var text string
	switch {
	case len(raw) > 0 && raw[0] == '"':
		if c.kind != jsonString && c.kind != jsonFloat {
			return fmt.Errorf("a JSON string where a %s belongs", c.kind)
		}
		if err := json.Unmarshal(raw, &text); err != nil {
			return err
		}
		if c.kind == jsonFloat && text != "NaN" && text != "+Inf" && text != "-Inf" {
			return errors.New(`a JSON string other than "NaN", "+Inf" or "-Inf" where a number belongs`)
		}
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		if c.kind != jsonNumber && c.kind != jsonFloat {
			return fmt.Errorf("a JSON number where a %s belongs", c.kind)
		}
		text = string(raw)
	case string(raw) == "true" || string(raw) == "false":
		if c.kind != jsonBool {
			return fmt.Errorf("a JSON boolean where a %s belongs", c.kind)
		}
		text = string(raw)
	default: // null, an object or an array
		return fmt.Errorf("want a %s", c.kind)
	}
	return c.parse(r, text)
}

func (k jsonKind) String() string {
	switch k {
	case jsonNumber, jsonFloat:
		return "JSON number"
	case jsonBool:
		return "JSON boolean"
	}
	return "JSON string"
}

// JSONWriter writes Results as JSON Lines: one JSON object per row, each
// followed by a newline. The object's keys are the CSV columns, in the order
// of Columns, and the values follow the CSV's formatting rules; see the
// package documentation. Each row reaches the underlying writer in one Write
// call as soon as it is written, so the output can be followed while a run
// goes on and stays valid up to the last complete line when the run is cut
// short. It is not safe for concurrent use.
type JSONWriter struct {
	w   io.Writer
	buf []byte
}

// NewJSONWriter returns a JSONWriter that writes to w.
func NewJSONWriter(w io.Writer) *JSONWriter {
	return &JSONWriter{w: w}
}

// Write writes r as one line. The schema key is always SchemaVersion, and
// started_at is written in UTC, as with CSVWriter.
func (jw *JSONWriter) Write(r *Result) error {
	if r == nil {
		return errors.New("results: JSONWriter.Write of a nil *Result")
	}
	row := *r
	row.Schema = SchemaVersion
	b := append(jw.buf[:0], '{')
	for i := range columns {
		c := &columns[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, c.name)
		b = append(b, ':')
		b = c.appendJSON(b, &row)
	}
	b = append(b, '}', '\n')
	jw.buf = b
	if _, err := jw.w.Write(b); err != nil {
		return fmt.Errorf("results: write JSON: %w", err)
	}
	return nil
}

// ReadJSON reads JSON Lines written by JSONWriter, of any schema version from
// 1 on. Like ReadCSV it maps values by key, so key order does not matter;
// unknown keys are ignored; keys of the columns appended after schema v1 may
// be missing, leaving their fields zero; but every v1 column's key must be
// present, and a key may appear only once in an object. Each value must be of
// its column's JSON type and follow its formatting rules. Blank lines are
// skipped; a line may end in CRLF; a UTF-8 byte order mark before the first
// line is skipped.
//
// A bad value, a missing key or a key given twice is a *FieldError naming the
// line and the key; a line that is not one JSON object is an error naming the
// line. Empty input gives no Results and no error.
func ReadJSON(r io.Reader) ([]Result, error) {
	br := bufio.NewReader(r)
	var rows []Result
	index := make(map[string]int, len(columns))
	for i, c := range columns {
		index[c.name] = i
	}
	seen := make([]bool, len(columns))
	for line := 1; ; line++ {
		text, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("results: read JSON: %w", err)
		}
		if line == 1 {
			text = bytes.TrimPrefix(text, []byte("\ufeff"))
		}
		if len(bytes.TrimSpace(text)) > 0 {
			res, perr := parseJSONLine(text, line, index, seen)
			if perr != nil {
				return nil, perr
			}
			rows = append(rows, res)
		}
		if err == io.EOF {
			return rows, nil
		}
	}
}

// parseJSONLine parses one line holding one JSON object. index maps a key to
// its position in columns; seen is scratch space of len(columns).
func parseJSONLine(text []byte, line int, index map[string]int, seen []bool) (Result, error) {
	var res Result
	clear(seen)
	bad := func(err error) error { return fmt.Errorf("results: line %d: %w", line, err) }
	dec := json.NewDecoder(bytes.NewReader(text))
	tok, err := dec.Token()
	if err != nil {
		return res, bad(fmt.Errorf("not a JSON object: %w", err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return res, bad(errors.New("not a JSON object"))
	}
	keys := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return res, bad(fmt.Errorf("bad JSON: %w", err))
		}
		key := tok.(string) // an object's keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return res, bad(fmt.Errorf("bad JSON value for key %s: %w", key, err))
		}
		if keys[key] {
			return res, &FieldError{Line: line, Column: key, Value: string(raw),
				Err: errors.New("key appears twice in the object"), json: true}
		}
		keys[key] = true
		i, ok := index[key]
		if !ok {
			continue // unknown key: a later writer's column
		}
		seen[i] = true
		if err := columns[i].parseJSON(&res, raw); err != nil {
			return res, &FieldError{Line: line, Column: key, Value: string(raw), Err: unwrapNum(err), json: true}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return res, bad(fmt.Errorf("bad JSON: %w", err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return res, bad(errors.New("more than one JSON value on the line"))
	}
	for i, c := range columns {
		if c.v1 && !seen[i] {
			return res, &FieldError{Line: line, Column: c.name, Err: errMissingColumn, json: true}
		}
	}
	if res.Schema < 1 {
		return res, &FieldError{Line: line, Column: "schema", Value: strconv.Itoa(res.Schema),
			Err: errors.New("schema versions start at 1"), json: true}
	}
	return res, nil
}
