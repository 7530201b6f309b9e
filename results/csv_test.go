package results

import (
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// designV1 is schema v1's column list, in the order the README documents it.
const designV1 = "schema, run_id, started_at, transport, clients, rooms, publishers, rate_eps, payload_bytes, duration_s, repeat, sent, expected, delivered, missed, duplicates, reordered, loss_ratio, throughput_eps, goodput_Bps, lat_p50_us, lat_p90_us, lat_p99_us, lat_p999_us, lat_max_us, lat_mean_us, lat_raw_p99_us, connect_p50_us, connect_p99_us, ack_rtt_p50_us, ack_rtt_p99_us, sched_lag_p99_us, saturated"

// appendedColumns are the columns appended while the schema was v1.
var appendedColumns = []string{"not_sent", "lat_overflow", "queue_drops", "ack_timeouts", "send_errors", "disconnects", "error"}

// v2Columns are the columns schema v2 added, in file order.
var v2Columns = []string{
	"rooms_per_client", "ack_every", "warmup_s", "drain_s", "seed", "send_queue", "slow_consumer",
	"max_sched_lag_us", "connect_timeout_s",
	"reliable", "reliable_control", "ordered", "encrypted", "datagram", "max_frame_bytes",
	"server", "reply_drops", "oversize_drops", "protocol_errors", "accept_errors",
	"server_closed_clean", "server_closed_error", "server_closed_slow",
	"evbench_version", "vcs_revision", "go_version", "gomaxprocs", "kernel", "platform",
}

// v3Columns are the columns schema v3 added, in file order.
var v3Columns = []string{
	"send_queue_bytes", "handshake_timeouts", "read_timeouts", "idle_closes", "write_timeouts",
	"unvalidated_drops", "limit_refusals", "reconnect_attempts", "reconnects",
}

// sampleRows returns v2 rows that exercise every column: fractions, large
// counts, a saturated row, an error that needs RFC 4180 quoting, and the v2
// columns of an in-process and of a remote server.
func sampleRows() []Result {
	rows := sampleRowsV1()
	for i := range rows {
		rows[i].Schema = SchemaVersion
	}
	rows[0].RoomsPerClient, rows[0].AckEvery = 1, 10
	rows[0].Warmup, rows[0].Drain, rows[0].ConnectTimeout = time.Second, 2*time.Second, 10*time.Second
	rows[0].Seed, rows[0].SendQueue, rows[0].SlowConsumer = 1, 4096, "drop-oldest"
	rows[0].MaxSchedLag = 10 * time.Millisecond
	rows[0].CapsReliable, rows[0].CapsReliableControl, rows[0].CapsOrdered = true, true, true
	rows[0].MaxFrameBytes, rows[0].Server = 1<<20, "in-process"
	rows[0].ServerClosedClean = 100
	rows[0].Version, rows[0].Revision, rows[0].GoVersion = "v0.3.0", "623cde9a1b2c3d4e5f60718293a4b5c6d7e8f901", "go1.26.0"
	rows[0].GOMAXPROCS, rows[0].Kernel, rows[0].Platform = 8, "Linux 6.1.0-x86_64", "linux/amd64"
	rows[0].SendQueueBytes = 64 << 20

	rows[1].RoomsPerClient, rows[1].AckEvery = 3, 0 // no emit asked for an ACK
	rows[1].Warmup, rows[1].Drain, rows[1].ConnectTimeout = 0, 1500*time.Millisecond, 2500*time.Millisecond
	rows[1].Seed, rows[1].SendQueue, rows[1].SlowConsumer = -42, 4, "disconnect"
	rows[1].MaxSchedLag = 1234567 * time.Nanosecond
	rows[1].CapsDatagram, rows[1].MaxFrameBytes, rows[1].Server = true, 1472, "[2001:db8::1]:9000"
	rows[1].ReplyDrops, rows[1].OversizeDrops, rows[1].ProtocolErrors, rows[1].AcceptErrors = 5, 6, 2, 1
	rows[1].ServerClosedClean, rows[1].ServerClosedError, rows[1].ServerClosedSlow = 97, 2, 1
	rows[1].Version, rows[1].Revision, rows[1].GoVersion = "(devel)", "623cde9a1b2c3d4e5f60718293a4b5c6d7e8f901+dirty", "go1.26.0"
	rows[1].GOMAXPROCS, rows[1].Kernel, rows[1].Platform = 1, "Darwin 24.1.0", "darwin/arm64"
	rows[1].SendQueueBytes, rows[1].HandshakeTimeouts, rows[1].ReadTimeouts, rows[1].IdleCloses = 1<<20, 3, 4, 5
	rows[1].WriteTimeouts, rows[1].UnvalidatedDrops, rows[1].LimitRefusals = 1, 123456, 7
	rows[1].ReconnectAttempts, rows[1].Reconnects = 12, 9

	rows[2].RoomsPerClient, rows[2].AckEvery, rows[2].Seed = 1, 1, math.MaxInt64
	rows[2].Warmup, rows[2].Drain, rows[2].ConnectTimeout = 1, 3*time.Second, time.Minute
	rows[2].SendQueue, rows[2].SlowConsumer = 1_000_000, "drop-oldest"
	rows[2].MaxSchedLag = time.Nanosecond
	rows[2].CapsReliableControl, rows[2].CapsEncrypted, rows[2].CapsDatagram = true, true, true
	rows[2].MaxFrameBytes, rows[2].Server = 1200, "bench-server.example:4433"
	rows[2].OversizeDrops, rows[2].ServerClosedClean = 1<<40, 50000
	rows[2].GOMAXPROCS, rows[2].Platform = 256, "linux/arm64"
	return rows
}

// fullRow is a v2 row with every field set to a value that is not zero, and
// text that needs RFC 4180 quoting in v2's text columns as well.
func fullRow() Result {
	return Result{
		Schema: SchemaVersion, RunID: "20250102T030405Z-0a0b0c0d", StartedAt: time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		Transport: "wss", Clients: 1000, Rooms: 20, Publishers: 100, RateEPS: 250.25, PayloadBytes: 512,
		Duration: 10*time.Second + 1, Repeat: 3,
		Sent: 250250, Expected: 12512500, Delivered: 12512000, Missed: 500, Duplicates: 4, Reordered: 9,
		LossRatio: 500.0 / 12512500, ThroughputEPS: 1251200.125, GoodputBps: 640614464.5,
		LatP50: 101, LatP90: 2002, LatP99: 30003, LatP999: 400004, LatMax: 5000005, LatMean: 6006,
		LatRawP99: 7007, ConnectP50: 8008, ConnectP99: 9009, AckRTTP50: 10010, AckRTTP99: 11011,
		SchedLagP99: 12012, Saturated: true,
		NotSent: 13, LatOverflow: 14, QueueDrops: 15, AckTimeouts: 16, SendErrors: 17, Disconnects: 18,
		Error: "row failed: \"x\", y\nz",

		RoomsPerClient: 4, AckEvery: 7, Warmup: 1500 * time.Millisecond, Drain: 2*time.Second + 3,
		Seed: -9_000_000_000, SendQueue: 64, SlowConsumer: "disconnect",
		MaxSchedLag: 10*time.Millisecond + 1, ConnectTimeout: 30*time.Second + 250*time.Millisecond,
		CapsReliable: true, CapsReliableControl: true, CapsOrdered: true, CapsEncrypted: true, CapsDatagram: true,
		MaxFrameBytes: 65536, Server: "[::1]:8443",
		ReplyDrops: 19, OversizeDrops: 20, ProtocolErrors: 21, AcceptErrors: 22,
		ServerClosedClean: 23, ServerClosedError: 24, ServerClosedSlow: 25,
		Version: "v1.2.3, \"rc\"", Revision: "0123456789abcdef0123456789abcdef01234567+dirty", GoVersion: "go1.26.0 X:nodwarf5",
		GOMAXPROCS: 12, Kernel: "Linux 6.1.0-x86_64 #1 SMP PREEMPT_DYNAMIC\nsecond line", Platform: "linux/amd64",

		SendQueueBytes: 26, HandshakeTimeouts: 27, ReadTimeouts: 28, IdleCloses: 29, WriteTimeouts: 30,
		UnvalidatedDrops: 31, LimitRefusals: 32, ReconnectAttempts: 33, Reconnects: 34,
	}
}

// onlyV1 returns r with only schema v1's fields: what a file with just the v1
// columns reads as. A field added to Result later is left zero here.
func onlyV1(r Result) Result {
	return Result{
		Schema: r.Schema, RunID: r.RunID, StartedAt: r.StartedAt, Transport: r.Transport,
		Clients: r.Clients, Rooms: r.Rooms, Publishers: r.Publishers, RateEPS: r.RateEPS,
		PayloadBytes: r.PayloadBytes, Duration: r.Duration, Repeat: r.Repeat,
		Sent: r.Sent, Expected: r.Expected, Delivered: r.Delivered, Missed: r.Missed,
		Duplicates: r.Duplicates, Reordered: r.Reordered, LossRatio: r.LossRatio,
		ThroughputEPS: r.ThroughputEPS, GoodputBps: r.GoodputBps,
		LatP50: r.LatP50, LatP90: r.LatP90, LatP99: r.LatP99, LatP999: r.LatP999, LatMax: r.LatMax,
		LatMean: r.LatMean, LatRawP99: r.LatRawP99, ConnectP50: r.ConnectP50, ConnectP99: r.ConnectP99,
		AckRTTP50: r.AckRTTP50, AckRTTP99: r.AckRTTP99, SchedLagP99: r.SchedLagP99, Saturated: r.Saturated,
	}
}

// sampleRowsV1 are the rows testdata/results.v1.csv holds: schema v1 with the
// columns appended during v1, as an evbench of schema v1 wrote them.
func sampleRowsV1() []Result {
	start := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)
	return []Result{
		{
			Schema: 1, RunID: "run-1", StartedAt: start, Transport: "tcp",
			Clients: 100, Rooms: 10, Publishers: 10, RateEPS: 1000, PayloadBytes: 256,
			Duration: 30 * time.Second, Repeat: 0,
			Sent: 300000, Expected: 2970000, Delivered: 2970000,
			ThroughputEPS: 99000, GoodputBps: 25344000,
			LatP50: 85300 * time.Nanosecond, LatP90: 140 * time.Microsecond, LatP99: 412345 * time.Nanosecond,
			LatP999: 1234567 * time.Nanosecond, LatMax: 9876543 * time.Nanosecond, LatMean: 101001 * time.Nanosecond,
			LatRawP99: 400 * time.Microsecond, ConnectP50: 250 * time.Microsecond, ConnectP99: 2 * time.Millisecond,
			AckRTTP50: 120500 * time.Nanosecond, AckRTTP99: 900 * time.Microsecond, SchedLagP99: 15 * time.Microsecond,
		},
		{
			Schema: 1, RunID: "run-1", StartedAt: start.Add(31 * time.Second), Transport: "udp",
			Clients: 100, Rooms: 10, Publishers: 10, RateEPS: 1234.5678, PayloadBytes: 256,
			Duration: 30*time.Second + 500*time.Millisecond, Repeat: 1,
			Sent: 305000, Expected: 3019500, Delivered: 3019000, Missed: 500, Duplicates: 3, Reordered: 17,
			LossRatio: 500.0 / 3019500, ThroughputEPS: 98983.60655737705, GoodputBps: 25339803.278688524,
			LatP50: 70 * time.Microsecond, LatP90: 99 * time.Microsecond, LatP99: 301 * time.Microsecond,
			LatP999: 777 * time.Microsecond, LatMax: 3 * time.Millisecond, LatMean: 80 * time.Microsecond,
			LatRawP99: 290 * time.Microsecond, ConnectP50: 1 * time.Nanosecond, ConnectP99: 999 * time.Nanosecond,
			NotSent: 2, LatOverflow: 1, QueueDrops: 40, AckTimeouts: 7, SendErrors: 3, Disconnects: 1,
			Error: "drain: 3 clients, \"slow\"\nsecond line, with comma",
		},
		{
			Schema: 1, RunID: "run-1", StartedAt: start.Add(62 * time.Second), Transport: "quic-dgram",
			Clients: 50000, Rooms: 1, Publishers: 50000, RateEPS: 0.5, PayloadBytes: 1200,
			Duration: 1500 * time.Millisecond, Repeat: 2,
			Sent: 4_200_000_000, Expected: 123_456_789_012, Delivered: 123_400_000_000, Missed: 56_789_012,
			Duplicates: 1_000_000, Reordered: 999_999,
			LossRatio: 56_789_012.0 / 123_456_789_012, ThroughputEPS: 82266666666.66667, GoodputBps: 9.8720000000000e13,
			LatP50: 2 * time.Second, LatP90: 5 * time.Second, LatP99: 29*time.Second + 999*time.Millisecond,
			LatP999: 31 * time.Second, LatMax: 1000 * time.Second, LatMean: 3 * time.Second,
			LatRawP99: time.Second, SchedLagP99: 1500 * time.Millisecond, Saturated: true, NotSent: 120,
		},
	}
}

