//go:build linux

package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/transports"
	"github.com/evbench/evbench/transports/tcp"
)

// These tests count this process's descriptors in /proc and change its
// RLIMIT_NOFILE.

// openFDs maps each of this process's open file descriptors to what it
// refers to ("socket:[1234]", a path, ...).
func openFDs(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[int]string, len(ents))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		// The directory's own descriptor is closed by now: Readlink fails.
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name())); err == nil {
			m[fd] = target
		}
	}
	return m
}

// newFDs lists the descriptors open now that were not open, as the same
// file, in before.
func newFDs(t *testing.T, before map[int]string) map[int]string {
	t.Helper()
	m := map[int]string{}
	for fd, target := range openFDs(t) {
		if before[fd] != target {
			m[fd] = target
		}
	}
	return m
}

// localPort returns the local port of socket descriptor fd of this
// process, read with getsockname(2) (unlike /proc/net/*, which is read in
// pieces and can skip sockets while others come and go).
func localPort(fd int) (int, bool) {
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return 0, false
	}
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return sa.Port, true
	case *syscall.SockaddrInet6:
		return sa.Port, true
	}
	return 0, false
}

// TestFDsPerConnection checks every registered transport's ClientFDs and
// ServerFDs against what K connections really hold: each new socket is the
// server's when its local port is the Listener's, a client's otherwise.
// Closing everything must give every descriptor back.
func TestFDsPerConnection(t *testing.T) {
	skipUnlessLinux(t)
	const K = 20
	for _, name := range transports.Names() {
		t.Run(name, func(t *testing.T) {
			tr, err := transports.Lookup(name)
			if err != nil {
				t.Fatal(err)
			}
			caps := tr.Caps()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			before := openFDs(t)
			ln, err := tr.Listen(ctx, ListenAddr)
			if err != nil {
				t.Fatal(err)
			}
			listening := openFDs(t)
			_, portStr, _ := net.SplitHostPort(ln.Addr().String())
			serverPort, _ := strconv.Atoi(portStr)

			var clients, servers []transports.Conn
			closeAll := func() {
				var wg sync.WaitGroup
				for _, c := range append(clients, servers...) {
					wg.Go(func() { c.Close() })
				}
				wg.Wait()
				clients, servers = nil, nil
				ln.Close()
			}
			defer closeAll()
			for i := range K {
				acc := make(chan transports.Conn, 1)
				go func() {
					c, err := ln.Accept(ctx)
					if err != nil {
						t.Errorf("accept %d: %v", i, err)
					}
					acc <- c
				}()
				c, err := tr.Dial(ctx, ln.Addr().String())
				if err != nil {
					cancel() // unblocks the Accept
					<-acc
					t.Fatalf("dial %d: %v", i, err)
				}
				clients = append(clients, c)
				if s := <-acc; s != nil {
					servers = append(servers, s)
				} else {
					t.FailNow()
				}
			}

			var client, server int
			var other []string
			for fd, target := range newFDs(t, listening) {
				port, known := localPort(fd)
				switch {
				case !strings.HasPrefix(target, "socket:[") || !known:
					other = append(other, target)
				case port == serverPort:
					server++
				default:
					client++
				}
			}
			t.Logf("%s: %d connections hold %d client-side and %d server-side descriptors", name, K, client, server)
			if client != K*caps.ClientFDs || server != K*caps.ServerFDs || len(other) > 0 {
				t.Errorf("%d connections hold %d client-side and %d server-side descriptors and %d others %q; Caps says %d and %d per connection",
					K, client, server, len(other), other, caps.ClientFDs, caps.ServerFDs)
			}

			closeAll()
			deadline := time.Now().Add(5 * time.Second)
			for {
				left := newFDs(t, before)
				if len(left) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d descriptors still open after closing everything: %v", len(left), left)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// limitHelperEnv makes the test binary print its open-file limits and exit
// (TestFileLimitHelper).
const limitHelperEnv = "EVBENCH_FILE_LIMIT_HELPER"

// TestFileLimitHelper is the child process of TestRaiseFileLimit.
func TestFileLimitHelper(t *testing.T) {
	if os.Getenv(limitHelperEnv) == "" {
		t.Skip("helper process only")
	}
	soft, hard, err := FileLimit()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("limits %d %d\n", soft, hard)
}

// TestRaiseFileLimit checks that Go's start-up raises a low soft
// RLIMIT_NOFILE almost to the hard limit (in a child process started with a
// low soft limit), and that RaiseFileLimit takes it to the hard limit.
func TestRaiseFileLimit(t *testing.T) {
	skipUnlessLinux(t)
	soft, hard, err := FileLimit()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("open-file limit at start: soft %d, hard %d", soft, hard)
	open := uint64(len(openFDs(t)))
	low := max(256, open+64)
	if hard < low+2 {
		t.Skipf("hard limit %d leaves no room to lower the soft limit", hard)
	}
	nrOpen := readUint(t, "/proc/sys/fs/nr_open")
	if hard-1 <= nrOpen && soft < hard-1 {
		t.Errorf("Go's start-up left the soft limit at %d, want at least %d (hard limit %d)", soft, hard-1, hard)
	}

	// Lower the soft limit: a child process inherits it (Setrlimit tells
	// os/exec not to restore the original), and its Go start-up raises it.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: low, Max: hard}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, _, err := RaiseFileLimit(); err != nil {
			t.Error(err)
		}
	})
	if s, _, _ := FileLimit(); s != low {
		t.Fatalf("soft limit %d after lowering it to %d", s, low)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileLimitHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), limitHelperEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	var childSoft, childHard uint64
	for line := range strings.Lines(string(out)) {
		if _, err := fmt.Sscanf(line, "limits %d %d", &childSoft, &childHard); err == nil {
			break
		}
	}
	if childHard != hard {
		t.Fatalf("helper printed no limits or a different hard limit:\n%s", out)
	}
	if hard-1 <= nrOpen && childSoft < hard-1 {
		t.Errorf("a Go process started with soft limit %d runs with %d, want at least %d (hard %d)", low, childSoft, hard-1, hard)
	}
	t.Logf("a Go process started with soft limit %d runs with soft %d, hard %d", low, childSoft, childHard)

	soft, gotHard, err := RaiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	if gotHard != hard || (hard <= nrOpen && soft != hard) {
		t.Errorf("RaiseFileLimit() = %d, %d; want %d, %d", soft, gotHard, hard, hard)
	}
	if s, h, _ := FileLimit(); s != soft || h != gotHard {
		t.Errorf("FileLimit() = %d, %d after RaiseFileLimit() = %d, %d", s, h, soft, gotHard)
	}
}

func readUint(t *testing.T, path string) uint64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestConnectUnderLowFileLimit runs out of file descriptors for real: with
// the soft limit set to what the open descriptors and 10 tcp clients need
// plus one, clients connected one at a time get 10 through; the 11th
// client's socket takes the last descriptor, so the server cannot accept it
// and its HELLO times out. ConnectFailures says so.
func TestConnectUnderLowFileLimit(t *testing.T) {
	skipUnlessLinux(t)
	if testing.Short() {
		t.Skip("waits for HELLO timeouts")
	}
	const fit, tries = 10, 13
	tr := tcp.Plain()
	var f ConnectFailures
	hub := transports.NewHub(transports.HubConfig{OnAcceptError: f.AcceptError})
	ln, err := tr.Listen(context.Background(), ListenAddr)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		hub.Serve(context.Background(), ln)
	}()
	var clients []*transports.Client
	defer func() {
		for _, c := range clients {
			c.Close()
		}
		ln.Close()
		<-served
		hub.Close()
	}()

	soft, hard, err := FileLimit()
	if err != nil {
		t.Fatal(err)
	}
	// The limit caps descriptor numbers, not their count: find the one that
	// leaves exactly fit*2+1 numbers free below it.
	open := openFDs(t)
	var limit uint64
	for free := 0; free < fit*2+1; limit++ {
		if _, used := open[int(limit)]; !used {
			free++
		}
	}
	if limit > soft {
		t.Skipf("soft limit %d is below the %d this test sets", soft, limit)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: hard}); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: soft, Max: hard}); err != nil {
				t.Error(err)
			}
		}
	}
	defer restore()
	for i := range tries {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		c, err := transports.Dial(ctx, tr, ln.Addr().String(), transports.ClientConfig{ID: uint64(i) + 1})
		cancel()
		if err != nil {
			f.Add(i, fmt.Errorf("client %d: %w", i, err))
			continue
		}
		clients = append(clients, c)
	}
	restore()

	msg := f.Error(tries)
	t.Log(msg)
	if len(clients) < fit || f.Failed() != tries-len(clients) || f.Failed() == 0 {
		t.Errorf("%d of %d clients connected, %d failures recorded, want %d connected", len(clients), tries, f.Failed(), fit)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.byClass[FailFDs]+f.helloTimeout != f.failed || f.helloTimeout == 0 {
		t.Errorf("want only EMFILE and HELLO timeouts, at least one of the latter: %s", msg)
	}
	if f.accepts == 0 || f.acceptClass[FailFDs] != f.accepts {
		t.Errorf("want the server's accept to have failed with EMFILE only: %s", msg)
	}
}
