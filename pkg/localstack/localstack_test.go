package localstack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A process that exits while the stack starts is reported with the end of
// its log, which a test's temporary directory does not keep.
func TestLogTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.log")
	var lines []string
	for i := 1; i <= 15; i++ {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := logTail(path, 3), "line 13\nline 14\nline 15"; got != want {
		t.Errorf("logTail = %q, want %q", got, want)
	}
	if got := logTail(path, 100); got != strings.Join(lines, "\n") {
		t.Errorf("logTail of a short log = %q, want it whole", got)
	}
	if got := logTail(filepath.Join(t.TempDir(), "missing.log"), 3); !strings.Contains(got, "cannot read it") {
		t.Errorf("logTail of a missing log = %q", got)
	}
}