func writeCSV(t *testing.T, rows []Result) []byte {
	t.Helper()
	var buf bytes.Buffer
	cw := NewCSVWriter(&buf)
	for i := range rows {
		if err := cw.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := cw.Flush(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestColumnsFollowDesign(t *testing.T) {
	want := append(append(strings.Split(designV1, ", "), appendedColumns...), v2Columns...)
	want = append(want, v3Columns...)
	if got := Columns(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Columns() =\n%q\nwant\n%q", got, want)
	}
	v1 := len(strings.Split(designV1, ", "))
	for i, c := range columns {
		if c.v1 != (i < v1) {
			t.Errorf("column %s: v1 = %v, want %v", c.name, c.v1, i < v1)
		}
	}
	// Columns returns a copy.
	Columns()[0] = "changed"
	if Columns()[0] != "schema" {
		t.Error("Columns() exposes the package's slice")
	}
}

func TestFormatMicros(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0.000"},
		{1, "0.001"},
		{999, "0.999"},
		{1000, "1.000"},
		{1001, "1.001"},
		{1234567, "1234.567"},
		{-1500, "-1.500"},
		{-1, "-0.001"},
		{time.Second, "1000000.000"},
		{math.MaxInt64, "9223372036854775.807"},
		{math.MinInt64, "-9223372036854775.808"},
	}
	for _, tt := range tests {
		if got := formatMicros(tt.d); got != tt.want {
			t.Errorf("formatMicros(%d) = %q, want %q", int64(tt.d), got, tt.want)
		}
		back, err := parseDecimalDuration(tt.want, "us")
		if err != nil || back != tt.d {
			t.Errorf("parse %q as µs = %d, %v; want %d", tt.want, int64(back), err, int64(tt.d))
		}
	}
}

func TestFormatSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0"},
		{30 * time.Second, "30"},
		{1500 * time.Millisecond, "1.5"},
		{1, "0.000000001"},
		{time.Second + 10*time.Microsecond, "1.00001"},
		{-2500 * time.Millisecond, "-2.5"},
		{math.MaxInt64, "9223372036.854775807"},
		{math.MinInt64, "-9223372036.854775808"},
	}
	for _, tt := range tests {
		if got := formatSeconds(tt.d); got != tt.want {
			t.Errorf("formatSeconds(%d) = %q, want %q", int64(tt.d), got, tt.want)
		}
		back, err := parseDecimalDuration(tt.want, "s")
		if err != nil || back != tt.d {
			t.Errorf("parse %q as s = %d, %v; want %d", tt.want, int64(back), err, int64(tt.d))
		}
	}
}

