//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/transporttest"
)

// serveWait bounds every wait of these tests on serve: for its listeners,
// a client's answer, or its exit. It is a bound on a failure, not a pause:
// every wait ends as soon as what it waits for happens.
const serveWait = 30 * time.Second

// listeningLine is the stdout line of a listener, exactly as documented.
var listeningLine = regexp.MustCompile(`^listening transport=(\S+) addr=(\S+)$`)

// serveListener is one "listening" line, parsed.
type serveListener struct{ transport, addr string }

// serveProcess is `evbench serve` running in this process through
// mainExit, its stdout read from a pipe line by line.
type serveProcess struct {
	cancel    context.CancelFunc
	done      chan struct{} // closed when mainExit has returned
	code      int           // mainExit's result, set before done is closed
	stderr    bytes.Buffer  // written by mainExit only; read after done
	lines     chan string   // stdout, line by line; closed at its end
	stdout    []string      // every stdout line, once lines is closed
	listeners []serveListener
	exited    bool // serve returned before it printed every line
}

// startServe runs `evbench serve args...` in-process and waits until it
// has printed n "listening" lines, or has exited first (p.exited).
func startServe(t *testing.T, n int, args ...string) *serveProcess {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	p := &serveProcess{cancel: cancel, done: make(chan struct{}), lines: make(chan string, 256)}
	go func() {
		defer close(p.done)
		p.code = mainExit(ctx, append([]string{"serve"}, args...), pw, &p.stderr, nil)
		pw.Close()
	}()
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); <-p.done })
	timeout := time.After(serveWait)
	for len(p.listeners) < n {
		select {
		case line, ok := <-p.lines:
			if !ok {
				<-p.done
				p.exited = true
				return p
			}
			p.stdout = append(p.stdout, line)
			m := listeningLine.FindStringSubmatch(line)
			if m == nil {
				t.Fatalf("stdout line %q is not %q", line, listeningLine)
			}
			p.listeners = append(p.listeners, serveListener{m[1], m[2]})
		case <-timeout:
			t.Fatalf("serve %q printed %d of %d listening lines within %v", args, len(p.listeners), n, serveWait)
		}
	}
	return p
}

// stop cancels serve's ctx, as SIGINT does, and returns its exit code once
// it has returned and its stdout has ended.
func (p *serveProcess) stop(t *testing.T) int {
	t.Helper()
	p.cancel()
	select {
	case <-p.done:
	case <-time.After(serveWait):
		t.Fatalf("serve did not return within %v of the interrupt", serveWait)
	}
	for line := range p.lines {
		p.stdout = append(p.stdout, line)
	}
	return p.code
}

// serveClient dials addr over tr and completes HELLO; the client is closed
// at the end of the test.
func serveClient(t *testing.T, ctx context.Context, tr transports.Transport, addr string) *transports.Client {
	t.Helper()
	c, err := transports.Dial(ctx, tr, addr, transports.ClientConfig{})
	if err != nil {
		t.Fatalf("%s: dial %s: %v", tr.Name(), addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// certPool reads a PEM certificate file into a pool of roots.
func certPool(t *testing.T, path string) *x509.CertPool {
	t.Helper()
	pemBytes, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatalf("%s holds no PEM certificate:\n%s", path, pemBytes)
	}
	return pool
}

// statsDoc is the --stats-out document as the help documents it, read
// with the documented keys (a renamed key reads as zero here).
type statsDoc struct {
	Schema       int       `json:"schema"`
	Started      time.Time `json:"started"`
	ServedS      float64   `json:"served_s"`
	CPUUserS     float64   `json:"cpu_user_s"`
	CPUSystemS   float64   `json:"cpu_system_s"`
	PeakRSSBytes int64     `json:"peak_rss_bytes"`
	Environment  struct {
		Version    string `json:"version"`
		Revision   string `json:"revision"`
		GoVersion  string `json:"go_version"`
		GOMAXPROCS int    `json:"gomaxprocs"`
		Kernel     string `json:"kernel"`
		Platform   string `json:"platform"`
	} `json:"environment"`
	Transports []struct {
		Transport string         `json:"transport"`
		Addr      string         `json:"addr"`
		Stats     map[string]any `json:"stats"`
	} `json:"transports"`
}

// readStatsDoc reads and checks the top-level keys of a --stats-out file.
func readStatsDoc(t *testing.T, path string) statsDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		t.Fatalf("%s is not a JSON object: %v\n%s", path, err, b)
	}
	want := []string{"schema", "started", "served_s", "cpu_user_s", "cpu_system_s", "peak_rss_bytes", "environment", "transports"}
	for _, k := range want {
		if _, ok := keys[k]; !ok {
			t.Errorf("%s lacks the key %q:\n%s", path, k, b)
		}
	}
	if len(keys) != len(want) {
		t.Errorf("%s has %d top-level keys, want %d (%q); a new key needs its help:\n%s", path, len(keys), len(want), want, b)
	}
	var doc statsDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return doc
}

