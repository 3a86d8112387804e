package muster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// taken formats AddInfo.Taken: a Refused hook tells an item dropped after
// it was taken from one never taken.
func taken(t bool) string {
	if t {
		return " (taken)"
	}
	return " (not taken)"
}

func TestOverflowPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy  muster.Overflow
		wantErr error // Add of item 6, with [0 1] in flight, [2 3] waiting and [4 5] queued
		fired   [][]int
		refused uint64
		dropped uint64
	}{
		{muster.OverflowFail, muster.ErrFull, [][]int{{0, 1}, {2, 3}, {4, 5}}, 1, 0},
		{muster.OverflowDropNewest, nil, [][]int{{0, 1}, {2, 3}, {4, 5}}, 1, 0},
		{muster.OverflowDropOldest, nil, [][]int{{0, 1}, {2, 3}, {5}, {6}}, 0, 1},
	} {
		t.Run(fmt.Sprint("policy", tc.policy), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var reported []string
				hooks := &muster.Hooks{
					// Keep each item's context, so that a dropped item is named.
					Added: func(ctx context.Context, _ muster.AddInfo) context.Context { return ctx },
					Refused: func(ctx context.Context, info muster.AddInfo) {
						mu.Lock()
						reported = append(reported, fmt.Sprint(ctx.Value("item"), ": ", info.Err, taken(info.Taken)))
						mu.Unlock()
					},
				}
				b, release, fired := holdBatcher(t, 2, tc.policy, hooks)
				var results []muster.Result
				for i := range 6 {
					r, err := b.AddResult(context.WithValue(context.Background(), "item", i), i)
					if err != nil {
						t.Fatalf("add %d: %v", i, err)
					}
					results = append(results, r)
				}
				start := time.Now()
				r6, err := b.AddResult(context.WithValue(context.Background(), "item", 6), 6)
				if !errors.Is(err, tc.wantErr) || time.Since(start) != 0 {
					t.Fatalf("Add at capacity: %v after %v, want %v at once", err, time.Since(start), tc.wantErr)
				}
				close(release)
				if err := b.Stop(); err != nil {
					t.Fatal(err)
				}
				if got := fired(); !slices.EqualFunc(got, tc.fired, slices.Equal) {
					t.Fatalf("fired %v, want %v", got, tc.fired)
				}
				s := b.Stats()
				if s.Refused != tc.refused || s.Dropped != tc.dropped {
					t.Fatalf("stats %+v", s)
				}
				// Every item's outcome is known and never silent.
				switch tc.policy {
				case muster.OverflowFail:
					if r6 != (muster.Result{}) {
						t.Fatal("a refused item got a Result")
					}
					if len(reported) != 1 || reported[0] != "6: "+muster.ErrFull.Error()+" (not taken)" {
						t.Fatalf("hooks saw %q", reported)
					}
				case muster.OverflowDropNewest:
					if err := r6.Wait(context.Background()); !errors.Is(err, muster.ErrDropped) {
						t.Fatalf("dropped item's result: %v", err)
					}
					if len(reported) != 1 || reported[0] != "6: "+muster.ErrDropped.Error()+" (not taken)" {
						t.Fatalf("hooks saw %q", reported)
					}
				case muster.OverflowDropOldest:
					if err := results[4].Wait(context.Background()); !errors.Is(err, muster.ErrDropped) {
						t.Fatalf("oldest item's result: %v", err)
					}
					if err := r6.Wait(context.Background()); err != nil {
						t.Fatalf("newest item's result: %v", err)
					}
					if len(reported) != 1 || reported[0] != "4: "+muster.ErrDropped.Error()+" (taken)" {
						t.Fatalf("hooks saw %q", reported)
					}
				}
				for i, r := range results {
					if tc.policy == muster.OverflowDropOldest && i == 4 {
						continue
					}
					if err := r.Err(); err != nil {
						t.Fatalf("item %d: %v", i, err)
					}
				}
			})
		})
	}
}

// DropOldest with nothing queued behind the waiting batch drops the newest.
func TestOverflowDropOldestNoQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, release, fired := holdBatcher(t, 0, muster.OverflowDropOldest, nil)
		for i := range 5 {
			if err := b.Add(context.Background(), i); err != nil {
				t.Fatal(err)
			}
		}
		close(release)
		_ = b.Stop()
		if got := fired(); !slices.EqualFunc(got, [][]int{{0, 1}, {2, 3}}, slices.Equal) {
			t.Fatalf("fired %v", got)
		}
		if s := b.Stats(); s.Refused != 1 || s.Dropped != 0 || s.Added != 4 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A waiting batch emptied by DropOldest is never fired.
