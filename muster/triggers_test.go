package muster_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// Both paths of both clients obey the same triggers.
type adder interface {
	add(t *testing.T, v int)
	stop(t *testing.T)
}

type clientWork struct{ c *muster.Client }

func (a clientWork) add(t *testing.T, v int) { a.c.Work <- v }
func (a clientWork) stop(t *testing.T) {
	if err := a.c.Stop(); err != nil {
		t.Fatal(err)
	}
}

type clientAdd struct{ c *muster.Client }

func (a clientAdd) add(t *testing.T, v int) {
	if err := a.c.Add(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}
func (a clientAdd) stop(t *testing.T) { clientWork(a).stop(t) }

type batcherAdd struct{ b *muster.Batcher[int] }

func (a batcherAdd) add(t *testing.T, v int) {
	if err := a.b.Add(context.Background(), v); err != nil {
		t.Fatal(err)
	}
}
func (a batcherAdd) stop(t *testing.T) {
	if err := a.b.Stop(); err != nil {
		t.Fatal(err)
	}
}

// startAll builds the three flavours with the same configuration; the
// recorder sees every batch.
func startAll(t *testing.T, max uint, timeout time.Duration) map[string]struct {
	a adder
	r *recorder
} {
	out := map[string]struct {
		a adder
		r *recorder
	}{}
	for _, name := range []string{"Client.Work", "Client.Add", "Batcher.Add"} {
		r := &recorder{}
		var a adder
		switch name {
		case "Batcher.Add":
			b := &muster.Batcher[int]{MaxBatchSize: max, BatchTimeout: timeout, Fire: func(ctx context.Context, items []int) error {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.batches = append(r.batches, items2any(items))
				return nil
			}}
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			a = batcherAdd{b}
		default:
			c := &muster.Client{MaxBatchSize: max, BatchTimeout: timeout, BatchMaker: r.maker}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if name == "Client.Work" {
				a = clientWork{c}
			} else {
				a = clientAdd{c}
			}
		}
		out[name] = struct {
			a adder
			r *recorder
		}{a, r}
	}
	return out
}

func TestSizeTrigger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for name, x := range startAll(t, 3, 0) {
			for i := range 7 {
				x.a.add(t, i)
			}
			synctest.Wait()
			equalBatches(t, sorted(x.r.snapshot()), items(0, 1, 2), items(3, 4, 5))
			time.Sleep(time.Hour) // no time trigger: nothing more fires
			synctest.Wait()
			if n := len(x.r.snapshot()); n != 2 {
				t.Fatalf("%s: %d batches after an hour, want 2", name, n)
			}
			x.a.stop(t)
			equalBatches(t, sorted(x.r.snapshot()), items(0, 1, 2), items(3, 4, 5), items(6))
		}
	})
}

func TestTimeoutTriggerStartsAtFirstItem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for name, x := range startAll(t, 0, time.Second) {
			time.Sleep(5 * time.Second) // an idle client never fires
			synctest.Wait()
			if n := len(x.r.snapshot()); n != 0 {
				t.Fatalf("%s: idle client fired %d batches", name, n)
			}
			start := time.Now()
			x.a.add(t, 1)
			time.Sleep(600 * time.Millisecond)
			x.a.add(t, 2)
			time.Sleep(400*time.Millisecond - 1)
			synctest.Wait()
			if n := len(x.r.snapshot()); n != 0 {
				t.Fatalf("%s: fired before BatchTimeout after the first item", name)
			}
			time.Sleep(1)
			synctest.Wait()
			if got := time.Since(start); got != time.Second {
				t.Fatalf("%s: elapsed %v", name, got)
			}
			equalBatches(t, x.r.snapshot(), items(1, 2))
			// The next batch's clock starts at its own first item.
			time.Sleep(300 * time.Millisecond)
			x.a.add(t, 3)
			time.Sleep(time.Second - 1)
			synctest.Wait()
			if n := len(x.r.snapshot()); n != 1 {
				t.Fatalf("%s: second batch fired early", name)
			}
			time.Sleep(1)
			synctest.Wait()
			equalBatches(t, x.r.snapshot(), items(1, 2), items(3))
			x.a.stop(t)
			if n := len(x.r.snapshot()); n != 2 {
				t.Fatalf("%s: Stop fired an empty batch", name)
			}
		}
	})
}

func TestSizeBeforeTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, x := range startAll(t, 2, time.Second) {
			x.a.add(t, 1)
			time.Sleep(500 * time.Millisecond)
			x.a.add(t, 2) // full: fires now
			synctest.Wait()
			equalBatches(t, x.r.snapshot(), items(1, 2))
			// The stale timer of batch 1 must not fire batch 2 early.
			x.a.add(t, 3)
			time.Sleep(999 * time.Millisecond)
			synctest.Wait()
			if n := len(x.r.snapshot()); n != 1 {
				t.Fatalf("stale timer fired the next batch early")
			}
			time.Sleep(time.Millisecond)
			synctest.Wait()
			equalBatches(t, x.r.snapshot(), items(1, 2), items(3))
			x.a.stop(t)
		}
	})
}

