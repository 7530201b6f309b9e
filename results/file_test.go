package results

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"testing"
)

// dirNames lists the names in dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomicReplaces(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "results.csv")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil { // umask-proof
		t.Fatal(err)
	}
	err := WriteFileAtomic(path, func(w io.Writer) error {
		_, err := io.WriteString(w, "new content\n")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != "new content\n" {
		t.Fatalf("file holds %q, %v; want the new content", got, err)
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"results.csv"}) {
		t.Errorf("directory holds %q, want only results.csv", names)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o640 {
			t.Errorf("mode %v, want the replaced file's 0640", fi.Mode().Perm())
		}
	}
}

func TestWriteFileAtomicNewFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("permission bits are not kept on Windows")
	}
	path := filepath.Join(t.TempDir(), "new.csv")
	if err := WriteFileAtomic(path, func(io.Writer) error { return nil }); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 || fi.Size() != 0 {
		t.Errorf("new file mode %v size %d, want 0644 and empty", fi.Mode().Perm(), fi.Size())
	}
}

// TestWriteFileAtomicFailureKeepsOld: whatever goes wrong, the old file is
// untouched and no temporary file is left behind.
func TestWriteFileAtomicFailureKeepsOld(t *testing.T) {
	boom := errors.New("measurement failed")
	tests := []struct {
		name  string
		write func(io.Writer) error
		panic bool
	}{
		{name: "error before writing", write: func(io.Writer) error { return boom }},
		{name: "error after a partial write", write: func(w io.Writer) error {
			// More than bufio's buffer, so part of it reaches the temp file.
			buf := make([]byte, 64<<10)
			if _, err := w.Write(buf); err != nil {
				return err
			}
			return boom
		}},
		{name: "panic", panic: true, write: func(w io.Writer) error {
			io.WriteString(w, "partial")
			panic(boom)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "results.csv")
			if err := os.WriteFile(path, []byte("old rows\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			func() {
				defer func() {
					if r := recover(); (r != nil) != tt.panic {
						t.Errorf("recovered %v, want a panic: %v", r, tt.panic)
					}
				}()
				err := WriteFileAtomic(path, tt.write)
				if !errors.Is(err, boom) {
					t.Errorf("WriteFileAtomic = %v, want an error wrapping %v", err, boom)
				}
			}()
			got, err := os.ReadFile(path)
			if err != nil || string(got) != "old rows\n" {
				t.Errorf("old file now holds %q, %v", got, err)
			}
			if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"results.csv"}) {
				t.Errorf("directory holds %q, want only results.csv", names)
			}
		})
	}
}

func TestWriteFileAtomicBadPath(t *testing.T) {
	dir := t.TempDir()
	called := false
	err := WriteFileAtomic(filepath.Join(dir, "missing", "results.csv"), func(io.Writer) error {
		called = true
		return nil
	})
	if err == nil || called {
		t.Errorf("into a missing directory: err %v, write called %v; want an error before writing", err, called)
	}
	// A directory at path: the rename fails, the directory and its contents
	// stay, and no temporary file is left.
	target := filepath.Join(dir, "adir")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteFileAtomic(target, func(w io.Writer) error { return nil }); err == nil {
		t.Error("replacing a non-empty directory: no error")
	}
	if names := dirNames(t, dir); !reflect.DeepEqual(names, []string{"adir"}) {
		t.Errorf("directory holds %q, want only adir", names)
	}
	if names := dirNames(t, target); !reflect.DeepEqual(names, []string{"keep"}) {
		t.Errorf("adir holds %q, want only keep", names)
	}
}

func TestWriteCSVFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "results.csv")
	rows := sampleRows()
	if err := WriteCSVFile(path, rows); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := ReadCSV(f)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rows) {
		t.Fatalf("file round trip differs:\ngot  %+v\nwant %+v", got, rows)
	}
	if err := WriteCSVFile(path, nil); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(path); len(readRecords(t, data)) != 1 {
		t.Errorf("no rows: file %q, want just the header", data)
	}
}
