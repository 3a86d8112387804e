package muster

import (
	"context"
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
