package muster

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
)

// TestLaunchedBatchesFireAtOnce: without MaxConcurrentBatches, every batch
// admitted fires at once, even while every other Fire waits for all of them
// to begin: a batch no free batch goroutine takes has a new goroutine of its
// own (see run). One batch at a time (MaxBatchSize 1), and many at once (a
// Flush closing a batch of each key). A batch left waiting deadlocks the
// bubble.
func TestLaunchedBatchesFireAtOnce(t *testing.T) {
	const n = 40
	synctest.Test(t, func(t *testing.T) {
		var all sync.WaitGroup
		all.Add(n)
		b := &Batcher[int]{MaxBatchSize: 1, Fire: func(context.Context, []int) error {
			all.Done()
			all.Wait()
			return nil
		}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := b.Add(t.Context(), i); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		var all sync.WaitGroup
		all.Add(n)
		k := &Keyed[int, int]{Key: func(v int) int { return v }, MaxBatchSize: 2, MaxKeys: n,
			Fire: func(context.Context, []int) error {
				all.Done()
				all.Wait()
				return nil
			}}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if err := k.Add(t.Context(), i); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestNewBatchGoroutineWithNothingExits: a batch goroutine that finds no
// batch to take before it has run one (another goroutine took the batch it
// was started for) exits instead of parking, so that only goroutines whose
// stacks batches have grown park.
func TestNewBatchGoroutineWithNothingExits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := &Batcher[int]{MaxBatchSize: 1, Fire: func(context.Context, []int) error { return nil }}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the batch's goroutine ran it and parked
		e := b.e
		e.fmu.Lock()
		parked := len(e.parked)
		e.fmu.Unlock()
		if parked != 1 {
			t.Fatalf("%d goroutines parked after one batch, want 1", parked)
		}
		go e.run() // as launch starts one for a batch another goroutine takes
		synctest.Wait()
		e.fmu.Lock()
		parked = len(e.parked)
		e.fmu.Unlock()
		if parked != 1 {
			t.Fatalf("%d goroutines parked, want 1: the goroutine that took no batch parked", parked)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestUnstartedBatchOutlivesAbort: a batch admitted and queued in unstarted
// whose goroutine has not begun yet (it fell behind) is in flight: Stop
// waits for it, and a Shutdown deadline counts it in flight instead of
// abandoning it; the late goroutine still runs it exactly once, with the
// canceled context, and the client then stops. The test queues the batch
// as launch does, and starts its goroutine when it chooses.
func TestUnstartedBatchOutlivesAbort(t *testing.T) {
	for _, deadline := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			var fired []error
			b := &Batcher[int]{MaxBatchSize: 10, Fire: func(ctx context.Context, items []int) error {
				fired = append(fired, context.Cause(ctx))
				return nil
			}}
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			if err := b.Add(t.Context(), 1); err != nil {
				t.Fatal(err)
			}
			e := b.e
			var l launches[struct{}, int]
			e.mu.Lock()
			e.fmu.Lock()
			e.closeLocked(e.single.cur, TriggerFlush, &l)
			if l.one == nil || l.oneTo != nil || l.more != nil {
				t.Fatalf("launches %+v: want one batch for a new goroutine", l)
			}
			e.unstarted.pushBack(l.one) // as launch does, before its go e.run()
			e.fmu.Unlock()
			e.mu.Unlock()

			done := make(chan error, 1)
			ctx := context.Background()
			if deadline {
				c, cancel := context.WithCancel(ctx)
				cancel()
				ctx = c
			}
			go func() { done <- b.Shutdown(ctx) }()
			synctest.Wait()
			if deadline {
				var se *ShutdownError
				if err := <-done; !errors.As(err, &se) || se.Batches != 1 || se.Items != 1 {
					t.Fatalf("Shutdown at the deadline: %v", err)
				}
			} else {
				select {
				case err := <-done:
					t.Fatalf("Stop returned %v with a batch queued in unstarted", err)
				default:
				}
			}
			go e.run() // the goroutine launch started, late
			if !deadline {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Stop(); err != nil {
				t.Fatal(err)
			}
			if len(fired) != 1 || deadline != errors.Is(fired[0], ErrIncomplete) {
				t.Fatalf("fired %d times, causes %v", len(fired), fired)
			}
			s := b.Stats()
			if s.Fired != 1 || s.Done != 1 || s.Abandoned != 0 || s.InFlight != 0 {
				t.Fatalf("stats %+v", s)
			}
			e.fmu.Lock()
			defer e.fmu.Unlock()
			if e.unstarted.head != nil || len(e.parked) != 0 {
				t.Fatalf("after Stop: unstarted %v, %d parked", e.unstarted.head, len(e.parked))
			}
		})
	}
}

// TestUnstartedTakenInOrder: batches queued in unstarted while their
// goroutines fall behind are taken oldest first, each once, by whichever
// goroutine comes first: here one goroutine runs all three in turn (it
// takes the next before it parks), and the two launched for the others
// find nothing and exit. Stop then ends the one parked goroutine.
func TestUnstartedTakenInOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fired [][]int
		b := &Keyed[int, int]{Key: func(v int) int { return v }, MaxBatchSize: 10, Fire: func(_ context.Context, items []int) error {
			fired = append(fired, append([]int(nil), items...))
			return nil
		}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		e := b.e
		for _, v := range []int{3, 1, 2} {
			if err := b.Add(t.Context(), v); err != nil {
				t.Fatal(err)
			}
			var l launches[int, int]
			e.mu.Lock()
			e.fmu.Lock()
			e.closeLocked(e.keys[v].cur, TriggerFlush, &l)
			e.unstarted.pushBack(l.one) // as launch does, before its go e.run()
			e.fmu.Unlock()
			e.mu.Unlock()
		}
		go e.run()
		synctest.Wait()
		go e.run()
		go e.run()
		synctest.Wait()
		if len(fired) != 3 || fired[0][0] != 3 || fired[1][0] != 1 || fired[2][0] != 2 {
			t.Fatalf("fired %v, want [[3] [1] [2]]", fired)
		}
		e.fmu.Lock()
		parked, head := len(e.parked), e.unstarted.head
		e.fmu.Unlock()
		if parked != 1 || head != nil {
			t.Fatalf("%d goroutines parked (want 1), unstarted %v", parked, head)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if s := b.Stats(); s.Fired != 3 || s.Done != 3 {
			t.Fatalf("stats %+v", s)
		}
	})
}
