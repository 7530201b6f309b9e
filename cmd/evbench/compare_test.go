package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/evbench/evbench/results"
)

// compareFileRows synthesizes n repeats of one scenario on transport with a
// little deterministic variation.
func compareFileRows(transport string, n int, p99 time.Duration, tput, loss float64) []results.Result {
	rows := make([]results.Result, n)
	for i := range rows {
		f := 1 + 0.01*float64(i-n/2)
		rows[i] = results.Result{
			Schema: results.SchemaVersion, RunID: "r1", StartedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Transport: transport, Clients: 10, Rooms: 1, Publishers: 2, RateEPS: 100, PayloadBytes: 32,
			Duration: time.Second, Repeat: i,
			LatP50:        time.Duration(float64(time.Millisecond) * f),
			LatP99:        time.Duration(float64(p99) * f),
			LatP999:       time.Duration(float64(2*p99) * f),
			ThroughputEPS: tput * f,
			LossRatio:     loss + 0.0001*float64(i),
		}
	}
	return rows
}

// writeCompareFile writes rows to a CSV in a temp dir and returns its path.
func writeCompareFile(t *testing.T, name string, rows []results.Result) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := results.WriteCSVFile(path, rows); err != nil {
		t.Fatal(err)
	}
	return path
}

// runCompare writes old and new and runs evbench compare on them with the
// extra flags.
func runCompare(t *testing.T, old, new []results.Result, flags ...string) (int, string, string) {
	t.Helper()
	args := append([]string{"compare"}, flags...)
	args = append(args, writeCompareFile(t, "old.csv", old), writeCompareFile(t, "new.csv", new))
	return runMain(context.Background(), args...)
}

func TestCompareCmdIdentical(t *testing.T) {
	rows := compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0)
	code, out, errOut := runCompare(t, rows, rows)
	if code != exitOK || strings.Contains(out, "regression ") || errOut != "" {
		t.Errorf("exit %d, want 0 and no regression\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestCompareCmdLatencyRegression(t *testing.T) {
	old := compareFileRows("tcp+tls", 5, 4*time.Millisecond, 1000, 0)
	new := compareFileRows("tcp+tls", 5, 6*time.Millisecond, 1000, 0)
	code, out, errOut := runCompare(t, old, new, "--threshold", "lat_p999=60%")
	if code != exitFailed {
		t.Errorf("exit %d, want 1", code)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "lat_p99 ") {
			line = l
		}
	}
	if !strings.Contains(line, "regression") || !strings.Contains(out, "transport=tcp+tls") || !strings.Contains(errOut, "1 regression") {
		t.Errorf("want a lat_p99 regression of tcp+tls\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
}

func TestCompareCmdThroughputAndLoss(t *testing.T) {
	old := compareFileRows("udp", 5, 4*time.Millisecond, 1000, 0.001)
	for _, c := range []struct {
		name   string
		new    []results.Result
		metric string
	}{
		{"throughput drop", compareFileRows("udp", 5, 4*time.Millisecond, 800, 0.001), "throughput"},
		{"loss rise", compareFileRows("udp", 5, 4*time.Millisecond, 1000, 0.003), "loss"},
	} {
		code, out, _ := runCompare(t, old, c.new)
		if code != exitFailed {
			t.Errorf("%s: exit %d, want 1\n%s", c.name, code, out)
		}
		found := false
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, c.metric+" ") && strings.Contains(l, "regression") {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no %s regression line:\n%s", c.name, c.metric, out)
		}
	}
	// A loss rise within 0.001 absolute is no regression.
	code, out, _ := runCompare(t, old, compareFileRows("udp", 5, 4*time.Millisecond, 1000, 0.0015))
	if code != exitOK {
		t.Errorf("loss +0.0005: exit %d, want 0\n%s", code, out)
	}
}

func TestCompareCmdOnlyInNew(t *testing.T) {
	old := compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0)
	new := append(compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0), compareFileRows("quic", 5, 40*time.Millisecond, 10, 0.5)...)
	code, out, errOut := runCompare(t, old, new)
	if code != exitOK {
		t.Errorf("exit %d, want 0\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "transport=quic") {
			line = l
		}
	}
	if !strings.Contains(line, "only in new") {
		t.Errorf("quic not reported as only in new:\n%s", out)
	}
}

