package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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

// serveHelp is the text of `evbench serve --help` before the flags. Its
// lines fit in 80 columns.
const serveHelp = `Usage: evbench serve [flags]

Serves the evbench Hub (rooms, events, acks, STATS) on each transport named,
for clients in other processes or on other hosts, until SIGINT or SIGTERM.
--listen is loopback unless told otherwise. With port 0 each transport gets
a free port of its own; with a port P the transports get the consecutive
ports P, P+1, ... in the order named.

Once every transport listens, stdout gets one line per transport, in the
order named, and then nothing more:

  listening transport=tcp addr=127.0.0.1:40123

Each line is the word "listening" and key=value pairs, one space apart, in
this order; no value holds a space, and a reader ignores keys it does not
know (more may be appended). Errors, and a summary per transport at exit,
go to stderr.

The encrypted transports (tcp+tls, wss, quic, quic-dgram) present the
process's in-memory self-signed certificate, valid for 127.0.0.1, ::1 and
localhost, unless --cert and --key name another; --cert-out writes the
self-signed certificate for the clients to trust, before the first
"listening" line.

--stats-out writes at exit, atomically, one JSON object:

  schema          1
  started         when the listeners opened, RFC 3339 in UTC
  served_s        seconds served, from then to the interrupt
  cpu_user_s      the process's user CPU time, in seconds (getrusage)
  cpu_system_s    the process's system CPU time, in seconds
  peak_rss_bytes  the process's peak resident set size, in bytes
  environment     {version, revision, go_version, gomaxprocs, kernel,
                  platform}: the build and the host
  transports      one object per transport, in the order named:
                  {transport, addr, stats}, where stats holds the Hub's
                  final settings and counters under the keys of a STATS
                  answer (send_queue, slow_consumer, conns, ...,
                  queue_drops, closed_clean, closed_error, closed_slow,
                  handshake_timeouts, read_timeouts, idle_closes,
                  write_timeouts, unvalidated_drops, limit_refusals)

Every limit on what one peer can make the server hold or do has a default
that a server open to other hosts can keep (the flags below say whose
defaults they follow): the time to its HELLO, a half-sent frame, silence,
a blocked write, the bytes queued for it, its rooms, namespaces and
payloads. A peer past one is closed or refused, and counted by reason.
udp peers must echo a cookie before anything is routed to them, so that
the server never sends an unproven address more than 3 times what it
received from it (RFC 9000 section 8.1).

Exit status: 0 stopped by SIGINT or SIGTERM (listeners and connections
closed), 1 a transport could not listen (such as a port in use; those
already listening are closed) or a file could not be written, 2 usage error
(a bad flag, or an output path that cannot be written). A second interrupt
exits at once (130 for SIGINT, 143 for SIGTERM).

Flags:
`

// serveOptions are the flags of `evbench serve`.
type serveOptions struct {
	transports   []string
	listen       string
	sendQueue    int
	slowConsumer string
	limits       serveLimits
	cert, key    string
	certOut      string
	statsOut     string
}

// serveLimits are the flags that bound what one peer can make the server
// hold or do (transports.HubConfig and transports.Config.ReadTimeout).
type serveLimits struct {
	sendQueueBytes   int64
	handshakeTimeout time.Duration
	readTimeout      time.Duration
	idleTimeout      time.Duration
	writeTimeout     time.Duration
	maxRooms         int
	maxNamespaces    int
	maxPayload       int
}

