package main

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestVersion: `evbench version` and `evbench --version` print one line
// with the module version and, for a binary built in a Git checkout, the
// revision it was built from.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		code, stdout, stderr := runMain(context.Background(), args...)
		if code != exitOK || stderr != "" || strings.Count(stdout, "\n") != 1 || !strings.HasPrefix(stdout, "evbench ") {
			t.Errorf("evbench %q: exit %d, stdout %q, stderr %q; want one line starting \"evbench \"", args, code, stdout, stderr)
		}
	}
	if code, _, stderr := runMain(context.Background(), "version", "extra"); code != exitUsage || !strings.Contains(stderr, `"extra"`) {
		t.Errorf("version extra: exit %d, stderr %q; want a usage error naming the argument", code, stderr)
	}

	// A build that records VCS information (the default of go build in a
	// checkout; forced here because GOFLAGS may say otherwise).
	if err := exec.Command("git", "rev-parse", "--git-dir").Run(); err != nil {
		t.Skipf("not in a Git checkout (%v): no revision to record", err)
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		t.Skipf("git rev-parse HEAD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "evbench")
	if out, err := exec.Command(goTool(), "build", "-buildvcs=true", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build -buildvcs=true: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := regexp.MustCompile(`^evbench v\S+ \(revision ` + strings.TrimSpace(string(head)) + `, \d{4}-\d\d-\d\dT[^)]*\) go\S+ \S+/\S+\n$`)
	if !want.Match(out) {
		t.Errorf("version of a VCS build = %q, want it to match %s", out, want)
	}
}
