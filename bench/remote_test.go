package bench_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/tcp"
)

// TestRunAgainstServer aims the fleet at a Server by its address, as at a
// remote one: the counters come over the protocol. With a send queue of one
// event, whatever the server's queues drop is exactly what the fleet
// misses over tcp; a malformed connection made during the run shows in the
// row's protocol errors, read from the server.
func TestRunAgainstServer(t *testing.T) {
	srv, err := bench.StartServer(context.Background(), tcp.Plain(), bench.ListenAddr,
		transports.HubConfig{SendQueue: 1, SlowConsumer: transports.DropOldest})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	addr := srv.Addr().String()
	sc := bench.Scenario{Clients: 10, Rooms: 1, RateEPS: 200, PayloadBytes: 512, Warmup: bench.NoWarmup, Duration: 2 * time.Second}

	// Once the fleet is connected, one peer sends a malformed frame.
	injected := make(chan error, 1)
	go func() {
		injected <- func() error {
			deadline := time.Now().Add(20 * time.Second)
			for srv.Stats().Conns < sc.Clients+1 {
				if time.Now().After(deadline) {
					return fmt.Errorf("the fleet never connected: %+v", srv.Stats())
				}
				time.Sleep(time.Millisecond)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := tcp.Plain().Dial(ctx, addr)
			if err != nil {
				return err
			}
			defer c.Close()
			hello, _ := transports.AppendFrame(nil, &transports.Frame{Type: transports.FrameHello, Sender: 1 << 40})
			for _, p := range [][]byte{hello, {transports.Version, 0xee}} {
				if err := c.WriteFrame(p); err != nil {
					return err
				}
			}
			if err := transports.Flush(c); err != nil {
				return err
			}
			for srv.Stats().ProtocolErrors == 0 {
				if time.Now().After(deadline) {
					return fmt.Errorf("the malformed frame was not counted: %+v", srv.Stats())
				}
				time.Sleep(time.Millisecond)
			}
			return nil
		}()
	}()

	res, err := bench.RunWith(context.Background(), tcp.Plain(), sc, bench.Options{Server: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-injected; err != nil {
		t.Fatal(err)
	}
	checkConsistent(t, res)
	t.Logf("expected %d delivered %d missed %d queue drops %d", res.Expected, res.Delivered, res.Missed, res.QueueDrops)
	if res.Server != addr || res.SendQueue != 1 || res.SlowConsumer != "drop-oldest" {
		t.Errorf("row: server %q send queue %d slow consumer %q, want %q and the server's own settings 1 and drop-oldest",
			res.Server, res.SendQueue, res.SlowConsumer, addr)
	}
	if res.Missed != res.QueueDrops {
		t.Errorf("missed %d, queue drops %d: over tcp every miss is a drop in the server's queues", res.Missed, res.QueueDrops)
	}
	if res.ProtocolErrors != 1 || res.ServerClosedError != 1 {
		t.Errorf("protocol errors %d, closed with an error %d; want the one malformed connection", res.ProtocolErrors, res.ServerClosedError)
	}
}

// droppingConn is a net.PacketConn, not a *net.UDPConn, that discards every
// nth datagram it is asked to send, and counts what it dropped.
type droppingConn struct {
	net.PacketConn
	n       int64
	sent    atomic.Int64
	dropped atomic.Int64
	events  atomic.Int64 // dropped udp DATA datagrams that carried an EVENT frame
}

func (c *droppingConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.sent.Add(1)%c.n != 0 {
		return c.PacketConn.WriteTo(p, addr)
	}
	c.dropped.Add(1)
	// The udp wire format (package udp): a kind byte, 1 for DATA, then
	// one frame.
	var f transports.Frame
	if len(p) > 1 && p[0] == 1 && transports.DecodeFrame(p[1:], &f) == nil && f.Type == transports.FrameEvent {
		c.events.Add(1)
	}
	return len(p), nil
}

// dropper is a transports.Config whose packet sockets drop every nth
// datagram they send: only the first socket opened (the in-process server's,
// which a run opens before any client's) when serverOnly is set.
type dropper struct {
	n          int64
	serverOnly bool
	mu         sync.Mutex
	conns      []*droppingConn
	opened     int
}

func (d *dropper) config() transports.Config {
	return transports.Config{ListenPacket: func(ctx context.Context, network, addr string) (net.PacketConn, error) {
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		d.opened++
		if d.serverOnly && d.opened > 1 {
			return pc, nil
		}
		dc := &droppingConn{PacketConn: pc, n: d.n}
		d.conns = append(d.conns, dc)
		return dc, nil
	}}
}

func (d *dropper) totals() (dropped, events int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.conns {
		dropped += c.dropped.Load()
		events += c.events.Load()
	}
	return dropped, events
}

// TestDroppingPacketConn: udp and quic run over a net.PacketConn they are
// given, with no change to the Hub or the Client. A wrapper that drops every
// 10th datagram costs udp exactly the events it dropped, and quic, which
// retransmits, nothing.
func TestDroppingPacketConn(t *testing.T) {
	sc := bench.Scenario{Clients: 10, Rooms: 1, RateEPS: 20, PayloadBytes: 64, Warmup: bench.NoWarmup,
		Duration: time.Second, Drain: 3 * time.Second}
	for _, tc := range []struct {
		name       string
		serverOnly bool
	}{
		{"udp", true},   // the server's sends: every dropped EVENT is one missed delivery
		{"quic", false}, // every socket, both directions
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &dropper{n: 10, serverOnly: tc.serverOnly}
			tr, err := transports.New(tc.name, d.config())
			if err != nil {
				t.Fatal(err)
			}
			res, err := bench.Run(context.Background(), tr, sc)
			if err != nil {
				t.Fatal(err)
			}
			checkConsistent(t, res)
			dropped, events := d.totals()
			t.Logf("%s: expected %d delivered %d missed %d; the wrapper dropped %d datagrams, %d of them events",
				tc.name, res.Expected, res.Delivered, res.Missed, dropped, events)
			if dropped == 0 {
				t.Fatal("the wrapper dropped nothing: the transport did not use the PacketConn it was given")
			}
			switch tc.name {
			case "udp":
				if events == 0 || res.Missed != events {
					t.Errorf("missed %d, want exactly the %d events the wrapper dropped", res.Missed, events)
				}
			case "quic":
				if res.Missed != 0 {
					t.Errorf("missed %d over quic, want 0: QUIC retransmits what the wrapper dropped", res.Missed)
				}
			}
		})
	}
}

// serveEnv names the transports a re-executed test binary serves; see
// serveInChild.
const serveEnv = "EVBENCH_TEST_SERVE"

// serveInChild runs in a re-executed test binary (TestMain calls it when
// serveEnv is set): it serves a Hub on each named transport on loopback,
// writes its certificate to the file EVBENCH_TEST_CERT names, prints
// "transport=addr" per listener, and serves until its stdin closes.
func serveInChild(names string) int {
	pem, err := transports.SelfSignedCertPEM()
	if err == nil {
		err = os.WriteFile(os.Getenv("EVBENCH_TEST_CERT"), pem, 0o600)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var servers []*bench.Server
	for name := range strings.SplitSeq(names, ",") {
		tr, err := transports.Lookup(name)
		if err == nil {
			var s *bench.Server
			if s, err = bench.StartServer(context.Background(), tr, bench.ListenAddr, transports.HubConfig{}); err == nil {
				servers = append(servers, s)
				fmt.Printf("%s=%s\n", name, s.Addr())
				continue
			}
		}
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	for _, s := range servers {
		s.Close()
	}
	return 0
}

// TestServerInAnotherProcess runs the fleet against Hubs served by another
// process (this test binary, re-executed), over every transport, the TLS
// ones verifying that process's certificate: every row holds delivered +
// missed = expected, the reliable transports miss nothing, and the row says
// where the server was.
func TestServerInAnotherProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second process and runs every transport")
	}
	names := transports.Names()
	certFile := filepath.Join(t.TempDir(), "cert.pem")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), serveEnv+"="+strings.Join(names, ","), "EVBENCH_TEST_CERT="+certFile)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close() // the child serves until its stdin closes
		if err := cmd.Wait(); err != nil {
			t.Errorf("server process: %v", err)
		}
	}()
	addrs := map[string]string{}
	lines := bufio.NewScanner(stdout)
	for len(addrs) < len(names) && lines.Scan() {
		name, addr, _ := strings.Cut(lines.Text(), "=")
		addrs[name] = addr
	}
	if len(addrs) < len(names) {
		t.Fatalf("the server process announced %v, want all of %v", addrs, names)
	}
	go io.Copy(io.Discard, stdout)

	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in the server's PEM")
	}
	cfg := transports.Config{ClientTLS: &tls.Config{RootCAs: pool}}
	sc := bench.Scenario{Clients: 10, Rooms: 2, RateEPS: 20, Warmup: 200 * time.Millisecond, Duration: time.Second}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			tr, err := transports.New(name, cfg)
			if err != nil {
				t.Fatal(err)
			}
			res, err := bench.RunWith(context.Background(), tr, sc, bench.Options{Server: addrs[name]})
			if err != nil {
				t.Fatal(err)
			}
			checkConsistent(t, res)
			if res.Expected == 0 || (res.CapsReliable && res.Missed != 0) {
				t.Errorf("expected %d, missed %d (reliable %v)", res.Expected, res.Missed, res.CapsReliable)
			}
			if res.Server != addrs[name] || res.SendQueue != 4096 {
				t.Errorf("row: server %q send queue %d, want %q and the server's 4096", res.Server, res.SendQueue, addrs[name])
			}
		})
	}
}

