package journal

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// corruptFixture is a closed log on a memFS holding n items in several 4 KiB
// segments, then an empty last segment (so that damage to the others is
// never a torn tail), and what each segment holds.
type corruptFixture struct {
	fs    *memFS
	items map[ID]string
	order []ID
	segs  []string            // segment file names, oldest first (the empty last one excluded)
	inSeg map[string][]string // the items' data per segment
}

func newCorruptFixture(t *testing.T, n int) *corruptFixture {
	t.Helper()
	mfs := newMemFS()
	opts := LogOptions{fs: mfs, SegmentBytes: 4096}
	l := mustOpen(t, "/j", opts)
	fx := &corruptFixture{fs: mfs, items: map[ID]string{}, inSeg: map[string][]string{}}
	for i := range n {
		d := fmt.Sprintf("item-%03d-%s", i, strings.Repeat("z", 80))
		id := mustAppend(t, l, d)
		fx.items[id] = d
		fx.order = append(fx.order, id)
	}
	l.mu.Lock()
	for _, s := range l.segs {
		for q := s.first; q < s.first+s.n; q++ {
			fx.inSeg[segName(s.first)] = append(fx.inSeg[segName(s.first)], fx.items[l.formatID(q)])
		}
		fx.segs = append(fx.segs, segName(s.first))
	}
	l.mu.Unlock()
	l.Close()
	l = mustOpen(t, "/j", opts) // a new, empty last segment
	l.Close()
	if len(fx.segs) < 4 {
		t.Fatalf("fixture has %d segments", len(fx.segs))
	}
	return fx
}

// reopen opens the damaged log and returns what it recovered, the lost
// counts reported to OnCorrupt, and its stats.
func (fx *corruptFixture) reopen(t *testing.T) ([]string, map[string]int, StoreStats) {
	t.Helper()
	lost := map[string]int{}
	l := mustOpen(t, "/j", LogOptions{fs: fx.fs, SegmentBytes: 4096, OnCorrupt: func(seg string, n int) { lost[seg] += n }})
	defer l.Close()
	var got []string
	for _, r := range recoverAll(t, l) {
		if fx.items[r.id] != r.data {
			t.Errorf("recovered %s = %q, want %q", r.id, r.data, fx.items[r.id])
		}
		got = append(got, r.data)
	}
	return got, lost, l.Stats()
}

// want returns every item but those of the given data.
func (fx *corruptFixture) want(lost ...string) []string {
	var out []string
	for _, id := range fx.order {
		if !slices.Contains(lost, fx.items[id]) {
			out = append(out, fx.items[id])
		}
	}
	return out
}

func (fx *corruptFixture) path(seg string) string { return filepath.Join("/j", seg) }

// recordOffsets returns the offsets of the records in a segment's bytes.
func recordOffsets(b []byte) []int {
	var out []int
	for off := segHeaderSize; off < len(b); {
		_, n, err := decodeRecord(b[off:])
		if err != nil {
			break
		}
		out = append(out, off)
		off += n
	}
	return out
}

func TestCorruptFlippedBytes(t *testing.T) {
	for _, where := range []struct {
		name string
		at   int // offset within the record
	}{{"payload", 40}, {"length", 5}, {"checksum", 1}, {"kind", 8}} {
		t.Run(where.name, func(t *testing.T) {
			fx := newCorruptFixture(t, 120)
			seg := fx.segs[1]
			var offs []int
			fx.fs.edit(fx.path(seg), func(b []byte) []byte {
				offs = recordOffsets(b)
				b[offs[3]+where.at] ^= 0x5a
				return b
			})
			got, lost, st := fx.reopen(t)
			victim := fx.inSeg[seg][3]
			if !slices.Equal(got, fx.want(victim)) {
				t.Errorf("recovered %d items, want all %d but %q", len(got), len(fx.order)-1, victim)
			}
			if st.Corrupt != 1 || lost[seg] != 1 || len(lost) != 1 {
				t.Errorf("Corrupt = %d, OnCorrupt = %v; want 1 in %s", st.Corrupt, lost, seg)
			}
		})
	}
}

func TestCorruptTruncatedSegment(t *testing.T) {
	fx := newCorruptFixture(t, 120)
	seg := fx.segs[1]
	var cut int
	fx.fs.edit(fx.path(seg), func(b []byte) []byte {
		offs := recordOffsets(b)
		cut = len(offs) - 10
		return b[:offs[cut]+7] // ten records gone, the last in the middle
	})
	got, lost, st := fx.reopen(t)
	victims := fx.inSeg[seg][cut:]
	if !slices.Equal(got, fx.want(victims...)) {
		t.Errorf("recovered %d items, want %d", len(got), len(fx.order)-len(victims))
	}
	if st.Corrupt != uint64(len(victims)) || lost[seg] != len(victims) {
		t.Errorf("Corrupt = %d, OnCorrupt = %v; want %d in %s", st.Corrupt, lost, len(victims), seg)
	}
}

