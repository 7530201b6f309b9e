//go:build unix

package results

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWriteFileAtomicLinksAndSpecialFiles checks that a symbolic link is
// followed (its target is replaced, the link stays, a dangling link's target
// is created) and that a path that is not a regular file is refused and left
// as it was: renaming over /dev/null as root would replace the device.
func TestWriteFileAtomicLinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(w io.Writer) error { _, err := io.WriteString(w, "new\n"); return err }

	target := filepath.Join(dir, "target.csv")
	if err := os.WriteFile(target, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	link, dangling := filepath.Join(dir, "link.csv"), filepath.Join(dir, "dangling.csv")
	if err := os.Symlink("target.csv", link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "sub", "..", "created.csv"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{link, dangling} {
		if err := WriteFileAtomic(p, write); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if fi, err := os.Lstat(p); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			t.Errorf("%s is no longer a symbolic link (%v)", p, err)
		}
		if b, err := os.ReadFile(p); err != nil || string(b) != "new\n" {
			t.Errorf("%s reads %q, %v; want the new content through the link", p, b, err)
		}
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("target: %v, %v; want it replaced keeping mode 0600", fi, err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	fifoLink := filepath.Join(dir, "fifo-link.csv")
	if err := os.Symlink(fifo, fifoLink); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{fifo, fifoLink, dir} {
		if err := WriteFileAtomic(p, write); !errors.Is(err, ErrNotRegular) {
			t.Errorf("%s: err = %v, want ErrNotRegular", p, err)
		}
	}
	if fi, err := os.Lstat(fifo); err != nil || fi.Mode()&fs.ModeNamedPipe == 0 {
		t.Errorf("the FIFO was replaced: %v, %v", fi, err)
	}
}

// writerEnv names the target file of the child process that
// TestWriteFileAtomicSIGKILL starts: TestAtomicWriterChild then rewrites it
// for ever, one generation after another.
const (
	writerEnv    = "EVBENCH_RESULTS_WRITER_TARGET"
	writerGenEnv = "EVBENCH_RESULTS_WRITER_GEN" // the first generation to write
	rowsPerGen   = 3000                         // about 2 MB of CSV per generation
)

// generation is the rows of generation gen: every row says gen in its
// run id, so a file mixing two generations, or a part of one, shows.
func generation(gen int) []Result {
	base := sampleRows()[0]
	rows := make([]Result, rowsPerGen)
	for i := range rows {
		rows[i] = base
		rows[i].RunID = fmt.Sprintf("gen-%d", gen)
		rows[i].Repeat = i
	}
	return rows
}

// TestAtomicWriterChild is the child of TestWriteFileAtomicSIGKILL, and
// skips unless started by it: it writes generation after generation of
// its target with WriteCSVFile, printing "wrote GEN" after each, until it
// is killed (or a minute has passed).
func TestAtomicWriterChild(t *testing.T) {
	target := os.Getenv(writerEnv)
	if target == "" {
		t.Skip("the child of TestWriteFileAtomicSIGKILL")
	}
	gen, err := strconv.Atoi(os.Getenv(writerGenEnv))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); gen++ {
		if err := WriteCSVFile(target, generation(gen)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("wrote %d\n", gen)
	}
}

// readGeneration reads path as a complete file of one generation and
// returns it.
func readGeneration(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := ReadCSV(f)
	if err != nil {
		t.Fatalf("%s is torn: %v", path, err)
	}
	if len(rows) != rowsPerGen {
		t.Fatalf("%s holds %d rows, want a whole generation of %d", path, len(rows), rowsPerGen)
	}
	gen, err := strconv.Atoi(strings.TrimPrefix(rows[0].RunID, "gen-"))
	if err != nil {
		t.Fatalf("run id %q", rows[0].RunID)
	}
	for i := range rows {
		if rows[i].RunID != rows[0].RunID || rows[i].Repeat != i {
			t.Fatalf("%s: row %d is %s repeat %d, in a file of %s", path, i, rows[i].RunID, rows[i].Repeat, rows[0].RunID)
		}
	}
	return gen
}

// TestWriteFileAtomicSIGKILL kills a process that rewrites a large results
// file over and over, at a random moment of a write, again and again: the
// file is always a complete generation, the last one the writer reported
// or the next one (renamed just before the kill), never a torn one. The
// temporary file a kill leaves is what RemoveStaleTemps removes, and only
// that.
func TestWriteFileAtomicSIGKILL(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "results.csv")
	if err := WriteCSVFile(target, generation(0)); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	last, leftovers := 0, 0
	for round := 0; round < 30 && (round < 8 || leftovers < 3); round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^TestAtomicWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), writerEnv+"="+target, writerGenEnv+"="+strconv.Itoa(last+1))
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// After a few generations, kill it at a random point of the next
		// write: a random share of the time the last write took. That only
		// spreads the kills; what is checked holds wherever one lands.
		lines := bufio.NewScanner(stdout)
		reported, writes := last, 1+rng.IntN(3)
		var prev time.Time
		var took time.Duration
		for range writes {
			if !lines.Scan() {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: the writer ended early", round)
			}
			now := time.Now()
			if !prev.IsZero() {
				took = now.Sub(prev)
			}
			prev = now
			if _, err := fmt.Sscanf(lines.Text(), "wrote %d", &reported); err != nil {
				t.Fatalf("round %d: the writer printed %q", round, lines.Text())
			}
		}
		if took == 0 {
			took = 5 * time.Millisecond
		}
		time.Sleep(time.Duration(rng.Int64N(int64(took))))
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()

		gen := readGeneration(t, target)
		if gen != reported && gen != reported+1 {
			t.Fatalf("round %d: the file holds generation %d; the writer had reported %d", round, gen, reported)
		}
		last = gen

		var temps []string
		for _, name := range dirNames(t, dir) {
			if strings.HasPrefix(name, ".results.csv.tmp-") {
				temps = append(temps, filepath.Join(dir, name))
			} else if name != "results.csv" {
				t.Fatalf("round %d: the directory holds %q", round, name)
			}
		}
		leftovers += len(temps)
		removed, err := RemoveStaleTemps(target)
		if err != nil || !reflect.DeepEqual(removed, temps) {
			t.Fatalf("round %d: RemoveStaleTemps = %q, %v; want the killed writer's %q", round, removed, err, temps)
		}
		if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"results.csv"}) {
			t.Fatalf("round %d: after the clean-up the directory holds %q", round, names)
		}
		if readGeneration(t, target) != gen {
			t.Fatalf("round %d: the clean-up changed the file", round)
		}
	}
	t.Logf("last generation %d; %d kills left a temporary file behind (killed mid-write)", last, leftovers)
}

