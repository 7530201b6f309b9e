package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
)

// runOptions are the flags of `evbench run`.
type runOptions struct {
	transports   []string
	scenario     bench.Scenario
	slowConsumer string
	out          string
	quiet        bool
}

func runFlags(o *runOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("evbench run", pflag.ContinueOnError)
	sc := &o.scenario
	fs.StringSliceVar(&o.transports, "transports", []string{"tcp", "tcp+tls", "udp", "ws", "wss", "quic", "quic-dgram"},
		"comma-separated transports to measure, one after another")
	fs.IntVar(&sc.Clients, "clients", 50, "number of simulated clients, at least 1")
	fs.IntVar(&sc.Rooms, "rooms", 5, "number of rooms, at least 1; clients are spread over them round-robin")
	fs.IntVar(&sc.RoomsPerClient, "rooms-per-client", 1, "rooms each client joins (1 to --rooms), besides the room named by its own id")
	fs.IntVar(&sc.Publishers, "publishers", 0, "number of clients that emit, at most --clients (default 0: every client)")
	fs.Float64Var(&sc.RateEPS, "rate", 10, "target emit rate of each publisher, in events/s, at least 0.001 (open loop)")
	fs.IntVar(&sc.AckEvery, "ack-every", 10, "every Nth emit asks for an ack whose round trip is measured, in emits (0: never)")
	fs.IntVar(&sc.PayloadBytes, "payload", 128, "payload size of each event, in bytes, at least 1; udp and quic-dgram cap it so an event fits one datagram")
	fs.DurationVar(&sc.Duration, "duration", 5*time.Second, "length of the measurement window, a duration such as 500ms, 5s or 1m")
	fs.DurationVar(&sc.Warmup, "warmup", time.Second, "publishing time before the measurement window, not counted; a duration (0: none)")
	fs.DurationVar(&sc.Drain, "drain", 2*time.Second, "upper bound on the wait for deliveries in flight after the window; a duration (0: no wait)")
	fs.Int64Var(&sc.Seed, "seed", 1, "seed of the publishers' start phases and payload bytes, not 0")
	fs.DurationVar(&sc.MaxSchedLag, "max-sched-lag", 10*time.Millisecond, "p99 publisher scheduling lag above which a row is marked saturated; a positive duration")
	fs.IntVar(&sc.SendQueue, "send-queue", 4096, "server send queue per connection, in frames, 1 to 1048576")
	fs.StringVar(&o.slowConsumer, "slow-consumer", "drop-oldest", "what the server does when a send queue is full: drop-oldest or disconnect (drops are counted)")
	fs.StringVarP(&o.out, "out", "o", "", "write the results as CSV (schema v1) to this file, atomically, after each transport (default: no file)")
	fs.BoolVarP(&o.quiet, "quiet", "q", false, "print no table and no progress; errors are still printed to stderr")
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: evbench run [flags]\n\n"+
			"Runs a server and a fleet of clients in this process on loopback, one transport after another,\n"+
			"and reports fan-out latency (receive time minus intended send time, so coordinated omission is\n"+
			"corrected), throughput and missed events per transport. The table goes to stdout, progress and\n"+
			"errors to stderr. Exit status: 0 ok, 1 a measurement failed, 2 usage error, 130 interrupted\n"+
			"(the rows measured so far are still written; a second Ctrl-C exits at once).\n\nFlags:\n%s", fs.FlagUsages())
	}
	return fs
}