// TestRemoteServerGoesAway: a server that stops mid-run ends the fleet's
// connections; the row says so (clients disconnected) rather than only that
// the server's counters could not be read, and holds its accounting.
func TestRemoteServerGoesAway(t *testing.T) {
	srv, err := bench.StartServer(context.Background(), tcp.Plain(), bench.ListenAddr, transports.HubConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	sc := bench.Scenario{Clients: 6, Rooms: 1, RateEPS: 50, Warmup: bench.NoWarmup, Duration: time.Second, Drain: 100 * time.Millisecond}
	// An observer in the fleet's room: its first event means the fleet
	// has joined and is publishing, and then the server goes.
	publishing := make(chan struct{})
	var once sync.Once
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	observer, err := transports.Dial(ctx, tcp.Plain(), srv.Addr().String(), transports.ClientConfig{
		ID:      1 << 40,
		OnEvent: func(*transports.Frame, int64) { once.Do(func() { close(publishing) }) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer observer.Close()
	if err := observer.Join(ctx, bench.Namespace, "room-0"); err != nil {
		t.Fatal(err)
	}
	go func() {
		select {
		case <-publishing:
			srv.Close()
		case <-ctx.Done():
		}
	}()
	res, err := bench.RunWith(context.Background(), tcp.Plain(), sc, bench.Options{Server: srv.Addr().String()})
	if !errors.Is(err, bench.ErrMeasurement) {
		t.Fatalf("RunWith = %v, want an error wrapping ErrMeasurement", err)
	}
	checkConsistent(t, res)
	if !strings.Contains(res.Error, "clients disconnected") || !strings.Contains(res.Error, "counters in this row are unknown") || res.Disconnects != int64(sc.Clients) {
		t.Errorf("row error %q, disconnects %d; want all %d clients reported disconnected", res.Error, res.Disconnects, sc.Clients)
	}
}

// TestRunRefusesWhatTheServerWouldRefuse: against a server whose limits the
// scenario crosses (its payload, its rooms per client), the run fails before
// any client connects, naming the limit and the flag that raises it; the
// server in this process grows its limits to the scenario's instead.
func TestRunRefusesWhatTheServerWouldRefuse(t *testing.T) {
	srv, err := bench.StartServer(context.Background(), tcp.Plain(), bench.ListenAddr,
		transports.HubConfig{MaxPayloadBytes: 100, MaxRooms: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	base := bench.Scenario{Clients: 4, Rooms: 3, RoomsPerClient: 2, RateEPS: 10, PayloadBytes: 64, Warmup: bench.NoWarmup, Duration: 200 * time.Millisecond}
	for _, tt := range []struct {
		name string
		edit func(*bench.Scenario)
		want string
	}{
		{"payload", func(sc *bench.Scenario) { sc.PayloadBytes = 101 }, "accepts payloads of at most 100 bytes, and --payload is 101"},
		{"rooms", func(sc *bench.Scenario) { sc.RoomsPerClient = 3 }, "at most 2 rooms, and --rooms-per-client is 3"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := base
			tt.edit(&sc)
			before := srv.Stats()
			_, err := bench.RunWith(context.Background(), tcp.Plain(), sc, bench.Options{Server: srv.Addr().String()})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("RunWith: %v, want an error saying %q", err, tt.want)
			}
			if st := srv.Stats(); st.ClosedClean-before.ClosedClean > 1 || st.LimitRefusals != 0 {
				t.Errorf("the fleet connected before refusing: %+v", st)
			}
			// In this process the server takes the scenario as it is.
			res, err := bench.Run(context.Background(), tcp.Plain(), sc)
			if err != nil || res.Missed != 0 {
				t.Errorf("in-process run: %v, missed %d", err, res.Missed)
			}
		})
	}
}
