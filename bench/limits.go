package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/evbench/evbench/transports"
)

// This file predicts whether a run fits the process's open-file limit and
// the system's ephemeral ports before it connects (CheckCapacity), and
// explains afterwards why clients failed to connect (ConnectFailures).

// ErrCapacity is wrapped by the error CheckCapacity returns when a run will
// not fit the open-file limit or the ephemeral port range.
var ErrCapacity = errors.New("run exceeds system capacity")

// FDOverhead is the number of file descriptors a run holds besides the ones
// per client: stdin, stdout and stderr, the Go runtime's epoll and eventfd,
// the server's listening socket, a results file, and a margin.
const FDOverhead = 16

// Unlimited is the value FileLimit, RaiseFileLimit and CheckCapacity use for
// a limit of RLIM_INFINITY.
const Unlimited = ^uint64(0)

// FDsNeeded is the number of file descriptors a run of clients clients over
// a transport with caps holds at once, with the server in the same process:
// clients × (caps.ClientFDs + caps.ServerFDs) + FDOverhead.
func FDsNeeded(clients int, caps transports.Caps) uint64 {
	return uint64(max(clients, 0))*uint64(caps.ClientFDs+caps.ServerFDs) + FDOverhead
}

// PortsNeeded is the number of local ports a run of clients clients takes
// from the ephemeral range of its one source address, 127.0.0.1: one per
// client (a TCP connection to the one server address, or a UDP or QUIC
// client socket) plus the server's, which listens on port 0 and so is
// picked from the same range.
func PortsNeeded(clients int) int { return max(clients, 0) + 1 }

// PortRange is the ephemeral port range local ports are picked from
// (net.ipv4.ip_local_port_range, which IPv6 shares), inclusive, and how
// many ports in it are reserved (net.ipv4.ip_local_reserved_ports).
type PortRange struct {
	Lo, Hi   int // first and last port, inclusive
	Reserved int // ports in [Lo, Hi] that are reserved
}

// Available is the number of ports in the range that are not reserved: an
// upper bound on the ports one source address can bind at once, since
// ports other sockets hold are not subtracted.
func (r PortRange) Available() int { return max(r.Hi-r.Lo+1-r.Reserved, 0) }

// String formats the range as sysctl shows it: "32768 60999".
func (r PortRange) String() string { return fmt.Sprintf("%d %d", r.Lo, r.Hi) }

// widestPortRange is the widest range worth suggesting: every port above
// the privileged ones.
var widestPortRange = PortRange{Lo: 1024, Hi: 65535}

const (
	portRangeFile     = "/proc/sys/net/ipv4/ip_local_port_range"
	reservedPortsFile = "/proc/sys/net/ipv4/ip_local_reserved_ports"
)

// EphemeralPorts reads the ephemeral port range and counts the reserved
// ports within it. It fails (wrapping errors.ErrUnsupported off Linux) when
// the range cannot be read; a missing reserved-ports file means none.
func EphemeralPorts() (PortRange, error) {
	b, err := os.ReadFile(portRangeFile)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%w: %v", errors.ErrUnsupported, err)
		}
		return PortRange{}, fmt.Errorf("ephemeral port range: %w", err)
	}
	r, err := parsePortRange(string(b))
	if err != nil {
		return PortRange{}, fmt.Errorf("ephemeral port range: %s: %w", portRangeFile, err)
	}
	if b, err := os.ReadFile(reservedPortsFile); err == nil {
		if r.Reserved, err = countReserved(string(b), r); err != nil {
			return PortRange{}, fmt.Errorf("reserved ports: %s: %w", reservedPortsFile, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return PortRange{}, fmt.Errorf("reserved ports: %w", err)
	}
	return r, nil
}

// parsePortRange parses ip_local_port_range: two ports separated by
// whitespace.
func parsePortRange(s string) (PortRange, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return PortRange{}, fmt.Errorf("want two ports, got %q", strings.TrimSpace(s))
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err := errors.Join(err1, err2); err != nil {
		return PortRange{}, err
	}
	if lo < 1 || hi > 65535 || lo > hi {
		return PortRange{}, fmt.Errorf("invalid range %d–%d", lo, hi)
	}
	return PortRange{Lo: lo, Hi: hi}, nil
}

// countReserved counts the ports in r named by ip_local_reserved_ports, a
// comma-separated list of ports and inclusive ranges ("8080,9000-9100"),
// empty when none is reserved. The kernel keeps the list sorted and
// merged, so its entries do not overlap.
func countReserved(s string, r PortRange) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, nil
	}
	n := 0
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		a, b, isRange := strings.Cut(item, "-")
		lo, err := strconv.Atoi(a)
		if err != nil {
			return 0, err
		}
		hi := lo
		if isRange {
			if hi, err = strconv.Atoi(b); err != nil {
				return 0, err
			}
		}
		if lo > hi {
			return 0, fmt.Errorf("invalid range %q", item)
		}
		lo, hi = max(lo, r.Lo), min(hi, r.Hi)
		if lo <= hi {
			n += hi - lo + 1
		}
	}
	return n, nil
}