// stat is the integer counter key of a transport's stats in a statsDoc.
func stat(t *testing.T, stats map[string]any, key string) int64 {
	t.Helper()
	v, ok := stats[key].(float64)
	if !ok {
		t.Errorf("stats lack the number %q: %v", key, stats)
	}
	return int64(v)
}

// TestServeAllTransports serves every registered transport on free
// loopback ports, talks the protocol to each (HELLO, JOIN, STATS; the
// encrypted ones trusting only the --cert-out file), interrupts serve and
// reads --stats-out.
func TestServeAllTransports(t *testing.T) {
	dir := t.TempDir()
	certOut, statsOut := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "stats.json")
	names := transports.Names()
	before := time.Now()
	p := startServe(t, len(names), "--listen", "127.0.0.1:0", "--send-queue", "64", "--slow-consumer", "disconnect",
		"--cert-out", certOut, "--stats-out", statsOut)
	if p.exited {
		t.Fatalf("serve exited %d before listening; stderr:\n%s", p.code, p.stderr.String())
	}
	ports := map[string]bool{}
	for i, l := range p.listeners {
		if l.transport != names[i] {
			t.Errorf("listener %d is %s, want %s (the registry's order)", i, l.transport, names[i])
		}
		host, port, err := net.SplitHostPort(l.addr)
		if err != nil || host != "127.0.0.1" || port == "0" {
			t.Errorf("%s listens on %q, want 127.0.0.1 and a port of its own", l.transport, l.addr)
		}
		if ports[port] {
			t.Errorf("%s shares the port %s", l.transport, port)
		}
		ports[port] = true
	}

	want, err := transports.SelfSignedCertPEM()
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(certOut); err != nil || !bytes.Equal(got, want) {
		t.Errorf("--cert-out file holds %q, %v; want the in-memory certificate", got, err)
	}
	pool := certPool(t, certOut)

	ctx, cancel := context.WithTimeout(context.Background(), serveWait)
	defer cancel()
	for _, l := range p.listeners {
		tr, err := transports.New(l.transport, transports.Config{ClientTLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		c := serveClient(t, ctx, tr, l.addr)
		if err := c.Join(ctx, transports.DefaultNamespace, "lobby"); err != nil {
			t.Fatalf("%s: join: %v", l.transport, err)
		}
		st, err := c.ServerStats(ctx)
		if err != nil {
			t.Fatalf("%s: %v", l.transport, err)
		}
		if st.Conns != 1 || st.Rooms != 2 || st.Members != 2 || st.SendQueue != 64 || st.SlowConsumer != "disconnect" {
			t.Errorf("%s: server stats %+v, want 1 connection in 2 rooms (its own and lobby), send queue 64, disconnect", l.transport, st)
		}
		if err := c.Close(); err != nil {
			t.Errorf("%s: close: %v", l.transport, err)
		}
	}

	if code := p.stop(t); code != exitOK {
		t.Fatalf("serve exited %d after the interrupt, want 0; stderr:\n%s", code, p.stderr.String())
	}
	if len(p.stdout) != len(names) {
		t.Errorf("stdout has %d lines, want the %d listening lines only: %q", len(p.stdout), len(names), p.stdout)
	}
	stderr := p.stderr.String()
	for _, l := range p.listeners {
		if !strings.Contains(stderr, "evbench serve: "+l.transport+" "+l.addr+": closed_clean=1 ") {
			t.Errorf("stderr lacks the summary of %s with its one clean close:\n%s", l.transport, stderr)
		}
	}

	doc := readStatsDoc(t, statsOut)
	if doc.Schema != 1 {
		t.Errorf("schema %d, want 1", doc.Schema)
	}
	if doc.Started.Before(before.Add(-time.Second)) || doc.Started.After(time.Now()) || doc.Started.Location() != time.UTC {
		t.Errorf("started %v, want a UTC time during the test", doc.Started)
	}
	if doc.ServedS <= 0 || doc.ServedS > time.Since(before).Seconds() {
		t.Errorf("served_s %v, want the seconds served", doc.ServedS)
	}
	if doc.CPUUserS < 0 || doc.CPUSystemS < 0 || doc.CPUUserS+doc.CPUSystemS <= 0 {
		t.Errorf("cpu_user_s %v, cpu_system_s %v: want the process's CPU time, not zero", doc.CPUUserS, doc.CPUSystemS)
	}
	if doc.PeakRSSBytes < 1<<20 {
		t.Errorf("peak_rss_bytes %d, want the peak RSS in bytes (at least a MiB)", doc.PeakRSSBytes)
	}
	env := bench.HostEnvironment()
	if doc.Environment.GoVersion != runtime.Version() || doc.Environment.Platform != env.Platform ||
		doc.Environment.Kernel != env.Kernel || doc.Environment.GOMAXPROCS != env.GOMAXPROCS {
		t.Errorf("environment %+v, want the host's %+v", doc.Environment, env)
	}
	if len(doc.Transports) != len(p.listeners) {
		t.Fatalf("%d transports in the stats, want %d", len(doc.Transports), len(p.listeners))
	}
	for i, l := range p.listeners {
		tr := doc.Transports[i]
		if tr.Transport != l.transport || tr.Addr != l.addr {
			t.Errorf("stats transport %d is %s at %s, want %s at %s", i, tr.Transport, tr.Addr, l.transport, l.addr)
		}
		if stat(t, tr.Stats, "closed_clean") != 1 || stat(t, tr.Stats, "closed_error") != 0 || stat(t, tr.Stats, "conns") != 0 ||
			stat(t, tr.Stats, "send_queue") != 64 || tr.Stats["slow_consumer"] != "disconnect" {
			t.Errorf("%s: final stats %v, want one clean close, no connection left, send queue 64, disconnect", l.transport, tr.Stats)
		}
	}
}

// TestServeConsecutivePorts gives serve a base port: the transports listen
// on it and the ports after it, in the order named. A base whose range
// another process holds is retried with another.
func TestServeConsecutivePorts(t *testing.T) {
	names := []string{"quic", "tcp", "udp", "wss", "tcp+tls", "ws", "quic-dgram"}
	for attempt := 1; ; attempt++ {
		base := freeBasePort(t, len(names))
		p := startServe(t, len(names), "--transports", strings.Join(names, ","), "--listen", net.JoinHostPort("127.0.0.1", strconv.Itoa(base)))
		if p.exited {
			if p.code == exitFailed && strings.Contains(p.stderr.String(), "address already in use") && attempt < 20 {
				continue // another process took a port of the range
			}
			t.Fatalf("serve from port %d exited %d; stderr:\n%s", base, p.code, p.stderr.String())
		}
		for i, l := range p.listeners {
			want := net.JoinHostPort("127.0.0.1", strconv.Itoa(base+i))
			if l.transport != names[i] || l.addr != want {
				t.Errorf("listener %d: %s at %s, want %s at %s", i, l.transport, l.addr, names[i], want)
			}
		}
		// Each listener answers on its port.
		ctx, cancel := context.WithTimeout(context.Background(), serveWait)
		defer cancel()
		for _, l := range p.listeners {
			tr, err := transports.Lookup(l.transport) // trusts this process's certificate
			if err != nil {
				t.Fatal(err)
			}
			c := serveClient(t, ctx, tr, l.addr)
			if _, err := c.ServerStats(ctx); err != nil {
				t.Errorf("%s: %v", l.transport, err)
			}
			c.Close()
		}
		if code := p.stop(t); code != exitOK {
			t.Errorf("exit %d after the interrupt, want 0; stderr:\n%s", code, p.stderr.String())
		}
		return
	}
}

// freeBasePort returns a port above 1024 that was free for TCP a moment
// ago, with n-1 ports after it below 65536.
func freeBasePort(t *testing.T, n int) int {
	t.Helper()
	for {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if port > 1024 && port+n-1 <= 65535 {
			return port
		}
	}
}

// TestServeUsageErrors checks that a bad flag exits 2 at once with the
// reason and a hint, prints nothing to stdout and writes no file.
func TestServeUsageErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	tests := []struct {
		name string
		args []string
		want string // in the first line of stderr
	}{
		{"unknown flag", []string{"--bogus"}, "unknown flag: --bogus"},
		{"unknown transport", []string{"--transports", "tcp,carrier-pigeon"}, `unknown transport "carrier-pigeon"`},
		{"duplicate transport", []string{"--transports", "tcp,udp,tcp"}, `--transports names "tcp" twice`},
		{"no transport", []string{"--transports", ""}, "--transports names no transport"},
		{"address without port", []string{"--listen", "127.0.0.1"}, `--listen "127.0.0.1" is not HOST:PORT`},
		{"port not a number", []string{"--listen", "127.0.0.1:http"}, "the port must be a number from 0 to 65535"},
		{"port out of range", []string{"--listen", "127.0.0.1:70000"}, "the port must be a number from 0 to 65535"},
		{"negative port", []string{"--listen", "127.0.0.1:-1"}, "the port must be a number from 0 to 65535"},
		{"ports past 65535", []string{"--transports", "tcp,udp", "--listen", "127.0.0.1:65535"}, "2 transports need the ports 65535 to 65536"},
		{"zero send queue", []string{"--send-queue", "0"}, "--send-queue must be between 1 and 1048576 frames, got 0"},
		{"huge send queue", []string{"--send-queue", strconv.Itoa(bench.MaxSendQueue + 1)}, "--send-queue must be between 1 and"},
		{"bad slow consumer", []string{"--slow-consumer", "ignore"}, "--slow-consumer must be drop-oldest or disconnect"},
		{"zero send queue bytes", []string{"--send-queue-bytes", "0"}, "--send-queue-bytes must be between 1 and 1099511627776 bytes, got 0"},
		{"negative handshake timeout", []string{"--handshake-timeout", "-1s"}, "--handshake-timeout must be 0 (never) or a positive duration, got -1s"},
		{"idle timeout under the keepalive", []string{"--idle-timeout", "5s"}, "--idle-timeout 5s would close evbench's clients, which send a keepalive every 10s"},
		{"zero max rooms", []string{"--max-rooms", "0"}, "--max-rooms must be between 1 and 1048576 rooms, got 0"},
		{"huge max payload", []string{"--max-payload", "16777217"}, "--max-payload must be between 1 and 16777216 bytes, got 16777217"},
		{"cert without key", []string{"--cert", certFile}, "--cert needs --key"},
		{"key without cert", []string{"--key", keyFile}, "--key needs --cert"},
		{"missing cert file", []string{"--cert", filepath.Join(dir, "none.pem"), "--key", keyFile}, "none.pem"},
		{"key swapped with cert", []string{"--cert", keyFile, "--key", certFile}, "--cert"},
		{"cert and cert-out", []string{"--cert", certFile, "--key", keyFile, "--cert-out", filepath.Join(dir, "out.pem")}, "--cert-out writes the in-memory"},
		{"stats-out in a missing directory", []string{"--stats-out", filepath.Join(dir, "missing", "stats.json")}, "--stats-out"},
		{"cert-out a directory", []string{"--cert-out", dir}, "--cert-out"},
		{"same output file", []string{"--cert-out", filepath.Join(dir, "x"), "--stats-out", filepath.Join(dir, "x")}, "the same file"},
		{"positional argument", []string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A bad flag must return at once; should one be let through,
			// the deadline ends the serve it starts, and exit 0 fails.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code, stdout, stderr := runMain(ctx, append([]string{"serve"}, tt.args...)...)
			lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
			if code != exitUsage {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, exitUsage, stderr)
			}
			if !strings.Contains(lines[0], tt.want) {
				t.Errorf("first line of stderr %q does not contain %q", lines[0], tt.want)
			}
			if len(lines) != 2 || lines[1] != "Run 'evbench serve --help' for usage." {
				t.Errorf("stderr, want the reason and the hint:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
			ents, _ := os.ReadDir(dir)
			if len(ents) != 2 {
				t.Errorf("%d entries in the directory, want only the cert and key: %v", len(ents), ents)
			}
		})
	}
}

