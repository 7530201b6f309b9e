package results

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// newFileMode is the permission of a file WriteFileAtomic creates where none
// existed.
const newFileMode fs.FileMode = 0o644

// WriteFileAtomic replaces the file at path with what write writes, so that a
// reader sees either the old file or the complete new one, never a part.
//
// write gets a buffered writer on a temporary file in path's directory. The
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
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
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
