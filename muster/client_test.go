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

// The seed's shopping-list example, deterministic under synctest.
func TestSeedExampleTimeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		c := &muster.Client{MaxBatchSize: 3, BatchTimeout: 20 * time.Millisecond, PendingWorkCapacity: 100, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"milk", "yogurt", "butter", "bread", "bagels"} {
			c.Work <- s
		}
		synctest.Wait()
		if got := len(r.snapshot()); got != 1 {
			t.Fatalf("before the timeout: %d batches, want 1", got)
		}
		time.Sleep(20*time.Millisecond - time.Nanosecond)
		synctest.Wait()
		if got := len(r.snapshot()); got != 1 {
			t.Fatalf("1ns before the timeout: %d batches, want 1", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		c.Work <- "cheese"
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, r.snapshot(),
			[]any{"milk", "yogurt", "butter"}, []any{"bread", "bagels"}, []any{"cheese"})
	})
}

func TestFireRunsOnItsOwnGoroutineUntilDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		// Fire holds its batch open, yet the producer that filled it returns.
		_ = c.Add(ctx, 1)
		_ = c.Add(ctx, 2)
		_ = c.Add(ctx, 3)
		_ = c.Add(ctx, 4) // closes batch 2, which must wait: batch 1 is in flight
		synctest.Wait()
		if n := len(r.snapshot()); n != 1 {
			t.Fatalf("%d batches fired with one slot held, want 1", n)
		}
		if s := c.Stats(); s.InFlight != 1 || s.Waiting != 1 || s.Pending != 4 || s.Fired != 1 {
			t.Fatalf("stats %+v", s)
		}
		r.release()
		synctest.Wait()
		equalBatches(t, r.snapshot(), items(1, 2), items(3, 4))
		r.release()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if r.maxInflight != 1 {
			t.Fatalf("max in flight %d, want 1", r.maxInflight)
		}
	})
}

func TestClientFireContextAndDoneWith(t *testing.T) {
	type key struct{}
	var got error
	r := &recorder{fireErr: errors.New("downstream said no")}
	c := &muster.Client{MaxBatchSize: 1, BatchMaker: r.maker,
		BaseContext: func() context.Context { return context.WithValue(context.Background(), key{}, "base") },
		Hooks:       &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) { got = info.Err }}}
	_ = c.Start()
	c.Work <- 1
	_ = c.Stop()
	if got == nil || got.Error() != "downstream said no" {
		t.Fatalf("DoneWith error not seen by hooks: %v", got)
	}
	if v := r.ctxs[0].Value(key{}); v != "base" {
		t.Fatalf("FireContext got ctx value %v, want base", v)
	}
	if s := c.Stats(); s.Failed != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// batchFunc2 is a Batch of two functions.
type batchFunc2 struct {
	add  func(any)
	fire func(muster.Notifier)
}

func (b batchFunc2) Add(item any)           { b.add(item) }
func (b batchFunc2) Fire(n muster.Notifier) { b.fire(n) }

// A Client's Middleware sees each batch's items as a slice. Its first call
// to the FireFunc it wraps fires the Batch that received the items; each
// later call fires a fresh Batch from BatchMaker holding the items it is
// given (all of them, or a subset), and waits for its Done.
func TestClientMiddleware(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		made := 0
		var fires []string
		errBusy := errors.New("busy")
		maker := func() muster.Batch {
			mu.Lock()
			defer mu.Unlock()
			made++
			id := made
			var items []any
			return batchFunc2{
				add: func(item any) { items = append(items, item) },
				fire: func(n muster.Notifier) {
					mu.Lock()
					fires = append(fires, fmt.Sprint("batch ", id, " ", items))
					mu.Unlock()
					if id == 1 {
						go muster.DoneWith(n, errBusy) // Done from another goroutine
						return
					}
					n.Done()
				},
			}
		}
		var calls [][]any
		mw := func(next muster.FireFunc[any]) muster.FireFunc[any] {
			return func(ctx context.Context, items []any) error {
				calls = append(calls, slices.Clone(items))
				if err := next(ctx, items); !errors.Is(err, errBusy) {
					return fmt.Errorf("first attempt: %v, want errBusy", err)
				}
				if err := next(ctx, items[1:]); err != nil { // retry a subset
					return err
				}
				return next(ctx, items) // and all of them again
			}
		}
		var doneErr error
		c := &muster.Client{MaxBatchSize: 3, BatchMaker: maker, Middleware: mw,
			Hooks: &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) { doneErr = info.Err }}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		c.Work <- 0
		synctest.Wait() // the worker took 0
		r1, _ := c.AddResult(ctx, 1)
		c.Work <- 2 // fills the batch
		synctest.Wait()
		if err := r1.Wait(ctx); err != nil {
			t.Fatalf("result: %v", err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		want := []string{"batch 1 [0 1 2]", "batch 2 [1 2]", "batch 3 [0 1 2]"}
		if !slices.Equal(fires, want) || made != 3 || doneErr != nil {
			t.Fatalf("fires %q (want %q), %d batches made, Done saw %v", fires, want, made, doneErr)
		}
		if len(calls) != 1 || !slices.Equal(calls[0], items(0, 1, 2)) {
			t.Fatalf("middleware calls %v", calls)
		}
		if s := c.Stats(); s.Fired != 1 || s.Done != 1 || s.Failed != 0 || s.Added != 3 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A Client's Middleware that changes the items on its first call (here: a
// new slice of the same length) has its changed items fired, in a fresh
// Batch: the Batch that received the originals is not fired with them.
func TestClientMiddlewareChangesItems(t *testing.T) {
	for _, inPlace := range []bool{false, true} {
		var mu sync.Mutex
		var fired [][]any
		made := 0
		maker := func() muster.Batch {
			mu.Lock()
			made++
			mu.Unlock()
			var items []any
			return batchFunc2{
				add: func(item any) { items = append(items, item) },
				fire: func(n muster.Notifier) {
					mu.Lock()
					fired = append(fired, items)
					mu.Unlock()
					n.Done()
				},
			}
		}
		double := func(next muster.FireFunc[any]) muster.FireFunc[any] {
			return func(ctx context.Context, items []any) error {
				out := items
				if !inPlace {
					out = make([]any, len(items))
				}
				for i, it := range items {
					out[i] = it.(int) * 10
				}
				return next(ctx, out)
			}
		}
		c := &muster.Client{MaxBatchSize: 2, BatchMaker: maker, Middleware: double}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		c.Work <- 1
		c.Work <- 2
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if len(fired) != 1 || !slices.Equal(fired[0], items(10, 20)) || made != 2 {
			t.Fatalf("in place %v: fired %v with %d Batches made, want [[10 20]] from a fresh Batch", inPlace, fired, made)
		}
	}
}

// TestWorkLongRuns sends more items through a buffered Work than the worker
// takes under one lock, many times over: every item sent is fired, once. (The
// worker once lost the item it had taken from Work when its run ended.)
func TestWorkLongRuns(t *testing.T) {
	for round := range 20 {
		r := &recorder{}
		c := &muster.Client{MaxBatchSize: 100, BatchTimeout: time.Hour, PendingWorkCapacity: 1024, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		const n = 3000
		for i := range n {
			c.Work <- i
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		seen := make(map[any]int)
		for _, b := range r.snapshot() {
			for _, it := range b {
				seen[it]++
			}
		}
		if len(seen) != n {
			t.Fatalf("round %d: %d distinct items fired, want %d", round, len(seen), n)
		}
		for it, k := range seen {
			if k != 1 {
				t.Fatalf("round %d: item %v fired %d times", round, it, k)
			}
		}
	}
}
