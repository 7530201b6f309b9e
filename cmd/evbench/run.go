package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
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
	servers      []string // --server: one ADDR, or transport=ADDR pairs
	caFile       string   // --ca
	insecure     bool     // --insecure
	count        int      // --count: repeats of each transport
	format       string   // --format of -o
	out          string
	quiet        bool
	stderr       io.Writer // progress, set by runCmd

	fs *pflag.FlagSet // to ask which flags were given
}

// aimed is one transport to measure and the server the fleet dials for it
// ("" for a server in this process).
type aimed struct {
	tr     transports.Transport
	server string
}

// maxCount bounds --count.
const maxCount = 10000

// stdoutPath is the -o value that writes the CSV to stdout.
const stdoutPath = "-"

// runFlags binds the flags of run to o. Their defaults are the library's
// (bench.Scenario's WithDefaults and the transport registry), so the help
// and the behaviour cannot drift apart.
func runFlags(o *runOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("evbench run", pflag.ContinueOnError)
	o.fs = fs
	o.scenario = bench.Scenario{}.WithDefaults()
	sc := &o.scenario
	fs.StringSliceVar(&o.transports, "transports", transports.Names(),
		"comma-separated transports to measure, one after another")
	fs.IntVar(&sc.Clients, "clients", sc.Clients, "number of simulated clients, at least 1")
	fs.IntVar(&sc.Rooms, "rooms", sc.Rooms, "number of rooms, at least 1; clients are spread over them round-robin")
	fs.IntVar(&sc.RoomsPerClient, "rooms-per-client", sc.RoomsPerClient,
		"rooms each client joins (1 to --rooms), besides the room named by its own id")
	fs.IntVar(&sc.Publishers, "publishers", bench.AllPublishers,
		"number of clients that emit, at most --clients (0: every client)")
	fs.Float64Var(&sc.RateEPS, "rate", sc.RateEPS,
		fmt.Sprintf("target emit rate of each publisher, in events/s, %v to %v (open loop)", bench.MinRateEPS, bench.MaxRateEPS))
	fs.IntVar(&sc.AckEvery, "ack-every", sc.AckEvery,
		"every Nth emit asks for an ack whose round trip is measured, in emits (0: never)")
	fs.IntVar(&sc.PayloadBytes, "payload", sc.PayloadBytes,
		fmt.Sprintf("payload size of each event, in bytes, 1 to %d; over udp and quic-dgram an event must fit one datagram (a larger payload is refused)", transports.MaxPayloadBytes))
	fs.DurationVar(&sc.Duration, "duration", sc.Duration, "length of the measurement window, a duration such as 500ms, 5s or 1m")
	fs.DurationVar(&sc.Warmup, "warmup", sc.Warmup, "publishing time before the measurement window, not counted (0: none)")
	fs.DurationVar(&sc.Drain, "drain", sc.Drain,
		"longest wait after the window for deliveries in flight (0: no wait)")
	fs.Int64Var(&sc.Seed, "seed", sc.Seed, "seed of the publishers' start phases and payload bytes, not 0")
	fs.DurationVar(&sc.MaxSchedLag, "max-sched-lag", sc.MaxSchedLag,
		"p99 publisher scheduling lag above which a row is marked saturated; positive")
	fs.IntVar(&sc.SendQueue, "send-queue", sc.SendQueue,
		fmt.Sprintf("server send queue per connection, in frames, 1 to %d", bench.MaxSendQueue))
	fs.StringVar(&o.slowConsumer, "slow-consumer", sc.SlowConsumer.String(),
		"what the server does when a send queue is full: drop-oldest or disconnect (drops are counted)")
	fs.DurationVar(&sc.ConnectTimeout, "connect-timeout", sc.ConnectTimeout,
		"longest time for all clients to connect and join their rooms")
	fs.StringSliceVar(&o.servers, "server", nil,
		"run the fleet against a running evbench serve instead of a server in this process: HOST:PORT for the one transport of --transports, or a comma-separated list of transport=HOST:PORT (the transports to measure, unless --transports names some of them); --send-queue and --slow-consumer are then the server's own. One fleet at a time per server: the fleet's client ids are 1 to --clients, and the server's counters are read as a difference")
	fs.StringVar(&o.caFile, "ca", "",
		"PEM file of the certificates that sign a remote server's (tcp+tls, wss, quic, quic-dgram), such as the one evbench serve --cert-out writes (default with --server: the system's roots)")
	fs.BoolVar(&o.insecure, "insecure", false,
		"with --server, do not verify the server's TLS certificate (encryption stays on)")
	fs.IntVar(&o.count, "count", 1,
		"run each transport this many times, interleaved (A B C A B C ...) so that drift hits all alike; one row per repeat, numbered from 0 in the repeat column")
	fs.StringVar(&o.format, "format", "csv",
		"format of -o: csv, json (JSON Lines, one object per row as it completes) or gobench (the Go benchmark format benchstat reads; rows with an error are left out)")
	fs.StringVarP(&o.out, "out", "o", "",
		fmt.Sprintf("write the results (schema v%d, in --format) to this file, atomically, after each transport; - for stdout (default: no file)", results.SchemaVersion))
	fs.BoolVarP(&o.quiet, "quiet", "q", false,
		"print no table and no progress (errors still go to stderr); needs -o")
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `Usage: evbench run [flags]

Runs a server and a fleet of clients in this process on loopback (or, with
--server, the fleet against a running evbench serve), one transport after
another, and reports per transport the fan-out latency
(receive time minus intended send time, so coordinated omission is
corrected), throughput and missed events. The table goes to stdout (to
stderr with -o -), progress and errors to stderr.

Exit status: 0 ok, 1 a measurement failed, 2 usage error, 130 interrupted.
The first interrupt (SIGINT or SIGTERM) ends the window and writes the rows
measured so far; a second one exits at once (130 for SIGINT, 143 for
SIGTERM).

Flags:
%s`, fs.FlagUsagesWrapped(80))
	}
	return fs
}