// CheckCapacity predicts whether a run of clients clients over the transport
// named name, with caps, fits this process and this system, with the server
// in the same process. It returns nil when it fits, and otherwise an error
// wrapping ErrCapacity whose text says what runs out, the numbers, and how
// to lift the limit:
//
//   - file descriptors: FDsNeeded(clients, caps) against the open-file soft
//     limit (call RaiseFileLimit first: the soft limit can be raised to the
//     hard one without privileges);
//   - ephemeral ports: PortsNeeded(clients) against EphemeralPorts().Available().
//
// A limit that cannot be read (the port range off Linux) is not checked.
func CheckCapacity(clients int, caps transports.Caps, name string) error {
	var problems []string
	if soft, hard, err := FileLimit(); err == nil {
		if msg := fdProblem(clients, caps, name, soft, hard); msg != "" {
			problems = append(problems, msg)
		}
	}
	if r, err := EphemeralPorts(); err == nil {
		if msg := portProblem(clients, name, r); msg != "" {
			problems = append(problems, msg)
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return &capacityError{msg: strings.Join(problems, "; also, ")}
}

type capacityError struct{ msg string }

func (e *capacityError) Error() string { return e.msg }
func (e *capacityError) Unwrap() error { return ErrCapacity }

// fdProblem says why clients clients do not fit an open-file limit of soft
// (hard), or returns "" when they do.
func fdProblem(clients int, caps transports.Caps, name string, soft, hard uint64) string {
	need := FDsNeeded(clients, caps)
	if need <= soft {
		return ""
	}
	per := caps.ClientFDs + caps.ServerFDs
	msg := fmt.Sprintf("%s file descriptors needed for %s %s clients (%d per client in one process) but the open-file limit is %s (hard limit %s): ",
		group(need), group(uint64(clients)), name, per, limitString(soft), limitString(hard))
	if need <= hard {
		return msg + fmt.Sprintf("raise it with `ulimit -n %d`", need)
	}
	return msg + fmt.Sprintf("only root can raise the hard limit (`prlimit --nofile=%d:%d --pid $$`, or nofile in /etc/security/limits.conf and a new login), or run at most %s clients",
		need, need, group(maxClientsFor(hard, per)))
}

// maxClientsFor is the most clients a limit of fds file descriptors holds
// at per descriptors each.
func maxClientsFor(fds uint64, per int) uint64 {
	if fds <= FDOverhead || per <= 0 {
		return 0
	}
	return (fds - FDOverhead) / uint64(per)
}

// portProblem says why clients clients do not fit the ephemeral port range
// r, or returns "" when they do.
func portProblem(clients int, name string, r PortRange) string {
	need := PortsNeeded(clients)
	avail := r.Available()
	if need <= avail {
		return ""
	}
	reserved := ""
	if r.Reserved > 0 {
		reserved = fmt.Sprintf(" (%s of them reserved by net.ipv4.ip_local_reserved_ports)", group(uint64(r.Reserved)))
	}
	msg := fmt.Sprintf("%s ephemeral ports needed for %s %s clients (one per client on the one source address 127.0.0.1, plus the server's) but net.ipv4.ip_local_port_range \"%s\" offers %s%s: ",
		group(uint64(need)), group(uint64(clients)), name, r, group(uint64(avail)), reserved)
	wide := widestPortRange
	wide.Reserved, _ = countReservedNow(wide)
	if need <= wide.Available() {
		return msg + fmt.Sprintf("widen it with `sysctl -w net.ipv4.ip_local_port_range=\"%s\"` (as root), or run fewer clients", wide)
	}
	return msg + fmt.Sprintf("even the widest range, \"%s\", offers %s, so run at most %s clients per source address (fewer clients, or more source addresses)",
		wide, group(uint64(wide.Available())), group(uint64(max(wide.Available()-1, 0))))
}

// countReservedNow counts the reserved ports in r as the system has them
// now; 0 when the list cannot be read.
func countReservedNow(r PortRange) (int, error) {
	b, err := os.ReadFile(reservedPortsFile)
	if err != nil {
		return 0, err
	}
	return countReserved(string(b), r)
}

// limitString formats an rlimit value, Unlimited as "unlimited".
func limitString(v uint64) string {
	if v == Unlimited {
		return "unlimited"
	}
	return group(v)
}

// group formats n with thousands separators: 40016 as "40,016".
func group(n uint64) string {
	s := strconv.FormatUint(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// ConnectFailureClass is why one client failed to connect, as
// ClassifyConnectError sees it.
type ConnectFailureClass int

// The classes, in the order ConnectFailures reports them.
const (
	FailFDs     ConnectFailureClass = iota // EMFILE or ENFILE: out of file descriptors
	FailPorts                              // EADDRNOTAVAIL: out of ephemeral ports
	FailRefused                            // ECONNREFUSED
	FailReset                              // ECONNRESET
	FailTimeout                            // a deadline passed (context.DeadlineExceeded, os.ErrDeadlineExceeded, a net.Error timeout)
	FailOther                              // anything else
	numFailureClasses
)

var failureClassNames = [numFailureClasses]string{
	FailFDs:     "EMFILE/ENFILE (out of file descriptors)",
	FailPorts:   "EADDRNOTAVAIL (out of ephemeral ports)",
	FailRefused: "ECONNREFUSED (connection refused)",
	FailReset:   "ECONNRESET (connection reset)",
	FailTimeout: "timeout",
	FailOther:   "other",
}

// String names the class as ConnectFailures reports it, e.g.
// "EMFILE/ENFILE (out of file descriptors)" or "timeout".
func (c ConnectFailureClass) String() string {
	if c < 0 || c >= numFailureClasses {
		return "ConnectFailureClass(" + strconv.Itoa(int(c)) + ")"
	}
	return failureClassNames[c]
}

// ClassifyConnectError says why a client's connect (or the server's
// Accept) failed, looking through any wrapping with errors.Is: for the
// syscall.Errno values, then for a timeout. err must not be nil.
func ClassifyConnectError(err error) ConnectFailureClass {
	switch {
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return FailFDs
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return FailPorts
	case errors.Is(err, syscall.ECONNREFUSED):
		return FailRefused
	case errors.Is(err, syscall.ECONNRESET):
		return FailReset
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return FailTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return FailTimeout
	}
	return FailOther
}

// helloStage is the prefix transports.Dial gives an error while it waits
// for the server's HELLO.
const helloStage = "hello: "

// ConnectFailures collects why clients failed to connect and why the
// server's Accept failed, and writes the row's error from them. Its zero
// value is ready to use; its methods are safe for concurrent use (Add from
// the connecting goroutines, AcceptError from the Hub's Serve, as
// transports.HubConfig.OnAcceptError).
type ConnectFailures struct {
	mu           sync.Mutex
	failed       int
	byClass      [numFailureClasses]int
	helloTimeout int // of byClass[FailTimeout]: while waiting for the server's HELLO
	firstClient  int
	first        error
	accepts      int
	acceptClass  [numFailureClasses]int
}

// Add records client's connect error; a nil err is ignored. client is the
// client's index, as the runner numbers them; the first failure reported
// is the one of the lowest index.
func (f *ConnectFailures) Add(client int, err error) {
	if err == nil {
		return
	}
	c := ClassifyConnectError(err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed++
	f.byClass[c]++
	if c == FailTimeout && isHelloError(err) {
		f.helloTimeout++
	}
	if f.first == nil || client < f.firstClient {
		f.first, f.firstClient = err, client
	}
}

// isHelloError reports whether err arose waiting for the server's HELLO.
func isHelloError(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, helloStage) || strings.Contains(s, ": "+helloStage)
}

// AcceptError records one failed Accept on the server side; it has the
// signature of transports.HubConfig.OnAcceptError.
func (f *ConnectFailures) AcceptError(err error) {
	if err == nil {
		return
	}
	c := ClassifyConnectError(err)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.accepts++
	f.acceptClass[c]++
}

// Failed is the number of clients recorded with Add.
func (f *ConnectFailures) Failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

// AcceptErrors is the number of failed Accepts recorded with AcceptError.
func (f *ConnectFailures) AcceptErrors() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.accepts
}

// Error returns the row's error for a connect phase in which requested
// clients were asked for, or "" when no client failed and no Accept did.
// It gives the clients established (requested − failed) and failed, a
// count per class, the server's Accept failures per class, and the first
// failure:
//
//	12,000 of 20,000 clients connected; 8,000 failed: 10 EMFILE/ENFILE (out of file descriptors), 7,990 timeout waiting for HELLO; the server's accept failed 7,990 times: 7,990 EMFILE/ENFILE (out of file descriptors); first: client 12000: hello: context deadline exceeded
//
// Classes come in the order of the ConnectFailureClass constants; a timeout
// is "timeout waiting for HELLO" when the error came from transports.Dial's
// HELLO exchange ("hello: ..."), and "timeout" otherwise.
func (f *ConnectFailures) Error(requested int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed == 0 && f.accepts == 0 {
		return ""
	}
	var b strings.Builder
	if f.failed == 0 {
		fmt.Fprintf(&b, "all %s clients connected", group(uint64(max(requested, 0))))
	} else {
		fmt.Fprintf(&b, "%s of %s clients connected; %s failed: ",
			group(uint64(max(requested-f.failed, 0))), group(uint64(max(requested, 0))), group(uint64(f.failed)))
		var parts []string
		for c, n := range f.byClass {
			if ConnectFailureClass(c) == FailTimeout {
				if f.helloTimeout > 0 {
					parts = append(parts, group(uint64(f.helloTimeout))+" timeout waiting for HELLO")
				}
				n -= f.helloTimeout
			}
			if n > 0 {
				parts = append(parts, group(uint64(n))+" "+ConnectFailureClass(c).String())
			}
		}
		b.WriteString(strings.Join(parts, ", "))
	}
	if f.accepts > 0 {
		times := "times"
		if f.accepts == 1 {
			times = "time"
		}
		fmt.Fprintf(&b, "; the server's accept failed %s %s: ", group(uint64(f.accepts)), times)
		var parts []string
		for c, n := range f.acceptClass {
			if n > 0 {
				parts = append(parts, group(uint64(n))+" "+ConnectFailureClass(c).String())
			}
		}
		b.WriteString(strings.Join(parts, ", "))
	}
	if f.first != nil {
		b.WriteString("; first: ")
		if prefix := fmt.Sprintf("client %d: ", f.firstClient); !strings.HasPrefix(f.first.Error(), prefix) {
			b.WriteString(prefix)
		}
		b.WriteString(f.first.Error())
	}
	return b.String()
}

// Err is Error(requested) as an error that wraps the first client's error
// (so errors.Is(err, syscall.EMFILE) holds when that one ran out of file
// descriptors), or nil when Error would be "".
func (f *ConnectFailures) Err(requested int) error {
	msg := f.Error(requested)
	if msg == "" {
		return nil
	}
	f.mu.Lock()
	first := f.first
	f.mu.Unlock()
	return &connectError{msg: msg, first: first}
}

type connectError struct {
	msg   string
	first error
}

func (e *connectError) Error() string { return e.msg }
func (e *connectError) Unwrap() error { return e.first }
