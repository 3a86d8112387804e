package muster_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

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

// Shutdown with a context that has already ended, on an idle Client: nothing
// is left, so it returns nil; it must not return before the Stopped hook ran
// (and the Work worker ended).
func TestClientShutdownNilBeforeStopped(t *testing.T) {
	for i := 0; i < 200; i++ {
		var stopped atomic.Bool
		c := &muster.Client{
			MaxBatchSize: 3,
			BatchMaker:   func() muster.Batch { return &listBatch{} },
			Hooks:        &muster.Hooks{Stopped: func(context.Context, muster.ClientInfo) { stopped.Store(true) }},
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := c.Shutdown(ctx)
		if err == nil && !stopped.Load() {
			t.Fatalf("run %d: Shutdown returned nil before the Stopped hook ran", i)
		}
		_ = c.Stop()
	}
}

// At a Shutdown deadline, the last in-flight batch can finish while abort is
// still running the Done hooks of the abandoned batches: the Stopped hook then
// runs (and Stop returns) before those Done hooks.
func TestStoppedBeforeAbandonedDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var order []string
		note := func(s string) { mu.Lock(); order = append(order, s); mu.Unlock() }
		b := &muster.Batcher[int]{
			MaxBatchSize:         1,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  1,
			Fire: func(ctx context.Context, items []int) error {
				<-ctx.Done() // honours the batch context, canceled at the deadline
				return ctx.Err()
			},
			Hooks: &muster.Hooks{
				Done: func(_ context.Context, info muster.DoneInfo) {
					if info.InFlight == 0 { // abandoned: it never held a slot
						time.Sleep(time.Millisecond) // some work in the hook
						note("done(abandoned)")
						return
					}
					note("done(in-flight)")
				},
				Stopped: func(context.Context, muster.ClientInfo) { note("stopped") },
			},
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		_ = b.Add(ctx, 1) // in flight
		_ = b.Add(ctx, 2) // waits for the slot
		synctest.Wait()
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := b.Shutdown(sctx)
		if !errors.Is(err, muster.ErrIncomplete) {
			t.Fatalf("Shutdown = %v", err)
		}
		_ = b.Stop()
		mu.Lock()
		defer mu.Unlock()
		if len(order) == 0 || order[len(order)-1] != "stopped" {
			t.Fatalf("hook order %v: Stopped must come last", order)
		}
	})
}

// A BatchMaker that panics refuses the item with a *PanicError, on both
// paths, and leaves the add lock free: the next item is taken. (It used to
// leave the lock held, wedging the client.)
func TestBatchMakerPanicKeepsLock(t *testing.T) {
	for _, viaWork := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			var refused []error
			c := &muster.Client{
				MaxBatchSize: 1,
				BatchMaker: func() muster.Batch {
					calls++
					if calls == 1 {
						panic("maker")
					}
					return &listBatch{}
				},
				Hooks: &muster.Hooks{Refused: func(ctx context.Context, info muster.AddInfo) {
					refused = append(refused, info.Err)
				}},
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if viaWork {
				c.Work <- "x"
				c.Work <- "y"
			} else {
				if err := c.Add(ctx, "x"); !errors.Is(err, muster.ErrPanic) {
					t.Fatalf("Add with a panicking BatchMaker: %v, want ErrPanic", err)
				}
				if err := c.Add(ctx, "y"); err != nil { // the lock was released
					t.Fatalf("next Add: %v", err)
				}
			}
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			if s := c.Stats(); s.Refused != 1 || s.Added != 1 || s.Fired != 1 {
				t.Fatalf("viaWork=%v: stats %+v", viaWork, s)
			}
			if len(refused) != 1 || !errors.Is(refused[0], muster.ErrPanic) {
				t.Fatalf("viaWork=%v: refusals %v", viaWork, refused)
			}
		})
	}
}

// A Stopped hook that panics does not hang Stop nor crash the program.
func TestStoppedHookPanic(t *testing.T) {
	b := &muster.Batcher[int]{MaxBatchSize: 1, Hooks: &muster.Hooks{Stopped: func(context.Context, muster.ClientInfo) { panic("hook bug") }},
		Fire: func(context.Context, []int) error { return nil }}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	_ = b.Add(context.Background(), 1)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
}

// ShutdownError counts what was not done at the deadline. An in-flight
// batch that gives up as soon as its context is canceled (at the deadline)
// may be done before Shutdown has counted: it must still be counted. Here
// the abandoned batches' Done hooks (run by Shutdown, before it counts) let
// the in-flight batch finish, which used to make the count miss it.
func TestShutdownCountsInFlightAtDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
			Hooks: &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) {
				if info.InFlight == 0 { // abandoned: on Shutdown's goroutine, the test's
					synctest.Wait() // the batch in flight, canceled, is done
				}
			}},
			Fire: func(ctx context.Context, items []int) error {
				<-ctx.Done()
				return context.Cause(ctx)
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 { // [0 1] in flight, [2 3] waiting, [4] open
			_ = b.Add(context.Background(), i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := b.Shutdown(ctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 3 || se.Items != 5 {
			t.Fatalf("Shutdown = %v, want 3 batches, 5 items not done", err)
		}
		if err := b.Shutdown(context.Background()); err != nil { // nothing left in flight
			t.Fatalf("second Shutdown: %v", err)
		}
		if s := b.Stats(); s.Abandoned != 3 || s.Fired != 1 || s.Failed != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}