func TestOverflowDropOldestEmptiesWaitingBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b, release, fired := holdBatcher(t, 2, muster.OverflowDropOldest, nil)
		// [0 1] in flight, [2 3] and [4 5] waiting; 6 drops 4; 7 drops 5,
		// emptying its batch, and closes [6 7]; 8 drops 6.
		for i := range 9 {
			_ = b.Add(context.Background(), i)
		}
		close(release)
		_ = b.Stop()
		if got := fired(); !slices.EqualFunc(got, [][]int{{0, 1}, {2, 3}, {7}, {8}}, slices.Equal) {
			t.Fatalf("fired %v", got)
		}
		if s := b.Stats(); s.Dropped != 3 || s.Added != 9 || s.Fired != 4 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestClientRejectsDropOldest(t *testing.T) {
	c := &muster.Client{MaxBatchSize: 1, Overflow: muster.OverflowDropOldest, BatchMaker: (&recorder{}).maker}
	if err := c.Start(); !errors.Is(err, muster.ErrInvalidConfig) {
		t.Fatalf("Start: %v", err)
	}
}

// Issue 9 (c): under OverflowDropOldest a batch keeps its age when its only
// item is dropped: the item added at 0 is dropped at 50ms by a new one, and
// the batch (holding the new item) still fires at 100ms, with Age 100ms, not
// 100ms after the new item.
func TestDropOldestKeepsBatchAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var fires []muster.FireInfo
		var firedItems [][]int
		release := make(chan struct{})
		b := &muster.Batcher[int]{MaxBatchSize: 2, BatchTimeout: 100 * time.Millisecond, MaxConcurrentBatches: 1, PendingWorkCapacity: 1,
			Overflow: muster.OverflowDropOldest,
			Hooks: &muster.Hooks{Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				mu.Lock()
				defer mu.Unlock()
				fires = append(fires, info)
				return nil
			}},
			Fire: func(ctx context.Context, items []int) error {
				if items[0] == 0 {
					<-release
				}
				mu.Lock()
				defer mu.Unlock()
				firedItems = append(firedItems, slices.Clone(items))
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for i := range 4 { // [0 1] in flight, [2 3] waiting for the slot
			if err := b.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		r4, err := b.AddResult(ctx, 4) // at 0: the capacity (1) is used up
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		r5, err := b.AddResult(ctx, 5) // at 50ms: drops 4, the batch's only item, and takes its place
		if err != nil {
			t.Fatal(err)
		}
		if s := b.Stats(); s.Dropped != 1 || s.Added != 6 || s.Pending != 5 {
			t.Fatalf("stats %+v", s)
		}
		time.Sleep(10 * time.Millisecond)
		close(release) // at 60ms: [0 1] done, [2 3] fires and is done
		synctest.Wait()
		time.Sleep(40*time.Millisecond - 1)
		synctest.Wait()
		mu.Lock()
		if len(fires) != 2 {
			t.Fatalf("at 100ms-1ns: %d batches fired, want 2", len(fires))
		}
		mu.Unlock()
		time.Sleep(1)
		synctest.Wait()
		mu.Lock()
		if len(fires) != 3 {
			t.Fatalf("at 100ms: %d batches fired, want 3", len(fires))
		}
		f := fires[2]
		if f.Age != 100*time.Millisecond || f.Trigger != muster.TriggerTimeout || f.Size != 1 || f.Start.Sub(start) != 100*time.Millisecond {
			t.Errorf("the batch of 5 fired %+v, want at 100ms, Age 100ms, timeout", f)
		}
		mu.Unlock()
		if err := r4.Wait(ctx); !errors.Is(err, muster.ErrDropped) {
			t.Errorf("4: %v, want ErrDropped", err)
		}
		if err := r5.Wait(ctx); err != nil {
			t.Errorf("5: %v", err)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if want := [][]int{{0, 1}, {2, 3}, {5}}; !slices.EqualFunc(firedItems, want, slices.Equal) {
			t.Errorf("fired %v, want %v", firedItems, want)
		}
	})
}

