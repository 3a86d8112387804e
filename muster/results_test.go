package muster_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

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
		res := map[int]muster.Result{}
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
		if len(ie.Unwrap()) != 2 || !errors.Is(ie, errBad) || ie.Error() != "muster: 2 of 4 items failed: row rejected" {
			t.Fatalf("ItemErrors: %d %v", len(ie.Unwrap()), ie)
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
		for _, r := range []muster.Result{r1, r2} {
			if err := r.Wait(context.Background()); !errors.Is(err, muster.ErrIncomplete) {
				t.Fatalf("result at a shutdown deadline: %v", err)
			}
		}
	})
}

// Results stay aligned with the items once items were dropped from the
// front of a batch under OverflowDropOldest, even when the batch's first
// AddResult item joined after a drop: an *ItemErrors failure reaches the
// item it names, and only that one.
func TestResultsAlignedAfterDrops(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errBad := errors.New("bad")
		release := make(chan struct{})
		b := &muster.Batcher[int]{MaxBatchSize: 3, MaxConcurrentBatches: 1, PendingWorkCapacity: 2, Overflow: muster.OverflowDropOldest,
			Fire: func(ctx context.Context, items []int) error {
				if items[0] == 0 {
					<-release
				}
				errs := make([]error, len(items))
				failed := false
				for i, v := range items {
					if v%2 == 0 && v >= 6 {
						errs[i], failed = fmt.Errorf("%d: %w", v, errBad), true
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
		for i := range 8 { // [0 1 2] in flight, [3 4 5] waiting, [6 7] open: full
			if err := b.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		res := map[int]muster.Result{}
		for _, v := range []int{8, 9, 10} { // each drops the oldest of the open batch: 6, 7, then 8
			r, err := b.AddResult(ctx, v)
			if err != nil {
				t.Fatal(err)
			}
			res[v] = r
		}
		close(release)
		if err := b.Stop(); err != nil { // fires [9 10]: 10 fails alone
			t.Fatal(err)
		}
		for v, want := range map[int]error{8: muster.ErrDropped, 9: nil, 10: errBad} {
			if err := res[v].Err(); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Errorf("item %d: %v, want %v", v, err, want)
			}
		}
		if s := b.Stats(); s.Dropped != 3 || s.Failed != 1 {
			t.Errorf("stats %+v", s)
		}
	})
}

// An item sent on Work joins a batch that already holds an AddResult item:
// the Results must stay index-aligned with the Batch's items, so that an
// *ItemErrors fails only the item it names.
func TestClientResultsAlignedWithWorkItems(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &muster.Client{
			MaxBatchSize: 3,
			BatchMaker:   func() muster.Batch { return &listBatch{} },
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		r0, err := c.AddResult(ctx, "good0")
		if err != nil {
			t.Fatal(err)
		}
		c.Work <- "bad" // taken by the worker (addRun)
		synctest.Wait()
		r2, err := c.AddResult(ctx, "good2") // fills the batch: it fires
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if err := r0.Wait(ctx); err != nil {
			t.Errorf("r0 (good item) = %v, want nil", err)
		}
		if err := r2.Wait(ctx); err != nil {
			t.Errorf("r2 (good item) = %v, want nil", err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}
