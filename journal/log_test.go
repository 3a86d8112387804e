package journal

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recovered is one record Recover handed out, copied.
type recovered struct {
	id       ID
	data     string
	accepted time.Time
}

func recoverAll(t *testing.T, l *Log) []recovered {
	t.Helper()
	var out []recovered
	err := l.Recover(context.Background(), func(r Record) error {
		out = append(out, recovered{r.ID, string(r.Data), r.Accepted})
		return nil
	})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return out
}

func mustOpen(t *testing.T, dir string, opts LogOptions) *Log {
	t.Helper()
	l, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func mustAppend(t *testing.T, l *Log, data string) ID {
	t.Helper()
	id, err := l.Append(context.Background(), []byte(data), time.Unix(1700000000, 0), false)
	if err != nil {
		t.Fatalf("Append(%q): %v", data, err)
	}
	return id
}

func datas(rs []recovered) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.data)
	}
	return out
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*.seg"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRoundTripRestartFinish(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	if got := recoverAll(t, l); len(got) != 0 {
		t.Fatalf("a new log recovered %v", got)
	}
	acc := time.Date(2026, 12, 6, 20, 0, 0, 123, time.UTC)
	var ids []ID
	for i := range 5 {
		id, err := l.Append(context.Background(), []byte(fmt.Sprintf("item-%d", i)), acc.Add(time.Duration(i)), false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := l.Finish(ids[1], ids[3], "not-an-id", ids[1]); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.Items != 3 || st.Appended != 5 || st.Finished != 2 || !st.Oldest.Equal(acc) {
		t.Fatalf("Stats = %+v", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	l = mustOpen(t, dir, LogOptions{})
	got := recoverAll(t, l)
	want := []recovered{{ids[0], "item-0", acc}, {ids[2], "item-2", acc.Add(2)}, {ids[4], "item-4", acc.Add(4)}}
	if len(got) != len(want) {
		t.Fatalf("recovered %v, want %v", got, want)
	}
	for i := range want {
		if got[i].id != want[i].id || got[i].data != want[i].data || !got[i].accepted.Equal(want[i].accepted) {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if again := recoverAll(t, l); len(again) != 0 {
		t.Errorf("a second Recover handed %v again", again)
	}
	if st := l.Stats(); st.Items != 3 || st.Recovered != 3 {
		t.Errorf("Stats after reopen = %+v", st)
	}
	// New IDs are never old ones, and finishing a recovered item sticks.
	id := mustAppend(t, l, "new")
	if slices.Contains(ids, id) {
		t.Errorf("new ID %s repeats an old one", id)
	}
	if err := l.Finish(ids[0]); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = mustOpen(t, dir, LogOptions{})
	defer l.Close()
	if got := datas(recoverAll(t, l)); !slices.Equal(got, []string{"item-2", "item-4", "new"}) {
		t.Errorf("after the third open: %v", got)
	}
}

func TestRecoverResumesAfterError(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	for i := range 4 {
		mustAppend(t, l, fmt.Sprint(i))
	}
	l.Close()
	l = mustOpen(t, dir, LogOptions{})
	defer l.Close()
	boom := errors.New("boom")
	var seen []string
	err := l.Recover(context.Background(), func(r Record) error {
		if string(r.Data) == "2" {
			return boom
		}
		seen = append(seen, string(r.Data))
		return nil
	})
	if !errors.Is(err, boom) || !slices.Equal(seen, []string{"0", "1"}) {
		t.Fatalf("Recover = %v after %v", err, seen)
	}
	if got := datas(recoverAll(t, l)); !slices.Equal(got, []string{"2", "3"}) {
		t.Errorf("the second Recover handed %v, want [2 3]", got)
	}
}

func TestSegmentDeletedWhenAllFinished(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{SegmentBytes: 4096})
	defer l.Close()
	var ids []ID
	for i := range 300 { // 300 records of 125 bytes: about 10 segments
		ids = append(ids, mustAppend(t, l, strings.Repeat("x", 100)+fmt.Sprint(i)))
	}
	if n := len(segFiles(t, dir)); n < 8 {
		t.Fatalf("%d segment files, want about 10", n)
	}
	before := l.Stats().Bytes
	// Finishing all but the first item keeps only the first segment and the
	// active one (and the segments whose finish records the first one's
	// other items need).
	if err := l.Finish(ids[1:]...); err != nil {
		t.Fatal(err)
	}
	files := segFiles(t, dir)
	if len(files) > 3 {
		t.Errorf("%d segment files left after finishing all but one item: %v", len(files), files)
	}
	if after := l.Stats().Bytes; after >= before/2 {
		t.Errorf("Bytes %d -> %d: not reclaimed", before, after)
	}
	if err := l.Finish(ids[0]); err != nil {
		t.Fatal(err)
	}
	if files := segFiles(t, dir); len(files) != 1 {
		t.Errorf("segment files after finishing everything: %v, want only the active one", files)
	}
	if st := l.Stats(); st.Items != 0 || !st.Oldest.IsZero() {
		t.Errorf("Stats = %+v", st)
	}
}

// A segment whose items are all finished but whose finish records finish
// items of an older live segment is kept: deleting it would forget those
// finishes, and a restart would deliver them again.
func TestFinishRecordsKeepTheirSegment(t *testing.T) {
	dir := t.TempDir()
	opts := LogOptions{SegmentBytes: 4096}
	l := mustOpen(t, dir, opts)
	var old []ID
	for range 30 { // fills the first segment
		old = append(old, mustAppend(t, l, strings.Repeat("o", 100)))
	}
	var newer []ID
	for range 60 {
		newer = append(newer, mustAppend(t, l, strings.Repeat("n", 100)))
	}
	// Finish all old items but one: the finish record goes to the active
	// (newer) segment.
	if err := l.Finish(old[1:]...); err != nil {
		t.Fatal(err)
	}
	for range 60 { // roll on
		newer = append(newer, mustAppend(t, l, strings.Repeat("m", 100)))
	}
	if err := l.Finish(newer...); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = mustOpen(t, dir, opts)
	defer l.Close()
	got := recoverAll(t, l)
	if len(got) != 1 || got[0].id != old[0] {
		t.Fatalf("recovered %d items (%v...), want only %s", len(got), got[:min(len(got), 3)], old[0])
	}
}

// TestByteBound runs in a synctest bubble: the waits at the bound are
// checked without sleeping.
func TestByteBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		l := mustOpen(t, dir, LogOptions{MaxBytes: 16 << 10})
		defer l.Close()
		if st := l.Stats(); st.MaxBytes != 16<<10 {
			t.Fatalf("MaxBytes = %d", st.MaxBytes)
		}
		data := []byte(strings.Repeat("b", 200))
		var ids []ID
		for {
			id, err := l.Append(context.Background(), data, time.Now(), false)
			if errors.Is(err, ErrFull) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
			if len(ids) > 1000 {
				t.Fatal("the bound never applied")
			}
		}
		if st := l.Stats(); st.Bytes > st.MaxBytes {
			t.Fatalf("Bytes %d over MaxBytes %d", st.Bytes, st.MaxBytes)
		}
		// wait=true blocks until ctx ends...
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		_, err := l.Append(ctx, data, time.Now(), true)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Append at the bound with wait and a deadline = %v", err)
		}
		// ...or until Finish frees room.
		done := make(chan error, 1)
		go func() {
			_, err := l.Append(context.Background(), data, time.Now(), true)
			done <- err
		}()
		synctest.Wait() // the Append is blocked, waiting for room
		select {
		case err := <-done:
			t.Fatalf("Append at the bound with wait returned %v before any room", err)
		default:
		}
		if err := l.Finish(ids...); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Append after room was freed: %v", err)
		}
		if _, err := l.Append(context.Background(), data, time.Now(), false); err != nil {
			t.Fatalf("Append after room was freed, without wait: %v", err)
		}
	})
}

