package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/results"
)

// readRows reads a results CSV file back with results.ReadCSV.
func readRows(t *testing.T, path string) []results.Result {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := results.ReadCSV(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rows
}

// checkRow checks the invariants every results row holds (results.Check,
// the rules of `evbench check`), with a reliable transport missing nothing
// unless the row says why its measurement failed.
func checkRow(t *testing.T, r results.Result) {
	t.Helper()
	for _, v := range results.Check([]results.Result{r}, results.CheckOptions{Reliable: reliableTransport}) {
		t.Errorf("%v", v)
	}
}

// TestRunWritesRows runs two transports for real, in-process, and checks the
// rows it writes.
func TestRunWritesRows(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.csv")
	code, stdout, stderr := runMain(context.Background(), "run", "--transports", "tcp,udp",
		"--clients", "10", "--rooms", "2", "--rate", "20", "--duration", "1s", "--warmup", "200ms",
		"-o", out, "--quiet")
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	if stdout != "" || stderr != "" {
		t.Errorf("--quiet printed stdout %q, stderr %q; want nothing", stdout, stderr)
	}
	rows := readRows(t, out)
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2: %+v", len(rows), rows)
	}
	for i, want := range []string{"tcp", "udp"} {
		r := rows[i]
		if r.Transport != want {
			t.Errorf("row %d: transport %q, want %q", i, r.Transport, want)
		}
		if r.RunID == "" || r.RunID != rows[0].RunID {
			t.Errorf("row %d: run_id %q, want one non-empty id for the run (%q)", i, r.RunID, rows[0].RunID)
		}
		if r.Clients != 10 || r.Rooms != 2 || r.RateEPS != 20 || r.Duration != time.Second || r.Publishers != 10 {
			t.Errorf("row %d: scenario clients %d rooms %d rate %v duration %v publishers %d, want 10, 2, 20, 1s, 10",
				i, r.Clients, r.Rooms, r.RateEPS, r.Duration, r.Publishers)
		}
		if r.Error != "" {
			t.Errorf("row %d (%s): error %q", i, r.Transport, r.Error)
		}
		checkRow(t, r)
	}
	if rows[0].Missed != 0 {
		t.Errorf("tcp missed %d events, want 0", rows[0].Missed)
	}
	// The file passes `evbench check` too, as a user would run it.
	if code, stdout, stderr := runMain(context.Background(), "check", "--reliable-zero-missed", out); code != exitOK {
		t.Errorf("evbench check %s: exit %d\n%s%s", out, code, stdout, stderr)
	}
}

// TestCountInterleaves: --count runs every transport that many times,
// interleaved, one row per repeat numbered from 0, under one run id.
func TestCountInterleaves(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.csv")
	code, _, stderr := runMain(context.Background(), "run", "--transports", "tcp,udp", "--count", "3",
		"--clients", "4", "--rooms", "2", "--rate", "20", "--duration", "200ms", "--warmup", "0",
		"-o", out, "--quiet")
	if code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	rows := readRows(t, out)
	var got []string
	for _, r := range rows {
		got = append(got, fmt.Sprintf("%s/%d", r.Transport, r.Repeat))
		if r.RunID != rows[0].RunID {
			t.Errorf("run ids %q and %q in one invocation", r.RunID, rows[0].RunID)
		}
	}
	if want := "tcp/0 udp/0 tcp/1 udp/1 tcp/2 udp/2"; strings.Join(got, " ") != want {
		t.Errorf("rows %s, want %s", strings.Join(got, " "), want)
	}
}

