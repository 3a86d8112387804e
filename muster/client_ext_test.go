package muster_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// recorder is a Batch factory that records what fired. With hold set, Fire
// keeps its notifier instead of calling Done.
type recorder struct {
	mu          sync.Mutex
	batches     [][]any
	ctxs        []context.Context
	inflight    int
	maxInflight int
	hold        bool
	held        []muster.Notifier
	fireErr     error
	panicWith   any
}

func (r *recorder) maker() muster.Batch { return &recBatch{r: r} }

func (r *recorder) snapshot() [][]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.batches)
}

func (r *recorder) release() {
	r.mu.Lock()
	held := r.held
	r.held = nil
	r.mu.Unlock()
	for _, n := range held {
		r.mu.Lock()
		r.inflight--
		r.mu.Unlock()
		n.Done()
	}
}

type recBatch struct {
	r     *recorder
	items []any
}

func (b *recBatch) Add(item any) { b.items = append(b.items, item) }

func (b *recBatch) Fire(n muster.Notifier) { b.FireContext(context.Background(), n) }

func (b *recBatch) FireContext(ctx context.Context, n muster.Notifier) {
	r := b.r
	r.mu.Lock()
	r.batches = append(r.batches, b.items)
	r.ctxs = append(r.ctxs, ctx)
	r.inflight++
	r.maxInflight = max(r.maxInflight, r.inflight)
	if r.hold {
		r.held = append(r.held, n)
		r.mu.Unlock()
		return
	}
	r.inflight--
	err, p := r.fireErr, r.panicWith
	r.mu.Unlock()
	if p != nil {
		panic(p)
	}
	muster.DoneWith(n, err)
}

func items(vals ...int) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

// sorted orders batches by their first item: batches in flight together may
// fire in any order.
func sorted(batches [][]any) [][]any {
	slices.SortFunc(batches, func(a, b []any) int { return a[0].(int) - b[0].(int) })
	return batches
}