func TestItemTooLarge(t *testing.T) {
	l := mustOpen(t, t.TempDir(), LogOptions{SegmentBytes: 4096})
	defer l.Close()
	_, err := l.Append(context.Background(), make([]byte, 4096), time.Now(), true)
	if err == nil || errors.Is(err, ErrFull) {
		t.Fatalf("Append of an item larger than a segment = %v", err)
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []LogOptions{
		{Durability: Process + 1}, {SegmentBytes: 100}, {MaxBytes: 1000}, {SyncInterval: -1},
	} {
		if l, err := Open(t.TempDir(), o); err == nil {
			l.Close()
			t.Errorf("Open(%+v) succeeded", o)
		}
	}
}

// Group commit: Appends queued while a commit is syncing are written and
// synced together by the next one.
func TestGroupCommit(t *testing.T) {
	mfs := newMemFS()
	l := mustOpen(t, "/j", LogOptions{fs: mfs})
	defer l.Close()
	release := make(chan struct{})
	var once sync.Once
	blockFirst := func() { once.Do(func() { <-release }) }
	l.active = &hookFile{fsFile: l.active, beforeSync: blockFirst}

	var wg sync.WaitGroup
	appendOne := func() {
		defer wg.Done()
		if _, err := l.Append(context.Background(), []byte("x"), time.Now(), false); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go appendOne()
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.stats.Appended == 1 && len(l.cur.buf) == 0 })
	for range 10 {
		wg.Add(1)
		go appendOne()
	}
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.cur.items == 10 })
	close(release)
	wg.Wait()
	if st := l.Stats(); st.Syncs != 2 || st.Appended != 11 {
		t.Errorf("11 Appends in %d group commits, want 2 (Stats %+v)", st.Syncs, st)
	}
}