// TestCSVUnderDecimalCommaLocale is docs/cases.md C14: a locale whose decimal
// separator is ',' must not change the CSV. Go formats numbers without a
// locale, and the test holds whether or not de_DE is installed.
func TestCSVUnderDecimalCommaLocale(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.csv")
	code, _, stderr := runBinary(t, 30*time.Second, []string{"LC_ALL=de_DE.UTF-8", "LANG=de_DE.UTF-8", "LC_NUMERIC=de_DE.UTF-8"},
		"run", "--transports", "tcp,udp", "--clients", "4", "--rooms", "2", "--rate", "12.5",
		"--duration", "400ms", "--warmup", "100ms", "-o", out, "-q")
	if code != 0 {
		t.Fatalf("exit %d, want 0; stderr:\n%s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	cr := csv.NewReader(bytes.NewReader(data))
	header, err := cr.Read()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(header, results.Columns()) {
		t.Errorf("header %q, want %q", header, results.Columns())
	}
	cr.FieldsPerRecord = len(header)
	recs, err := cr.ReadAll()
	if err != nil {
		t.Fatalf("a row's field count differs from the header's %d: %v\n%s", len(header), err, data)
	}
	if len(recs) != 2 {
		t.Fatalf("%d rows, want 2", len(recs))
	}
	text := map[string]bool{"run_id": true, "started_at": true, "transport": true, "error": true,
		"slow_consumer": true, "server": true, "evbench_version": true, "vcs_revision": true,
		"go_version": true, "kernel": true, "platform": true}
	boolean := map[string]bool{"saturated": true, "reliable": true, "reliable_control": true,
		"ordered": true, "encrypted": true, "datagram": true}
	number := regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)
	for _, rec := range recs {
		for i, v := range rec {
			col := header[i]
			switch {
			case boolean[col]:
				if v != "true" && v != "false" {
					t.Errorf("%s: %s = %q, want true or false", rec[3], col, v)
				}
			case text[col]:
			case strings.Contains(v, ","):
				t.Errorf("%s: %s = %q holds a ','", rec[3], col, v)
			case !number.MatchString(v):
				t.Errorf("%s: %s = %q is not a plain decimal number with '.'", rec[3], col, v)
			case strings.HasSuffix(col, "_us") && !strings.Contains(v, "."):
				t.Errorf("%s: %s = %q, want three fraction digits after '.'", rec[3], col, v)
			case col == "rate_eps" && v != "12.5":
				t.Errorf("%s: rate_eps = %q, want 12.5", rec[3], v)
			}
		}
	}
	for _, r := range readRows(t, out) {
		checkRow(t, r)
	}
}

// TestInterruptInProcess cancels the context 1.5 s into the first of two
// transports: Main exits 130 and the file holds the partial row.
func TestInterruptInProcess(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.csv")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	timer := time.AfterFunc(1500*time.Millisecond, cancel)
	defer timer.Stop()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		code, stdout, stderr := runMain(ctx, "run", "--transports", "tcp,udp", "--clients", "10", "--rooms", "2",
			"--rate", "20", "--duration", "3s", "--warmup", "200ms", "-o", out)
		done <- result{code, stdout, stderr}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Main did not return within 20s of the start, 18.5s after the interrupt")
	}
	if res.code != exitSignal {
		t.Errorf("exit %d, want %d; stderr:\n%s", res.code, exitSignal, res.stderr)
	}
	if elapsed := time.Since(start); elapsed > 8*time.Second {
		t.Errorf("Main returned %v after the start; an interrupt must end the run within the drain bound", elapsed)
	}
	if !strings.Contains(res.stderr, "interrupted") || strings.Contains(res.stderr, "udp ") {
		t.Errorf("stderr should report the interrupt and not start udp:\n%s", res.stderr)
	}
	if !strings.Contains(res.stdout, "transport") || !strings.Contains(res.stdout, "tcp") {
		t.Errorf("the table of the rows measured so far is not on stdout:\n%s", res.stdout)
	}
	checkInterruptedFile(t, out)
}

// checkInterruptedFile checks a file written by a run of tcp,udp interrupted
// during tcp.
func checkInterruptedFile(t *testing.T, out string) {
	t.Helper()
	rows := readRows(t, out)
	if len(rows) != 1 {
		t.Fatalf("%d rows in %s, want 1 (tcp, interrupted): %+v", len(rows), out, rows)
	}
	r := rows[0]
	if r.Transport != "tcp" || r.Error != "interrupted" {
		t.Errorf("row: transport %q error %q, want tcp and \"interrupted\"", r.Transport, r.Error)
	}
	if r.Duration <= 0 || r.Duration >= 3*time.Second {
		t.Errorf("row duration %v, want the part measured, between 0 and 3s", r.Duration)
	}
	checkRow(t, r)
}

