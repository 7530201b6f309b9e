//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/results"
	"github.com/evbench/evbench/transports"
)

// serveChild is `evbench serve` in a process of its own.
type serveChild struct {
	cmd    *exec.Cmd
	addr   string
	stderr bytes.Buffer
	waited bool
}

// startServeChild starts `evbench serve --transports name --listen listen`
// and waits for its "listening" line.
func startServeChild(t *testing.T, name, listen string) *serveChild {
	t.Helper()
	s := &serveChild{cmd: exec.Command(binPath, "serve", "--transports", name, "--listen", listen)}
	s.cmd.Stderr = &s.stderr
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("serve (%s) stderr:\n%s", listen, s.stderr.String())
		}
	})
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() {
		s.kill()
		t.Fatalf("serve --listen %s exited before listening:\n%s", listen, s.stderr.String())
	}
	m := listeningLine.FindStringSubmatch(lines.Text())
	if m == nil || m[1] != name {
		t.Fatalf("serve printed %q", lines.Text())
	}
	s.addr = m[2]
	go io.Copy(io.Discard, stdout) // nothing more is printed; never block serve
	return s
}

// kill sends SIGKILL and reaps the process; it is safe to call twice.
func (s *serveChild) kill() {
	if s.waited {
		return
	}
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.waited = true
}

// awaitPublishing joins an observer to the fleet's room 0 on the server at
// addr and returns once the fleet is well into its measurement window: once
// an event reaches the observer that was due half a second of window
// (faultIntoWindow) past the warm-up after the first event it saw. Due
// times are on the fleet's clock, so this waits on the fleet's progress,
// not on this process's timers. The observer is closed at the end of the
// test.
func awaitPublishing(t *testing.T, name, addr string) {
	t.Helper()
	tr, err := transports.New(name, transports.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), serveWait)
	defer cancel()
	reached := make(chan struct{})
	var once sync.Once
	var first int64 // read and written on the observer's read goroutine only
	observer, err := transports.Dial(ctx, tr, addr, transports.ClientConfig{
		ID: 1 << 40, // outside the fleet's ids, 1 to --clients
		OnEvent: func(f *transports.Frame, _ int64) {
			if first == 0 {
				first = f.IntendedNs
			}
			if f.IntendedNs-first >= int64(faultWarmup+faultIntoWindow) {
				once.Do(func() { close(reached) })
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { observer.Close() })
	if err := observer.Join(ctx, bench.Namespace, "room-0"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reached:
	case <-ctx.Done():
		t.Fatal("the observer saw no event of the measurement window: the fleet never got there")
	}
}

// faultWorkload is the fleet of the kill tests: 8 clients, all publishing,
// a 3 s window between a short warm-up and a short drain; the server is
// killed half a second into the window.
const (
	faultClients    = 8
	faultWarmup     = 200 * time.Millisecond
	faultIntoWindow = 500 * time.Millisecond
)

var faultWorkload = []string{"--clients", "8", "--rooms", "2", "--rate", "50", "--payload", "100",
	"--duration", "3s", "--warmup", "200ms", "--drain", "500ms", "--connect-timeout", "5s", "--seed", "11"}

// faultBound is how long a kill test's run may take in all: its window,
// warm-up and drain (3.7 s), connecting, and a few seconds of teardown on a
// busy machine.
const faultBound = 15 * time.Second

// runAgainst starts `evbench run --server addr` with faultWorkload,
// writing its CSV to out, and returns a channel that receives its exit
// status and stderr once it has exited.
func runAgainst(t *testing.T, name, addr, out string) <-chan runExit {
	t.Helper()
	args := append([]string{"run", "--server", addr, "--transports", name, "-q", "-o", out}, faultWorkload...)
	cmd := exec.Command(binPath, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan runExit, 1)
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		err := cmd.Wait()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			code = -1
		}
		done <- runExit{code, stderr.String()}
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return done
}

// runExit is how `evbench run` ended.
type runExit struct {
	code   int
	stderr string
}

// awaitRun waits for the run to exit, at most until faultBound after
// start.
func awaitRun(t *testing.T, done <-chan runExit, start time.Time) runExit {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(time.Until(start.Add(faultBound))):
		t.Fatalf("the run did not exit within %v of its start", faultBound)
	}
	panic("unreachable")
}

// faultRow reads the one complete row of the CSV at out and checks what
// every row of a run whose server went away holds.
func faultRow(t *testing.T, out string, r runExit) results.Result {
	t.Helper()
	if r.code != exitFailed {
		t.Fatalf("exit %d, want %d (a failed measurement); stderr:\n%s", r.code, exitFailed, r.stderr)
	}
	rows := readRows(t, out)
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1", len(rows))
	}
	row := rows[0]
	t.Logf("sent %d send errors %d expected %d delivered %d missed %d disconnects %d reconnects %d of %d attempts; error %q",
		row.Sent, row.SendErrors, row.Expected, row.Delivered, row.Missed, row.Disconnects, row.Reconnects, row.ReconnectAttempts, row.Error)
	checkRow(t, row)
	if row.Delivered+row.Missed != row.Expected || row.Expected == 0 {
		t.Errorf("delivered %d + missed %d, expected %d: want them to add up, and something expected before the kill",
			row.Delivered, row.Missed, row.Expected)
	}
	for _, want := range []string{"clients disconnected", "reconnected", "went away"} {
		if !strings.Contains(row.Error, want) {
			t.Errorf("row error %q lacks %q", row.Error, want)
		}
	}
	if !strings.Contains(r.stderr, "went away") {
		t.Errorf("stderr does not say the server went away:\n%s", r.stderr)
	}
	return row
}