// Issue 9 (g): a Sizer that panics refuses its item with a *PanicError
// under OverflowDropOldest too, without touching the lock: later calls do
// not hang, and the Sizer is called once per item, never under the lock's
// drop path.
func TestSizerPanicUnderDropOldest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		calls := map[int]int{}
		release := make(chan struct{})
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxBatchBytes: 100, MaxConcurrentBatches: 1, PendingWorkCapacity: 1,
			Overflow: muster.OverflowDropOldest,
			Sizer: func(v int) int {
				mu.Lock()
				calls[v]++
				mu.Unlock()
				if v == 13 {
					panic("bad size")
				}
				return 1
			},
			Fire: func(ctx context.Context, items []int) error {
				if items[0] == 0 {
					<-release
				}
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for i := range 5 { // [0 1] in flight, [2 3] waiting, [4] queued: full
			if err := b.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		for range 3 {
			if err := b.Add(ctx, 13); !isPanic(err) {
				t.Fatalf("a panicking Sizer: %v, want a *PanicError", err)
			}
		}
		done := make(chan error)
		go func() { done <- b.Add(ctx, 5) }() // drops 4
		synctest.Wait()
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("Add after a Sizer panic hangs")
		}
		close(release)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if s := b.Stats(); s.Added != 6 || s.Dropped != 1 || s.Refused != 3 || s.Fired != 3 {
			t.Errorf("stats %+v", s)
		}
		mu.Lock()
		defer mu.Unlock()
		for v, n := range calls {
			if v != 13 && n != 1 || v == 13 && n != 3 {
				t.Errorf("Sizer called %d times for %d", n, v)
			}
		}
	})
}

// Under OverflowDropOldest, an item that cannot be taken anyway (its key is
// new and every live key holds something) is refused without dropping the
// oldest queued item for it.
func TestDropOldestNotForARefusedKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var log keyedLog
		fire := log.fire(time.Now())
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 1,
			MaxKeys: 2, Overflow: muster.OverflowDropOldest,
			Fire: func(ctx context.Context, items []kitem) error {
				if items[0].v == 1 {
					<-release
				}
				return fire(ctx, items)
			}}
		startKeyed(t, k)
		ctx := context.Background()
		// [a1 a2] in flight, [b3 b4] waiting, [a5] open: the capacity is used up.
		for _, it := range []kitem{{"a", 1}, {"a", 2}, {"b", 3}, {"b", 4}, {"a", 5}} {
			if err := k.Add(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		r5 := k.Stats()
		if err := k.Add(ctx, kitem{"c", 6}); !errors.Is(err, muster.ErrTooManyKeys) {
			t.Fatalf("a third key: %v, want ErrTooManyKeys", err)
		}
		if s := k.Stats(); s.Dropped != 0 || s.Pending != r5.Pending {
			t.Errorf("stats %+v: an item was dropped for one refused", s)
		}
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		got := log.get(t)
		slices.SortFunc(got, func(x, y keyedBatch) int { return x.items[0] - y.items[0] })
		if want := "[{a [1 2] 0} {b [3 4] 0} {a [5] 0}]"; fmt.Sprint(got) != want {
			t.Errorf("fired %v, want %v", got, want)
		}
	})
}