// At Synced, the commit after one that woke n callers waits (a fraction of
// an fsync at most) for them to come back, so that the group stays whole:
// here the first caller appends again at once and joins the ten that
// queued during its commit.
func TestGroupCommitWaitsForTheWoken(t *testing.T) {
	mfs := newMemFS()
	l := mustOpen(t, "/j", LogOptions{fs: mfs})
	defer l.Close()
	l.maxLinger = time.Hour // what the test checks is whom it waits for, not how long
	release := make(chan struct{})
	var once sync.Once
	l.active = &hookFile{fsFile: l.active, beforeSync: func() { once.Do(func() { <-release }) }}
	var wg sync.WaitGroup
	wg.Go(func() {
		for range 2 {
			if _, err := l.Append(context.Background(), []byte("first"), time.Now(), false); err != nil {
				t.Error(err)
			}
		}
	})
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.stats.Appended == 1 && len(l.cur.buf) == 0 })
	for range 10 {
		wg.Go(func() {
			if _, err := l.Append(context.Background(), []byte("x"), time.Now(), false); err != nil {
				t.Error(err)
			}
		})
	}
	waitFor(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.cur.items == 10 })
	time.Sleep(time.Millisecond) // the first commit's time, of which the linger is a quarter
	close(release)
	wg.Wait()
	if st := l.Stats(); st.Syncs != 2 || st.Appended != 12 {
		t.Errorf("12 Appends in %d group commits, want 2 (Stats %+v)", st.Syncs, st)
	}
}

type hookFile struct {
	fsFile
	beforeSync func()
}

func (f *hookFile) Sync() error { f.beforeSync(); return f.fsFile.Sync() }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10 s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentAppendFinish(t *testing.T) {
	dir := t.TempDir()
	opts := LogOptions{SegmentBytes: 64 << 10}
	l := mustOpen(t, dir, opts)
	const producers, each = 16, 300
	var mu sync.Mutex
	kept := map[ID]string{}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range each {
				data := fmt.Sprintf("p%d-%d", p, i)
				id, err := l.Append(context.Background(), []byte(data), time.Now(), false)
				if err != nil {
					t.Error(err)
					return
				}
				if i%2 == 0 {
					if err := l.Finish(id); err != nil {
						t.Error(err)
					}
					continue
				}
				mu.Lock()
				kept[id] = data
				mu.Unlock()
			}
		})
	}
	wg.Add(1)
	go func() { // Stats under load
		defer wg.Done()
		for range 100 {
			l.Stats()
		}
	}()
	wg.Wait()
	st := l.Stats()
	if st.Items != len(kept) || st.Appended != producers*each || st.Syncs >= st.Appended+st.Finished {
		t.Errorf("Stats = %+v, want %d items and fewer commits than operations", st, len(kept))
	}
	l.Close()
	l = mustOpen(t, dir, opts)
	defer l.Close()
	got := recoverAll(t, l)
	if len(got) != len(kept) {
		t.Fatalf("recovered %d items, want %d", len(got), len(kept))
	}
	for _, r := range got {
		if kept[r.id] != r.data {
			t.Errorf("recovered %s = %q, want %q", r.id, r.data, kept[r.id])
		}
	}
}

func TestClose(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	id := mustAppend(t, l, "a")
	// Appends racing with Close either succeed (and are kept) or get
	// ErrClosed.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok []ID
	for range 8 {
		wg.Go(func() {
			for {
				id, err := l.Append(context.Background(), []byte("r"), time.Now(), false)
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ok = append(ok, id)
				mu.Unlock()
			}
		})
	}
	waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(ok) > 10 })
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	select {
	case <-l.done:
	default:
		t.Error("the committer still runs after Close")
	}
	if _, err := l.Append(context.Background(), nil, time.Now(), false); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close = %v", err)
	}
	if err := l.Finish(id); !errors.Is(err, ErrClosed) {
		t.Errorf("Finish after Close = %v", err)
	}
	if err := l.Recover(context.Background(), func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Recover after Close = %v", err)
	}
	_ = l.Stats()
	l = mustOpen(t, dir, LogOptions{})
	defer l.Close()
	if got := recoverAll(t, l); len(got) != len(ok)+1 {
		t.Errorf("recovered %d items, want the %d whose Append returned", len(got), len(ok)+1)
	}
}

