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

// holdBatcher starts a Batcher whose batches wait on release, recording what
// fired, with MaxBatchSize 2, one slot and the given capacity and policy.
func holdBatcher(t *testing.T, capacity uint, policy muster.Overflow, hooks *muster.Hooks) (*muster.Batcher[int], chan struct{}, func() [][]int) {
	t.Helper()
	release := make(chan struct{})
	var mu sync.Mutex
	var fired [][]int
	b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: capacity, Overflow: policy, Hooks: hooks,
		Fire: func(ctx context.Context, items []int) error {
			<-release
			mu.Lock()
			defer mu.Unlock()
			fired = append(fired, slices.Clone(items))
			return nil
		}}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	return b, release, func() [][]int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(fired)
	}
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
		t.Run(tc.policy.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var reported []string
				hooks := &muster.Hooks{Added: func(info muster.AddInfo) {
					if info.Err != nil {
						mu.Lock()
						reported = append(reported, fmt.Sprint(info.Ctx.Value("item"), ": ", info.Err))
						mu.Unlock()
					}
				}, KeepItemContexts: true}
				b, release, fired := holdBatcher(t, 2, tc.policy, hooks)
				var results []*muster.Result
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
					if r6 != nil {
						t.Fatal("a refused item got a Result")
					}
					if len(reported) != 1 || reported[0] != "6: "+muster.ErrFull.Error() {
						t.Fatalf("hooks saw %q", reported)
					}
				case muster.OverflowDropNewest:
					if err := r6.Wait(context.Background()); !errors.Is(err, muster.ErrDropped) {
						t.Fatalf("dropped item's result: %v", err)
					}
					if len(reported) != 1 || reported[0] != "6: "+muster.ErrDropped.Error() {
						t.Fatalf("hooks saw %q", reported)
					}
				case muster.OverflowDropOldest:
					if err := results[4].Wait(context.Background()); !errors.Is(err, muster.ErrDropped) {
						t.Fatalf("oldest item's result: %v", err)
					}
					if err := r6.Wait(context.Background()); err != nil {
						t.Fatalf("newest item's result: %v", err)
					}
					if len(reported) != 1 || reported[0] != "4: "+muster.ErrDropped.Error() {
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

func TestBytesTrigger(t *testing.T) {
	var mu sync.Mutex
	var fired [][]string
	var triggers []muster.Trigger
	b := &muster.Batcher[string]{MaxBatchSize: 10, MaxBatchBytes: 10, MaxConcurrentBatches: 1,
		Sizer: func(s string) int { return len(s) },
		Hooks: &muster.Hooks{Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			triggers = append(triggers, info.Trigger)
			return nil
		}},
		Fire: func(ctx context.Context, items []string) error {
			mu.Lock()
			defer mu.Unlock()
			fired = append(fired, slices.Clone(items))
			return nil
		}}
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
	_ = b.Stop()
	want := [][]string{{"aaaa", "bbbb"}, {"ccc"}, {"dddddddddd"}, {"e", "ff"}}
	if !slices.EqualFunc(fired, want, slices.Equal) {
		t.Fatalf("fired %q, want %q", fired, want)
	}
	wantT := []muster.Trigger{muster.TriggerBytes, muster.TriggerBytes, muster.TriggerBytes, muster.TriggerShutdown}
	if !slices.Equal(triggers, wantT) {
		t.Fatalf("triggers %v, want %v", triggers, wantT)
	}
	if s := b.Stats(); s.Refused != 1 || s.Added != 6 {
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

func TestAddResultOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errBad := errors.New("row rejected")
		b := &muster.Batcher[int]{MaxBatchSize: 4, BatchTimeout: time.Second,
			Fire: func(ctx context.Context, items []int) error {
				if items[len(items)-1] >= 100 {
					return errors.New("whole batch failed")
				}
				errs := make([]error, len(items))
				failed := false
				for i, v := range items {
					if v%3 == 0 {
						errs[i], failed = fmt.Errorf("item %d: %w", v, errBad), true
					}
				}
				if failed {
					return &muster.ItemErrors{Errs: errs}
				}
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		res := map[int]*muster.Result{}
		for _, v := range []int{1, 2, 3, 4, 100, 101} {
			r, err := b.AddResult(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			res[v] = r
			if v == 2 {
				_ = b.Add(ctx, 6) // fire-and-forget items mix with result items
			}
		}
		// [1 2 6 3] fired (3 and 6 fail alone); [4 100 101] waits for its timeout.
		wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if err := res[100].Wait(wctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait before the batch is done: %v", err)
		}
		if res[100].Err() != nil {
			t.Fatal("Err before done is not nil")
		}
		for v, want := range map[int]error{1: nil, 2: nil, 3: errBad} {
			if err := res[v].Wait(ctx); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Errorf("item %d: %v, want %v", v, err, want)
			}
		}
		for _, v := range []int{4, 101} {
			if err := res[v].Wait(ctx); err == nil || err.Error() != "whole batch failed" {
				t.Errorf("item %d: %v", v, err)
			}
		}
		_ = b.Stop()
		if _, err := b.AddResult(ctx, 7); !errors.Is(err, muster.ErrStopped) {
			t.Fatalf("AddResult after Stop: %v", err)
		}
		var ie *muster.ItemErrors = &muster.ItemErrors{Errs: []error{nil, errBad, nil, errBad}}
		if ie.Failed() != 2 || !errors.Is(ie, errBad) || ie.Error() != "muster: 2 of 4 items failed: row rejected" {
			t.Fatalf("ItemErrors: %d %v", ie.Failed(), ie)
		}
	})
}

func TestAddResultAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &muster.Batcher[int]{MaxBatchSize: 1, MaxConcurrentBatches: 1, PendingWorkCapacity: 5,
			Fire: func(ctx context.Context, items []int) error { <-ctx.Done(); return context.Cause(ctx) }}
		_ = b.Start()
		r1, _ := b.AddResult(context.Background(), 1)
		r2, _ := b.AddResult(context.Background(), 2)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
		_ = b.Stop()
		for _, r := range []*muster.Result{r1, r2} {
			if err := r.Wait(context.Background()); !errors.Is(err, muster.ErrIncomplete) {
				t.Fatalf("result at a shutdown deadline: %v", err)
			}
		}
	})
}
