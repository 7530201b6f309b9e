package results

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// newFileMode is the permission of a file WriteFileAtomic creates where none
// existed.
const newFileMode fs.FileMode = 0o644

// WriteFileAtomic replaces the file at path with what write writes, so that a
// reader sees either the old file or the complete new one, never a part.
//
// write gets a buffered writer on a temporary file in path's directory,
// named as RemoveStaleTemps describes, so that one left by a killed writer
// can be told from a live writer's and removed. The
// temporary file is flushed, synced to stable storage (fsync), closed and
// then renamed over path; the directory is then synced as well, where the
// operating system allows it. If write returns an error or panics, or any
// step fails, the temporary file is removed and an existing file at path is
// left untouched; the error names path and the step that failed, e.g.
// "write out.csv: no space left on device", and wraps the cause.
//
// The new file keeps the permission bits of the file it replaces, or gets
// 0644 when path did not exist. A symbolic link at path is followed: its
// target is replaced. A path that is, or links to, something other than a
// regular file (a directory, a device such as /dev/null, a FIFO) is refused
// with ErrNotRegular, because renaming over it would replace it.
func WriteFileAtomic(path string, write func(io.Writer) error) error {
	path, err := OutputPath(path)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	mode := newFileMode
	if fi, statErr := os.Stat(path); statErr == nil {
		mode = fi.Mode().Perm()
	}
	// fail names path and the step, once: an error about the temporary file
	// (a full disk) is reported by its cause, not the temporary name.
	fail := func(step string, err error) error {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return fmt.Errorf("%s %s: %w", step, path, err)
	}
	f, err := os.CreateTemp(dir, tempPrefix(filepath.Base(path))+tempOwner()+"-*")
	if err != nil {
		return fail("create a file beside", err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			f.Close() // may fail when already closed; the removal is what counts
			os.Remove(tmp)
		}
	}()

	bw := bufio.NewWriter(f)
	if err := write(bw); err != nil {
		return fail("write", err)
	}
	if err := bw.Flush(); err != nil {
		return fail("write", err)
	}
	if err := f.Chmod(mode); err != nil {
		return fail("write", err)
	}
	if err := f.Sync(); err != nil {
		return fail("sync", err)
	}
	if err := f.Close(); err != nil {
		return fail("write", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail("replace", err)
	}
	renamed = true
	syncDir(dir)
	return nil
}

// Temporary files. WriteFileAtomic writes beside path, in a file named
//
//	.NAME.tmp-HOST-PID-RANDOM
//
// where NAME is path's base name, HOST the host's name (os.Hostname, with
// any character other than a letter, digit, '.' or '_' replaced by '_'),
// PID the writing process's id and RANDOM os.CreateTemp's digits. A writer
// killed before its rename (SIGKILL, a crash, a power cut) leaves that file
// behind; RemoveStaleTemps removes it.

// StaleTempAge is how long a temporary file of WriteFileAtomic whose writer
// cannot be checked (written on another host, or by an evbench that did not
// name its process) must have gone unmodified before RemoveStaleTemps
// removes it.
const StaleTempAge = time.Minute

// tempPrefix is the start of the name of every temporary file beside a
// file named base.
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// tempOwner is HOST-PID for this process's temporary files.
func tempOwner() string {
	return hostTag() + "-" + strconv.Itoa(os.Getpid())
}

// hostTag is the host's name as it appears in a temporary file's name, or
// "unknown".
func hostTag() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "unknown"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x80 && (r == '.' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, h)
}

