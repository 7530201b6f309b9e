package results

import (
	"bytes"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/perf/benchfmt"
)

// wantGoBenchUnits are the Go benchmark format's units and whether higher
// (+1) or lower (-1) values are better.
var wantGoBenchUnits = []struct {
	unit   string
	better int
}{
	{"p50-ns", -1}, {"p90-ns", -1}, {"p99-ns", -1}, {"p999-ns", -1}, {"max-ns", -1},
	{"deliveries/s", +1}, {"goodput-B/s", +1}, {"loss-ratio", -1}, {"missed", -1},
	{"ack-rtt-p50-ns", -1}, {"connect-p50-ns", -1},
}

// goBenchRows are rows for the Go benchmark format: the sample rows (one has
// an error) and rows of transports whose names hold '+' and '-', one of them
// a repeat, one with a remote server, one whose environment differs.
func goBenchRows() []Result {
	rows := sampleRows()
	a := rows[0]
	a.Transport, a.Repeat = "tcp+tls", 0
	b := a
	b.Repeat, b.RunID, b.StartedAt = 1, "run-2", a.StartedAt.Add(time.Hour)
	b.LatP50, b.ThroughputEPS = 90*time.Microsecond, 98000.5
	c := rows[2]
	c.Transport, c.Repeat, c.Kernel, c.Version = "quic-dgram", 4, "", "v0.4.0"
	return append(rows, a, b, c)
}

// goBenchValue is the value the line of r should carry in unit, as written,
// and whether the line has it: a duration of 0 is left out.
func goBenchValue(r *Result, unit string) (float64, bool) {
	if strings.HasSuffix(unit, "-ns") {
		v, _ := goBenchValue1(r, unit)
		return v, v != 0
	}
	return goBenchValue1(r, unit)
}

func goBenchValue1(r *Result, unit string) (float64, bool) {
	switch unit {
	case "p50-ns":
		return float64(r.LatP50), true
	case "p90-ns":
		return float64(r.LatP90), true
	case "p99-ns":
		return float64(r.LatP99), true
	case "p999-ns":
		return float64(r.LatP999), true
	case "max-ns":
		return float64(r.LatMax), true
	case "deliveries/s":
		return r.ThroughputEPS, true
	case "goodput-B/s":
		return r.GoodputBps, true
	case "loss-ratio":
		return r.LossRatio, true
	case "missed":
		return float64(r.Missed), true
	case "ack-rtt-p50-ns":
		return float64(r.AckRTTP50), true
	case "connect-p50-ns":
		return float64(r.ConnectP50), true
	}
	return 0, false
}