// Under OverflowDropOldest an item of one key can drop the only item of
// another key's open batch. That batch, emptied, never fires: it is
// discarded at its deadline, and the dropped item's Result is done then,
// with ErrDropped (not before: a dropped item's Result is done when the
// batch it left is).
func TestDropOldestEmptiedOpenBatchDiscarded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var log keyedLog
		start := time.Now()
		fire := log.fire(start)
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, BatchTimeout: 100 * time.Millisecond, MaxConcurrentBatches: 1,
			PendingWorkCapacity: 1, Overflow: muster.OverflowDropOldest,
			Fire: func(ctx context.Context, items []kitem) error {
				if items[0].key == "x" {
					<-release
				}
				return fire(ctx, items)
			}}
		startKeyed(t, k)
		ctx := context.Background()
		for _, it := range []kitem{{"x", 1}, {"x", 2}, {"y", 3}, {"y", 4}} { // [x1 x2] in flight, [y3 y4] waiting
			if err := k.Add(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		r5, err := k.AddResult(ctx, kitem{"a", 5}) // at 0: a's batch opens; the capacity is used up
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
		r6, err := k.AddResult(ctx, kitem{"b", 6}) // drops a5: a's batch is empty
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50*time.Millisecond - 1)
		synctest.Wait()
		select {
		case <-r5.Done():
			t.Fatal("the dropped item's Result is done before its batch is")
		default:
		}
		time.Sleep(1) // 100ms: a's batch, empty, is discarded
		synctest.Wait()
		select {
		case <-r5.Done():
		default:
			t.Fatal("at 100ms the emptied batch was not discarded")
		}
		if err := r5.Err(); !errors.Is(err, muster.ErrDropped) {
			t.Fatalf("a5: %v, want ErrDropped", err)
		}
		if s := k.Stats(); s.Dropped != 1 || s.Fired != 1 || s.Pending != 5 {
			t.Fatalf("stats %+v", s)
		}
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := r6.Err(); err != nil {
			t.Fatalf("b6: %v", err)
		}
		got := log.get(t)
		if want := "[{x [1 2] 100000000} {y [3 4] 100000000} {b [6] 100000000}]"; fmt.Sprint(got) != want {
			t.Errorf("fired %v, want %v", got, want)
		}
	})
}

// TestDropOldestEmptiedOpenBatchWithoutTimeout: with no BatchTimeout there
// is no age to keep, so an open batch emptied by a drop is discarded at
// once: the dropped item's Result is done, and its key holds nothing.
func TestDropOldestEmptiedOpenBatchWithoutTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1,
			PendingWorkCapacity: 1, Overflow: muster.OverflowDropOldest, MaxKeys: 4,
			Fire: func(ctx context.Context, items []kitem) error {
				if items[0].key == "x" {
					<-release
				}
				return nil
			}}
		startKeyed(t, k)
		ctx := context.Background()
		for _, it := range []kitem{{"x", 1}, {"x", 2}, {"y", 3}, {"y", 4}} { // [x1 x2] in flight, [y3 y4] waiting
			if err := k.Add(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		r5, err := k.AddResult(ctx, kitem{"a", 5}) // a's batch opens; the capacity is used up
		if err != nil {
			t.Fatal(err)
		}
		if _, err := k.AddResult(ctx, kitem{"b", 6}); err != nil { // drops a5: a's batch is empty
			t.Fatal(err)
		}
		select {
		case <-r5.Done():
			if !errors.Is(r5.Err(), muster.ErrDropped) {
				t.Fatalf("dropped item's Result: %v", r5.Err())
			}
		default:
			t.Fatal("the emptied batch lingers: the dropped item's Result is not done")
		}
		if s := k.Stats(); s.Pending != 5 || s.Dropped != 1 {
			t.Fatalf("stats %+v, want 5 pending (x1 x2 y3 y4 b6), 1 dropped", s)
		}
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// OverflowDropOldest with PendingWorkCapacity 0 on a Keyed: an item in a
// key's open batch when another key's batch began to wait is queued
// (Stats.Queued counts it), and the next item drops it, not itself.
func TestDropOldestZeroCapacityKeyed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		var dead []string
		k := &muster.Keyed[string, string]{Key: func(s string) string { return s[:1] }, MaxBatchSize: 2,
			MaxConcurrentBatches: 1, Overflow: muster.OverflowDropOldest,
			DeadLetter: func(ctx context.Context, items []string, err error) {
				mu.Lock()
				defer mu.Unlock()
				dead = append(dead, items...)
			},
			Fire: func(ctx context.Context, items []string) error { <-release; return nil }}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		for _, it := range []string{"a1", "a2", "b1", "a3", "a4"} { // [a1 a2] in flight, b1 open, [a3 a4] waits
			if err := k.Add(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		if s := k.Stats(); s.Queued != 1 || s.Waiting != 1 {
			t.Fatalf("stats %+v, want 1 item (b1) queued behind the waiting batch", s)
		}
		if err := k.Add(ctx, "c1"); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		got := slices.Clone(dead)
		mu.Unlock()
		if !slices.Equal(got, []string{"b1"}) {
			t.Fatalf("dropped %v, want the older queued item b1", got)
		}
		if s := k.Stats(); s.Queued != 1 || s.Dropped != 1 || s.Refused != 0 || s.Added != 6 {
			t.Fatalf("stats %+v", s)
		}
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}