// scenarioFlags maps a bench.FieldError's Field to the flag that sets it
// and, where the flag's 0 has a meaning of its own, says which.
var scenarioFlags = map[string]struct{ flag, zero string }{
	"Clients":        {"--clients", ""},
	"Rooms":          {"--rooms", ""},
	"RoomsPerClient": {"--rooms-per-client", ""},
	"Publishers":     {"--publishers", "0 for every client"},
	"RateEPS":        {"--rate", ""},
	"AckEvery":       {"--ack-every", "0 for never"},
	"PayloadBytes":   {"--payload", ""},
	"Warmup":         {"--warmup", "0 for none"},
	"Duration":       {"--duration", ""},
	"Drain":          {"--drain", "0 for no wait"},
	"Seed":           {"--seed", ""},
	"MaxSchedLag":    {"--max-sched-lag", ""},
	"SendQueue":      {"--send-queue", ""},
	"SlowConsumer":   {"--slow-consumer", ""},
	"ConnectTimeout": {"--connect-timeout", ""},
}

// flagError rewrites a scenario error in the words of the command line:
// "--rate must be between ...".
func flagError(err error) error {
	var fe *bench.FieldError
	if !errors.As(err, &fe) {
		return err
	}
	f, ok := scenarioFlags[fe.Field]
	switch {
	case fe.Field == "":
		return errors.New(fe.Msg)
	case !ok:
		return err // a field without a flag: the library's own words
	case f.zero != "":
		return fmt.Errorf("%s %s (or %s)", f.flag, fe.Msg, f.zero)
	}
	return fmt.Errorf("%s %s", f.flag, fe.Msg)
}

