package benchmarks

import (
	"testing"

	"github.com/musterhq/muster/journal"
)

// The journal benchmarks at tiny sizes, so that they cannot rot.
func TestJournalBenchmarksSmoke(t *testing.T) {
	dir := t.TempDir()
	fl, err := FsyncLatency(dir, 5)
	if err != nil || fl.N != 5 || fl.P50 <= 0 {
		t.Fatalf("FsyncLatency = %+v, %v", fl, err)
	}
	for _, level := range []journal.Durability{journal.Synced, journal.Process} {
		r, err := JournalAppend(dir, level, 4, 200, 100)
		if err != nil || r.Items != 200 || r.Append.N != 200 || r.Commits == 0 || r.ItemsPerSec() <= 0 {
			t.Fatalf("JournalAppend(%v) = %+v, %v", level, r, err)
		}
	}
	bdir := t.TempDir()
	n, err := BuildBacklog(bdir, 64<<10, 100)
	if err != nil || n == 0 {
		t.Fatalf("BuildBacklog = %d, %v", n, err)
	}
	rr, err := JournalReplay(bdir)
	if err != nil || rr.Items != n || rr.DiskBytes < 64<<10 || rr.MBPerSec() <= 0 {
		t.Fatalf("JournalReplay = %+v, %v; want %d items", rr, err, n)
	}
}
