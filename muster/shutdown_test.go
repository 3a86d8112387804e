package muster_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

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
		var refused refusals
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 5, BatchMaker: r.maker,
			Hooks: &muster.Hooks{Refused: refused.hook}}
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
		if n := refused.count(muster.ErrIncomplete); n != 5 || len(refused.get()) != 5 {
			t.Fatalf("items in Work reported refused: %v, want 5 with ErrIncomplete", refused.get())
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
		var order eventLog
		note := order.note
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
		if got := order.get(); len(got) == 0 || got[len(got)-1] != "stopped" {
			t.Fatalf("hook order %v: Stopped must come last", got)
		}
	})
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

// A Client's Shutdown whose context has ended while its worker still
// drains Work abandons the open batch: nothing fires after the deadline,
// even with a free slot.
func TestShutdownDeadlineFiresNothingNew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var abandoned []bool
		c := &muster.Client{MaxBatchSize: 10, BatchMaker: r.maker, PendingWorkCapacity: 10,
			Hooks: &muster.Hooks{Done: func(_ context.Context, info muster.DoneInfo) { abandoned = append(abandoned, info.Abandoned) }}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			c.Work <- i
		}
		synctest.Wait() // the worker added them: one open batch of 3
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := c.Shutdown(ctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 1 || se.Items != 3 {
			t.Fatalf("Shutdown: %v", err)
		}
		synctest.Wait()
		if got := r.snapshot(); len(got) != 0 {
			t.Fatalf("fired %v after the deadline", got)
		}
		if !slices.Equal(abandoned, []bool{true}) {
			t.Fatalf("Done hooks: abandoned %v, want [true]", abandoned)
		}
	})
}

// What is reported with the client's base context, after a Shutdown
// deadline, gets it canceled (cause ErrIncomplete): an abandoned batch's
// DeadLetter call and Done hook, and the Stopped hook. After a Stop that
// drained, Stopped's context is canceled too. A DeadLetter that must write
// somewhere cannot use it for that.
func TestBaseContextCanceledWhenReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		causes := map[string]error{}
		errNotCanceled := errors.New("not canceled")
		note := func(what string, ctx context.Context) {
			mu.Lock()
			defer mu.Unlock()
			if ctx.Err() == nil {
				causes[what] = errNotCanceled
				return
			}
			causes[what] = context.Cause(ctx)
		}
		release := make(chan struct{})
		hooks := &muster.Hooks{
			Done: func(ctx context.Context, info muster.DoneInfo) {
				if info.Abandoned {
					note("done", ctx)
				}
			},
			Stopped: func(ctx context.Context, _ muster.ClientInfo) { note("stopped", ctx) },
		}
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 4, Hooks: hooks,
			Fire:       func(context.Context, []int) error { <-release; return nil },
			DeadLetter: func(ctx context.Context, _ []int, _ error) { note("deadletter", ctx) },
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 { // [0 1] in flight, [2] open
			_ = b.Add(context.Background(), i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, muster.ErrIncomplete) {
			t.Fatalf("Shutdown: %v", err)
		}
		close(release)
		_ = b.Stop()
		for _, what := range []string{"deadletter", "done", "stopped"} {
			if !errors.Is(causes[what], muster.ErrIncomplete) {
				t.Errorf("%s's context: %v, want canceled with ErrIncomplete", what, causes[what])
			}
		}

		b2 := &muster.Batcher[int]{MaxBatchSize: 2, Hooks: hooks, Fire: func(context.Context, []int) error { return nil }}
		if err := b2.Start(); err != nil {
			t.Fatal(err)
		}
		_ = b2.Add(context.Background(), 1)
		causes["stopped"] = nil
		_ = b2.Stop()
		if c := causes["stopped"]; c == nil || c == errNotCanceled || errors.Is(c, muster.ErrIncomplete) {
			t.Errorf("Stopped's context after Stop: %v, want canceled", causes["stopped"])
		}
	})
}