func TestCorruptZeroFilledTail(t *testing.T) {
	t.Run("middle segment", func(t *testing.T) {
		fx := newCorruptFixture(t, 120)
		seg := fx.segs[2]
		var from int
		fx.fs.edit(fx.path(seg), func(b []byte) []byte {
			offs := recordOffsets(b)
			from = len(offs) - 5
			clear(b[offs[from]+3:])
			return b
		})
		got, lost, st := fx.reopen(t)
		victims := fx.inSeg[seg][from:]
		if !slices.Equal(got, fx.want(victims...)) || st.Corrupt != 5 || lost[seg] != 5 {
			t.Errorf("recovered %d (want %d), Corrupt %d, OnCorrupt %v; want 5 lost in %s",
				len(got), len(fx.order)-5, st.Corrupt, lost, seg)
		}
	})
	t.Run("last segment: a torn tail", func(t *testing.T) {
		// The newest segment's zero-filled tail is what a filesystem shows
		// after a power loss cut a write short: cut off, not counted.
		mfs := newMemFS()
		l := mustOpen(t, "/j", LogOptions{fs: mfs})
		for i := range 10 {
			mustAppend(t, l, fmt.Sprint(i))
		}
		l.Close()
		name := mfs.names()[0]
		var size int
		mfs.edit(filepath.Join("/j", name), func(b []byte) []byte {
			size = len(b)
			return append(b, make([]byte, 300)...)
		})
		l = mustOpen(t, "/j", LogOptions{fs: mfs})
		defer l.Close()
		got := recoverAll(t, l)
		if len(got) != 10 || l.Stats().Corrupt != 0 {
			t.Errorf("recovered %d of 10, Corrupt %d", len(got), l.Stats().Corrupt)
		}
		if n, _ := mfs.files[filepath.Join("/j", name)].data, 0; len(n) != size {
			t.Errorf("torn tail not cut: %d bytes, want %d", len(n), size)
		}
	})
}

func TestCorruptSegmentHeader(t *testing.T) {
	for _, which := range []string{"middle", "last"} {
		t.Run(which, func(t *testing.T) {
			fx := newCorruptFixture(t, 120)
			seg := fx.segs[1]
			if which == "last" {
				// Make the damaged segment the newest: drop the empty one.
				var last string
				for _, n := range fx.fs.names() {
					if strings.HasSuffix(n, ".seg") {
						last = n
					}
				}
				fx.fs.Remove(fx.path(last))
				seg = fx.segs[len(fx.segs)-1]
			}
			fx.fs.edit(fx.path(seg), func(b []byte) []byte {
				copy(b, "garbage!garbage!")
				return b
			})
			got, lost, st := fx.reopen(t)
			victims := fx.inSeg[seg]
			if !slices.Equal(got, fx.want(victims...)) {
				t.Errorf("recovered %d items, want %d", len(got), len(fx.order)-len(victims))
			}
			if st.Corrupt != uint64(len(victims)) || lost[seg] != len(victims) {
				t.Errorf("Corrupt = %d, OnCorrupt = %v; want %d in %s", st.Corrupt, lost, len(victims), seg)
			}
			if !slices.Contains(fx.fs.names(), seg+".corrupt") {
				t.Errorf("files %v: want %s.corrupt kept", fx.fs.names(), seg)
			}
		})
	}
}

// Random damage to random segments (all but the newest): no panic, every
// recovered item intact, and every item either recovered or counted lost.
func TestCorruptRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 15))
	for round := range 40 {
		fx := newCorruptFixture(t, 120)
		for range 1 + rng.IntN(4) {
			seg := fx.segs[rng.IntN(len(fx.segs))]
			fx.fs.edit(fx.path(seg), func(b []byte) []byte {
				switch rng.IntN(4) {
				case 0: // flip a run of bytes
					at := rng.IntN(len(b))
					for i := at; i < min(len(b), at+1+rng.IntN(50)); i++ {
						b[i] ^= byte(1 + rng.IntN(255))
					}
				case 1: // truncate
					b = b[:rng.IntN(len(b))]
				case 2: // zero a range
					at := rng.IntN(len(b))
					clear(b[at:min(len(b), at+rng.IntN(2000))])
				case 3: // garbage appended
					g := make([]byte, rng.IntN(500))
					for i := range g {
						g[i] = byte(rng.Uint32())
					}
					b = append(b, g...)
				}
				return b
			})
		}
		got, _, st := fx.reopen(t)
		if len(got)+int(st.Corrupt) < len(fx.order) {
			t.Errorf("round %d: %d recovered + %d counted corrupt < %d appended: a silent loss", round, len(got), st.Corrupt, len(fx.order))
		}
	}
}