func TestFormatFloat(t *testing.T) {
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"},
		{0.5, "0.5"},
		{1000, "1000"},
		{1234.5678, "1234.5678"},
		{1e21, "1000000000000000000000"}, // no exponent
		{1e-7, "0.0000001"},
		{-3.25, "-3.25"},
		{math.NaN(), "NaN"},
		{math.Inf(1), "+Inf"},
		{math.Inf(-1), "-Inf"},
	}
	for _, tt := range tests {
		if got := formatFloat(tt.v); got != tt.want {
			t.Errorf("formatFloat(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestParseDecimalDuration(t *testing.T) {
	tests := []struct {
		s, unit string
		want    time.Duration
		ok      bool
	}{
		{"1.5", "us", 1500, true},
		{"1", "us", 1000, true},
		{".5", "us", 500, true},
		{"-0.25", "s", -250 * time.Millisecond, true},
		{"0.0015", "us", 1, true}, // beyond nanoseconds: truncated
		{"1,5", "us", 0, false},   // decimal comma (case C14)
		{"1.234,5", "us", 0, false},
		{"1e3", "us", 0, false},
		{"5ms", "us", 0, false},
		{"1h2", "us", 0, false}, // would be 1h2µs if passed to time.ParseDuration
		{"", "us", 0, false},
		{"-", "us", 0, false},
		{".", "s", 0, false},
		{"1.2.3", "s", 0, false},
		{"+5", "s", 0, false},
		{" 5", "s", 0, false},
		{"1-2", "s", 0, false},
		{"9223372036854775.808", "us", 0, false}, // overflows int64 ns
		{"NaN", "s", 0, false},
	}
	for _, tt := range tests {
		got, err := parseDecimalDuration(tt.s, tt.unit)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseDecimalDuration(%q, %q) = %d, %v; want %d, ok=%v", tt.s, tt.unit, int64(got), err, int64(tt.want), tt.ok)
		}
	}
}

func TestCSVRoundTrip(t *testing.T) {
	rows := sampleRows()
	got, err := ReadCSV(bytes.NewReader(writeCSV(t, rows)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("round trip differs:\ngot  %+v\nwant %+v", got, rows)
	}
}

// TestCSVWriterSchemaAndZone checks the writer's normalisations: the schema
// column is always SchemaVersion and started_at is written in UTC.
func TestCSVWriterSchemaAndZone(t *testing.T) {
	zone := time.FixedZone("CET", 3600)
	in := Result{Schema: 0, StartedAt: time.Date(2025, 6, 1, 12, 0, 0, 5, zone), Transport: "ws"}
	out := writeCSV(t, []Result{in})
	rec := readRecords(t, out)[1]
	if rec[0] != "3" {
		t.Errorf("schema = %q, want 3", rec[0])
	}
	if rec[2] != "2025-06-01T11:00:00.000000005Z" {
		t.Errorf("started_at = %q, want 2025-06-01T11:00:00.000000005Z", rec[2])
	}
	got, err := ReadCSV(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	if !got[0].StartedAt.Equal(in.StartedAt) || got[0].Schema != SchemaVersion {
		t.Errorf("read back StartedAt %v schema %d, want %v schema %d", got[0].StartedAt, got[0].Schema, in.StartedAt, SchemaVersion)
	}
}

func TestCSVNaNAndInf(t *testing.T) {
	in := Result{Transport: "udp", LossRatio: math.NaN(), ThroughputEPS: math.Inf(1)}
	got, err := ReadCSV(bytes.NewReader(writeCSV(t, []Result{in})))
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(got[0].LossRatio) || !math.IsInf(got[0].ThroughputEPS, 1) {
		t.Errorf("read back loss_ratio %v throughput %v, want NaN and +Inf", got[0].LossRatio, got[0].ThroughputEPS)
	}
}

// readRecords parses CSV strictly: every record must have as many fields as
// the header (encoding/csv's FieldsPerRecord = 0).
func readRecords(t *testing.T, data []byte) [][]string {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not parse with uniform field counts: %v\n%s", err, data)
	}
	return recs
}

// TestCSVQuoting is case C14's shape check plus RFC 4180 quoting: an error
// text with commas, quotes and line breaks is quoted, every record has the
// header's field count, and the text reads back unchanged.
func TestCSVQuoting(t *testing.T) {
	texts := []string{
		`a, b`,
		`say "hi"`,
		"line one\nline two",
		"\"quoted\", then\nnewline, \"\"doubled\"\"",
		",",
		`"`,
		" leading space",
	}
	var rows []Result
	for _, s := range texts {
		rows = append(rows, Result{Schema: SchemaVersion, Transport: "tcp", Error: s, StartedAt: time.Unix(0, 0).UTC()})
	}
	data := writeCSV(t, rows)
	if !bytes.Contains(data, []byte(`"say ""hi"""`)) {
		t.Errorf("quotes not doubled inside a quoted field:\n%s", data)
	}
	recs := readRecords(t, data)
	if len(recs) != len(texts)+1 {
		t.Fatalf("%d records, want %d", len(recs), len(texts)+1)
	}
	for i, rec := range recs {
		if len(rec) != len(Columns()) {
			t.Errorf("record %d has %d fields, want %d", i, len(rec), len(Columns()))
		}
	}
	got, err := ReadCSV(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i].Error != texts[i] {
			t.Errorf("error text %q read back as %q", texts[i], got[i].Error)
		}
	}
}

// TestCSVNoDecimalComma checks case C14 at the value level: every number uses
// '.' as its decimal separator, with no grouping and no exponent, whatever
// the environment's locale (Go's strconv ignores it).
func TestCSVNoDecimalComma(t *testing.T) {
	t.Setenv("LC_ALL", "de_DE.UTF-8")
	t.Setenv("LANG", "de_DE.UTF-8")
	recs := readRecords(t, writeCSV(t, append(sampleRows(), fullRow())))
	number := regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	fixed3 := regexp.MustCompile(`^-?[0-9]+\.[0-9]{3}$`)
	text := map[string]bool{"run_id": true, "transport": true, "error": true,
		"slow_consumer": true, "server": true, "evbench_version": true, "vcs_revision": true,
		"go_version": true, "kernel": true, "platform": true}
	boolean := map[string]bool{"saturated": true, "reliable": true, "reliable_control": true,
		"ordered": true, "encrypted": true, "datagram": true}
	for _, rec := range recs[1:] {
		for i, name := range recs[0] {
			v := rec[i]
			switch {
			case text[name]:
			case name == "started_at":
				if _, err := time.Parse(time.RFC3339Nano, v); err != nil || !strings.HasSuffix(v, "Z") {
					t.Errorf("%s = %q: not RFC 3339 UTC", name, v)
				}
			case boolean[name]:
				if v != "true" && v != "false" {
					t.Errorf("%s = %q, want true or false", name, v)
				}
			case strings.HasSuffix(name, "_us"):
				if !fixed3.MatchString(v) {
					t.Errorf("%s = %q: not a decimal with three fraction digits", name, v)
				}
			default:
				if !number.MatchString(v) {
					t.Errorf("%s = %q: not a plain decimal number", name, v)
				}
			}
		}
	}
}

func TestCSVHeaderOnly(t *testing.T) {
	data := writeCSV(t, nil)
	if want := strings.Join(Columns(), ",") + "\n"; string(data) != want {
		t.Fatalf("empty writer wrote %q, want the header %q", data, want)
	}
	rows, err := ReadCSV(bytes.NewReader(data))
	if err != nil || len(rows) != 0 {
		t.Fatalf("ReadCSV(header only) = %v, %v; want no rows, no error", rows, err)
	}
	// The header is written once, even when Flush comes first.
	var buf bytes.Buffer
	cw := NewCSVWriter(&buf)
	r := sampleRows()[0]
	for _, step := range []func() error{cw.Flush, func() error { return cw.Write(&r) }, cw.Flush, cw.Flush} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(readRecords(t, buf.Bytes())); n != 2 {
		t.Fatalf("Flush, Write, Flush, Flush gave %d records, want 2", n)
	}
}

// TestCSVReadReorderedAndExtra reads a file written by a later, different
// writer: columns in another order, unknown columns, no appended columns.
func TestCSVReadReorderedAndExtra(t *testing.T) {
	rows := sampleRows()
	recs := readRecords(t, writeCSV(t, rows))
	v1 := len(strings.Split(designV1, ", "))
	// New header: an unknown column first, the v1 columns reversed, another
	// unknown column last; appended columns left out.
	perm := []int{-1}
	for i := v1 - 1; i >= 0; i-- {
		perm = append(perm, i)
	}
	perm = append(perm, -2)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	for n, rec := range recs {
		out := make([]string, len(perm))
		for j, p := range perm {
			switch {
			case p >= 0:
				out[j] = rec[p]
			case n == 0 && p == -1:
				out[j] = "host"
			case n == 0:
				out[j] = "future_col_us"
			default:
				out[j] = "x, \"y\""
			}
		}
		if err := w.Write(out); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		rows[i] = onlyV1(rows[i])
	}
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("reordered read differs:\ngot  %+v\nwant %+v", got, rows)
	}
}