// serveFlags binds the flags of serve to o, with the defaults of run's
// server (bench.Scenario's WithDefaults) and the transport registry.
func serveFlags(o *serveOptions) *pflag.FlagSet {
	fs := pflag.NewFlagSet("evbench serve", pflag.ContinueOnError)
	sc := bench.Scenario{}.WithDefaults()
	fs.StringSliceVar(&o.transports, "transports", transports.Names(),
		"comma-separated transports to serve, each on a port of its own")
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0",
		"HOST:PORT to listen on; port 0 gives each transport a free port, a port P gives them P, P+1, ... in the order named")
	fs.IntVar(&o.sendQueue, "send-queue", sc.SendQueue,
		fmt.Sprintf("server send queue per connection, in frames, 1 to %d", bench.MaxSendQueue))
	fs.StringVar(&o.slowConsumer, "slow-consumer", sc.SlowConsumer.String(),
		"what the server does when a send queue is full: drop-oldest or disconnect (drops are counted)")
	l := &o.limits
	fs.Int64Var(&l.sendQueueBytes, "send-queue-bytes", transports.DefaultSendQueueBytes,
		"server send queue per connection, in bytes, beside --send-queue's frames; past either the slow-consumer policy applies (nats-server's max_pending: 64 MiB)")
	fs.DurationVar(&l.handshakeTimeout, "handshake-timeout", transports.DefaultHandshakeTimeout,
		"close a connection whose HELLO has not arrived within this time (quic-go's handshake idle timeout: 5s; 0: never)")
	fs.DurationVar(&l.readTimeout, "read-timeout", transports.DefaultReadTimeout,
		"close a connection whose frame, once started, is not complete within this time (a half-sent frame; 0: never)")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", transports.DefaultIdleTimeout,
		"close a connection that has sent nothing for this time; evbench's clients send a keepalive every 10s (quic-go's max idle timeout: 30s; 0: never)")
	fs.DurationVar(&l.writeTimeout, "write-timeout", transports.DefaultWriteTimeout,
		"close, as a slow consumer, a connection to which one write has blocked for this time (nats-server's write_deadline: 10s; 0: never)")
	fs.IntVar(&l.maxRooms, "max-rooms", transports.DefaultMaxRooms,
		"rooms one connection may be in at once, besides its own-id rooms; a JOIN past it is refused and counted")
	fs.IntVar(&l.maxNamespaces, "max-namespaces", transports.DefaultMaxNamespaces,
		"namespaces one connection may use, / included; a JOIN into one more is refused and counted")
	fs.IntVar(&l.maxPayload, "max-payload", transports.DefaultMaxPayloadBytes,
		fmt.Sprintf("largest event payload accepted, in bytes, 1 to %d; a larger EMIT is not delivered and is counted (nats-server's max_payload: 1 MiB)", transports.MaxPayloadBytes))
	fs.StringVar(&o.cert, "cert", "",
		"PEM certificate (chain) file for the encrypted transports; needs --key (default: the in-memory self-signed one)")
	fs.StringVar(&o.key, "key", "", "PEM private key file of --cert")
	fs.StringVar(&o.certOut, "cert-out", "",
		"write the in-memory self-signed certificate as PEM to this file, atomically, for the clients to trust (default: no file)")
	fs.StringVar(&o.statsOut, "stats-out", "",
		"write the served addresses, the Hubs' final counters, CPU time and peak RSS as JSON to this file at exit, atomically (default: no file)")
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), serveHelp+fs.FlagUsagesWrapped(80))
	}
	return fs
}

// servePlan is what the flags ask for, checked: the transports to serve,
// in order, the address for each, and the Hubs' configuration.
type servePlan struct {
	trs   []transports.Transport
	addrs []string
	hub   transports.HubConfig
}

