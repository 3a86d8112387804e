package muster_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/musterhq/muster/muster"
)

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

// Issue 9 (i): a negative BatchTimeout is a configuration error, not a
// timer that fires at once.
func TestNegativeBatchTimeout(t *testing.T) {
	fire := func(context.Context, []int) error { return nil }
	for name, start := range map[string]func() error{
		"Client":         (&muster.Client{MaxBatchSize: 1, BatchTimeout: -time.Second, BatchMaker: (&recorder{}).maker}).Start,
		"Client no size": (&muster.Client{BatchTimeout: -1, BatchMaker: (&recorder{}).maker}).Start,
		"Batcher":        (&muster.Batcher[int]{MaxBatchSize: 1, BatchTimeout: -time.Second, Fire: fire}).Start,
		"Batcher bytes":  (&muster.Batcher[int]{MaxBatchBytes: 1, Sizer: func(int) int { return 1 }, BatchTimeout: -1, Fire: fire}).Start,
		"Keyed":          (&muster.Keyed[int, int]{Key: func(v int) int { return v }, MaxBatchSize: 1, BatchTimeout: -time.Second, Fire: fire}).Start,
	} {
		if err := start(); !errors.Is(err, muster.ErrInvalidConfig) {
			t.Errorf("%s with a negative BatchTimeout: Start = %v, want ErrInvalidConfig", name, err)
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

// A second Start while producers Add returns ErrAlreadyStarted and leaves
// the running Batcher alone. (It once rewrote the Batcher's state before
// its already-started check: a data race with Add under -race.)
func TestBatcherSecondStartDuringAdd(t *testing.T) {
	b := &muster.Batcher[int]{MaxBatchSize: 10, Fire: func(context.Context, []int) error { return nil }}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := b.Add(context.Background(), i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if err := b.Start(); !errors.Is(err, muster.ErrAlreadyStarted) {
			t.Fatalf("second Start: %v, want ErrAlreadyStarted", err)
		}
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.Added != n || s.Done != n/10 {
		t.Fatalf("stats %+v", s)
	}
}