func TestCSVReadBOMAndCRLF(t *testing.T) {
	data := writeCSV(t, sampleRows()[:1])
	data = append([]byte("\ufeff"), bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))...)
	got, err := ReadCSV(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, sampleRows()[:1]) {
		t.Fatalf("got %+v", got)
	}
}

func TestCSVReadErrors(t *testing.T) {
	good := string(writeCSV(t, sampleRows()[:2]))
	lines := strings.SplitAfter(good, "\n")
	header := lines[0]
	row1 := lines[1]
	setField := func(row, col, val string) string {
		rec := readRecords(t, []byte(header+row))[1]
		for i, name := range Columns() {
			if name == col {
				rec[i] = val
			}
		}
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		w.Write(rec)
		w.Flush()
		return b.String()
	}
	dropColumn := func(col string) string {
		recs := readRecords(t, []byte(header+row1))
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		for _, rec := range recs {
			var out []string
			for i, name := range Columns() {
				if name != col {
					out = append(out, rec[i])
				}
			}
			w.Write(out)
		}
		w.Flush()
		return b.String()
	}
	tests := []struct {
		name   string
		input  string
		line   int    // for a *FieldError
		column string // for a *FieldError
		parse  bool   // want a *csv.ParseError
	}{
		{name: "decimal comma", input: header + row1 + setField(row1, "lat_p99_us", "412,345"), line: 3, column: "lat_p99_us"},
		{name: "bad float", input: header + setField(row1, "loss_ratio", "0,5"), line: 2, column: "loss_ratio"},
		{name: "bad count", input: header + setField(row1, "sent", "1.5"), line: 2, column: "sent"},
		{name: "bad int", input: header + setField(row1, "clients", ""), line: 2, column: "clients"},
		{name: "int overflow", input: header + setField(row1, "missed", "9223372036854775808"), line: 2, column: "missed"},
		{name: "bad bool", input: header + setField(row1, "saturated", "yes"), line: 2, column: "saturated"},
		{name: "bad time", input: header + setField(row1, "started_at", "2025-01-02 03:04:05"), line: 2, column: "started_at"},
		{name: "bad seconds", input: header + setField(row1, "duration_s", "30s"), line: 2, column: "duration_s"},
		{name: "bad appended", input: header + setField(row1, "queue_drops", "many"), line: 2, column: "queue_drops"},
		{name: "bad v2 bool", input: header + setField(row1, "reliable", "yes"), line: 2, column: "reliable"},
		{name: "bad v2 seconds", input: header + setField(row1, "warmup_s", "1s"), line: 2, column: "warmup_s"},
		{name: "bad v2 micros", input: header + setField(row1, "max_sched_lag_us", "10,5"), line: 2, column: "max_sched_lag_us"},
		{name: "bad v2 int", input: header + setField(row1, "seed", "0x1"), line: 2, column: "seed"},
		{name: "schema 0", input: header + setField(row1, "schema", "0"), line: 2, column: "schema"},
		{name: "missing v1 column", input: dropColumn("lat_p90_us"), line: 1, column: "lat_p90_us"},
		{name: "duplicate column", input: strings.Replace(header, "rooms", "clients", 1) + row1, line: 1, column: "clients"},
		{name: "blank lines before header", input: "\n\n" + strings.Replace(header, "rooms", "clients", 1) + row1, line: 3, column: "clients"},
		{name: "field count", input: header + strings.TrimSuffix(row1, "\n") + ",extra\n", parse: true},
		{name: "bare quote", input: header + `1,"run"x` + "\n", parse: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadCSV(strings.NewReader(tt.input))
			if err == nil {
				t.Fatal("no error")
			}
			if tt.parse {
				var pe *csv.ParseError
				if !errors.As(err, &pe) {
					t.Fatalf("error %v is not a *csv.ParseError", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *FieldError", err)
			}
			if fe.Line != tt.line || fe.Column != tt.column {
				t.Errorf("error at line %d column %q, want line %d column %q (%v)", fe.Line, fe.Column, tt.line, tt.column, err)
			}
			msg := err.Error()
			if !strings.Contains(msg, tt.column) || !strings.Contains(msg, "line ") {
				t.Errorf("message %q does not name the line and the column", msg)
			}
		})
	}
	if _, err := ReadCSV(strings.NewReader("")); err == nil {
		t.Error("ReadCSV of empty input: no error")
	}
}

type failWriter struct{ err error }

func (f failWriter) Write([]byte) (int, error) { return 0, f.err }

func TestCSVWriterErrors(t *testing.T) {
	boom := errors.New("disk full")
	cw := NewCSVWriter(failWriter{boom})
	r := sampleRows()[0]
	_ = cw.Write(&r) // buffered: the failure may surface only at Flush
	if err := cw.Flush(); !errors.Is(err, boom) {
		t.Errorf("Flush = %v, want an error wrapping %v", err, boom)
	}
	if err := NewCSVWriter(io.Discard).Write(nil); err == nil {
		t.Error("Write(nil): no error")
	}
}

// TestCSVGolden pins the exact bytes of the CSV format (go test -update
// rewrites testdata/results.golden.csv), and checks that the pinned file
// still reads back as the rows, so old files stay readable.
func TestCSVGolden(t *testing.T) {
	got := writeCSV(t, sampleRows())
	golden := filepath.Join("testdata", "results.golden.csv")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("CSV output differs from %s (go test -update rewrites it):\ngot\n%s\nwant\n%s", golden, got, want)
	}
	rows, err := ReadCSV(bytes.NewReader(want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(rows, sampleRows()) {
		t.Errorf("%s reads back as\n%+v\nwant\n%+v", golden, rows, sampleRows())
	}
}

// TestCSVRoundTripV2Full writes a row with every field set, none zero, and
// reads back the same row: every field has a column that keeps its value.
func TestCSVRoundTripV2Full(t *testing.T) {
	in := fullRow()
	v := reflect.ValueOf(in)
	for i := 0; i < v.NumField(); i++ {
		if v.Field(i).IsZero() {
			t.Fatalf("fullRow leaves %s zero: set it, so the round trip covers it", v.Type().Field(i).Name)
		}
	}
	data := writeCSV(t, []Result{in})
	recs := readRecords(t, data)
	if len(recs) != 2 || len(recs[0]) != v.NumField() {
		t.Fatalf("%d records of %d fields, want 2 of %d (one column per field)", len(recs), len(recs[0]), v.NumField())
	}
	got, err := ReadCSV(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !reflect.DeepEqual(got[0], in) {
		t.Fatalf("round trip differs:\ngot  %+v\nwant %+v", got, in)
	}
}

// TestCSVReadV1File reads a file that an evbench of schema v1 wrote: schema
// 1, the v1 columns and those appended during v1, none of v2's. Its rows
// still read, report schema 1, and have every v2 field zero.
func TestCSVReadV1File(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "results.v1.csv"))
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := append(strings.Split(designV1, ", "), appendedColumns...)
	if header := readRecords(t, data)[0]; !reflect.DeepEqual(header, wantHeader) {
		t.Fatalf("testdata/results.v1.csv is not a v1 file: header %q", header)
	}
	got, err := ReadCSV(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	want := sampleRowsV1()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 file reads as\n%+v\nwant\n%+v", got, want)
	}
	for i, r := range got {
		if r.Schema != 1 {
			t.Errorf("row %d: schema %d, want 1, as the file says", i, r.Schema)
		}
		if r.RoomsPerClient != 0 || r.Seed != 0 || r.Server != "" || r.CapsReliable || r.Platform != "" {
			t.Errorf("row %d: v2 fields not zero: %+v", i, r)
		}
	}
}

// TestCSVReadShuffledColumns reads a v2 file whose columns, all present, are
// in another order: the reader maps them by name.
func TestCSVReadShuffledColumns(t *testing.T) {
	rows := append(sampleRows(), fullRow())
	recs := readRecords(t, writeCSV(t, rows))
	perm := rand.New(rand.NewPCG(1, 2)).Perm(len(recs[0]))
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	for _, rec := range recs {
		out := make([]string, len(perm))
		for j, p := range perm {
			out[j] = rec[p]
		}
		if err := w.Write(out); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	if bytes.HasPrefix(buf.Bytes(), []byte("schema,")) {
		t.Fatal("the shuffle left schema first; pick another seed")
	}
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("shuffled read differs:\ngot  %+v\nwant %+v", got, rows)
	}
}

// TestCSVReadV2MissingColumns reads a v2 file that lacks some of v2's
// columns: appended columns are optional whatever the schema, so the file
// reads, the missing fields are zero and the rest, schema 2 included, are
// intact.
func TestCSVReadV2MissingColumns(t *testing.T) {
	in := fullRow()
	recs := readRecords(t, writeCSV(t, []Result{in}))
	drop := map[string]bool{"seed": true, "reliable": true, "max_sched_lag_us": true, "server_closed_slow": true, "platform": true}
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	for _, rec := range recs {
		var out []string
		for i, name := range recs[0] {
			if !drop[name] {
				out = append(out, rec[i])
			}
		}
		if err := w.Write(out); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	got, err := ReadCSV(&buf)
	if err != nil {
		t.Fatal(err)
	}
	want := in
	want.Seed, want.CapsReliable, want.MaxSchedLag, want.ServerClosedSlow, want.Platform = 0, false, 0, 0, ""
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("read\n%+v\nwant\n%+v", got, want)
	}
}