func TestCompareCmdTooFew(t *testing.T) {
	old := compareFileRows("tcp", 3, 4*time.Millisecond, 1000, 0)
	new := compareFileRows("tcp", 3, 4*time.Millisecond, 1000, 0)
	code, out, errOut := runCompare(t, old, new)
	if code != exitFailed || !strings.Contains(out, "too few") || !strings.Contains(errOut, "too few repeats") || !strings.Contains(errOut, "--allow-few") {
		t.Errorf("exit %d, want 1 with too few\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, _, errOut = runCompare(t, old, new, "--allow-few")
	if code != exitOK || !strings.Contains(errOut, "too few repeats") {
		t.Errorf("--allow-few: exit %d, want 0 and the note\nstderr:\n%s", code, errOut)
	}
}

func TestCompareCmdErrorRowsSkipped(t *testing.T) {
	old := compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0)
	bad := compareFileRows("tcp", 2, time.Minute, 1, 0)
	for i := range bad {
		bad[i].Error = "connect: refused"
		bad[i].Repeat = 5 + i
	}
	new := append(compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0), bad...)
	// Rows of NEW with an error fail the gate (a transport that broke),
	// unless --allow-missing; the rest is compared either way.
	code, out, errOut := runCompare(t, old, new)
	if code != exitFailed || !strings.Contains(out, "rows skipped for an error: 0 old, 2 new") || !strings.Contains(errOut, "2 rows of NEW with an error") {
		t.Errorf("exit %d, want 1 with 2 rows skipped\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if code, _, errOut := runCompare(t, old, new, "--allow-missing"); code != exitOK {
		t.Errorf("--allow-missing: exit %d, want 0\nstderr:\n%s", code, errOut)
	}
}

// TestCompareCmdMissing: a transport of OLD absent from NEW, or two files
// that share no scenario, fail the gate: a change that breaks a transport
// or the scenario must not pass unseen.
func TestCompareCmdMissing(t *testing.T) {
	old := append(compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0), compareFileRows("udp", 5, 4*time.Millisecond, 1000, 0)...)
	onlyTCP := compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0)
	code, _, errOut := runCompare(t, old, onlyTCP)
	if code != exitFailed || !strings.Contains(errOut, "1 scenario/transport of OLD missing from NEW") {
		t.Errorf("udp missing: exit %d, want 1\nstderr:\n%s", code, errOut)
	}
	if code, _, _ := runCompare(t, old, onlyTCP, "--allow-missing"); code != exitOK {
		t.Errorf("udp missing with --allow-missing: exit %d, want 0", code)
	}
	other := compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0)
	for i := range other {
		other[i].Clients = 999
	}
	code, _, errOut = runCompare(t, onlyTCP, other, "--allow-missing")
	if code != exitFailed || !strings.Contains(errOut, "nothing was compared") {
		t.Errorf("no common scenario: exit %d, want 1\nstderr:\n%s", code, errOut)
	}
}

func TestCompareCmdUsage(t *testing.T) {
	rows := compareFileRows("tcp", 5, 4*time.Millisecond, 1000, 0)
	oldPath := writeCompareFile(t, "old.csv", rows)
	newPath := writeCompareFile(t, "new.csv", rows)
	notResults := filepath.Join(t.TempDir(), "x.txt")
	if err := os.WriteFile(notResults, []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"--threshold", "lat_p98=10%"},
		{"--threshold", "lat_p99=ten%"},
		{"--threshold", "lat_p99=10"},
		{"--threshold", "loss=5"},
		{"--alpha", "0"},
		{"--alpha", "1"},
		{"--alpha", "-0.1"},
		{"--alpha", "x"},
		{"--bogus"},
	} {
		code, _, errOut := runMain(context.Background(), append(append([]string{"compare"}, args...), oldPath, newPath)...)
		if code != exitUsage || !strings.HasPrefix(errOut, "evbench compare: ") {
			t.Errorf("%q: exit %d, want 2\nstderr:\n%s", args, code, errOut)
		}
	}
	for _, args := range [][]string{{oldPath}, {oldPath, newPath, newPath}, {oldPath, notResults}, {oldPath, filepath.Join(t.TempDir(), "missing.csv")}} {
		if code, _, errOut := runMain(context.Background(), append([]string{"compare"}, args...)...); code != exitUsage {
			t.Errorf("%q: exit %d, want 2\nstderr:\n%s", args, code, errOut)
		}
	}
	if code, out, _ := runMain(context.Background(), "compare", "--help"); code != exitOK || !strings.Contains(out, "--allow-few") {
		t.Errorf("--help: exit %d\n%s", code, out)
	}
	if code, out, _ := runMain(context.Background(), "help"); code != exitOK || !strings.Contains(out, "evbench compare OLD NEW") {
		t.Errorf("help does not list compare:\n%s", out)
	}
}
