package all_test

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestTransportsStandAlone holds the dependency rule of the transport
// packages: a transport imports package transports and its internal helpers
// (and libraries), never another transport, the harness (bench) or the
// results; package transports imports none of its implementations.
func TestTransportsStandAlone(t *testing.T) {
	const module = "github.com/evbench/evbench"
	goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
	out, err := exec.Command(goTool, "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, module+"/transports/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	checked := 0
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		rel := strings.TrimPrefix(pkg, module+"/")
		if rel == "transports/all" {
			continue // the list of transports imports them all, by design
		}
		checked++
		for _, imp := range imports {
			dep, ours := strings.CutPrefix(imp, module+"/")
			if !ours || dep == "transports" || strings.HasPrefix(dep, "transports/internal/") {
				continue
			}
			t.Errorf("%s imports %s: a transport stands alone (package transports and its internal helpers only)", rel, dep)
		}
	}
	if checked < 5 {
		t.Fatalf("go list showed %d transport packages, want at least 5:\n%s", checked, out)
	}
}