func writeGoBench(t *testing.T, rows []Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteGoBench(&buf, rows); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// readGoBench reads data with benchfmt, failing on any syntax error.
func readGoBench(t *testing.T, data []byte) ([]*benchfmt.Result, benchfmt.UnitMetadataMap) {
	t.Helper()
	br := benchfmt.NewReader(bytes.NewReader(data), "evbench.txt")
	var results []*benchfmt.Result
	for br.Scan() {
		switch rec := br.Result().(type) {
		case *benchfmt.SyntaxError:
			t.Errorf("benchfmt: %v", rec)
		case *benchfmt.Result:
			results = append(results, rec.Clone())
		}
	}
	if err := br.Err(); err != nil {
		t.Fatal(err)
	}
	return results, br.Units()
}

func TestGoBenchUnits(t *testing.T) {
	var want []string
	for _, u := range wantGoBenchUnits {
		want = append(want, u.unit)
	}
	if got := GoBenchUnits(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("GoBenchUnits() = %q, want %q", got, want)
	}
}

// TestGoBenchParses reads the output with benchfmt: no syntax errors, one
// Result per row without an error, each with the row's name, one iteration,
// the units in order with the row's values, the unit metadata and the
// configuration of the row's environment.
func TestGoBenchParses(t *testing.T) {
	rows := goBenchRows()
	results, units := readGoBench(t, writeGoBench(t, rows))
	var ok []Result
	for _, r := range rows {
		if r.Error == "" {
			ok = append(ok, r)
		}
	}
	if len(results) != len(ok) {
		t.Fatalf("%d results, want %d (one per row without an error)", len(results), len(ok))
	}
	for _, u := range wantGoBenchUnits {
		if got := units.GetBetter(u.unit); got != u.better {
			t.Errorf("unit %s: better = %d, want %d", u.unit, got, u.better)
		}
		if md := units.Get(u.unit, "better"); md == nil || md.OrigUnit != u.unit {
			t.Errorf("unit %s: no better= metadata under its own name: %+v", u.unit, md)
		}
	}
	for i, res := range results {
		r := &ok[i]
		if got, want := "Benchmark"+res.Name.String(), GoBenchName(r); got != want {
			t.Errorf("row %d: name %q, want %q", i, got, want)
		}
		if res.Iters != 1 {
			t.Errorf("row %d: %d iterations, want 1", i, res.Iters)
		}
		var gotUnits, wantUnits []string
		for _, v := range res.Values {
			unit, val := v.Unit, v.Value
			if v.OrigUnit != "" {
				unit, val = v.OrigUnit, v.OrigValue
			}
			gotUnits = append(gotUnits, unit)
			if want, _ := goBenchValue(r, unit); val != want {
				t.Errorf("row %d %s = %v, want %v", i, unit, val, want)
			}
			if strings.HasSuffix(unit, "-ns") && v.Unit != strings.TrimSuffix(unit, "ns")+"sec" {
				t.Errorf("row %d: unit %s tidied to %s, want -sec", i, unit, v.Unit)
			}
		}
		for _, u := range wantGoBenchUnits {
			if _, has := goBenchValue(r, u.unit); has {
				wantUnits = append(wantUnits, u.unit)
			}
		}
		if strings.Join(gotUnits, " ") != strings.Join(wantUnits, " ") {
			t.Errorf("row %d units %q, want %q", i, gotUnits, wantUnits)
		}
		goos, goarch, _ := strings.Cut(r.Platform, "/")
		for k, want := range map[string]string{"goos": goos, "goarch": goarch, "pkg": GoBenchPkg,
			"evbench-version": r.Version, "vcs-revision": r.Revision, "go-version": r.GoVersion, "kernel": r.Kernel} {
			if got := res.GetConfig(k); got != want {
				t.Errorf("row %d config %s = %q, want %q", i, k, got, want)
			}
		}
	}
}

// TestGoBenchNames checks the name keys: scenario keys only, transport names
// with '+' and '-' kept, the server's address only when it is not
// in-process, GOMAXPROCS as the -N suffix, and the repeat left out.
func TestGoBenchNames(t *testing.T) {
	rows := goBenchRows()
	if got, want := GoBenchName(&rows[0]), "BenchmarkFanout/transport=tcp/clients=100/rooms=10/rooms-per-client=1/publishers=10/rate=1000/payload=256-8"; got != want {
		t.Errorf("name\n%s\nwant\n%s", got, want)
	}
	if got, want := GoBenchName(&rows[2]), "BenchmarkFanout/transport=quic-dgram/server=bench-server.example:4433/clients=50000/rooms=1/rooms-per-client=1/publishers=50000/rate=0.5/payload=1200-256"; got != want {
		t.Errorf("name\n%s\nwant\n%s", got, want)
	}
	v1 := sampleRowsV1()[0] // no GOMAXPROCS: no suffix
	if got, want := GoBenchName(&v1), "BenchmarkFanout/transport=tcp/clients=100/rooms=10/rooms-per-client=0/publishers=10/rate=1000/payload=256"; got != want {
		t.Errorf("name\n%s\nwant\n%s", got, want)
	}
	// Repeats of a scenario share the name.
	if a, b := GoBenchName(&rows[3]), GoBenchName(&rows[4]); a != b {
		t.Errorf("repeats named apart: %s, %s", a, b)
	}

	results, _ := readGoBench(t, writeGoBench(t, rows))
	wantTransports := []string{"tcp", "quic-dgram", "tcp+tls", "tcp+tls", "quic-dgram"}
	for i, res := range results {
		base, parts := res.Name.Parts()
		if string(base) != "Fanout" {
			t.Errorf("result %d: base name %q, want Fanout", i, base)
		}
		keys := map[string]string{}
		for _, p := range parts {
			if k, v, ok := strings.Cut(strings.TrimPrefix(string(p), "/"), "="); ok && p[0] == '/' {
				keys[k] = v
			} else if p[0] == '-' {
				keys["gomaxprocs"] = string(p[1:])
			} else {
				t.Errorf("result %d: name part %q is neither /key=value nor -N", i, p)
			}
		}
		if keys["transport"] != wantTransports[i] {
			t.Errorf("result %d: transport key %q, want %q", i, keys["transport"], wantTransports[i])
		}
		if _, has := keys["repeat"]; has {
			t.Errorf("result %d: name has the repeat: %s", i, res.Name)
		}
		if keys["payload"] == "" || keys["clients"] == "" || keys["gomaxprocs"] == "" {
			t.Errorf("result %d: name %s lacks payload, clients or -GOMAXPROCS", i, res.Name)
		}
	}
}

// TestGoBenchNameEscaping: values that would break the format are escaped,
// so every line still parses into the same keys.
func TestGoBenchNameEscaping(t *testing.T) {
	r := Result{Transport: "odd name/with\tspace%", Server: "host name:1/2", Clients: 1, PayloadBytes: 2, RateEPS: 1.5, GOMAXPROCS: 4}
	name := GoBenchName(&r)
	if want := "BenchmarkFanout/transport=odd%20name%2Fwith%09space%25/server=host%20name:1%2F2/clients=1/rooms=0/rooms-per-client=0/publishers=0/rate=1.5/payload=2-4"; name != want {
		t.Errorf("name\n%s\nwant\n%s", name, want)
	}
	results, _ := readGoBench(t, writeGoBench(t, []Result{r}))
	if len(results) != 1 || "Benchmark"+results[0].Name.String() != name {
		t.Fatalf("read back %v", results)
	}
	if _, parts := results[0].Name.Parts(); len(parts) != 9 {
		t.Errorf("name splits into %d parts, want 9: %q", len(parts), parts)
	}
}

// TestGoBenchSkipsErrors: a row with an error writes nothing and is counted.
func TestGoBenchSkipsErrors(t *testing.T) {
	var buf bytes.Buffer
	gw := NewGoBenchWriter(&buf)
	rows := sampleRows()
	for i := range rows {
		if err := gw.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if gw.Skipped() != 1 {
		t.Errorf("Skipped() = %d, want 1", gw.Skipped())
	}
	if strings.Contains(buf.String(), "transport=udp") {
		t.Errorf("row with an error written:\n%s", buf.String())
	}
	if n := strings.Count(buf.String(), "\nBenchmark"); n != 2 {
		t.Errorf("%d benchmark lines, want 2", n)
	}
}

// TestGoBenchConfigChanges: configuration lines follow the rows'
// environment, and a key a row does not record is cleared.
func TestGoBenchConfigChanges(t *testing.T) {
	rows := goBenchRows()
	out := string(writeGoBench(t, rows))
	for _, want := range []string{
		"goos: linux\ngoarch: amd64\npkg: github.com/evbench/evbench\nevbench-version: v0.3.0\n",
		"goarch: arm64\n",
		"kernel:\nBenchmarkFanout/transport=quic-dgram",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "pkg:"); n != 1 {
		t.Errorf("pkg line %d times, want once", n)
	}
	// A value with a line break stays on its line.
	r := fullRow()
	r.Error = ""
	out = string(writeGoBench(t, []Result{r}))
	if !strings.Contains(out, "\nkernel: Linux 6.1.0-x86_64 #1 SMP PREEMPT_DYNAMIC second line\n") {
		t.Errorf("kernel line not joined:\n%s", out)
	}
	results, _ := readGoBench(t, []byte(out))
	if len(results) != 1 {
		t.Fatalf("%d results, want 1", len(results))
	}
}

// TestGoBenchStreams: each row is one Write call of complete lines.
func TestGoBenchStreams(t *testing.T) {
	var w writeCalls
	gw := NewGoBenchWriter(&w)
	rows := goBenchRows()
	for i := range rows {
		before := len(w.calls)
		if err := gw.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
		want := 1
		if rows[i].Error != "" {
			want = 0
		}
		if got := len(w.calls) - before; got != want {
			t.Fatalf("row %d: %d Write calls, want %d", i, got, want)
		}
		if want == 1 && !strings.HasSuffix(w.calls[len(w.calls)-1], "\n") {
			t.Fatalf("row %d: Write call does not end a line", i)
		}
	}
	if err := gw.Flush(); err != nil || len(w.calls) != len(rows)-1 {
		t.Errorf("Flush after rows: %v, %d calls", err, len(w.calls))
	}
}

func TestGoBenchEmpty(t *testing.T) {
	out := writeGoBench(t, nil)
	results, units := readGoBench(t, out)
	if len(results) != 0 {
		t.Errorf("%d results from no rows", len(results))
	}
	if units.GetBetter("p99-ns") != -1 || !bytes.Contains(out, []byte("pkg: "+GoBenchPkg+"\n")) {
		t.Errorf("no rows: want the Unit lines and the pkg line, got\n%s", out)
	}
	// Flush twice, or after a row, writes the header once.
	var buf bytes.Buffer
	gw := NewGoBenchWriter(&buf)
	r := sampleRows()[0]
	for _, step := range []func() error{gw.Flush, func() error { return gw.Write(&r) }, gw.Flush} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(buf.String(), "Unit p50-ns "); n != 1 {
		t.Errorf("Unit lines written %d times, want once:\n%s", n, buf.String())
	}
	if res, _ := readGoBench(t, buf.Bytes()); len(res) != 1 || res[0].GetConfig("goos") != "linux" {
		t.Errorf("after Flush then Write: %d results", len(res))
	}
}

func TestGoBenchWriterErrors(t *testing.T) {
	boom := errors.New("disk full")
	if err := WriteGoBench(failWriter{boom}, sampleRows()); !errors.Is(err, boom) {
		t.Errorf("WriteGoBench = %v, want an error wrapping %v", err, boom)
	}
	if err := NewGoBenchWriter(io.Discard).Write(nil); err == nil {
		t.Error("Write(nil): no error")
	}
}

// TestGoBenchNonFinite: a NaN or infinite value is left out of the line.
func TestGoBenchNonFinite(t *testing.T) {
	r := sampleRows()[0]
	r.LossRatio, r.ThroughputEPS = math.NaN(), math.Inf(1)
	out := string(writeGoBench(t, []Result{r}))
	line := out[strings.Index(out, "\nBenchmark")+1:]
	if strings.Contains(line, " loss-ratio") || strings.Contains(line, " deliveries/s") || strings.Contains(line, "NaN") || strings.Contains(line, "Inf") {
		t.Errorf("non-finite values written:\n%s", line)
	}
	results, _ := readGoBench(t, []byte(out))
	if _, ok := results[0].Value("loss-ratio"); ok {
		t.Error("loss-ratio present")
	}
	if _, ok := results[0].Value("goodput-B/s"); !ok {
		t.Error("goodput-B/s missing")
	}
}

// TestGoBenchGolden pins the exact bytes of the Go benchmark format (go test
// -update rewrites testdata/results.golden.bench).
func TestGoBenchGolden(t *testing.T) {
	got := writeGoBench(t, goBenchRows())
	golden := filepath.Join("testdata", "results.golden.bench")
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
		t.Errorf("Go benchmark output differs from %s (go test -update rewrites it):\ngot\n%s\nwant\n%s", golden, got, want)
	}
	results, _ := readGoBench(t, want)
	if len(results) != 5 {
		t.Errorf("%s holds %d results, want 5", golden, len(results))
	}
	for _, res := range results {
		if !strings.HasPrefix(res.Name.String(), "Fanout/transport=") || strconv.Itoa(res.Iters) != "1" {
			t.Errorf("%s: result %s", golden, res.Name)
		}
	}
}