// validate checks the flags and turns them into a servePlan. It opens no
// socket; it reads --cert and --key and probes the output paths.
func (o *serveOptions) validate() (*servePlan, error) {
	plan := &servePlan{hub: transports.HubConfig{SendQueue: o.sendQueue}}
	if o.sendQueue < 1 || o.sendQueue > bench.MaxSendQueue {
		return nil, fmt.Errorf("--send-queue must be between 1 and %d frames, got %d", bench.MaxSendQueue, o.sendQueue)
	}
	switch o.slowConsumer {
	case transports.DropOldest.String():
		plan.hub.SlowConsumer = transports.DropOldest
	case transports.Disconnect.String():
		plan.hub.SlowConsumer = transports.Disconnect
	default:
		return nil, fmt.Errorf("--slow-consumer must be drop-oldest or disconnect, got %q", o.slowConsumer)
	}

	var cfg transports.Config
	if err := o.limits.apply(&plan.hub, &cfg); err != nil {
		return nil, err
	}
	switch {
	case o.cert != "" && o.key == "":
		return nil, errors.New("--cert needs --key, the file of its private key")
	case o.key != "" && o.cert == "":
		return nil, errors.New("--key needs --cert, the file of its certificate")
	case o.cert != "" && o.certOut != "":
		return nil, errors.New("--cert-out writes the in-memory self-signed certificate, which --cert replaces: give the clients --cert's file instead")
	case o.cert != "":
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("--cert %s --key %s: %w", o.cert, o.key, err)
		}
		cfg.ServerTLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	}

	if len(o.transports) == 0 {
		return nil, errors.New("--transports names no transport")
	}
	seen := map[string]bool{}
	for _, name := range o.transports {
		name = strings.TrimSpace(name)
		if seen[name] {
			return nil, fmt.Errorf("--transports names %q twice", name)
		}
		seen[name] = true
		tr, err := transports.New(name, cfg)
		if err != nil {
			return nil, fmt.Errorf("--transports: %w", err)
		}
		plan.trs = append(plan.trs, tr)
	}

	addrs, err := listenAddrs(o.listen, len(plan.trs))
	if err != nil {
		return nil, err
	}
	plan.addrs = addrs

	for _, out := range []struct{ flag, path string }{{"--cert-out", o.certOut}, {"--stats-out", o.statsOut}} {
		if out.path == "" {
			continue
		}
		if err := probeOutput(out.flag, out.path); err != nil {
			return nil, err
		}
	}
	if o.certOut != "" && o.certOut == o.statsOut {
		return nil, fmt.Errorf("--cert-out and --stats-out name the same file %s", o.certOut)
	}
	return plan, nil
}

// apply checks the limits and sets them in hub and cfg. A timeout of 0
// means never, which HubConfig and Config spell as negative.
func (l serveLimits) apply(hub *transports.HubConfig, cfg *transports.Config) error {
	timeouts := []struct {
		flag string
		v    time.Duration
		dst  *time.Duration
	}{
		{"--handshake-timeout", l.handshakeTimeout, &hub.HandshakeTimeout},
		{"--read-timeout", l.readTimeout, &cfg.ReadTimeout},
		{"--idle-timeout", l.idleTimeout, &hub.IdleTimeout},
		{"--write-timeout", l.writeTimeout, &hub.WriteTimeout},
	}
	for _, t := range timeouts {
		switch {
		case t.v < 0:
			return fmt.Errorf("%s must be 0 (never) or a positive duration, got %v", t.flag, t.v)
		case t.v == 0:
			*t.dst = -1
		default:
			*t.dst = t.v
		}
	}
	if l.idleTimeout > 0 && l.idleTimeout <= transports.DefaultKeepaliveInterval {
		return fmt.Errorf("--idle-timeout %v would close evbench's clients, which send a keepalive every %v: give more than that, or 0 for never",
			l.idleTimeout, transports.DefaultKeepaliveInterval)
	}
	ints := []struct {
		flag     string
		v, limit int64
		unit     string
	}{
		{"--send-queue-bytes", l.sendQueueBytes, 1 << 40, "bytes"},
		{"--max-rooms", int64(l.maxRooms), 1 << 20, "rooms"},
		{"--max-namespaces", int64(l.maxNamespaces), 1 << 16, "namespaces"},
		{"--max-payload", int64(l.maxPayload), transports.MaxPayloadBytes, "bytes"},
	}
	for _, n := range ints {
		if n.v < 1 || n.v > n.limit {
			return fmt.Errorf("%s must be between 1 and %d %s, got %d", n.flag, n.limit, n.unit, n.v)
		}
	}
	hub.SendQueueBytes, hub.MaxRooms, hub.MaxNamespaces, hub.MaxPayloadBytes = l.sendQueueBytes, l.maxRooms, l.maxNamespaces, l.maxPayload
	return nil
}