// TestInterruptProcess sends SIGINT to a real evbench process: it exits 130
// and writes the row it measured.
func TestInterruptProcess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("os.Interrupt cannot be sent to a process on Windows")
	}
	out := filepath.Join(t.TempDir(), "out.csv")
	cmd := exec.Command(binPath, "run", "--transports", "tcp,udp", "--clients", "10", "--rooms", "2",
		"--rate", "20", "--duration", "3s", "--warmup", "200ms", "-o", out, "-q")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		t.Fatalf("evbench ended before the interrupt: %v\n%s", err, stderr.String())
	case <-time.After(1500 * time.Millisecond):
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-waited
		t.Fatalf("evbench did not exit within 15s of SIGINT; stderr:\n%s", stderr.String())
	}
	if code := cmd.ProcessState.ExitCode(); code != exitSignal {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitSignal, stderr.String())
	}
	checkInterruptedFile(t, out)
}

// TestOutputDirMissing checks that an -o file that cannot be created, or is
// not a regular file, is a usage error (exit 2) before anything runs, with
// one line naming the path and a hint, and leaves nothing behind.
func TestOutputDirMissing(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.csv")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{filepath.Join(dir, "missing", "out.csv"), dir, fifo} {
		start := time.Now()
		code, stdout, stderr := runMain(context.Background(), "run", "--transports", "tcp", "--clients", "2",
			"--rooms", "1", "--duration", "200ms", "-o", out)
		if code != exitUsage {
			t.Errorf("-o %s: exit %d, want %d; stderr:\n%s", out, code, exitUsage, stderr)
		}
		if first, _, _ := strings.Cut(stderr, "\n"); !strings.Contains(first, out) {
			t.Errorf("-o %s: stderr %q, want its first line to name the path", out, stderr)
		}
		if stdout != "" || transportStarted.MatchString(stderr) {
			t.Errorf("-o %s: stdout %q, stderr %q; want no table and no transport started", out, stdout, stderr)
		}
		if elapsed := time.Since(start); elapsed > 2*time.Second {
			t.Errorf("-o %s: took %v; the path must be checked before the run", out, elapsed)
		}
	}
	if ents, err := os.ReadDir(dir); err != nil || len(ents) != 1 || ents[0].Name() != "fifo.csv" || ents[0].Type()&fs.ModeNamedPipe == 0 {
		t.Errorf("the directory holds %v (%v), want only the FIFO, untouched", ents, err)
	}
}

// TestOutputReplacedAtomically watches the -o file while a run rewrites it
// after each transport: every read sees the old file or a complete CSV.
// It also checks the streams: the table on stdout, progress on stderr.
func TestOutputReplacedAtomically(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.csv")
	const old = "old results, not a CSV of ours\n"
	if err := os.WriteFile(out, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := runMain(context.Background(), "run", "--transports", "tcp,udp", "--clients", "4",
			"--rooms", "1", "--duration", "500ms", "--warmup", "100ms", "-o", out)
		done <- result{code, stdout, stderr}
	}()
	seen := map[int]bool{} // rows seen in complete files; -1 for the old file
	deadline := time.After(20 * time.Second)
	var res result
poll:
	for {
		select {
		case res = <-done:
			break poll
		case <-deadline:
			t.Fatal("the run did not end within 20s")
		case <-time.After(2 * time.Millisecond):
		}
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatalf("while the run writes it, %s cannot be read: %v", out, err)
		}
		if string(data) == old {
			seen[-1] = true
			continue
		}
		rows, err := results.ReadCSV(bytes.NewReader(data))
		if err != nil || len(rows) == 0 || !bytes.HasSuffix(data, []byte("\n")) {
			t.Fatalf("read a partial file (%d rows, %v):\n%s", len(rows), err, data)
		}
		seen[len(rows)] = true
	}
	if res.code != exitOK {
		t.Fatalf("exit %d, want 0; stderr:\n%s", res.code, res.stderr)
	}
	rows := readRows(t, out)
	if len(rows) != 2 {
		t.Fatalf("%d rows, want 2", len(rows))
	}
	if !seen[-1] {
		t.Error("the old file was gone before the first transport finished")
	}
	t.Logf("states seen while polling (-1: old file, n: complete file of n rows): %v", seen)
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("replaced file: %v, %v; want the old file's mode 0600", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("%d entries in the directory, want only out.csv (no temporary or probe files)", len(ents))
	}

	// The table goes to stdout: a header and a line per transport.
	lines := strings.Split(strings.TrimSuffix(res.stdout, "\n"), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "transport") ||
		!strings.HasPrefix(lines[1], "tcp ") || !strings.HasPrefix(lines[2], "udp ") {
		t.Errorf("stdout is not the table of tcp and udp:\n%s", res.stdout)
	}
	// Progress goes to stderr: one line per transport, then where the file is.
	for _, want := range []string{"evbench: tcp ", "evbench: udp ", "wrote 2 rows to " + out} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, res.stderr)
		}
	}
}

