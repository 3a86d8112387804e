package journal

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The active segment is zero-filled ahead of its writes (at Synced and
// Interval) and written in place; Open reads the zeros after the last
// record as the end of the log.

const preallocSeg = 64 << 10

func segPath(t *testing.T, mfs *memFS, i int) string {
	t.Helper()
	names := mfs.names()
	var segs []string
	for _, n := range names {
		if _, ok := parseSegName(n); ok {
			segs = append(segs, n)
		}
	}
	if i >= len(segs) {
		t.Fatalf("segment %d of %v", i, segs)
	}
	return filepath.Join("/j", segs[i])
}

func fileBytes(mfs *memFS, path string) []byte {
	mfs.mu.Lock()
	defer mfs.mu.Unlock()
	if n := mfs.files[path]; n != nil {
		return bytes.Clone(n.data)
	}
	return nil
}

func TestPreallocatedSegmentWrittenInPlace(t *testing.T) {
	for _, level := range []Durability{Synced, Interval, Process} {
		t.Run(level.String(), func(t *testing.T) {
			mfs := newMemFS()
			l := mustOpen(t, "/j", LogOptions{fs: mfs, Durability: level, SegmentBytes: preallocSeg})
			defer l.Close()
			for i := range 3 {
				mustAppend(t, l, fmt.Sprint("item", i))
			}
			b := fileBytes(mfs, segPath(t, mfs, 0))
			offs := recordOffsets(b)
			written := int(l.Stats().Bytes)
			if len(offs) != 3 || offs[0] != segHeaderSize {
				t.Fatalf("records at %v, want 3 after the header", offs)
			}
			wantSize := written // Process: no preallocation
			if level != Process {
				wantSize = preallocSeg
			}
			if len(b) != wantSize {
				t.Errorf("file of %d bytes, want %d (Bytes %d counts the written ones)", len(b), wantSize, written)
			}
			if slices.ContainsFunc(b[written:], func(c byte) bool { return c != 0 }) {
				t.Errorf("bytes after the records are not zeros")
			}
			// A fourth record goes in place after the third: the file does
			// not grow.
			mustAppend(t, l, "item3")
			b2 := fileBytes(mfs, segPath(t, mfs, 0))
			if level != Process && len(b2) != preallocSeg {
				t.Errorf("file grew to %d bytes", len(b2))
			}
			if offs := recordOffsets(b2); len(offs) != 4 || !bytes.Equal(b2[:written], b[:written]) {
				t.Errorf("records at %v after a fourth append, or the first three changed", offs)
			}
		})
	}
}

func TestPreallocatedTailAfterCrash(t *testing.T) {
	mfs := newMemFS()
	opts := LogOptions{fs: mfs, SegmentBytes: preallocSeg}
	l := mustOpen(t, "/j", opts)
	for i := range 3 {
		mustAppend(t, l, fmt.Sprint("a", i))
	}
	written := l.Stats().Bytes
	// A power loss, the log still open: the segment keeps its zeros.
	after := mfs.crash(false)
	first := segPath(t, after, 0)
	if n := len(fileBytes(after, first)); n != preallocSeg {
		t.Fatalf("crashed segment of %d bytes, want the preallocated %d", n, preallocSeg)
	}
	l2 := mustOpen(t, "/j", LogOptions{fs: after, SegmentBytes: preallocSeg})
	if got := datas(recoverAll(t, l2)); !slices.Equal(got, []string{"a0", "a1", "a2"}) || l2.Stats().Corrupt != 0 {
		t.Fatalf("recovered %q, Corrupt %d; want a0-a2 and no corruption", got, l2.Stats().Corrupt)
	}
	if n := int64(len(fileBytes(after, first))); n != written {
		t.Errorf("old segment of %d bytes after Open, want its records' %d", n, written)
	}
	// The reopened log writes its run's items in place in a new segment;
	// a second crash finds both runs' items.
	for i := range 2 {
		mustAppend(t, l2, fmt.Sprint("b", i))
	}
	again := after.crash(false)
	l3 := mustOpen(t, "/j", LogOptions{fs: again, SegmentBytes: preallocSeg})
	defer l3.Close()
	if got := datas(recoverAll(t, l3)); !slices.Equal(got, []string{"a0", "a1", "a2", "b0", "b1"}) || l3.Stats().Corrupt != 0 {
		t.Errorf("recovered %q, Corrupt %d; want a0-a2, b0-b1", got, l3.Stats().Corrupt)
	}
	l.Close()
	l2.Close()
}

func TestPreallocatedTailCrashCases(t *testing.T) {
	// setup: a closed log of items a0-a4 in one segment (trimmed by Close).
	setup := func(t *testing.T) (*memFS, string) {
		mfs := newMemFS()
		l := mustOpen(t, "/j", LogOptions{fs: mfs, SegmentBytes: preallocSeg})
		for i := range 5 {
			mustAppend(t, l, fmt.Sprint("a", i))
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return mfs, segPath(t, mfs, 0)
	}
	reopen := func(t *testing.T, mfs *memFS) ([]string, StoreStats) {
		l := mustOpen(t, "/j", LogOptions{fs: mfs, SegmentBytes: preallocSeg})
		defer l.Close()
		return datas(recoverAll(t, l)), l.Stats()
	}
	all := []string{"a0", "a1", "a2", "a3", "a4"}

	t.Run("closed log is trimmed", func(t *testing.T) {
		mfs, seg := setup(t)
		b := fileBytes(mfs, seg)
		offs := recordOffsets(b)
		if len(offs) != 5 {
			t.Fatalf("records at %v, want 5", offs)
		}
		if _, n, _ := decodeRecord(b[offs[4]:]); offs[4]+n != len(b) {
			t.Errorf("closed segment of %d bytes, its records end at %d", len(b), offs[4]+n)
		}
	})
	t.Run("crash right after preallocation", func(t *testing.T) {
		// The zeros of a commit reached the disk, its records did not; and
		// the newest segment was created and preallocated, nothing more.
		mfs, seg := setup(t)
		size := len(fileBytes(mfs, seg))
		mfs.edit(seg, func(b []byte) []byte { return append(b, make([]byte, 8<<10)...) })
		next := filepath.Join("/j", segName(2<<32))
		mfs.files[next] = &memNode{}
		mfs.files[next].write(encodeSegHeader(segHeader{first: 2 << 32, prevFirst: 1 << 32, prevEnd: 1<<32 + 5}), 0)
		mfs.files[next].write(make([]byte, preallocSeg-segHeaderSize), segHeaderSize)
		mfs.files[next].sync()
		mfs.SyncDir("/j")
		got, st := reopen(t, mfs)
		if !slices.Equal(got, all) || st.Corrupt != 0 {
			t.Errorf("recovered %q, Corrupt %d; want all 5, none corrupt", got, st.Corrupt)
		}
		if n := len(fileBytes(mfs, seg)); n != size {
			t.Errorf("zero tail not cut: %d bytes, want %d", n, size)
		}
		if b := fileBytes(mfs, next); b != nil && len(b) != segHeaderSize {
			t.Errorf("preallocated empty segment of %d bytes, want it deleted or cut to its header", len(b))
		}
	})
	t.Run("torn record before the zeros", func(t *testing.T) {
		mfs, seg := setup(t)
		mfs.edit(seg, func(b []byte) []byte {
			b = appendItem(b, 1<<32+5, 1, []byte("torn"))
			clear(b[len(b)-10:]) // its end never reached the disk
			return append(b, make([]byte, 8<<10)...)
		})
		got, st := reopen(t, mfs)
		if !slices.Equal(got, all) || st.Corrupt != 0 {
			t.Errorf("recovered %q, Corrupt %d; want all 5 (the torn one cut off, uncounted)", got, st.Corrupt)
		}
	})
	t.Run("zeros in the middle are corruption, not the end", func(t *testing.T) {
		mfs, seg := setup(t)
		mfs.edit(seg, func(b []byte) []byte {
			offs := recordOffsets(b)
			clear(b[offs[1]:offs[2]])
			return append(b, make([]byte, 8<<10)...)
		})
		got, st := reopen(t, mfs)
		if want := []string{"a0", "a2", "a3", "a4"}; !slices.Equal(got, want) || st.Corrupt != 1 {
			t.Errorf("recovered %q, Corrupt %d; want %q, 1 lost", got, st.Corrupt, want)
		}
	})
}

func TestPreallocatedTornCommit(t *testing.T) {
	// A commit whose fdatasync failed: after a power loss its record is
	// torn, half of it on the preallocated zeros. Open cuts it off.
	mfs := newMemFS()
	l := mustOpen(t, "/j", LogOptions{fs: mfs, SegmentBytes: preallocSeg})
	mustAppend(t, l, "kept")
	mfs.mu.Lock()
	mfs.syncErr = errors.New("injected")
	mfs.mu.Unlock()
	if _, err := l.Append(t.Context(), bytes.Repeat([]byte("x"), 200), time.Unix(1700000000, 0), false); err == nil {
		t.Fatal("Append succeeded with a failing sync")
	}
	after := mfs.crash(true)
	l.Close()
	l2 := mustOpen(t, "/j", LogOptions{fs: after, SegmentBytes: preallocSeg})
	defer l2.Close()
	if got := datas(recoverAll(t, l2)); !slices.Equal(got, []string{"kept"}) || l2.Stats().Corrupt != 0 {
		t.Errorf("recovered %q, Corrupt %d; want [kept]", got, l2.Stats().Corrupt)
	}
}