// TestRemoveStaleTempsRule: of the files beside a target, only its own
// temporary files are candidates, and of those only the ones whose writer
// is known gone (this host, no such process) or, when that cannot be
// told, that are StaleTempAge old. A live writer's file stays.
func TestRemoveStaleTempsRule(t *testing.T) {
	// A pid that existed and is gone: a child that has exited.
	child := exec.Command(os.Args[0], "-test.run=^$")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	dead, host := child.Process.Pid, hostTag()
	old := time.Now().Add(-2 * StaleTempAge)

	dir := t.TempDir()
	target := filepath.Join(dir, "out.csv")
	files := []struct {
		name   string
		old    bool // modified 2 StaleTempAge ago
		remove bool
	}{
		{name: "out.csv"},
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-123", host, dead), remove: true},                    // its writer is gone
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-124", host, os.Getpid()), old: true},                // a live writer's, however old
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-125", host, os.Getppid())},                          // a live writer's
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-126", "other-host", dead)},                          // another host's, recent
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-127", "other-host", dead), old: true, remove: true}, // another host's, stale
		{name: ".out.csv.tmp-4242", old: true, remove: true},                                       // an older evbench's, stale
		{name: ".out.csv.tmp-4243"}, // an older evbench's, recent
		{name: fmt.Sprintf(".other.csv.tmp-%s-%d-1", host, dead), old: true},   // another target's
		{name: fmt.Sprintf(".out.csv.probe-%d", dead), old: true},              // not a temporary file
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-1x", host, dead), old: true},    // not the pattern
		{name: fmt.Sprintf(".out.csv.tmp-%s-%d-1.bak", host, dead), old: true}, // not the pattern
		{name: "out.csv.tmp-4244", old: true},                                  // no leading dot
	}
	var want []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
		if f.old {
			if err := os.Chtimes(p, old, old); err != nil {
				t.Fatal(err)
			}
		}
		if f.remove {
			want = append(want, p)
		}
	}
	// A directory with a temporary file's name is not a file to remove.
	if err := os.Mkdir(filepath.Join(dir, ".out.csv.tmp-4245"), 0o755); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveStaleTemps(target)
	slices.Sort(removed)
	slices.Sort(want)
	if err != nil || !reflect.DeepEqual(removed, want) {
		t.Errorf("RemoveStaleTemps = %q, %v\nwant %q", removed, err, want)
	}
	for _, f := range files {
		_, err := os.Stat(filepath.Join(dir, f.name))
		if gone := errors.Is(err, fs.ErrNotExist); gone != f.remove {
			t.Errorf("%s: removed %v, want %v", f.name, gone, f.remove)
		}
	}
	// Through a link, the target's own directory is cleaned.
	other := t.TempDir()
	link := filepath.Join(other, "link.csv")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, fmt.Sprintf(".out.csv.tmp-%s-%d-9", host, dead))
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if removed, err := RemoveStaleTemps(link); err != nil || !reflect.DeepEqual(removed, []string{stale}) {
		t.Errorf("through a link: RemoveStaleTemps = %q, %v; want %q", removed, err, stale)
	}
	if _, err := RemoveStaleTemps(filepath.Join(dir, "missing", "x.csv")); err == nil {
		t.Error("a missing directory: no error")
	}
}

// TestWriteFileAtomicTempName: the temporary file is named after this
// host and process, so that RemoveStaleTemps can tell it is live.
func TestWriteFileAtomicTempName(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "r.csv")
	err := WriteFileAtomic(target, func(io.Writer) error {
		names := dirNames(t, dir)
		if len(names) != 1 {
			return fmt.Errorf("directory holds %q while writing", names)
		}
		host, pid, ok := parseTempOwner(strings.TrimPrefix(names[0], ".r.csv.tmp-"))
		if !ok || !strings.HasPrefix(names[0], ".r.csv.tmp-") || host != hostTag() || pid != os.Getpid() {
			return fmt.Errorf("temporary file %q: host %q pid %d", names[0], host, pid)
		}
		// A clean-up while this writer is live leaves its file alone.
		if removed, err := RemoveStaleTemps(target); err != nil || len(removed) != 0 {
			return fmt.Errorf("RemoveStaleTemps during the write = %q, %v", removed, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