// validate turns the flags into a checked scenario and transport list.
// bench.Scenario.Validate does the checking; here the flags' zeros that
// mean "none" become the library's named values first, and every other
// zero stays a zero, which Validate refuses (--rate 0 is an error, not the
// default rate).
func (o *runOptions) validate() ([]aimed, error) {
	sc := &o.scenario
	if sc.AckEvery == 0 {
		sc.AckEvery = bench.NeverAck
	}
	if sc.Warmup == 0 {
		sc.Warmup = bench.NoWarmup
	}
	if sc.Drain == 0 {
		sc.Drain = bench.NoDrain
	}
	switch o.slowConsumer {
	case transports.DropOldest.String():
		sc.SlowConsumer = transports.DropOldest
	case transports.Disconnect.String():
		sc.SlowConsumer = transports.Disconnect
	default:
		return nil, fmt.Errorf("--slow-consumer must be drop-oldest or disconnect, got %q", o.slowConsumer)
	}
	if err := sc.Validate("", nil); err != nil {
		return nil, flagError(err)
	}
	if len(o.transports) == 0 {
		return nil, errors.New("--transports names no transport")
	}
	if err := checkFormat(o.format); err != nil {
		return nil, err
	}
	if o.fs.Changed("format") && o.out == "" {
		return nil, errors.New("--format is the format of -o: add -o FILE, or -o - for stdout")
	}
	if o.count < 1 || o.count > maxCount {
		return nil, fmt.Errorf("--count must be between 1 and %d repeats, got %d", maxCount, o.count)
	}
	servers, err := o.serverAddrs()
	if err != nil {
		return nil, err
	}
	cfg, err := o.transportConfig()
	if err != nil {
		return nil, err
	}
	var trs []aimed
	seen := map[string]bool{}
	for _, name := range o.transports {
		name = strings.TrimSpace(name)
		tr, err := transports.New(name, cfg)
		if err != nil {
			return nil, fmt.Errorf("--transports: %w", err)
		}
		if seen[name] {
			return nil, fmt.Errorf("--transports names %q twice", name)
		}
		seen[name] = true
		caps := tr.Caps()
		if err := sc.Validate(name, &caps); err != nil {
			return nil, flagError(err)
		}
		server := servers[name]
		clients := sc.Clients
		if server != "" {
			// The fleet alone: no server descriptors, one control connection.
			caps.ServerFDs, clients = 0, clients+1
		}
		if err := bench.CheckCapacity(clients, caps, name); err != nil {
			return nil, fmt.Errorf("--clients %d: %w", sc.Clients, err)
		}
		trs = append(trs, aimed{tr: tr, server: server})
	}
	if o.quiet && o.out == "" {
		return nil, errors.New("-q prints no table, so without -o nothing would be kept: add -o FILE (or -o - for the rows on stdout)")
	}
	return trs, nil
}

// serverAddrs parses --server into the address of each transport's
// server, and settles --transports from it: one HOST:PORT needs exactly one
// transport, a transport=HOST:PORT list names the transports to measure
// when --transports was not given. It returns an empty map without
// --server.
func (o *runOptions) serverAddrs() (map[string]string, error) {
	addrs := map[string]string{}
	if o.fs.Changed("server") && len(o.servers) == 0 {
		return nil, errors.New("--server names no address (an empty value would quietly run the server in this process)")
	}
	if len(o.servers) == 0 {
		if o.caFile != "" || o.insecure {
			return nil, errors.New("--ca and --insecure are for a remote server: add --server")
		}
		return addrs, nil
	}
	for _, f := range []string{"send-queue", "slow-consumer"} {
		if o.fs.Changed(f) {
			return nil, fmt.Errorf("--%s is the server's setting: with --server, give it to evbench serve", f)
		}
	}
	if len(o.servers) == 1 && !strings.Contains(o.servers[0], "=") {
		addr := strings.TrimSpace(o.servers[0])
		if err := checkHostPort(addr); err != nil {
			return nil, fmt.Errorf("--server %q: %w", addr, err)
		}
		if !o.fs.Changed("transports") || len(o.transports) != 1 {
			return nil, fmt.Errorf("--server %s serves one transport: name it with --transports (one), or use --server transport=%s", addr, addr)
		}
		addrs[strings.TrimSpace(o.transports[0])] = addr
		return addrs, nil
	}
	var order []string
	for _, pair := range o.servers {
		name, addr, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return nil, fmt.Errorf("--server %q: want transport=HOST:PORT in a list of more than one", pair)
		}
		if _, err := transports.Lookup(name); err != nil {
			return nil, fmt.Errorf("--server: %w", err)
		}
		if err := checkHostPort(addr); err != nil {
			return nil, fmt.Errorf("--server %s=%q: %w", name, addr, err)
		}
		if _, dup := addrs[name]; dup {
			return nil, fmt.Errorf("--server names %q twice", name)
		}
		addrs[name] = addr
		order = append(order, name)
	}
	if !o.fs.Changed("transports") {
		o.transports = order
		return addrs, nil
	}
	for _, name := range o.transports {
		if addrs[strings.TrimSpace(name)] == "" {
			return nil, fmt.Errorf("--transports names %s, which --server gives no address", name)
		}
	}
	return addrs, nil
}

