package results

import (
	"os"
	"strings"
	"testing"
)

// TestDocListsEveryColumn keeps doc.go (copied into the README) in step with
// the columns: each column has a list item "  - name (unit): meaning", in
// file order, and no item names a column that does not exist.
func TestDocListsEveryColumn(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	var items []string
	for _, line := range strings.Split(string(src), "\n") {
		rest, ok := strings.CutPrefix(line, "//   - ")
		if !ok {
			continue
		}
		name, unit, ok := strings.Cut(rest, " (")
		if !ok || !strings.Contains(unit, ")") {
			t.Errorf("doc item %q does not give its unit in parentheses", rest)
		}
		items = append(items, name)
	}
	want := Columns()
	if strings.Join(items, ",") != strings.Join(want, ",") {
		t.Errorf("doc.go documents the columns\n%q\nwant, in order,\n%q", items, want)
	}
}