func TestScanGarbageNoPanic(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 15))
	for range 200 {
		b := make([]byte, rng.IntN(3000))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 && len(b) >= segHeaderSize {
			copy(b, encodeSegHeader(segHeader{first: 1 << 32}))
		}
		openBytes(t, b)
	}
}

// openBytes opens a log whose one segment holds b and recovers it; it
// must not panic.
func openBytes(t *testing.T, b []byte) {
	mfs := newMemFS()
	mfs.files["/j/"+segName(1<<32)] = &memNode{data: bytes.Clone(b), disk: bytes.Clone(b)}
	mfs.SyncDir("/j")
	l, err := Open("/j", LogOptions{fs: mfs})
	if err != nil {
		return
	}
	defer l.Close()
	_ = l.Recover(context.Background(), func(Record) error { return nil })
}

func FuzzDecode(f *testing.F) {
	rec := appendItem(nil, 1<<32|7, time.Unix(1, 2).UnixNano(), []byte("hello"))
	fin := appendFinish(nil, []uint64{1, 2, 3})
	f.Add(rec)
	f.Add(fin)
	f.Add(append(append([]byte(nil), rec...), fin...))
	f.Add(rec[:len(rec)-1])
	f.Add(make([]byte, 40))
	seg := append(encodeSegHeader(segHeader{first: 1 << 32}), appendItem(nil, 1<<32, 5, []byte("a"))...)
	seg = appendItem(seg, 1<<32+1, 6, []byte("b"))
	seg = appendFinish(seg, []uint64{1 << 32})
	f.Add(seg)
	bad := bytes.Clone(seg)
	bad[segHeaderSize+12] ^= 1
	f.Add(bad)
	huge := bytes.Clone(rec)
	binary.LittleEndian.PutUint32(huge[4:], 1<<31)
	f.Add(huge)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := decodeRecord(b)
		if err == nil {
			if n < recHeaderSize || n > len(b) {
				t.Fatalf("decodeRecord length %d of %d bytes", n, len(b))
			}
			var again []byte
			if r.kind == recItem {
				again = appendItem(nil, r.seq, r.accepted, r.data)
			} else {
				var seqs []uint64
				for i := range len(r.data) / 8 {
					seqs = append(seqs, r.finishSeq(i))
				}
				again = appendFinish(nil, seqs)
			}
			if !bytes.Equal(again, b[:n]) {
				t.Fatalf("decoded %+v does not encode back to its bytes", r)
			}
		}
		_, _ = decodeSegHeader(b)
		sc := newRecordScanner(bytes.NewReader(b), int64(len(b)), make([]byte, 0, 64))
		for range len(b) + 1 {
			if _, _, _, ok := sc.next(); !ok {
				break
			}
		}
		openBytes(t, b)
	})
}

// A segment deleted between two others (all its items finished) is not a
// loss: reopening counts nothing corrupt.
func TestDeletedMiddleSegmentIsNoCorruption(t *testing.T) {
	mfs := newMemFS()
	opts := LogOptions{fs: mfs, SegmentBytes: 4096}
	l := mustOpen(t, "/j", opts)
	for i := range 120 {
		mustAppend(t, l, fmt.Sprintf("%03d-%s", i, strings.Repeat("m", 90)))
	}
	// Finish the items of the second segment only.
	l.mu.Lock()
	second := l.segs[1]
	var fin []ID
	for q := second.first; q < second.first+second.n; q++ {
		fin = append(fin, l.formatID(q))
	}
	l.mu.Unlock()
	if err := l.Finish(fin...); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(mfs.names(), segName(second.first)) {
		t.Fatal("the finished segment was not deleted")
	}
	l.Close()
	for range 2 { // and across a restart in between
		l = mustOpen(t, "/j", opts)
		got := recoverAll(t, l)
		if st := l.Stats(); st.Corrupt != 0 || len(got) != 120-len(fin) {
			t.Errorf("recovered %d (want %d), Corrupt %d (want 0)", len(got), 120-len(fin), st.Corrupt)
		}
		l.Close()
	}
}
