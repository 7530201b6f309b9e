//go:build unix

package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/evbench/evbench/bench"
	"github.com/evbench/evbench/results"
)

// TestRemoteRunMatchesInProcess runs `evbench serve` as a process of its
// own and `evbench run --server` against it, then the same workload in one
// process: both files rebuild the same scenario, every row holds delivered
// + missed = expected, the reliable transports miss nothing, and each row
// says where its server was. Then serve stops cleanly on SIGTERM.
func TestRemoteRunMatchesInProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three processes over four transports")
	}
	dir := t.TempDir()
	cert := filepath.Join(dir, "cert.pem")
	serve := exec.Command(binPath, "serve", "--transports", "tcp,tcp+tls,udp,quic-dgram", "--listen", "127.0.0.1:0", "--cert-out", cert)
	var serveErr bytes.Buffer
	serve.Stderr = &serveErr
	stdout, err := serve.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			serve.Process.Kill()
			serve.Wait()
		}
		if t.Failed() { // serve has exited: its stderr is complete
			t.Logf("serve's stderr:\n%s", serveErr.String())
		}
	}()
	var pairs []string
	addrs := map[string]string{}
	lines := bufio.NewScanner(stdout)
	for len(pairs) < 4 && lines.Scan() {
		m := listeningLine.FindStringSubmatch(lines.Text())
		if m == nil {
			t.Fatalf("serve printed %q", lines.Text())
		}
		pairs = append(pairs, m[1]+"="+m[2])
		addrs[m[1]] = m[2]
	}
	if len(pairs) < 4 {
		t.Fatalf("serve announced %v", pairs)
	}

	workload := []string{"--clients", "12", "--rooms", "3", "--rooms-per-client", "2", "--rate", "20",
		"--ack-every", "4", "--payload", "200", "--duration", "1s", "--warmup", "200ms", "--seed", "7"}
	remoteCSV, localCSV := filepath.Join(dir, "remote.csv"), filepath.Join(dir, "local.csv")
	args := append([]string{"run", "--server", strings.Join(pairs, ","), "--ca", cert, "-q", "-o", remoteCSV}, workload...)
	if code, _, stderr := runBinary(t, 2*time.Minute, nil, args...); code != 0 {
		t.Fatalf("run --server: exit %d\n%s", code, stderr)
	}
	args = append([]string{"run", "--transports", "tcp,tcp+tls,udp,quic-dgram", "-q", "-o", localCSV}, workload...)
	if code, _, stderr := runBinary(t, 2*time.Minute, nil, args...); code != 0 {
		t.Fatalf("run in-process: exit %d\n%s", code, stderr)
	}

	read := func(path string) []results.Result {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		rows, err := results.ReadCSV(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != 4 {
			t.Fatalf("%s: %d rows, want 4", path, len(rows))
		}
		return rows
	}
	remote, local := read(remoteCSV), read(localCSV)
	for i := range remote {
		r, l := remote[i], local[i]
		if r.Transport != l.Transport {
			t.Fatalf("row %d: transport %s remote, %s in-process", i, r.Transport, l.Transport)
		}
		rs, err := bench.ScenarioFromResult(r)
		if err != nil {
			t.Fatal(err)
		}
		ls, err := bench.ScenarioFromResult(l)
		if err != nil {
			t.Fatal(err)
		}
		if rs != ls {
			t.Errorf("%s: the remote row's scenario\n%+v\ndiffers from the in-process one's\n%+v", r.Transport, rs, ls)
		}
		for _, row := range []results.Result{r, l} {
			if row.Delivered+row.Missed != row.Expected || row.Expected == 0 || (row.CapsReliable && row.Missed != 0) || row.Error != "" {
				t.Errorf("%s (server %s): expected %d delivered %d missed %d error %q", row.Transport, row.Server, row.Expected, row.Delivered, row.Missed, row.Error)
			}
		}
		if r.Server != addrs[r.Transport] || l.Server != bench.InProcess {
			t.Errorf("%s: server %q remote and %q in-process, want %q and %q", r.Transport, r.Server, l.Server, addrs[r.Transport], bench.InProcess)
		}
	}

	serve.Process.Signal(syscall.SIGTERM)
	stopped = true
	if err := serve.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v, want exit 0", err)
	}
}
