package muster_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/musterhq/muster/muster"
)

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
			if !isPanic(err) || !errors.As(err, &pe) || len(pe.Stack) == 0 {
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
	if err := c.Add(ctx, 13); !isPanic(err) {
		t.Fatalf("Add of a panicking item: %v", err)
	}
	_ = c.Add(ctx, 2)
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	equalBatches(t, r.snapshot(), items(1, 2))
}

// On the Work path too, a Batch.Add that panics refuses only its item.
func TestBatchAddPanicOnWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var refused refusals
		c := &muster.Client{MaxBatchSize: 2, PendingWorkCapacity: 10, BatchMaker: func() muster.Batch { return &panickyBatch{recBatch{r: r}} },
			Hooks: &muster.Hooks{Refused: refused.hook}}
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
		if errs := refused.get(); len(errs) != 1 || !isPanic(errs[0]) {
			t.Fatalf("refusals reported: %v", errs)
		}
		if s := c.Stats(); s.Refused != 1 || s.Added != 4 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A Batch.Add that panics in the middle of a batch, with items behind it in
// Work, refuses only its item: the items after it join the same batch, in
// order.
func TestBatchAddPanicMidBatchOnWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var refused refusals
		c := &muster.Client{MaxBatchSize: 4, PendingWorkCapacity: 10, BatchMaker: func() muster.Batch { return &panickyBatch{recBatch{r: r}} },
			Hooks: &muster.Hooks{Refused: refused.hook}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for _, v := range []int{1, 2, 13, 3, 13, 4, 5} {
			c.Work <- v
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, r.snapshot(), items(1, 2, 3, 4), items(5))
		if errs := refused.get(); len(errs) != 2 || !isPanic(errs[0]) || !isPanic(errs[1]) {
			t.Fatalf("refusals reported: %v", errs)
		}
		if s := c.Stats(); s.Refused != 2 || s.Added != 5 {
			t.Fatalf("stats %+v", s)
		}
	})
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

// A BatchMaker that panics refuses the item with a *PanicError, on both
// paths, and leaves the add lock free: the next item is taken. (It used to
// leave the lock held, wedging the client.)
func TestBatchMakerPanicKeepsLock(t *testing.T) {
	for _, viaWork := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			calls := 0
			var refused refusals
			c := &muster.Client{
				MaxBatchSize: 1,
				BatchMaker: func() muster.Batch {
					calls++
					if calls == 1 {
						panic("maker")
					}
					return &listBatch{}
				},
				Hooks: &muster.Hooks{Refused: refused.hook},
			}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if viaWork {
				c.Work <- "x"
				c.Work <- "y"
			} else {
				if err := c.Add(ctx, "x"); !isPanic(err) {
					t.Fatalf("Add with a panicking BatchMaker: %v, want a *PanicError", err)
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
			if errs := refused.get(); len(errs) != 1 || !isPanic(errs[0]) {
				t.Fatalf("viaWork=%v: refusals %v", viaWork, errs)
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

// A BatchMaker that returns nil refuses the item it was called for with a
// *PanicError that says so, on Add and on Work alike, rather than firing a
// nil Batch: nothing is taken, and the next item gets a Batch of its own.
func TestBatchMakerNilRefusesItem(t *testing.T) {
	for _, viaWork := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			r := &recorder{}
			calls := 0
			var refused refusals
			c := &muster.Client{MaxBatchSize: 1, Hooks: &muster.Hooks{Refused: refused.hook},
				BatchMaker: func() muster.Batch {
					if calls++; calls == 1 {
						return nil
					}
					return r.maker()
				}}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			if viaWork {
				c.Work <- 1
				c.Work <- 2
			} else if err := c.Add(context.Background(), 1); !isPanic(err) || !strings.Contains(err.Error(), "BatchMaker returned nil") {
				t.Fatalf("Add with a BatchMaker returning nil: %v", err)
			} else if err := c.Add(context.Background(), 2); err != nil {
				t.Fatalf("next Add: %v", err)
			}
			if err := c.Stop(); err != nil {
				t.Fatal(err)
			}
			equalBatches(t, r.snapshot(), items(2))
			if errs := refused.get(); len(errs) != 1 || !isPanic(errs[0]) || !strings.Contains(errs[0].Error(), "BatchMaker returned nil") {
				t.Fatalf("viaWork=%v: refusals %v", viaWork, errs)
			}
			if s := c.Stats(); s.Refused != 1 || s.Added != 1 || s.Fired != 1 || s.Failed != 0 {
				t.Fatalf("viaWork=%v: stats %+v", viaWork, s)
			}
		})
	}
}