// validate turns the flags into a checked scenario and transport list. Every
// value is checked here, before anything runs, because bench.Scenario reads a
// zero field as "use the default": --rate 0 must be an error, not 10 events/s.
func (o *runOptions) validate() ([]transports.Transport, error) {
	sc := &o.scenario
	switch {
	case sc.Clients < 1:
		return nil, fmt.Errorf("--clients must be at least 1, got %d", sc.Clients)
	case sc.Rooms < 1:
		return nil, fmt.Errorf("--rooms must be at least 1, got %d", sc.Rooms)
	case sc.RoomsPerClient < 1 || sc.RoomsPerClient > sc.Rooms:
		return nil, fmt.Errorf("--rooms-per-client must be between 1 and --rooms (%d), got %d", sc.Rooms, sc.RoomsPerClient)
	case sc.Publishers < 0 || sc.Publishers > sc.Clients:
		return nil, fmt.Errorf("--publishers must be between 0 (every client) and --clients (%d), got %d", sc.Clients, sc.Publishers)
	case !(sc.RateEPS > 0): // NaN too; the library bounds it above
		return nil, fmt.Errorf("--rate must be above 0 events/s, got %v", sc.RateEPS)
	case sc.AckEvery < 0:
		return nil, fmt.Errorf("--ack-every must be 0 (never) or more, got %d", sc.AckEvery)
	case sc.PayloadBytes < 1:
		return nil, fmt.Errorf("--payload must be at least 1 byte, got %d", sc.PayloadBytes)
	case sc.Duration <= 0:
		return nil, fmt.Errorf("--duration must be positive, got %v", sc.Duration)
	case sc.Warmup < 0:
		return nil, fmt.Errorf("--warmup must not be negative, got %v", sc.Warmup)
	case sc.Drain < 0:
		return nil, fmt.Errorf("--drain must not be negative, got %v", sc.Drain)
	case sc.Seed == 0:
		return nil, errors.New("--seed must not be 0")
	case sc.MaxSchedLag <= 0:
		return nil, fmt.Errorf("--max-sched-lag must be positive, got %v", sc.MaxSchedLag)
	case sc.SendQueue < 1 || sc.SendQueue > bench.MaxSendQueue:
		return nil, fmt.Errorf("--send-queue must be between 1 and %d frames, got %d", bench.MaxSendQueue, sc.SendQueue)
	}
	// Map the flags' zeros to what the library understands.
	if sc.AckEvery == 0 {
		sc.AckEvery = -1 // the library's "never"
	}
	if sc.Warmup == 0 {
		sc.Warmup = -1 // the library's "none"; its zero means the 1s default
	}
	if sc.Drain == 0 {
		sc.Drain = -1 // the library's "no wait"; its zero means the 2s default
	}
	switch o.slowConsumer {
	case "drop-oldest":
		sc.SlowConsumer = transports.DropOldest
	case "disconnect":
		sc.SlowConsumer = transports.Disconnect
	default:
		return nil, fmt.Errorf("--slow-consumer must be drop-oldest or disconnect, got %q", o.slowConsumer)
	}
	if len(o.transports) == 0 {
		return nil, errors.New("--transports names no transport")
	}
	var trs []transports.Transport
	seen := map[string]bool{}
	for _, name := range o.transports {
		name = strings.TrimSpace(name)
		tr, err := transports.Lookup(name)
		if err != nil {
			return nil, fmt.Errorf("--transports: %w", err)
		}
		if seen[name] {
			return nil, fmt.Errorf("--transports names %q twice", name)
		}
		seen[name] = true
		caps := tr.Caps()
		if err := sc.WithDefaults().Validate(name, &caps); err != nil {
			return nil, err
		}
		trs = append(trs, tr)
	}
	return trs, nil
}

// checkOutput reports, before anything runs, an -o path whose file could not
// be written: anything but a regular file (a directory, /dev/null), or in a
// directory that does not exist or is not
// writable. It creates and removes a probe file next to path and leaves an
// existing file at path untouched.
func checkOutput(path string) error {
	resolved, err := results.OutputPath(path)
	if err != nil {
		return fmt.Errorf("-o: %w", err)
	}
	dir := filepath.Dir(resolved)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".probe-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("-o %s: cannot create a file in %s: %w", path, dir, err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("-o %s: %w", path, err)
	}
	return nil
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o runOptions
	fs := runFlags(&o)
	help, err := parseFlags(fs, args, stdout)
	if help {
		return exitOK
	}
	var trs []transports.Transport
	if err == nil {
		trs, err = o.validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "evbench run: %v\nRun 'evbench run --help' for usage.\n", err)
		return exitUsage
	}
	if o.out != "" {
		if err := checkOutput(o.out); err != nil {
			fmt.Fprintf(stderr, "evbench run: %v\nRun 'evbench run --help' for usage.\n", err)
			return exitUsage
		}
	}

	runID := newRunID()
	var rows []results.Result
	failed := false
	for _, tr := range trs {
		if ctx.Err() != nil {
			break
		}
		if !o.quiet {
			fmt.Fprintf(stderr, "evbench: %-10s %d clients, %d rooms, %v events/s per publisher, %v ...\n",
				tr.Name(), o.scenario.Clients, o.scenario.Rooms, o.scenario.RateEPS, o.scenario.Duration)
		}
		row, err := bench.Run(ctx, tr, o.scenario)
		row.RunID = runID
		rows = append(rows, row)
		if err != nil {
			failed = true
			fmt.Fprintf(stderr, "evbench: %s: %v\n", tr.Name(), err)
		}
		// Rewrite the file after every transport, so a run killed later
		// still leaves the rows measured so far.
		if o.out != "" {
			if err := results.WriteCSVFile(o.out, rows); err != nil {
				fmt.Fprintf(stderr, "evbench: writing %s: %v\n", o.out, err)
				return exitFailed
			}
		}
	}
	if !o.quiet {
		results.WriteTable(stdout, rows)
		if o.out != "" {
			fmt.Fprintf(stderr, "evbench: wrote %d rows to %s\n", len(rows), o.out)
		}
	}
	switch {
	case ctx.Err() != nil:
		if o.out != "" {
			fmt.Fprintf(stderr, "evbench: interrupted; the rows measured so far (%d) are in %s\n", len(rows), o.out)
		} else {
			fmt.Fprintln(stderr, "evbench: interrupted")
		}
		return exitSignal
	case failed:
		return exitFailed
	}
	return exitOK
}

// newRunID is a sortable, unique id: UTC time plus 4 random bytes.
func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