// certHint says what to do about a server certificate the fleet could not
// verify, or is "" for any other error.
func certHint(err error) string {
	var unknown x509.UnknownAuthorityError
	var verify *tls.CertificateVerificationError
	if errors.As(err, &unknown) || errors.As(err, &verify) {
		return " (trust the server's certificate with --ca FILE, which evbench serve --cert-out FILE writes, or skip verification with --insecure)"
	}
	return ""
}

// checkHostPort reports an address that is not HOST:PORT with a port
// number from 1 to 65535.
func checkHostPort(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT")
	}
	if host == "" {
		return errors.New("want HOST:PORT with a host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return nil
}

// transportConfig is the transports' configuration: the default (loopback,
// the in-memory certificate) for a server in this process; for a remote
// one, TLS clients that verify against the system's roots, the --ca file's
// certificates, or nothing with --insecure.
func (o *runOptions) transportConfig() (transports.Config, error) {
	if len(o.servers) == 0 {
		return transports.Config{}, nil
	}
	if o.insecure && o.caFile != "" {
		return transports.Config{}, errors.New("--insecure and --ca exclude each other: --insecure verifies nothing")
	}
	client := &tls.Config{InsecureSkipVerify: o.insecure}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return transports.Config{}, fmt.Errorf("--ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return transports.Config{}, fmt.Errorf("--ca %s: no PEM certificate in the file", o.caFile)
		}
		client.RootCAs = pool
	}
	return transports.Config{ClientTLS: client}, nil
}

// checkOutput reports, before anything runs, an -o path whose file could not
// be written: anything but a regular file (a directory, /dev/null), or in a
// directory that does not exist or is not writable. It creates and removes
// a probe file next to path and leaves an existing file at path untouched.
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

// rowWriter keeps the results file up to date: a file is rewritten
// atomically, in its format, with every row so far, so a run killed later
// still leaves the rows measured before; stdout (-o -) gets each row as it
// comes.
type rowWriter struct {
	path   string
	format string
	stream func(*results.Result) error // for stdout
}

func newRowWriter(path, format string, stdout io.Writer) *rowWriter {
	w := &rowWriter{path: path, format: format}
	if path == stdoutPath {
		w.stream = rowStream(stdout, format)
	}
	return w
}

// write records rows, of which the last one is new.
func (w *rowWriter) write(rows []results.Result) error {
	if w.stream != nil {
		return w.stream(&rows[len(rows)-1])
	}
	return results.WriteFileAtomic(w.path, func(f io.Writer) error { return encodeRows(f, w.format, rows) })
}

