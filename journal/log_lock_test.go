//go:build linux

package journal

import (
	"strings"
	"testing"
)

// A directory holds one open Log: a second Open of it fails while the first
// is open, and succeeds once it is closed.
func TestOpenLocksTheDirectory(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	if l2, err := Open(dir, LogOptions{}); err == nil || !strings.Contains(err.Error(), "locked") {
		if l2 != nil {
			l2.Close()
		}
		t.Fatalf("second Open of an open Log's directory: %v, want an error saying it is locked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, dir, LogOptions{}).Close()
}