// TestFailedMeasurementExits1: a row whose measurement failed (here nothing
// could be expected: one event per 1,000 s in a 200 ms window) is written
// with its reason, and the exit status says the measurement failed.
func TestFailedMeasurementExits1(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.csv")
	code, _, stderr := runMain(context.Background(), "run", "--transports", "tcp", "--clients", "2", "--rooms", "1",
		"--rate", "0.001", "--duration", "200ms", "--warmup", "0", "--drain", "0", "-q", "-o", out)
	if code != exitFailed {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFailed, stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := results.ReadCSV(f)
	if err != nil || len(rows) != 1 || !strings.Contains(rows[0].Error, "no delivery was expected") {
		t.Fatalf("rows %+v, %v; want one row whose error gives the reason", rows, err)
	}
}

// TestDiskFull: the results file's disk fills up mid-run (a tmpfs with no
// room left, so it needs root). The error is reported once, in one line
// naming the file and the cause, no further transport runs, the table of
// what was measured is still printed, the old file is left as it was and
// the exit status is 1.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "evbench-test", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	defer exec.Command("umount", dir).Run()
	out := filepath.Join(dir, "out.csv")
	if err := os.WriteFile(out, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for err == nil { // fill the file system to the last block
		_, err = filler.Write(make([]byte, 512))
	}
	filler.Close()
	code, stdout, stderr := runMain(context.Background(), "run", "--transports", "tcp,udp", "--clients", "4",
		"--rooms", "2", "--duration", "200ms", "--warmup", "0", "-o", out)
	if code != exitFailed {
		t.Errorf("exit %d, want %d", code, exitFailed)
	}
	want := "evbench: write " + out + ": no space left on device; no further transport is run\n"
	if strings.Count(stderr, "no space left") != 1 || !strings.Contains(stderr, want) || strings.Count(stderr, "write") != 1 {
		t.Errorf("stderr should say once %q:\n%s", want, stderr)
	}
	if transportStarted.FindAllString(stderr, -1) == nil || len(transportStarted.FindAllString(stderr, -1)) != 1 {
		t.Errorf("want tcp started and udp not:\n%s", stderr)
	}
	if !strings.Contains(stdout, "tcp") || !strings.Contains(stdout, "transport") {
		t.Errorf("the table was not printed:\n%s", stdout)
	}
	if got, err := os.ReadFile(out); err != nil || string(got) != "old\n" {
		t.Errorf("the old file is now %q, %v", got, err)
	}
}

// TestCapacityRefused is case C10 before connecting: under an open-file
// limit of 200, 150 tcp clients (two descriptors each in one process) do not
// fit. run says so before anything starts, with the numbers and how to
// lift the limit, and exits 2; 150 udp clients (one each) fit the check.
func TestCapacityRefused(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh to set the limit with ulimit")
	}
	run := func(transport string) (int, string) {
		cmd := exec.Command(sh, "-c", `ulimit -n 200 && exec "$0" "$@"`, binPath, "run", "--transports", transport,
			"--clients", "150", "--rooms", "2", "--duration", "100ms", "--warmup", "0", "-o", filepath.Join(t.TempDir(), "out.csv"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), stderr.String()
	}
	code, stderr := run("tcp")
	for _, want := range []string{"--clients 150: 316 file descriptors needed for 150 tcp clients (2 per client in one process)",
		"open-file limit is 200", "run at most 92 clients"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if code != exitUsage || transportStarted.MatchString(stderr) {
		t.Errorf("exit %d, want %d before any transport starts:\n%s", code, exitUsage, stderr)
	}
	if code, stderr := run("udp"); code != exitOK {
		t.Errorf("150 udp clients under 200 descriptors: exit %d\n%s", code, stderr)
	}
}
