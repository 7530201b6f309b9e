package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/evbench/evbench/transports"
	_ "github.com/evbench/evbench/transports/all"
	"github.com/evbench/evbench/transports/tcp"
)

func skipUnlessLinux(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux: /proc and RLIMIT_NOFILE")
	}
}

func TestCapacityMessages(t *testing.T) {
	tcpCaps := tcp.Plain().Caps()
	udpCaps := transports.Caps{ClientFDs: 1}
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"fds fit", fdProblem(20_000, tcpCaps, "tcp", 40_016, 40_016), ""},
		{"fds below hard", fdProblem(20_000, tcpCaps, "tcp", 20_000, 1_048_576),
			"40,016 file descriptors needed for 20,000 tcp clients (2 per client in one process) but the open-file limit is 20,000 (hard limit 1,048,576): raise it with `ulimit -n 40016`"},
		{"fds above hard", fdProblem(20_000, tcpCaps, "tcp", 20_000, 20_000),
			"40,016 file descriptors needed for 20,000 tcp clients (2 per client in one process) but the open-file limit is 20,000 (hard limit 20,000): " +
				"only root can raise the hard limit (`prlimit --nofile=40016:40016 --pid $$`, or nofile in /etc/security/limits.conf and a new login), or run at most 9,992 clients"},
		{"fds udp", fdProblem(1000, udpCaps, "udp", 1000, Unlimited),
			"1,016 file descriptors needed for 1,000 udp clients (1 per client in one process) but the open-file limit is 1,000 (hard limit unlimited): raise it with `ulimit -n 1016`"},
		{"ports fit", portProblem(28_231, "tcp", PortRange{Lo: 32768, Hi: 60999}), ""},
		{"ports short", portProblem(30_000, "tcp", PortRange{Lo: 32768, Hi: 60999}),
			"30,001 ephemeral ports needed for 30,000 tcp clients (one per client on the one source address 127.0.0.1, plus the server's) but net.ipv4.ip_local_port_range \"32768 60999\" offers 28,232: " +
				"widen it with `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"` (as root), or run fewer clients"},
		{"ports reserved", portProblem(28_231, "quic", PortRange{Lo: 32768, Hi: 60999, Reserved: 100}),
			"28,232 ephemeral ports needed for 28,231 quic clients (one per client on the one source address 127.0.0.1, plus the server's) but net.ipv4.ip_local_port_range \"32768 60999\" offers 28,132 (100 of them reserved by net.ipv4.ip_local_reserved_ports): " +
				"widen it with `sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"` (as root), or run fewer clients"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
	}
	// Beyond what any range offers (the reserved ports of this system
	// change the numbers, so only the advice is checked).
	if got := portProblem(100_000, "tcp", PortRange{Lo: 1024, Hi: 65535}); !strings.Contains(got, "even the widest range, \"1024 65535\"") ||
		!strings.Contains(got, "clients per source address") {
		t.Errorf("100,000 clients: %s", got)
	}
}