// TestServerKilledMidRun kills `evbench serve` with SIGKILL while a fleet
// runs against it: the run ends in its time, writes a complete row that
// says every client was disconnected and the server went away, kept trying
// to reconnect without success, and still adds up.
func TestServerKilledMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a server and a 3 s fleet in processes of their own")
	}
	// tcp only: a udp client takes a server's silence for loss until its
	// peer idle timeout (5 s), longer than the window, so over udp the
	// fleet would not know the server went away before the run ended.
	for _, name := range []string{"tcp"} {
		t.Run(name, func(t *testing.T) {
			srv := startServeChild(t, name, "127.0.0.1:0")
			out := filepath.Join(t.TempDir(), "out.csv")
			start := time.Now()
			done := runAgainst(t, name, srv.addr, out)
			awaitPublishing(t, name, srv.addr)
			srv.kill()
			row := faultRow(t, out, awaitRun(t, done, start))
			if row.Disconnects != faultClients || row.ReconnectAttempts == 0 || row.Reconnects != 0 {
				t.Errorf("disconnects %d, reconnects %d of %d attempts; want %d, none of some",
					row.Disconnects, row.Reconnects, row.ReconnectAttempts, faultClients)
			}
		})
	}
}

// TestServerRestartedMidRun kills `evbench serve` mid-run and starts it
// again on the same port: the fleet's clients reconnect to the new server
// and the row says so. The counters of two servers do not make one
// difference, so the row's server counters are unknown.
func TestServerRestartedMidRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two servers and a 3 s fleet in processes of their own")
	}
	// tcp only: a udp client takes a server's silence for loss until its
	// peer idle timeout (5 s), longer than the window, so over udp the
	// fleet would not know the server went away before the run ended.
	for _, name := range []string{"tcp"} {
		t.Run(name, func(t *testing.T) {
			srv := startServeChild(t, name, "127.0.0.1:0")
			out := filepath.Join(t.TempDir(), "out.csv")
			start := time.Now()
			done := runAgainst(t, name, srv.addr, out)
			awaitPublishing(t, name, srv.addr)
			srv.kill()
			again := startServeChild(t, name, srv.addr)
			if again.addr != srv.addr {
				t.Fatalf("the restarted server listens on %s, want %s", again.addr, srv.addr)
			}
			row := faultRow(t, out, awaitRun(t, done, start))
			if row.Disconnects < faultClients || row.Reconnects == 0 || row.ReconnectAttempts < row.Reconnects {
				t.Errorf("disconnects %d, reconnects %d of %d attempts; want at least %d, and some reconnected",
					row.Disconnects, row.Reconnects, row.ReconnectAttempts, faultClients)
			}
			if !strings.Contains(row.Error, "counters in this row are unknown") {
				t.Errorf("row error %q: want the server's counters reported unknown", row.Error)
			}
		})
	}
}

// TestRunRemovesStaleTemps: a run that writes -o first removes the
// temporary file a killed run left beside it, says so, and keeps a live
// writer's.
func TestRunRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "out.csv")
	// The name a writer in this process gives its temporary file.
	var live string
	err := results.WriteFileAtomic(out, func(io.Writer) error {
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 {
			return errors.New("want one temporary file while writing")
		}
		live = ents[0].Name()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The same name, with the pid of a process that has exited: a writer
	// killed mid-write, on this host; and with the parent's, a live one.
	child := exec.Command(binPath, "version")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	pidPart := "-" + strconv.Itoa(os.Getpid()) + "-"
	if !strings.Contains(live, pidPart) {
		t.Fatalf("temporary file %q does not name pid %d", live, os.Getpid())
	}
	stale := filepath.Join(dir, strings.Replace(live, pidPart, "-"+strconv.Itoa(child.Process.Pid)+"-", 1))
	alive := filepath.Join(dir, strings.Replace(live, pidPart, "-"+strconv.Itoa(os.Getppid())+"-", 1))
	for _, p := range []string{stale, alive} {
		if err := os.WriteFile(p, []byte("transport,cli"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, _, stderr := runMain(context.Background(), "run", "--transports", "tcp", "--clients", "2", "--rooms", "1",
		"--rate", "50", "--duration", "200ms", "--warmup", "0", "-o", out)
	if code != exitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "removed 1 temporary file left beside "+out) {
		t.Errorf("stderr does not report the removal:\n%s", stderr)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed writer's temporary file is still there (%v)", err)
	}
	if _, err := os.Stat(alive); err != nil {
		t.Errorf("the live writer's temporary file was removed: %v", err)
	}
	if rows := readRows(t, out); len(rows) != 1 {
		t.Errorf("%d rows, want 1", len(rows))
	}
}
