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

func TestStartValidates(t *testing.T) {
	r := &recorder{}
	if err := (&muster.Client{BatchMaker: r.maker}).Start(); !errors.Is(err, muster.ErrZeroBoth) {
		t.Fatalf("both zero: %v, want ErrZeroBoth", err)
	}
	if err := (&muster.Client{MaxBatchSize: 1}).Start(); !errors.Is(err, muster.ErrInvalidConfig) {
		t.Fatalf("nil BatchMaker: %v, want ErrInvalidConfig", err)
	}
	if err := (&muster.Batcher[int]{MaxBatchSize: 1}).Start(); !errors.Is(err, muster.ErrInvalidConfig) {
		t.Fatalf("nil Fire: %v, want ErrInvalidConfig", err)
	}
	if err := (&muster.Batcher[int]{Fire: func(context.Context, []int) error { return nil }}).Start(); !errors.Is(err, muster.ErrZeroBoth) {
		t.Fatalf("Batcher both zero: %v, want ErrZeroBoth", err)
	}
	for _, capacity := range []uint{0, 7} {
		c := &muster.Client{MaxBatchSize: 2, PendingWorkCapacity: capacity, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if cap(c.Work) != int(capacity) {
			t.Fatalf("cap(Work) = %d, want %d", cap(c.Work), capacity)
		}
		if err := c.Start(); !errors.Is(err, muster.ErrAlreadyStarted) {
			t.Fatalf("second Start: %v", err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNotStarted(t *testing.T) {
	var c muster.Client
	ctx := context.Background()
	for name, err := range map[string]error{
		"Add": c.Add(ctx, 1), "Flush": c.Flush(ctx), "Stop": c.Stop(), "Shutdown": c.Shutdown(ctx),
	} {
		if !errors.Is(err, muster.ErrNotStarted) {
			t.Errorf("%s before Start: %v, want ErrNotStarted", name, err)
		}
	}
	var b muster.Batcher[int]
	if err := b.Add(ctx, 1); !errors.Is(err, muster.ErrNotStarted) {
		t.Errorf("Batcher.Add before Start: %v", err)
	}
}

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

// At MaxConcurrentBatches in flight, a full batch waits, nothing drains Work,
// and producers block once PendingWorkCapacity is used up.
func TestBackpressureWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 3, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 4 { // batch 1 in flight, batch 2 waiting for the slot
			c.Work <- i
		}
		synctest.Wait()
		for i := 4; i < 7; i++ { // fills Work's buffer
			c.Work <- i
		}
		synctest.Wait()
		if len(c.Work) != 3 {
			t.Fatalf("len(Work) = %d: the worker drained Work while a batch waited", len(c.Work))
		}
		if q := c.Stats().Queued; q != 3 {
			t.Fatalf("Queued = %d, want 3", q)
		}
		sent := make(chan struct{})
		go func() { c.Work <- 7; close(sent) }()
		synctest.Wait()
		select {
		case <-sent:
			t.Fatal("a producer was not blocked with Work full")
		default:
		}
		r.release() // batch 1 done: batch 2 fires, the worker drains again
		synctest.Wait()
		<-sent
		for len(r.snapshot()) < 4 || r.held != nil {
			r.release()
			synctest.Wait()
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, r.snapshot(), items(0, 1), items(2, 3), items(4, 5), items(6, 7))
	})
}

func TestBackpressureAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var fired [][]int
		var mu sync.Mutex
		var blocked []time.Duration
		var waitErrs []error
		var events []string
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 3,
			Hooks: &muster.Hooks{
				Refused: func(ctx context.Context, info muster.AddInfo) {
					mu.Lock()
					defer mu.Unlock()
					events = append(events, "refused")
				},
				Waited: func(ctx context.Context, info muster.WaitInfo) {
					mu.Lock()
					defer mu.Unlock()
					if info.Reason != muster.WaitBackpressure || info.BatchID != 0 {
						t.Errorf("producer wait %+v", info)
					}
					events = append(events, "waited")
					blocked = append(blocked, info.Duration)
					waitErrs = append(waitErrs, info.Err)
				},
			},
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
		ctx := context.Background()
		for i := range 7 { // [0 1] in flight, [2 3] and [4 5] waiting, [6] open: 3 queued behind the oldest waiting
			if err := b.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		if s := b.Stats(); s.Queued != 3 || s.Pending != 7 || s.InFlight != 1 || s.Waiting != 2 {
			t.Fatalf("stats %+v", s)
		}
		// The next Add blocks until its context ends, and the item is not taken.
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		if err := b.Add(tctx, 99); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Add under backpressure: %v, want DeadlineExceeded", err)
		}
		if time.Since(start) != time.Second {
			t.Fatalf("Add gave up after %v", time.Since(start))
		}
		// A producer blocked in Add resumes when a slot frees.
		done := make(chan error)
		go func() { done <- b.Add(ctx, 7); close(done) }()
		synctest.Wait()
		time.Sleep(3 * time.Second)
		release <- struct{}{} // batch 1 done, batch 2 takes the slot, room again
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(release)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		want := [][]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}}
		if !slices.EqualFunc(fired, want, slices.Equal) {
			t.Fatalf("fired %v, want %v (99 must not be taken)", fired, want)
		}
		// Waited is the one report of backpressure, for an item refused
		// (with why, before Refused) as for one taken.
		if !slices.Equal(blocked, []time.Duration{time.Second, 3 * time.Second}) {
			t.Fatalf("blocked durations reported %v", blocked)
		}
		if len(waitErrs) != 2 || !errors.Is(waitErrs[0], context.DeadlineExceeded) || waitErrs[1] != nil {
			t.Fatalf("Waited errors %v, want [DeadlineExceeded <nil>]", waitErrs)
		}
		if !slices.Equal(events, []string{"waited", "refused", "waited"}) {
			t.Fatalf("hook order %v", events)
		}
		if s := b.Stats(); s.Added != 8 || s.Refused != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestStopFiresPartialAndWaitsForDone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		c := &muster.Client{MaxBatchSize: 10, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		c.Work <- 1
		c.Work <- 2
		stopped := make(chan error)
		go func() { stopped <- c.Stop() }()
		synctest.Wait()
		equalBatches(t, r.snapshot(), items(1, 2))
		select {
		case <-stopped:
			t.Fatal("Stop returned before the batch called Done")
		default:
		}
		if err := c.Add(context.Background(), 3); !errors.Is(err, muster.ErrStopped) {
			t.Fatalf("Add while stopping: %v, want ErrStopped", err)
		}
		r.release()
		if err := <-stopped; err != nil {
			t.Fatal(err)
		}
		// Stop and Shutdown again are harmless.
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.Shutdown(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(context.Background(), 4); !errors.Is(err, muster.ErrStopped) {
			t.Fatalf("Add after Stop: %v, want ErrStopped", err)
		}
		if err := c.Flush(context.Background()); !errors.Is(err, muster.ErrStopped) {
			t.Fatalf("Flush after Stop: %v, want ErrStopped", err)
		}
	})
}

func TestFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var triggers []muster.Trigger
		var mu sync.Mutex
		done := make(chan struct{})
		b := &muster.Batcher[int]{MaxBatchSize: 3, BatchTimeout: time.Hour,
			Hooks: &muster.Hooks{Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				mu.Lock()
				triggers = append(triggers, info.Trigger)
				mu.Unlock()
				return nil
			}},
			Fire: func(ctx context.Context, items []int) error {
				if items[0] == 3 {
					<-done
				}
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := b.Flush(ctx); err != nil { // nothing pending: returns at once
			t.Fatal(err)
		}
		for i := range 5 {
			_ = b.Add(ctx, i)
		}
		flushed := make(chan error)
		go func() { flushed <- b.Flush(ctx) }()
		synctest.Wait()
		select {
		case <-flushed:
			t.Fatal("Flush returned before its batch was done")
		default:
		}
		// A batch closed after Flush began is not waited for.
		for i := 10; i < 13; i++ {
			_ = b.Add(ctx, i)
		}
		close(done)
		if err := <-flushed; err != nil {
			t.Fatal(err)
		}
		// Flush gives up with its context.
		b2 := &muster.Batcher[int]{MaxBatchSize: 3, Fire: func(ctx context.Context, items []int) error { <-ctx.Done(); return ctx.Err() }}
		_ = b2.Start()
		_ = b2.Add(ctx, 1)
		fctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := b2.Flush(fctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Flush with a stuck batch: %v", err)
		}
		sctx, cancel2 := context.WithTimeout(ctx, time.Second)
		defer cancel2()
		_ = b2.Shutdown(sctx)
		_ = b.Stop()
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(triggers) // batches fire on goroutines of their own, in any order
		if !slices.Equal(triggers, []muster.Trigger{muster.TriggerSize, muster.TriggerSize, muster.TriggerFlush}) {
			t.Fatalf("triggers %v", triggers)
		}
	})
}

func TestShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var doneErrs []error
		unfired := 0 // Done hooks of batches that never fired: no Start, no slot
		fireCtx := make(chan context.Context, 1)
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
			Hooks: &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) {
				mu.Lock()
				doneErrs = append(doneErrs, info.Err)
				looksUnfired := info.Start.IsZero() && info.InFlight == 0 && info.SlotWait == 0 && info.Duration == 0
				if info.Abandoned != looksUnfired {
					t.Errorf("Done %+v: Abandoned %v", info, info.Abandoned)
				}
				if info.Abandoned {
					unfired++
				}
				mu.Unlock()
			}},
			Fire: func(ctx context.Context, items []int) error {
				fireCtx <- ctx
				<-ctx.Done() // a downstream that only gives up with the context
				return context.Cause(ctx)
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 { // [0 1] in flight, [2 3] waiting, [4] partial
			_ = b.Add(context.Background(), i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		start := time.Now()
		err := b.Shutdown(ctx)
		if time.Since(start) != 2*time.Second {
			t.Fatalf("Shutdown returned after %v", time.Since(start))
		}
		var se *muster.ShutdownError
		if !errors.As(err, &se) || !errors.Is(err, muster.ErrIncomplete) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		if se.Batches != 3 || se.Items != 5 {
			t.Fatalf("Shutdown says %d batches / %d items left, want 3 / 5", se.Batches, se.Items)
		}
		// The in-flight batch's context is canceled with ErrIncomplete.
		fctx := <-fireCtx
		if !errors.Is(context.Cause(fctx), muster.ErrIncomplete) {
			t.Fatalf("fire ctx cause %v", context.Cause(fctx))
		}
		if err := b.Stop(); err != nil { // waits for the in-flight batch
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(doneErrs) != 3 || unfired != 2 {
			t.Fatalf("%d Done hooks (%d unfired), want 3 (2 abandoned, unfired, + 1 canceled)", len(doneErrs), unfired)
		}
		for _, err := range doneErrs {
			if !errors.Is(err, muster.ErrIncomplete) {
				t.Fatalf("done err %v, want ErrIncomplete", err)
			}
		}
		if s := b.Stats(); s.Abandoned != 3 || s.Fired != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

func TestShutdownDeadlineClientWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		var refused int
		var mu sync.Mutex
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 5, BatchMaker: r.maker,
			Hooks: &muster.Hooks{Refused: func(ctx context.Context, info muster.AddInfo) {
				if errors.Is(info.Err, muster.ErrIncomplete) {
					mu.Lock()
					refused++
					mu.Unlock()
				}
			}}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 9 { // [0 1] in flight, [2 3] waiting, 5 in Work
			c.Work <- i
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := c.Shutdown(ctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 2 || se.Items != 9 {
			t.Fatalf("Shutdown: %v (%+v)", err, se)
		}
		r.release()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, r.snapshot(), items(0, 1))
		mu.Lock()
		defer mu.Unlock()
		if refused != 5 {
			t.Fatalf("%d items in Work reported refused, want 5", refused)
		}
	})
}

func TestFirePanicIsRecovered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var errs []error
		hooks := &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) {
			mu.Lock()
			errs = append(errs, info.Err)
			mu.Unlock()
		}}
		r := &recorder{panicWith: "boom"}
		c := &muster.Client{MaxBatchSize: 1, MaxConcurrentBatches: 1, BatchMaker: r.maker, Hooks: hooks}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		b := &muster.Batcher[int]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Hooks: hooks,
			Fire: func(ctx context.Context, items []int) error { panic(errors.New("kaboom")) }}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 { // with one slot, each panic must release it
			c.Work <- i
			_ = b.Add(context.Background(), i)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if len(errs) != 6 {
			t.Fatalf("%d done hooks, want 6", len(errs))
		}
		for _, err := range errs {
			var pe *muster.PanicError
			if !errors.Is(err, muster.ErrPanic) || !errors.As(err, &pe) || len(pe.Stack) == 0 {
				t.Fatalf("done err %v: want a *PanicError with a stack", err)
			}
		}
		if s := c.Stats(); s.Failed != 3 || s.InFlight != 0 {
			t.Fatalf("client stats %+v", s)
		}
	})
}