// TestServePortInUse occupies the port of the second transport named:
// serve exits 1 with one line naming the port in use, after closing the
// listener of the first.
func TestServePortInUse(t *testing.T) {
	for attempt := 1; ; attempt++ {
		busy, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := busy.Addr().(*net.TCPAddr).Port
		first := net.JoinHostPort("127.0.0.1", strconv.Itoa(port-1))
		// udp must find port-1 free, or the test would see another failure.
		if pc, err := net.ListenPacket("udp", first); err != nil {
			busy.Close()
			if attempt < 20 {
				continue
			}
			t.Fatalf("no free udp port below a free tcp port in 20 attempts: %v", err)
		} else {
			pc.Close()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		code, stdout, stderr := runMain(ctx, "serve", "--transports", "udp,tcp", "--listen", first)
		cancel()
		busy.Close()
		if code != exitFailed || stdout != "" {
			t.Fatalf("exit %d, stdout %q; want 1 and nothing; stderr:\n%s", code, stdout, stderr)
		}
		lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
		if strings.Contains(lines[0], "udp") && attempt < 20 {
			continue // another process took the udp port meanwhile
		}
		if len(lines) != 1 || !strings.Contains(lines[0], strconv.Itoa(port)) || !strings.Contains(lines[0], "address already in use") {
			t.Errorf("stderr, want one line naming the port in use:\n%s", stderr)
		}
		// The udp listener opened before the failure is closed.
		pc, err := net.ListenPacket("udp", first)
		if err != nil {
			t.Errorf("udp %s is still taken after serve failed: %v", first, err)
		} else {
			pc.Close()
		}
		return
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1
// (transporttest.NewCert) and its key as PEM files in dir and returns their
// paths.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	c := transporttest.NewCert(t)
	der, key := c.Cert.Certificate[0], c.Cert.PrivateKey
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestServeCertKey serves the encrypted transports with a certificate from
// --cert and --key: a client trusting it talks to each, and a client
// trusting only the in-memory certificate is refused.
func TestServeCertKey(t *testing.T) {
	var names []string
	for _, name := range transports.Names() {
		if tr, err := transports.Lookup(name); err == nil && tr.Caps().Encrypted {
			names = append(names, name)
		}
	}
	if !slices.Equal(names, []string{"tcp+tls", "wss", "quic", "quic-dgram"}) {
		t.Errorf("encrypted transports %q, want tcp+tls, wss, quic, quic-dgram as the help says", names)
	}
	certFile, keyFile := writeTestCert(t, t.TempDir())
	pool := certPool(t, certFile)
	p := startServe(t, len(names), "--transports", strings.Join(names, ","), "--cert", certFile, "--key", keyFile)
	if p.exited {
		t.Fatalf("serve exited %d; stderr:\n%s", p.code, p.stderr.String())
	}
	ctx, cancel := context.WithTimeout(context.Background(), serveWait)
	defer cancel()
	for _, l := range p.listeners {
		tr, err := transports.New(l.transport, transports.Config{ClientTLS: &tls.Config{RootCAs: pool}})
		if err != nil {
			t.Fatal(err)
		}
		c := serveClient(t, ctx, tr, l.addr)
		if _, err := c.ServerStats(ctx); err != nil {
			t.Errorf("%s: %v", l.transport, err)
		}
		c.Close()

		inMemory, err := transports.Lookup(l.transport)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := transports.Dial(ctx, inMemory, l.addr, transports.ClientConfig{}); err == nil {
			c.Close()
			t.Errorf("%s: a client trusting only the in-memory certificate connected: --cert is not served", l.transport)
		}
	}
	if code := p.stop(t); code != exitOK {
		t.Errorf("exit %d, want 0; stderr:\n%s", code, p.stderr.String())
	}
}

// TestServeHelp checks serve's help: the output line, the stats schema, the
// exit codes and every flag with its unit and default; and that the
// top-level usage lists serve.
func TestServeHelp(t *testing.T) {
	want := map[string][]string{
		"transports":        {"comma-separated", "(default [tcp,tcp+tls,udp,ws,wss,quic,quic-dgram])"},
		"listen":            {"HOST:PORT", "port 0", "P+1", `(default "127.0.0.1:0")`},
		"send-queue":        {"frames", "1 to 1048576", "(default 4096)"},
		"slow-consumer":     {"drop-oldest or disconnect", `(default "drop-oldest")`},
		"send-queue-bytes":  {"bytes", "max_pending", "(default 67108864)"},
		"handshake-timeout": {"HELLO", "quic-go", "0: never", "(default 5s)"},
		"read-timeout":      {"half-sent", "0: never", "(default 10s)"},
		"idle-timeout":      {"keepalive every 10s", "30s", "0: never", "(default 30s)"},
		"write-timeout":     {"slow consumer", "write_deadline", "0: never", "(default 10s)"},
		"max-rooms":         {"own-id", "refused and counted", "(default 1024)"},
		"max-namespaces":    {"included", "refused and counted", "(default 16)"},
		"max-payload":       {"bytes", "1 to 16777216", "max_payload", "(default 1048576)"},
		"cert":              {"PEM", "needs --key", "self-signed"},
		"key":               {"PEM", "--cert"},
		"cert-out":          {"self-signed", "atomically", "default: no file"},
		"stats-out":         {"JSON", "at exit", "atomically", "default: no file"},
	}
	var o serveOptions
	serveFlags(&o).VisitAll(func(f *pflag.Flag) {
		if _, ok := want[f.Name]; !ok {
			t.Errorf("flag --%s has no entry in this test", f.Name)
		}
	})
	for _, args := range [][]string{{"serve", "--help"}, {"serve", "-h"}, {"help", "serve"}} {
		code, stdout, stderr := runMain(context.Background(), args...)
		if code != exitOK || stderr != "" {
			t.Errorf("evbench %q: exit %d, stderr %q; want 0 and nothing on stderr", args, code, stderr)
		}
		for _, s := range []string{"Usage: evbench serve [flags]", "listening transport=tcp addr=127.0.0.1:40123",
			"schema", "served_s", "cpu_user_s", "cpu_system_s", "peak_rss_bytes", "environment", "closed_clean",
			"Exit status: 0", "SIGTERM", "130"} {
			if !strings.Contains(stdout, s) {
				t.Errorf("evbench %q: help lacks %q", args, s)
			}
		}
		for line := range strings.Lines(stdout) {
			if len(strings.TrimSuffix(line, "\n")) > 80 {
				t.Errorf("evbench %q: help line over 80 columns: %q", args, line)
			}
		}
		_, flags, ok := strings.Cut(stdout, "\nFlags:\n")
		if !ok {
			t.Errorf("evbench %q: help has no Flags: section", args)
		}
		for name, words := range want {
			line := serveFlagEntry(flags, name)
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
	if _, stdout, _ := runMain(context.Background(), "help"); !strings.Contains(stdout, "evbench serve [flags]") {
		t.Errorf("the top-level usage does not list serve:\n%s", stdout)
	}
}

// serveFlagEntry returns the entry of the flags section of a help that
// documents flag name: its first line, which starts with the flag, and the
// lines its text wraps onto, joined by spaces. (main_test.go's flagLine
// also matches a flag named in another flag's text, as --key is in
// --cert's.)
func serveFlagEntry(flags, name string) string {
	var entry []string
	for line := range strings.Lines(flags) {
		trimmed := strings.TrimSpace(line)
		switch {
		case entry == nil && strings.HasPrefix(trimmed, "--"+name+" "):
			entry = append(entry, trimmed)
		case entry != nil && strings.HasPrefix(line, "          "): // wrapped text, not the next flag
			entry = append(entry, trimmed)
		case entry != nil:
			return strings.Join(entry, " ")
		}
	}
	return strings.Join(entry, " ")
}

// TestServeInterruptNote checks what main prints on the first signal:
// run's words are kept, and serve's are its own.
func TestServeInterruptNote(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--transports", "tcp"}, "evbench: interrupted: writing what was measured (interrupt again to exit at once)"},
		{[]string{"serve"}, "evbench: interrupted: closing the listeners and connections (interrupt again to exit at once)"},
		{[]string{"check", "x.csv"}, "evbench: interrupted (interrupt again to exit at once)"},
		{nil, "evbench: interrupted (interrupt again to exit at once)"},
	} {
		if got := interruptNote(tt.args); got != tt.want {
			t.Errorf("interruptNote(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

// TestServeSignalProcess stops a real serve process with SIGINT and with
// SIGTERM: it exits 0, says it is closing, and writes --stats-out.
func TestServeSignalProcess(t *testing.T) {
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		t.Run(fmt.Sprint(sig), func(t *testing.T) {
			statsOut := filepath.Join(t.TempDir(), "stats.json")
			cmd := exec.Command(binPath, "serve", "--transports", "tcp,udp", "--stats-out", statsOut)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waited := make(chan error, 1)
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
				waited <- cmd.Wait() // after stdout's end, as StdoutPipe requires
			}()
			for n := 0; n < 2; n++ {
				select {
				case line, ok := <-lines:
					if !ok {
						t.Fatalf("serve ended before listening: %v\n%s", <-waited, stderr.String())
					}
					if !listeningLine.MatchString(line) {
						t.Errorf("stdout line %q", line)
					}
				case <-time.After(serveWait):
					cmd.Process.Kill()
					<-waited
					t.Fatalf("serve did not listen within %v; stderr:\n%s", serveWait, stderr.String())
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-waited:
				if err != nil {
					t.Errorf("serve after %v: %v, want exit 0; stderr:\n%s", sig, err, stderr.String())
				}
			case <-time.After(serveWait):
				cmd.Process.Kill()
				<-waited
				t.Fatalf("serve did not exit within %v of %v; stderr:\n%s", serveWait, sig, stderr.String())
			}
			if !strings.Contains(stderr.String(), "evbench: interrupted: closing the listeners") {
				t.Errorf("stderr lacks serve's interrupt note:\n%s", stderr.String())
			}
			if doc := readStatsDoc(t, statsOut); len(doc.Transports) != 2 {
				t.Errorf("stats of %d transports, want 2", len(doc.Transports))
			}
		})
	}
}

// TestServeLimits: the limit flags reach the Hub's and the transports'
// configuration, 0 turning a timeout off.
func TestServeLimits(t *testing.T) {
	var o serveOptions
	fs := serveFlags(&o)
	if err := fs.Parse([]string{"--transports", "tcp", "--send-queue-bytes", "1048576", "--handshake-timeout", "0",
		"--idle-timeout", "45s", "--write-timeout", "2s", "--max-rooms", "8", "--max-namespaces", "2", "--max-payload", "4096"}); err != nil {
		t.Fatal(err)
	}
	plan, err := o.validate()
	if err != nil {
		t.Fatal(err)
	}
	want := transports.HubConfig{
		SendQueue: 4096, SendQueueBytes: 1 << 20, HandshakeTimeout: -1, IdleTimeout: 45 * time.Second,
		WriteTimeout: 2 * time.Second, MaxRooms: 8, MaxNamespaces: 2, MaxPayloadBytes: 4096,
	}
	if got := plan.hub; got.SendQueue != want.SendQueue || got.SendQueueBytes != want.SendQueueBytes ||
		got.HandshakeTimeout != want.HandshakeTimeout || got.IdleTimeout != want.IdleTimeout ||
		got.WriteTimeout != want.WriteTimeout || got.MaxRooms != want.MaxRooms ||
		got.MaxNamespaces != want.MaxNamespaces || got.MaxPayloadBytes != want.MaxPayloadBytes {
		t.Errorf("HubConfig = %+v, want %+v", got, want)
	}
	var cfg transports.Config
	if err := o.limits.apply(&transports.HubConfig{}, &cfg); err != nil || cfg.FrameReadTimeout() != 10*time.Second {
		t.Errorf("read timeout %v (%v), want the default 10s", cfg.FrameReadTimeout(), err)
	}
}