// listenAddrs returns the n addresses that --listen hostPort stands for:
// n times port 0, or the consecutive ports from the one given.
func listenAddrs(hostPort string, n int) ([]string, error) {
	host, portStr, err := net.SplitHostPort(hostPort)
	if err != nil {
		return nil, fmt.Errorf("--listen %q is not HOST:PORT: %w", hostPort, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("--listen %q: the port must be a number from 0 to 65535", hostPort)
	}
	if port > 0 && int(port)+n-1 > 65535 {
		return nil, fmt.Errorf("--listen %q: %d transports need the ports %d to %d, past 65535", hostPort, n, port, int(port)+n-1)
	}
	addrs := make([]string, n)
	for i := range addrs {
		p := int(port)
		if p > 0 {
			p += i
		}
		addrs[i] = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return addrs, nil
}

// probeOutput reports, before anything listens, an output path given with
// flag whose file could not be written: anything but a regular file, or in
// a directory that does not exist or is not writable. It creates and
// removes a probe file next to path and leaves a file at path untouched.
func probeOutput(flag, path string) error {
	resolved, err := results.OutputPath(path)
	if err != nil {
		return fmt.Errorf("%s: %w", flag, err)
	}
	dir := filepath.Dir(resolved)
	f, err := os.CreateTemp(dir, "."+filepath.Base(resolved)+".probe-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%s %s: cannot create a file in %s: %w", flag, path, dir, err)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return fmt.Errorf("%s %s: %w", flag, path, err)
	}
	return nil
}

// serveReport is the JSON document --stats-out writes; serveHelp documents
// it.
type serveReport struct {
	Schema       int              `json:"schema"`
	Started      time.Time        `json:"started"`
	ServedS      float64          `json:"served_s"`
	CPUUserS     float64          `json:"cpu_user_s"`
	CPUSystemS   float64          `json:"cpu_system_s"`
	PeakRSSBytes int64            `json:"peak_rss_bytes"`
	Environment  serveEnvironment `json:"environment"`
	Transports   []servedStats    `json:"transports"`
}

// serveReportSchema is serveReport's Schema; it changes when a field
// changes meaning or goes away, not when one is added.
const serveReportSchema = 1

// serveEnvironment is bench.Environment under snake_case JSON keys.
type serveEnvironment struct {
	Version    string `json:"version"`
	Revision   string `json:"revision"`
	GoVersion  string `json:"go_version"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Kernel     string `json:"kernel"`
	Platform   string `json:"platform"`
}

// servedStats is one transport of a serveReport: where it listened and its
// Hub's final settings and counters.
type servedStats struct {
	Transport string                 `json:"transport"`
	Addr      string                 `json:"addr"`
	Stats     transports.ServerStats `json:"stats"`
}

// fleetCommand is the `evbench run` command line that aims a fleet at
// servers, trusting the --cert-out file for the TLS transports.
func fleetCommand(plan *servePlan, servers []*bench.Server, certOut string) string {
	pairs := make([]string, len(servers))
	for i, s := range servers {
		addr := s.Addr().String()
		// A wildcard listener (--listen :0, 0.0.0.0:0) is reached from
		// this host on loopback.
		if host, port, err := net.SplitHostPort(addr); err == nil {
			if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
				addr = net.JoinHostPort("127.0.0.1", port)
			}
		}
		pairs[i] = plan.trs[i].Name() + "=" + addr
	}
	cmd := "evbench run --server " + strings.Join(pairs, ",")
	if certOut != "" {
		cmd += " --ca " + certOut
	}
	return cmd
}

// runServe is `evbench serve` (see serveHelp): it listens on every
// transport named, prints a "listening" line per transport to stdout and
// serves until ctx is done, then closes the listeners and the Hubs, writes
// --stats-out and returns 0.
func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o serveOptions
	fs := serveFlags(&o)
	help, err := parseFlags(fs, args, stdout)
	if help {
		return exitOK
	}
	// A Hub holds a file descriptor per connection on the stream
	// transports: the soft limit goes up to the hard one, as for run.
	bench.RaiseFileLimit()
	var plan *servePlan
	if err == nil {
		plan, err = o.validate()
	}
	if err != nil {
		fmt.Fprintf(stderr, "evbench serve: %v\nRun 'evbench serve --help' for usage.\n", err)
		return exitUsage
	}

	if o.certOut != "" {
		pem, err := transports.SelfSignedCertPEM()
		if err == nil {
			err = results.WriteFileAtomic(o.certOut, func(w io.Writer) error {
				_, err := w.Write(pem)
				return err
			})
		}
		if err != nil {
			fmt.Fprintf(stderr, "evbench serve: --cert-out: %v\n", err)
			return exitFailed
		}
	}

	servers := make([]*bench.Server, 0, len(plan.trs))
	defer func() {
		for _, s := range servers {
			s.Close()
		}
	}()
	for i, tr := range plan.trs {
		s, err := bench.StartServer(ctx, tr, plan.addrs[i], plan.hub)
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(stderr, "evbench serve: interrupted before every transport listened")
				return exitOK
			}
			// The error names the transport and the address.
			fmt.Fprintf(stderr, "evbench serve: %v\n", err)
			return exitFailed
		}
		servers = append(servers, s)
	}
	started := time.Now()
	var lines bytes.Buffer
	for i, s := range servers {
		fmt.Fprintf(&lines, "listening transport=%s addr=%s\n", plan.trs[i].Name(), s.Addr())
	}
	stdout.Write(lines.Bytes())
	fmt.Fprintf(stderr, "evbench serve: serving %s until SIGINT or SIGTERM; a fleet on this host:\n  %s\n",
		plural(len(servers), "transport"), fleetCommand(plan, servers, o.certOut))

	<-ctx.Done()
	served := time.Since(started)
	report := serveReport{
		Schema:     serveReportSchema,
		Started:    started.UTC(),
		ServedS:    served.Seconds(),
		Transports: make([]servedStats, len(servers)),
	}
	for i, s := range servers {
		s.Close()
		st := s.Stats()
		report.Transports[i] = servedStats{Transport: plan.trs[i].Name(), Addr: s.Addr().String(), Stats: st}
		fmt.Fprintf(stderr, "evbench serve: %s %s: closed_clean=%d closed_error=%d closed_slow=%d queue_drops=%d reply_drops=%d oversize_drops=%d protocol_errors=%d accept_errors=%d"+
			" handshake_timeouts=%d read_timeouts=%d idle_closes=%d write_timeouts=%d unvalidated_drops=%d limit_refusals=%d\n",
			plan.trs[i].Name(), s.Addr(), st.ClosedClean, st.ClosedError, st.ClosedSlow,
			st.QueueDrops, st.ReplyDrops, st.OversizeDrops, st.ProtocolErrors, st.AcceptErrors,
			st.HandshakeTimeouts, st.ReadTimeouts, st.IdleCloses, st.WriteTimeouts, st.UnvalidatedDrops, st.LimitRefusals)
	}
	env := bench.HostEnvironment()
	report.Environment = serveEnvironment{
		Version: env.Version, Revision: env.Revision, GoVersion: env.GoVersion,
		GOMAXPROCS: env.GOMAXPROCS, Kernel: env.Kernel, Platform: env.Platform,
	}
	user, system, rss, err := processUsage()
	if err != nil {
		// Only where getrusage does not exist (Windows): the figures stay 0.
		fmt.Fprintf(stderr, "evbench serve: %v\n", err)
	}
	report.CPUUserS, report.CPUSystemS, report.PeakRSSBytes = user, system, rss
	fmt.Fprintf(stderr, "evbench serve: served %.1fs, cpu user %.2fs system %.2fs, peak rss %.1f MiB\n",
		served.Seconds(), user, system, float64(rss)/(1<<20))

	if o.statsOut != "" {
		err := results.WriteFileAtomic(o.statsOut, func(w io.Writer) error {
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			return enc.Encode(report)
		})
		if err != nil {
			fmt.Fprintf(stderr, "evbench serve: --stats-out: %v\n", err)
			return exitFailed
		}
		fmt.Fprintf(stderr, "evbench serve: wrote the stats to %s\n", o.statsOut)
	}
	return exitOK
}