func TestBatchAddPanicRefusesItem(t *testing.T) {
	r := &recorder{}
	c := &muster.Client{MaxBatchSize: 2, BatchMaker: func() muster.Batch { return &panickyBatch{recBatch{r: r}} }}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	_ = c.Add(ctx, 1)
	if err := c.Add(ctx, 13); !errors.Is(err, muster.ErrPanic) {
		t.Fatalf("Add of a panicking item: %v", err)
	}
	_ = c.Add(ctx, 2)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	equalBatches(t, r.snapshot(), items(1, 2))
}

func TestDoneTwiceIsHarmless(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var fires, dones int
		var mu sync.Mutex
		c := &muster.Client{MaxBatchSize: 1, MaxConcurrentBatches: 1,
			Hooks: &muster.Hooks{Done: func(context.Context, muster.DoneInfo) { mu.Lock(); dones++; mu.Unlock() }},
			BatchMaker: func() muster.Batch {
				return batchFunc(func(n muster.Notifier) {
					mu.Lock()
					fires++
					mu.Unlock()
					n.Done()
					n.Done() // must not free a second slot or count twice
				})
			}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			c.Work <- i
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if s := c.Stats(); fires != 10 || dones != 10 || s.Done != 10 || s.InFlight != 0 {
			t.Fatalf("fires %d, done hooks %d, stats %+v", fires, dones, s)
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

// On the Work path too, a Batch.Add that panics refuses only its item.
func TestBatchAddPanicOnWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var refused []error
		c := &muster.Client{MaxBatchSize: 2, PendingWorkCapacity: 10, BatchMaker: func() muster.Batch { return &panickyBatch{recBatch{r: r}} },
			Hooks: &muster.Hooks{Refused: func(ctx context.Context, info muster.AddInfo) {
				refused = append(refused, info.Err)
			}}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for _, v := range []int{1, 13, 2, 3, 4} {
			c.Work <- v
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, sorted(r.snapshot()), items(1, 2), items(3, 4))
		if len(refused) != 1 || !errors.Is(refused[0], muster.ErrPanic) {
			t.Fatalf("refusals reported: %v", refused)
		}
		if s := c.Stats(); s.Refused != 1 || s.Added != 4 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// Issue 9 (h): at a Shutdown deadline, ShutdownError.Items counts exactly
// the items not done: those in flight, in abandoned batches, and those Work
// still held (refused with ErrIncomplete; the abort waits for the worker to
// refuse them). The deadline meets the worker at any point of its drain:
// real goroutines, 50 rounds.
func TestShutdownItemsExactWork(t *testing.T) {
	const sent = 9
	for round := range 50 {
		r := &recorder{}
		gate := make(chan struct{}) // a batch fired is done once gate closes
		var refused refusals
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 5, Hooks: &muster.Hooks{Refused: refused.hook},
			BatchMaker: func() muster.Batch {
				rb := &recBatch{r: r}
				return batchFunc2{add: rb.Add, fire: func(n muster.Notifier) { <-gate; rb.Fire(n) }}
			}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range sent { // at least 4 taken by the worker, up to 5 in Work
			c.Work <- i
		}
		ctx, cancel := context.WithCancel(context.Background())
		if round%2 == 0 {
			cancel() // already over
		} else {
			go cancel() // ends while Shutdown runs
		}
		err := c.Shutdown(ctx)
		cancel()
		var se *muster.ShutdownError
		if !errors.As(err, &se) || !errors.Is(err, muster.ErrIncomplete) || !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Shutdown = %v", round, err)
		}
		if se.Items != sent { // nothing was done: every item is left
			t.Fatalf("round %d: ShutdownError %+v, want %d items", round, se, sent)
		}
		close(gate)
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		firedItems := 0
		for _, b := range r.snapshot() {
			firedItems += len(b)
		}
		s := c.Stats()
		inWork := refused.count(muster.ErrIncomplete)
		if s.Added+s.Refused != sent || int(s.Refused) != inWork || firedItems+int(s.Abandoned) != int(s.Added) ||
			firedItems+int(s.Abandoned)+inWork != se.Items {
			t.Fatalf("round %d: %d fired, %d refused from Work, stats %+v, %+v", round, firedItems, inWork, s, se)
		}
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