func equalBatches(t *testing.T, got [][]any, want ...[]any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d batches %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !slices.Equal(got[i], want[i]) {
			t.Fatalf("batch %d = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
}

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

func items2any(items []int) []any {
	out := make([]any, len(items))
	for i, v := range items {
		out[i] = v
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
		if s := c.Stats(); s.InFlight != 1 || s.Pending != 2 {
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
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 3,
			Hooks: &muster.Hooks{Added: func(info muster.AddInfo) {
				mu.Lock()
				defer mu.Unlock()
				if info.Blocked > 0 || info.Err != nil {
					blocked = append(blocked, info.Blocked)
				}
			}},
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
		for i := range 7 { // 2 in flight, 2 waiting, 3 queued behind them
			if err := b.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		if s := b.Stats(); s.Queued != 3 || s.Pending != 5 || s.InFlight != 1 {
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
		if !slices.Equal(blocked, []time.Duration{time.Second, 3 * time.Second}) {
			t.Fatalf("blocked durations reported %v", blocked)
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
		fireCtx := make(chan context.Context, 1)
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
			Hooks: &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) {
				mu.Lock()
				doneErrs = append(doneErrs, info.Err)
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
		if len(doneErrs) != 3 {
			t.Fatalf("%d Done hooks, want 3 (2 abandoned + 1 canceled)", len(doneErrs))
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
			Hooks: &muster.Hooks{Added: func(info muster.AddInfo) {
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

// A Batch.Add that panics refuses the item with a *PanicError.
type panickyBatch struct{ recBatch }

func (b *panickyBatch) Add(item any) {
	if item == 13 {
		panic("unlucky")
	}
	b.recBatch.Add(item)
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

type batchFunc func(n muster.Notifier)

func (f batchFunc) Add(any)                { _ = 0 }
func (f batchFunc) Fire(n muster.Notifier) { f(n) }

func TestHooksEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		var mu sync.Mutex
		var fires []muster.FireInfo
		var dones []muster.DoneInfo
		var started, stoppedInfo []muster.ClientInfo
		var doneCtxVals []any
		release := make(chan struct{})
		hooks := &muster.Hooks{
			KeepItemContexts: true,
			KeepItemTimes:    true,
			Started:          func(ci muster.ClientInfo) { started = append(started, ci) },
			Stopped:          func(ci muster.ClientInfo) { stoppedInfo = append(stoppedInfo, ci) },
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				mu.Lock()
				defer mu.Unlock()
				info.Contexts = slices.Clone(info.Contexts)
				info.Enqueued = slices.Clone(info.Enqueued)
				fires = append(fires, info)
				return context.WithValue(ctx, key{}, info.BatchID)
			},
			Done: func(ctx context.Context, info muster.DoneInfo) {
				mu.Lock()
				defer mu.Unlock()
				dones = append(dones, info)
				doneCtxVals = append(doneCtxVals, ctx.Value(key{}))
			},
		}
		var fireCtxVals []any
		b := &muster.Batcher[int]{Name: "rows", MaxBatchSize: 2, BatchTimeout: time.Second, MaxConcurrentBatches: 1, PendingWorkCapacity: 4, Hooks: hooks,
			Fire: func(ctx context.Context, items []int) error {
				mu.Lock()
				fireCtxVals = append(fireCtxVals, ctx.Value(key{}))
				mu.Unlock()
				if items[0] == 0 {
					<-release
					return errors.New("first fails")
				}
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		if len(started) != 1 || started[0].Name != "rows" || started[0].MaxBatchSize != 2 || started[0].Stats().Added != 0 {
			t.Fatalf("Started %+v", started)
		}
		type ck string
		c0 := context.WithValue(context.Background(), ck("p"), 0)
		c1 := context.WithValue(context.Background(), ck("p"), 1)
		_ = b.Add(c0, 0)
		time.Sleep(100 * time.Millisecond)
		_ = b.Add(c1, 1) // batch 1 fires: size, age 100ms
		synctest.Wait()
		_ = b.Add(c0, 2)
		time.Sleep(300 * time.Millisecond)
		_ = b.Add(c1, 3) // batch 2 full: waits for the slot
		_ = b.Add(c1, 4) // queued behind batch 2
		if s := b.Stats(); s.Queued != 1 || s.Pending != 3 || s.InFlight != 1 {
			t.Fatalf("stats with batch 2 waiting: %+v", s)
		}
		time.Sleep(500 * time.Millisecond)
		close(release) // batch 1 done after 900ms; batch 2 fires after 500ms waiting
		synctest.Wait()
		time.Sleep(time.Second) // batch 3 ([4]) times out
		synctest.Wait()
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(fires) != 3 || len(dones) != 3 {
			t.Fatalf("%d fires, %d dones", len(fires), len(dones))
		}
		f1, f2, f3 := fires[0], fires[1], fires[2]
		check := func(name string, got, want any) {
			t.Helper()
			if got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		check("f1.BatchID", f1.BatchID, uint64(1))
		check("f1.Name", f1.Name, "rows")
		check("f1.Size", f1.Size, 2)
		check("f1.MaxBatchSize", f1.MaxBatchSize, 2)
		check("f1.MaxConcurrentBatches", f1.MaxConcurrentBatches, 1)
		check("f1.Trigger", f1.Trigger, muster.TriggerSize)
		check("f1.Age", f1.Age, 100*time.Millisecond)
		check("f1.SlotWait", f1.SlotWait, time.Duration(0))
		check("f1.InFlight", f1.InFlight, 1)
		check("f1.ctx0", f1.Contexts[0], c0)
		check("f1.ctx1", f1.Contexts[1], c1)
		check("f1.enq", f1.Enqueued[1].Sub(f1.Enqueued[0]), 100*time.Millisecond)
		check("f2.BatchID", f2.BatchID, uint64(2))
		check("f2.Trigger", f2.Trigger, muster.TriggerSize)
		check("f2.Age", f2.Age, 800*time.Millisecond)
		check("f2.SlotWait", f2.SlotWait, 500*time.Millisecond)
		check("f2.Queued", f2.Queued, 0) // item 4 no longer queues once batch 2 has its slot
		check("f3.Trigger", f3.Trigger, muster.TriggerTimeout)
		check("f3.Size", f3.Size, 1)
		check("f3.Age", f3.Age, time.Second)
		check("d1.Duration", dones[0].Duration, 800*time.Millisecond)
		if dones[0].Err == nil || dones[1].Err != nil {
			t.Errorf("done errors %v, %v", dones[0].Err, dones[1].Err)
		}
		if !slices.Equal(fireCtxVals, []any{uint64(1), uint64(2), uint64(3)}) || !slices.Equal(doneCtxVals, fireCtxVals) {
			t.Errorf("Fired's context did not reach Fire and Done: %v %v", fireCtxVals, doneCtxVals)
		}
		if len(stoppedInfo) != 1 { // Stop returns only after the Stopped hook ran
			t.Fatalf("Stopped called %d times", len(stoppedInfo))
		}
		if id := stoppedInfo[0].ID; id == 0 || id != started[0].ID {
			t.Errorf("ClientInfo.ID: started %d, stopped %d", started[0].ID, id)
		}
		if s := stoppedInfo[0].Stats(); s.Added != 5 || s.Fired != 3 || s.Done != 3 || s.Failed != 1 {
			t.Errorf("final stats %+v", s)
		}
	})
}

func TestComposeOrder(t *testing.T) {
	var log []string
	mk := func(name string) *muster.Hooks {
		return &muster.Hooks{
			Started: func(muster.ClientInfo) { log = append(log, name+" started") },
			Fired: func(ctx context.Context, _ muster.FireInfo) context.Context {
				log = append(log, name+" fired")
				return context.WithValue(ctx, name, true)
			},
			Done: func(ctx context.Context, _ muster.DoneInfo) {
				log = append(log, name+" done", "sees a:"+boolStr(ctx.Value("a") != nil))
			},
		}
	}
	h := muster.Compose(nil, mk("a"), nil, mk("b"))
	if muster.Compose() != nil || muster.Compose(nil) != nil {
		t.Fatal("Compose of nothing is not nil")
	}
	one := mk("x")
	if muster.Compose(nil, one) != one {
		t.Fatal("Compose of one hook set should return it")
	}
	b := &muster.Batcher[int]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Hooks: h, Fire: func(context.Context, []int) error { return nil }}
	_ = b.Start()
	_ = b.Add(context.Background(), 1)
	_ = b.Stop()
	want := []string{"a started", "b started", "a fired", "b fired", "b done", "sees a:true", "a done", "sees a:true"}
	if !slices.Equal(log, want) {
		t.Fatalf("order %q, want %q", log, want)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestReportWaitAndRetry(t *testing.T) {
	var waits []muster.WaitInfo
	var retries []muster.RetryInfo
	b := &muster.Batcher[int]{Name: "n", MaxBatchSize: 1, MaxConcurrentBatches: 1,
		Hooks: &muster.Hooks{
			Waited:  func(ctx context.Context, w muster.WaitInfo) { waits = append(waits, w) },
			Retried: func(ctx context.Context, r muster.RetryInfo) { retries = append(retries, r) },
		},
		Fire: func(ctx context.Context, items []int) error {
			muster.ReportWait(ctx, muster.WaitInfo{Reason: "ratelimit", Tokens: 1, Duration: time.Second})
			muster.ReportRetry(ctx, muster.RetryInfo{Attempt: 1, Backoff: time.Millisecond})
			return nil
		}}
	_ = b.Start()
	_ = b.Add(context.Background(), 1)
	_ = b.Stop()
	if len(waits) != 1 || waits[0].Name != "n" || waits[0].BatchID != 1 || waits[0].Duration != time.Second {
		t.Fatalf("waits %+v", waits)
	}
	if len(retries) != 1 || retries[0].BatchID != 1 || retries[0].Attempt != 1 {
		t.Fatalf("retries %+v", retries)
	}
	// Outside a batch, reporting is a no-op.
	muster.ReportWait(context.Background(), muster.WaitInfo{})
	muster.ReportRetry(context.Background(), muster.RetryInfo{})
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
			Hooks: &muster.Hooks{Added: func(info muster.AddInfo) {
				if info.Err != nil {
					refused = append(refused, info.Err)
				}
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