// RemoveStaleTemps removes the temporary files that earlier WriteFileAtomic
// calls for path left behind when their process was killed, and returns
// the paths it removed, in directory order. Call it before writing path.
//
// It considers only the regular files beside the file path resolves to
// (see OutputPath) whose name is that file's temporary pattern,
// ".NAME.tmp-" followed by digits (an older evbench's names) or by
// HOST-PID-DIGITS. It never removes the temporary file of a writer that may
// still be running. A file is removed when:
//
//   - its HOST is this host and no process PID exists here: its writer is
//     gone, whatever the file's age;
//   - otherwise (another host, or no HOST-PID in the name), it has not
//     been modified for StaleTempAge. A writer finishes its file in far
//     less (it writes rows already measured); one on another host that
//     stalls longer would have its rename fail, loudly, and never leave a
//     torn file.
//
// A file of this host whose PID exists is kept: it is a live writer's, or
// its PID was reused, and it goes once that process has. The error reports
// a directory that could not be read or a file that could not be removed
// (other files are still tried); a file that vanished meanwhile (its
// writer renamed it) is no error.
func RemoveStaleTemps(path string) ([]string, error) {
	path, err := OutputPath(path)
	if err != nil {
		return nil, err
	}
	dir, prefix := filepath.Dir(path), tempPrefix(filepath.Base(path))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("looking for stale temporary files of %s: %w", path, err)
	}
	host, now := hostTag(), time.Now()
	var removed []string
	var errs []error
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		fileHost, pid, ok := parseTempOwner(rest)
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // gone meanwhile
		}
		var stale bool
		switch {
		case fileHost == host && pid > 0:
			stale = processGone(pid)
		default:
			stale = now.Sub(fi.ModTime()) >= StaleTempAge
		}
		if !stale {
			continue
		}
		name := filepath.Join(dir, e.Name())
		if err := os.Remove(name); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// parseTempOwner parses what follows ".NAME.tmp-" in a temporary file's
// name: "DIGITS" (no owner: host "", pid 0) or "HOST-PID-DIGITS". ok is
// false for anything else.
func parseTempOwner(rest string) (host string, pid int, ok bool) {
	digits := func(s string) bool {
		if s == "" {
			return false
		}
		for _, r := range s {
			if r < '0' || r > '9' {
				return false
			}
		}
		return true
	}
	if digits(rest) {
		return "", 0, true
	}
	i := strings.LastIndexByte(rest, '-')
	if i < 0 || !digits(rest[i+1:]) {
		return "", 0, false
	}
	rest = rest[:i]
	j := strings.LastIndexByte(rest, '-')
	if j <= 0 || !digits(rest[j+1:]) {
		return "", 0, false
	}
	pid, err := strconv.Atoi(rest[j+1:])
	if err != nil {
		return "", 0, false
	}
	return rest[:j], pid, true
}

// processGone reports whether no process pid exists on this host. Where
// that cannot be told, it reports false (the file is kept).
func processGone(pid int) bool {
	if pid == os.Getpid() {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		// Where FindProcess opens the process (Windows), an error means
		// there is none.
		return runtime.GOOS == "windows"
	}
	defer p.Release()
	if runtime.GOOS == "windows" {
		return false
	}
	err = p.Signal(syscall.Signal(0))
	return errors.Is(err, os.ErrProcessDone) || errors.Is(err, syscall.ESRCH)
}

// ErrNotRegular is wrapped by the error for an output path that exists and
// is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// OutputPath resolves the file that WriteFileAtomic would replace for path:
// path itself, or the target of the symbolic links it names. It returns an
// error wrapping ErrNotRegular when that exists and is not a regular file.
func OutputPath(path string) (string, error) {
	// Follow links one at a time, so that a link to a file not yet there
	// resolves to that file too (filepath.EvalSymlinks fails on it).
	for hops := 0; ; hops++ {
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			break
		}
		if hops == 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", path)
		}
		target, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	if fi, err := os.Stat(path); err == nil && !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is a %s, %w", path, fileKind(fi.Mode()), ErrNotRegular)
	}
	return path, nil
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "directory"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	}
	return "special file"
}

// syncDir makes a rename in dir durable. Failure is ignored: the new file is
// already complete and in place, and some systems (Windows, some network
// file systems) cannot sync a directory at all.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// WriteCSVFile writes rows as a results CSV (see CSVWriter) to path with
// WriteFileAtomic. With no rows the file holds just the header.
func WriteCSVFile(path string, rows []Result) error {
	return WriteFileAtomic(path, func(w io.Writer) error {
		cw := NewCSVWriter(w)
		for i := range rows {
			if err := cw.Write(&rows[i]); err != nil {
				return err
			}
		}
		return cw.Flush()
	})
}