// A failed fsync fails the Appends of its commit and every later one: the
// data may be gone (Linux forgets a failed page's error), so the log takes
// no more.
func TestSyncFailureStopsTheLog(t *testing.T) {
	mfs := newMemFS()
	l := mustOpen(t, "/j", LogOptions{fs: mfs})
	defer l.Close()
	mustAppend(t, l, "ok")
	mfs.mu.Lock()
	mfs.syncErr = errors.New("EIO")
	mfs.mu.Unlock()
	if _, err := l.Append(context.Background(), []byte("x"), time.Now(), false); err == nil || !strings.Contains(err.Error(), "EIO") {
		t.Fatalf("Append with a failing fsync = %v", err)
	}
	mfs.mu.Lock()
	mfs.syncErr = nil
	mfs.mu.Unlock()
	if _, err := l.Append(context.Background(), []byte("y"), time.Now(), false); err == nil {
		t.Fatal("Append after a failed fsync succeeded")
	}
}

func TestIDFileCorrupt(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	l.Close()
	if err := os.WriteFile(filepath.Join(dir, idFile), []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, LogOptions{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("Open with a corrupt identity file = %v", err)
	}
}

func TestOneLogPerDirectory(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	if l2, err := Open(dir, LogOptions{}); err == nil {
		l2.Close()
		t.Fatal("a second Log opened on a directory in use")
	}
	l.Close()
	l = mustOpen(t, dir, LogOptions{})
	l.Close()
}

func TestRecoverStopsWithItsContext(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{})
	for i := range 5 {
		mustAppend(t, l, fmt.Sprint(i))
	}
	l.Close()
	l = mustOpen(t, dir, LogOptions{})
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := l.Recover(ctx, func(Record) error {
		n++
		if n == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n != 2 {
		t.Fatalf("Recover = %v after %d items, want context.Canceled after 2", err, n)
	}
	if got := datas(recoverAll(t, l)); !slices.Equal(got, []string{"2", "3", "4"}) {
		t.Errorf("the next Recover handed %v, want [2 3 4]", got)
	}
}

// Stats.Oldest is the earliest acceptance time in the oldest segment that
// still holds an unfinished item.
func TestStatsOldest(t *testing.T) {
	l := mustOpen(t, t.TempDir(), LogOptions{SegmentBytes: 4096})
	defer l.Close()
	base := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	var ids []ID
	for i := range 100 { // several segments
		id, err := l.Append(context.Background(), make([]byte, 100), base.Add(time.Duration(i)*time.Second), false)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if got := l.Stats().Oldest; !got.Equal(base) {
		t.Fatalf("Oldest = %v, want %v", got, base)
	}
	// Finish the first segment's items: Oldest moves to the second's first.
	l.mu.Lock()
	n := int(l.segs[0].n)
	l.mu.Unlock()
	if err := l.Finish(ids[:n]...); err != nil {
		t.Fatal(err)
	}
	if got, want := l.Stats().Oldest, base.Add(time.Duration(n)*time.Second); !got.Equal(want) {
		t.Errorf("Oldest = %v, want %v", got, want)
	}
	if err := l.Finish(ids[n:]...); err != nil {
		t.Fatal(err)
	}
	if got := l.Stats().Oldest; !got.IsZero() {
		t.Errorf("Oldest with nothing unfinished = %v, want zero", got)
	}
}

// TestAppendKeepsNoReferenceToData: the caller may reuse Append's data once
// it returned (the layer pools its encoding buffers on that promise).
func TestAppendKeepsNoReferenceToData(t *testing.T) {
	dir := t.TempDir()
	l := mustOpen(t, dir, LogOptions{Durability: Process})
	buf := []byte("first")
	if _, err := l.Append(context.Background(), buf, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	copy(buf, "xxxxx")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = mustOpen(t, dir, LogOptions{})
	defer l.Close()
	if got := datas(recoverAll(t, l)); !slices.Equal(got, []string{"first"}) {
		t.Fatalf("recovered %q, want [first]", got)
	}
}