// runCmd is `evbench run`. exitEarly, when not nil, is called with the exit
// code once the rows are written after an interrupt, so that the process
// does not wait for the teardown of a saturated run; Main passes nil and
// returns after the teardown.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer, exitEarly func(code int)) int {
	var o runOptions
	fs := runFlags(&o)
	o.stderr = stderr
	help, err := parseFlags(fs, args, stdout)
	if help {
		return exitOK
	}
	// The soft open-file limit is raised to the hard one before the
	// capacity check; a failure leaves the limit as it was, and the check
	// then says what to do.
	bench.RaiseFileLimit()
	var trs []aimed
	if err == nil {
		trs, err = o.validate()
	}
	if err == nil && o.out != "" && o.out != stdoutPath {
		err = checkOutput(o.out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "evbench run: %v\nRun 'evbench run --help' for usage.\n", err)
		return exitUsage
	}
	if o.out != "" && o.out != stdoutPath {
		// A run killed while writing this file (SIGKILL, a crash) left its
		// temporary file beside it; a live writer's is kept
		// (results.RemoveStaleTemps). A failure only costs disk space.
		removed, err := results.RemoveStaleTemps(o.out)
		if err != nil {
			fmt.Fprintf(stderr, "evbench: -o %s: %v\n", o.out, err)
		}
		if len(removed) > 0 && !o.quiet {
			fmt.Fprintf(stderr, "evbench: removed %s left beside %s by a run that was killed while writing it\n",
				plural(len(removed), "temporary file"), o.out)
		}
	}
	table := stdout
	if o.out == stdoutPath {
		table = stderr // stdout carries the CSV
	}
	out := newRowWriter(o.out, o.format, stdout)

	runID := newRunID()
	var rows []results.Result
	failed := false
	var writeErr error
	// finish prints the table and what happened, and returns the exit code.
	finish := func() int {
		if !o.quiet {
			results.WriteTable(table, rows)
			if o.out != "" && o.out != stdoutPath && writeErr == nil {
				fmt.Fprintf(stderr, "evbench: wrote %s to %s\n", plural(len(rows), "row"), o.out)
			}
		}
		if n := errorRows(rows); n > 0 && o.format == "gobench" && o.out != "" {
			fmt.Fprintf(stderr, "evbench: %s with an error left out of the gobench output (see the table or a csv file)\n", plural(n, "row"))
		}
		switch {
		case writeErr != nil:
			return exitFailed
		case ctx.Err() != nil:
			if o.out != "" && o.out != stdoutPath {
				fmt.Fprintf(stderr, "evbench: interrupted; %s measured so far in %s\n", plural(len(rows), "row"), o.out)
			} else {
				fmt.Fprintln(stderr, "evbench: interrupted")
			}
			return exitSignal
		case failed:
			return exitFailed
		}
		return exitOK
	}
	// Repeats are interleaved (A B C A B C ...), so that drift on the
	// machine hits every transport alike.
	for rep := range o.count {
		for _, a := range trs {
			if ctx.Err() != nil || writeErr != nil {
				break
			}
			o.runOne(ctx, a, rep, func(row results.Result, err error) {
				row.RunID = runID
				rows = append(rows, row)
				if err != nil {
					failed = true
					fmt.Fprintf(stderr, "evbench: %s: %v%s\n", a.tr.Name(), err, certHint(err))
				}
				if o.out != "" {
					if writeErr = out.write(rows); writeErr != nil {
						fmt.Fprintf(stderr, "evbench: %v; no further transport is run\n", writeErr)
					}
				}
				if ctx.Err() != nil && exitEarly != nil {
					exitEarly(finish())
				}
			})
		}
	}
	return finish()
}

// runOne runs repeat rep of transport a, announcing it unless -q, and
// hands the row, numbered rep, to final as soon as it is final.
func (o *runOptions) runOne(ctx context.Context, a aimed, rep int, final func(results.Result, error)) {
	if !o.quiet {
		where, repeat := "", ""
		if a.server != "" {
			where = ", server " + a.server
		}
		if o.count > 1 {
			repeat = fmt.Sprintf(", repeat %d/%d", rep+1, o.count)
		}
		fmt.Fprintf(o.stderr, "evbench: %-10s %d clients, %d rooms, %v events/s per publisher, %v%s%s ...\n",
			a.tr.Name(), o.scenario.Clients, o.scenario.Rooms, o.scenario.RateEPS, o.scenario.Duration, where, repeat)
	}
	bench.RunWith(ctx, a.tr, o.scenario, bench.Options{Server: a.server, Final: func(row results.Result, err error) {
		row.Repeat = rep
		final(row, err)
	}})
}

// plural is "1 row" or "n rows".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// newRunID is a sortable, unique id: UTC time plus 4 random bytes.
func newRunID() string {
	var b [4]byte
	rand.Read(b[:])
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}