func TestCheckCapacity(t *testing.T) {
	skipUnlessLinux(t)
	caps := tcp.Plain().Caps()
	if err := CheckCapacity(10, caps, "tcp"); err != nil {
		t.Errorf("10 tcp clients: %v", err)
	}
	err := CheckCapacity(10_000_000, caps, "tcp")
	if !errors.Is(err, ErrCapacity) {
		t.Fatalf("10,000,000 tcp clients: %v, want an error wrapping ErrCapacity", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "20,000,016 file descriptors needed") || !strings.Contains(msg, "; also, 10,000,001 ephemeral ports needed") {
		t.Errorf("10,000,000 tcp clients: %s", msg)
	}
	t.Log(msg)
}

func TestEphemeralPorts(t *testing.T) {
	skipUnlessLinux(t)
	r, err := EphemeralPorts()
	if err != nil {
		t.Fatal(err)
	}
	if r.Lo < 1 || r.Hi > 65535 || r.Lo > r.Hi || r.Reserved < 0 || r.Available() > r.Hi-r.Lo+1 {
		t.Errorf("EphemeralPorts() = %+v", r)
	}
	t.Logf("ephemeral ports %s, %d reserved, %d available", r, r.Reserved, r.Available())
}

func TestParsePorts(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    PortRange
		wantErr bool
	}{
		{"32768\t60999\n", PortRange{Lo: 32768, Hi: 60999}, false},
		{"1024 65535", PortRange{Lo: 1024, Hi: 65535}, false},
		{"1024", PortRange{}, true},
		{"60999 32768", PortRange{}, true},
		{"0 100", PortRange{}, true},
		{"a b", PortRange{}, true},
	} {
		got, err := parsePortRange(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parsePortRange(%q) = %+v, %v", tt.in, got, err)
		}
	}
	r := PortRange{Lo: 32768, Hi: 60999}
	for _, tt := range []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"\n", 0, false},
		{"8080\n", 0, false},  // below the range
		{"40000\n", 1, false}, // one port
		{"40000-40099,50000", 101, false},
		{"30000-32769,60998-70000", 4, false}, // clipped to the range at both ends
		{"1-65535", 28_232, false},
		{"x", 0, true},
		{"5-3", 0, true},
	} {
		got, err := countReserved(tt.in, r)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("countReserved(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[uint64]string{0: "0", 999: "999", 1000: "1,000", 40016: "40,016", 1048576: "1,048,576", 12345678901: "12,345,678,901"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}

// timeoutError is a net.Error that timed out, as a driver's own error
// might be.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func TestClassifyConnectError(t *testing.T) {
	dialErr := func(errno syscall.Errno) error {
		return fmt.Errorf("client 7: tcp: %w", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", errno)})
	}
	for _, tt := range []struct {
		err  error
		want ConnectFailureClass
	}{
		{dialErr(syscall.EMFILE), FailFDs},
		{fmt.Errorf("client 1: tcp: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.ENFILE)}), FailFDs},
		{&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, FailFDs},
		{dialErr(syscall.EADDRNOTAVAIL), FailPorts},
		{fmt.Errorf("quic dial 127.0.0.1:1: %w", &net.OpError{Op: "listen", Err: os.NewSyscallError("bind", syscall.EADDRNOTAVAIL)}), FailPorts},
		{dialErr(syscall.ECONNREFUSED), FailRefused},
		{fmt.Errorf("udp: dial 127.0.0.1:1: %w", syscall.ECONNREFUSED), FailRefused},
		{dialErr(syscall.ECONNRESET), FailReset},
		{fmt.Errorf("client 3: hello: %w", context.DeadlineExceeded), FailTimeout},
		{fmt.Errorf("client 3: join room-1: %w", context.DeadlineExceeded), FailTimeout},
		{fmt.Errorf("ws: dial: %w", os.ErrDeadlineExceeded), FailTimeout},
		{fmt.Errorf("client 3: %w", &net.OpError{Op: "read", Err: timeoutError{}}), FailTimeout},
		{&net.DNSError{Err: "timed out", IsTimeout: true}, FailTimeout},
		{fmt.Errorf("client 3: hello: %w", context.Canceled), FailOther},
		{fmt.Errorf("client 3: %w", net.ErrClosed), FailOther},
		{errors.New("server rejected join"), FailOther},
		{errors.Join(errors.New("first"), dialErr(syscall.EMFILE)), FailFDs},
	} {
		if got := ClassifyConnectError(tt.err); got != tt.want {
			t.Errorf("ClassifyConnectError(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestConnectFailures(t *testing.T) {
	var f ConnectFailures
	if got := f.Error(10); got != "" || f.Err(10) != nil {
		t.Errorf("no failures: %q, %v", got, f.Err(10))
	}
	f.Add(1, nil) // a success
	f.AcceptError(nil)
	if got := f.Error(10); got != "" {
		t.Errorf("nil errors recorded: %q", got)
	}

	// The example of the problem report: 20,000 tcp clients under an
	// open-file limit of 20,000, added concurrently in any order.
	var wg sync.WaitGroup
	for i := 12_000; i < 20_000; i++ {
		wg.Go(func() {
			if i < 19_990 {
				f.Add(i, fmt.Errorf("client %d: hello: %w", i, context.DeadlineExceeded))
				f.AcceptError(&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)})
			} else {
				f.Add(i, fmt.Errorf("tcp: %w", &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)}))
			}
		})
	}
	wg.Wait()
	want := "12,000 of 20,000 clients connected; 8,000 failed: 10 EMFILE/ENFILE (out of file descriptors), 7,990 timeout waiting for HELLO; " +
		"the server's accept failed 7,990 times: 7,990 EMFILE/ENFILE (out of file descriptors); first: client 12000: hello: context deadline exceeded"
	if got := f.Error(20_000); got != want {
		t.Errorf("Error:\n got %s\nwant %s", got, want)
	}
	if f.Failed() != 8000 || f.AcceptErrors() != 7990 {
		t.Errorf("Failed() = %d, AcceptErrors() = %d", f.Failed(), f.AcceptErrors())
	}
	if err := f.Err(20_000); err == nil || err.Error() != want || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Err = %v", err)
	}

	// Every class, and a first error without the "client N: " prefix.
	var g ConnectFailures
	g.Add(5, fmt.Errorf("tcp: %w", syscall.ECONNREFUSED))
	g.Add(3, fmt.Errorf("tcp: %w", syscall.ECONNRESET))
	g.Add(4, fmt.Errorf("tcp: %w", syscall.EADDRNOTAVAIL))
	g.Add(6, fmt.Errorf("client 6: join r: %w", context.DeadlineExceeded))
	g.Add(7, errors.New("server rejected join"))
	g.Add(8, fmt.Errorf("hello: %w", os.ErrDeadlineExceeded))
	want = "4 of 10 clients connected; 6 failed: 1 EADDRNOTAVAIL (out of ephemeral ports), 1 ECONNREFUSED (connection refused), 1 ECONNRESET (connection reset), " +
		"1 timeout waiting for HELLO, 1 timeout, 1 other; first: client 3: tcp: connection reset by peer"
	if got := g.Error(10); got != want {
		t.Errorf("Error:\n got %s\nwant %s", got, want)
	}

	// Only the server failed, and recovered.
	var h ConnectFailures
	h.AcceptError(os.NewSyscallError("accept4", syscall.ENFILE))
	if got, want := h.Error(3), "all 3 clients connected; the server's accept failed 1 time: 1 EMFILE/ENFILE (out of file descriptors)"; got != want {
		t.Errorf("Error:\n got %s\nwant %s", got, want)
	}
}

// failingListener fails its first Accepts with errs, then reports closed.
type failingListener struct {
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept(ctx context.Context) (transports.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil, net.ErrClosed
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}
func (l *failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (l *failingListener) Close() error   { return nil }

// TestHubOnAcceptError checks that the Hub reports each retried Accept
// failure to HubConfig.OnAcceptError, and not the closing of its listener.
func TestHubOnAcceptError(t *testing.T) {
	var f ConnectFailures
	hub := transports.NewHub(transports.HubConfig{OnAcceptError: f.AcceptError})
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	ln := &failingListener{errs: []error{emfile, emfile, fmt.Errorf("accept: %w", syscall.ECONNRESET)}}
	if err := hub.Serve(context.Background(), ln); err != nil {
		t.Fatal(err)
	}
	hub.Close()
	if got := hub.Stats().AcceptErrors; got != 3 {
		t.Errorf("HubStats.AcceptErrors = %d, want 3", got)
	}
	want := "all 1 clients connected; the server's accept failed 3 times: 2 EMFILE/ENFILE (out of file descriptors), 1 ECONNRESET (connection reset)"
	if got := f.Error(1); got != want {
		t.Errorf("Error:\n got %s\nwant %s", got, want)
	}
}