func TestTriggerString(t *testing.T) {
	for tr, want := range map[muster.Trigger]string{
		muster.TriggerSize: "size", muster.TriggerTimeout: "timeout", muster.TriggerFlush: "flush",
		muster.TriggerShutdown: "shutdown", muster.Trigger(0): "unknown",
	} {
		if tr.String() != want {
			t.Errorf("%d.String() = %q, want %q", tr, tr.String(), want)
		}
	}
}

func TestBytesTrigger(t *testing.T) {
	var log batchLog[string]
	b := &muster.Batcher[string]{MaxBatchSize: 10, MaxBatchBytes: 10, MaxConcurrentBatches: 1,
		Sizer: func(s string) int {
			if s == "negative" {
				return -1
			}
			return len(s)
		},
		Hooks: log.hooks(), Fire: log.fire}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, s := range []string{"aaaa", "bbbb", "ccc", "dddddddddd", "e", "ff"} {
		if err := b.Add(ctx, s); err != nil {
			t.Fatalf("add %q: %v", s, err)
		}
	}
	if err := b.Add(ctx, "this one is too large"); !errors.Is(err, muster.ErrTooLarge) {
		t.Fatalf("oversized item: %v", err)
	}
	if err := b.Add(ctx, "negative"); !errors.Is(err, muster.ErrTooLarge) {
		t.Fatalf("an item of negative size: %v", err)
	}
	_ = b.Stop()
	log.check(t, [][]string{{"aaaa", "bbbb"}, {"ccc"}, {"dddddddddd"}, {"e", "ff"}},
		[]muster.Trigger{muster.TriggerBytes, muster.TriggerBytes, muster.TriggerBytes, muster.TriggerShutdown})
	if s := b.Stats(); s.Refused != 2 || s.Added != 6 {
		t.Fatalf("stats %+v", s)
	}
	for _, bad := range []*muster.Batcher[string]{
		{MaxBatchBytes: 10, Fire: func(context.Context, []string) error { return nil }},
		{MaxBatchSize: 1, Sizer: func(string) int { return 1 }, Fire: func(context.Context, []string) error { return nil }},
	} {
		if err := bad.Start(); !errors.Is(err, muster.ErrInvalidConfig) {
			t.Fatalf("MaxBatchBytes without Sizer or the reverse: %v", err)
		}
	}
}

// Issue 9 (j): MaxBatchBytes and sizes above 2^31 work (on 64-bit
// platforms): items of 2^33 bytes under a limit of 2^35 make batches of 4.
func TestMaxBatchBytesAbove2GiB(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("sizes above 2^31 need a 64-bit int")
	}
	var log batchLog[int]
	b := &muster.Batcher[int]{MaxBatchBytes: 1 << 35, MaxConcurrentBatches: 1,
		Sizer: func(v int) int { return v << 33 }, // v units of 2^33 bytes
		Hooks: log.hooks(), Fire: log.fire}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, v := range []int{1, 1, 1, 1, 1, 2, 2, 1} {
		if err := b.Add(ctx, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Add(ctx, 5); !errors.Is(err, muster.ErrTooLarge) { // 5×2^33 > 2^35
		t.Fatalf("an item of 5×2^33 bytes: %v, want ErrTooLarge", err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	log.check(t, [][]int{{1, 1, 1, 1}, {1, 2}, {2, 1}},
		[]muster.Trigger{muster.TriggerBytes, muster.TriggerBytes, muster.TriggerShutdown})
}

// Issue 9 (f): a batch does not preallocate MaxBatchSize items: with
// MaxBatchSize 1<<40 and one-byte items, a few items cost a few kilobytes,
// on the typed path and on a Client's (which keeps items with Middleware).
func TestHugeMaxBatchSizeAllocatesLittle(t *testing.T) {
	const huge = 1 << 40
	measure := func(name string, run func()) {
		t.Helper()
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		run()
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
			t.Errorf("%s: %d bytes allocated for a few one-byte items", name, n)
		}
	}
	measure("Batcher", func() {
		var got int
		b := &muster.Batcher[byte]{MaxBatchSize: huge, BatchTimeout: time.Hour,
			Fire: func(ctx context.Context, items []byte) error { got += len(items); return nil }}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			_ = b.Add(context.Background(), byte(i))
		}
		_ = b.Stop()
		if got != 10 {
			t.Errorf("fired %d items", got)
		}
	})
	measure("Keyed", func() {
		k := &muster.Keyed[byte, byte]{Key: func(v byte) byte { return v % 3 }, MaxBatchSize: huge, BatchTimeout: time.Hour,
			Fire: func(ctx context.Context, items []byte) error { return nil }}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			_ = k.Add(context.Background(), byte(i))
		}
		_ = k.Stop()
	})
	measure("Client with Middleware", func() {
		r := &recorder{}
		c := &muster.Client{MaxBatchSize: huge, BatchTimeout: time.Hour, BatchMaker: r.maker,
			Middleware: func(next muster.FireFunc[any]) muster.FireFunc[any] { return next }}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			c.Work <- byte(i)
		}
		_ = c.Stop()
		if got := r.snapshot(); len(got) != 1 || len(got[0]) != 10 {
			t.Errorf("fired %v", got)
		}
	})
}
