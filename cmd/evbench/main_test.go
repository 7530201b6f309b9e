package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/goleak"
)

// binPath is the evbench binary TestMain builds, for the tests where a real
// process matters: exit status through os.Exit, signals, the environment.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "evbench-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "evbench test: temp dir:", err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "evbench")
	if runtime.GOOS == "windows" {
		binPath += ".exe"
	}
	build := exec.Command(goTool(), "build", "-o", binPath, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "evbench test: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	// Main is meant to be called in-process: it must not leave goroutines
	// behind once it has returned, interrupted or not.
	if err := goleak.Find(); code == 0 && err != nil {
		fmt.Fprintln(os.Stderr, "evbench test: goroutines left after the tests:", err)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// transportStarted matches the progress line with which run starts a
// transport.
var transportStarted = regexp.MustCompile(`(?m)^evbench: \S+ +\d+ clients, `)

// goTool finds the go command that runs the tests.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// runMain calls Main in-process and returns its exit code and output.
func runMain(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = Main(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// runBinary runs the built binary with args and extra environment, waiting at
// most timeout, and returns its exit code and output.
func runBinary(t *testing.T, timeout time.Duration, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("evbench %q did not finish within %v; stderr:\n%s", args, timeout, errOut.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		code = 0
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("evbench %q: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// flagLine returns the entry of `evbench run --help` that documents flag
// name: its first line and the lines its text wraps onto, joined by spaces.
func flagLine(help, name string) string {
	var entry []string
	for line := range strings.Lines(help) {
		trimmed := strings.TrimSpace(line)
		switch {
		case entry == nil && (strings.Contains(line, "--"+name+" ") || strings.Contains(line, "--"+name+"[")):
			entry = append(entry, trimmed)
		case entry != nil && strings.HasPrefix(line, "          "): // wrapped text, not the next flag
			entry = append(entry, trimmed)
		case entry != nil:
			return strings.Join(entry, " ")
		}
	}
	return strings.Join(entry, " ")
}

func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}, {"help", "help"}} {
		code, stdout, stderr := runMain(context.Background(), args...)
		if code != exitOK || stderr != "" {
			t.Errorf("evbench %q: exit %d, stderr %q; want 0 and nothing on stderr", args, code, stderr)
		}
		for _, want := range []string{"evbench run [flags]", "evbench check FILE", "evbench serve [flags]", "evbench report FILE", "evbench version", "evbench help [command]"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("evbench %q: help lacks %q:\n%s", args, want, stdout)
			}
		}
	}
}

// TestRunHelp checks that every flag of run is explained with its unit and
// default. The table must name every flag, so a new flag fails here until its
// help is checked.
func TestRunHelp(t *testing.T) {
	want := map[string][]string{
		"transports":       {"comma-separated", "(default [tcp,tcp+tls,udp,ws,wss,quic,quic-dgram])"},
		"clients":          {"clients", "(default 50)"},
		"rooms":            {"rooms", "(default 5)"},
		"rooms-per-client": {"rooms", "(default 1)"},
		"publishers":       {"clients", "0: every client"},
		"rate":             {"events/s", "(default 10)"},
		"ack-every":        {"emits", "0: never", "(default 10)"},
		"payload":          {"bytes", "(default 128)"},
		"duration":         {"duration", "5s", "(default 5s)"},
		"warmup":           {"duration", "0: none", "(default 1s)"},
		"drain":            {"duration", "0: no wait", "(default 2s)"},
		"seed":             {"not 0", "(default 1)"},
		"max-sched-lag":    {"duration", "(default 10ms)"},
		"send-queue":       {"frames", "(default 4096)"},
		"slow-consumer":    {"drop-oldest or disconnect", `(default "drop-oldest")`},
		"connect-timeout":  {"connect", "(default 10s)"},
		"server":           {"evbench serve", "HOST:PORT", "transport=HOST:PORT", "the server's own"},
		"ca":               {"PEM", "--cert-out", "system's roots"},
		"insecure":         {"--server", "do not verify"},
		"count":            {"interleaved", "repeat", "(default 1)"},
		"format":           {"csv", "json", "gobench", "benchstat", `(default "csv")`},
		"out":              {"--format", "schema v3", "- for stdout", "default: no file"},
		"quiet":            {"no table", "stderr", "needs -o"},
	}
	var o runOptions
	fs := runFlags(&o)
	fs.VisitAll(func(f *pflag.Flag) {
		if _, ok := want[f.Name]; !ok {
			t.Errorf("flag --%s has no entry in this test", f.Name)
		}
	})
	for _, args := range [][]string{{"run", "--help"}, {"run", "-h"}, {"help", "run"}} {
		code, stdout, stderr := runMain(context.Background(), args...)
		if code != exitOK || stderr != "" {
			t.Errorf("evbench %q: exit %d, stderr %q; want 0 and nothing on stderr", args, code, stderr)
		}
		for _, s := range []string{"Usage: evbench run [flags]", "stdout", "stderr", "130"} {
			if !strings.Contains(stdout, s) {
				t.Errorf("evbench %q: help lacks %q", args, s)
			}
		}
		for name, words := range want {
			line := flagLine(stdout, name)
			if line == "" {
				t.Errorf("evbench %q: help does not list --%s", args, name)
				continue
			}
			for _, w := range words {
				if !strings.Contains(line, w) {
					t.Errorf("evbench %q: the help of --%s lacks %q: %s", args, name, w, line)
				}
			}
		}
	}
	// The real process exits 0 too.
	code, stdout, _ := runBinary(t, 10*time.Second, nil, "run", "--help")
	if code != 0 || !strings.Contains(stdout, "events/s") {
		t.Errorf("binary run --help: exit %d, stdout:\n%s", code, stdout)
	}
}

// TestUsageErrors checks that bad input exits 2 at once with one line naming
// the problem (then at most a hint), runs nothing and writes no file.
func TestUsageErrors(t *testing.T) {
	// A valid base that would run quickly if validation let it through.
	base := []string{"--clients", "4", "--rooms", "2", "--duration", "200ms", "--warmup", "0"}
	tests := []struct {
		name string
		args []string // after "run" unless cmd is set
		cmd  bool     // args are the whole command line
		want string   // in the first line of stderr
	}{
		{"unknown flag", []string{"--bogus"}, false, "unknown flag: --bogus"},
		{"bad value", []string{"--clients", "abc"}, false, `"abc" for "--clients"`},
		{"missing value", []string{"run", "--rate"}, true, "--rate"},
		{"unknown transport", []string{"--transports", "tcp,carrier-pigeon"}, false, `unknown transport "carrier-pigeon"`},
		{"duplicate transport", []string{"--transports", "tcp,udp,tcp"}, false, `"tcp" twice`},
		{"no transport", []string{"--transports", ""}, false, "--transports names no transport"},
		{"rooms per client over rooms", []string{"--rooms", "2", "--rooms-per-client", "3"}, false, "--rooms-per-client"},
		{"publishers over clients", []string{"--clients", "4", "--publishers", "5"}, false, "--publishers"},
		{"negative publishers", []string{"--publishers", "-1"}, false, "--publishers"},
		{"zero rate", []string{"--rate", "0"}, false, "--rate must be between 0.001 and 1e+07 events/s per publisher, got 0"},
		{"rate too high", []string{"--rate", "2e7"}, false, "--rate must be between 0.001 and 1e+07 events/s per publisher, got 2e+07"},
		{"negative rate", []string{"--rate", "-3"}, false, "--rate"},
		{"NaN rate", []string{"--rate", "NaN"}, false, "--rate"},
		{"zero clients", []string{"--clients", "0"}, false, "--clients must be between 1 and 1048576, got 0"},
		{"zero rooms", []string{"--rooms", "0"}, false, "--rooms must be between 1 and 1048576, got 0"},
		{"huge clients", []string{"--clients", "99999999999"}, false, "--clients must be between 1 and 1048576"},
		{"negative payload", []string{"--payload", "-1"}, false, "--payload must be between 1 and 16777216 bytes, got -1"},
		{"zero payload", []string{"--payload", "0"}, false, "--payload must be between 1 and 16777216 bytes, got 0"},
		{"payload over the codec", []string{"--payload", "20000000"}, false, "--payload must be between 1 and 16777216 bytes, got 20000000"},
		{"payload over udp datagram", []string{"--transports", "udp", "--payload", "2000"}, false, "udp's limit"},
		{"payload over quic-dgram datagram", []string{"--transports", "quic-dgram", "--payload", "1200"}, false, "quic-dgram's limit"},
		{"payload over limit late in the list", []string{"--transports", "tcp,udp", "--payload", "2000"}, false, "udp's limit"},
		{"zero duration", []string{"--duration", "0"}, false, "--duration must be positive"},
		{"duration without unit", []string{"--duration", "5"}, false, "--duration"},
		{"negative warmup", []string{"--warmup", "-1s"}, false, "--warmup"},
		{"negative drain", []string{"--drain", "-1s"}, false, "--drain"},
		{"zero seed", []string{"--seed", "0"}, false, "--seed"},
		{"negative ack-every", []string{"--ack-every", "-2"}, false, "--ack-every must be at least 1 emit, got -2 (or 0 for never)"},
		{"zero connect-timeout", []string{"--connect-timeout", "0"}, false, "--connect-timeout must be positive"},
		{"quiet without -o", []string{"run", "-q", "--clients", "4", "--rooms", "2"}, true, "-q prints no table"},
		{"zero max-sched-lag", []string{"--max-sched-lag", "0"}, false, "--max-sched-lag"},
		{"zero send-queue", []string{"--send-queue", "0"}, false, "--send-queue"},
		{"bad slow-consumer", []string{"--slow-consumer", "ignore"}, false, "--slow-consumer"},
		{"zero count", []string{"--count", "0"}, false, "--count must be between 1 and 10000 repeats, got 0"},
		{"empty server", []string{"--server", "", "--transports", "tcp"}, false, "--server names no address"},
		{"server without its transport", []string{"--server", "127.0.0.1:9"}, false, "serves one transport: name it with --transports"},
		{"server for two transports", []string{"--server", "127.0.0.1:9", "--transports", "tcp,udp"}, false, "serves one transport"},
		{"server without a port", []string{"--server", "localhost", "--transports", "tcp"}, false, `--server "localhost": want HOST:PORT`},
		{"server port 0", []string{"--server", "127.0.0.1:0", "--transports", "tcp"}, false, "is not a number from 1 to 65535"},
		{"server list entry without =", []string{"--server", "tcp=127.0.0.1:9,127.0.0.1:10"}, false, "want transport=HOST:PORT"},
		{"server list unknown transport", []string{"--server", "tcp=127.0.0.1:9,sctp=127.0.0.1:10"}, false, `unknown transport "sctp"`},
		{"server list twice", []string{"--server", "tcp=127.0.0.1:9,tcp=127.0.0.1:10"}, false, `--server names "tcp" twice`},
		{"transport without a server", []string{"--server", "tcp=127.0.0.1:9,udp=127.0.0.1:10", "--transports", "tcp,ws"}, false, "--transports names ws, which --server gives no address"},
		{"send queue with server", []string{"--server", "tcp=127.0.0.1:9", "--send-queue", "10"}, false, "--send-queue is the server's setting"},
		{"slow consumer with server", []string{"--server", "tcp=127.0.0.1:9", "--slow-consumer", "disconnect"}, false, "--slow-consumer is the server's setting"},
		{"ca without server", []string{"--ca", "ca.pem"}, false, "--ca and --insecure are for a remote server"},
		{"ca and insecure", []string{"--server", "tcp=127.0.0.1:9", "--ca", "ca.pem", "--insecure"}, false, "exclude each other"},
		{"ca file missing", []string{"--server", "tcp+tls=127.0.0.1:9", "--ca", "/nonexistent/ca.pem"}, false, "--ca: open /nonexistent/ca.pem"},
		{"positional argument", []string{"extra"}, false, `unexpected argument "extra"`},
		{"unknown command", []string{"frobnicate"}, true, `unknown command "frobnicate"`},
		{"flag before command", []string{"--clients", "3"}, true, `unknown command "--clients"`},
		{"help for unknown command", []string{"help", "frobnicate"}, true, `"frobnicate"`},
		{"help for two commands", []string{"help", "run", "check"}, true, "help takes at most one command"},
		{"no args", nil, true, "no command given"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out := filepath.Join(dir, "out.csv")
			const old = "old results\n"
			if err := os.WriteFile(out, []byte(old), 0o644); err != nil {
				t.Fatal(err)
			}
			args := tt.args
			if !tt.cmd {
				args = append(append(append([]string{"run"}, base...), tt.args...), "-o", out)
			}
			check := func(how string, code int, stdout, stderr string, elapsed time.Duration) {
				t.Helper()
				lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
				if code != exitUsage {
					t.Errorf("%s: exit %d, want %d; stderr:\n%s", how, code, exitUsage, stderr)
				}
				if !strings.Contains(lines[0], tt.want) {
					t.Errorf("%s: first line of stderr %q does not contain %q", how, lines[0], tt.want)
				}
				if len(lines) > 2 && tt.args != nil {
					t.Errorf("%s: stderr has %d lines, want the reason and at most a hint:\n%s", how, len(lines), stderr)
				}
				if stdout != "" {
					t.Errorf("%s: stdout %q, want nothing", how, stdout)
				}
				if transportStarted.MatchString(stderr) {
					t.Errorf("%s: a transport started before the error:\n%s", how, stderr)
				}
				if elapsed > 3*time.Second {
					t.Errorf("%s: took %v; a usage error must not run anything", how, elapsed)
				}
				if got, err := os.ReadFile(out); err != nil || string(got) != old {
					t.Errorf("%s: -o file is now %q, %v; want it untouched", how, got, err)
				}
				if ents, _ := os.ReadDir(dir); len(ents) != 1 {
					t.Errorf("%s: %d entries in the -o directory, want only the old file", how, len(ents))
				}
			}
			start := time.Now()
			code, stdout, stderr := runMain(context.Background(), args...)
			check("Main", code, stdout, stderr, time.Since(start))

			start = time.Now()
			code, stdout, stderr = runBinary(t, 10*time.Second, nil, args...)
			check("binary", code, stdout, stderr, time.Since(start))
		})
	}
}
