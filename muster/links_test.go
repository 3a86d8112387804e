package muster

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestBatchLinksInvariant hammers a Keyed from real goroutines (flushes,
// timeouts, drops, a slot limit or none, hooks or none) while a checker
// takes both locks again and again and checks the batches' shared link: a
// batch in the open FIFO is its key's open batch and in no other list; a
// batch in unstarted has left the open FIFO, and unstarted never holds more
// batches than are in flight; the spare and the free batches are in no list
// and hold nothing. At the end every item fired at most once, and every
// item is accounted for (fired, dropped or refused), with no batch left in
// unstarted and no goroutine parked.
func TestBatchLinksInvariant(t *testing.T) {
	for _, c := range []struct {
		name   string
		limit  uint
		hooks  bool
		policy Overflow
	}{
		{"nolimit", 0, false, OverflowBlock},
		{"limit2-hooks", 2, true, OverflowBlock},
		{"limit1-dropoldest", 1, false, OverflowDropOldest},
		{"limit3-hooks-dropoldest", 3, true, OverflowDropOldest},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			seen := map[int]int{}
			var hooks Observer
			if c.hooks {
				hooks = &Hooks{Fired: func(ctx context.Context, _ FireInfo) context.Context { return ctx },
					Done: func(context.Context, DoneInfo) {}}
			}
			k := &Keyed[int, int]{Key: func(v int) int { return v % 5 }, MaxBatchSize: 4, BatchTimeout: time.Millisecond,
				MaxConcurrentBatches: c.limit, PendingWorkCapacity: 20, Overflow: c.policy, Hooks: hooks,
				Fire: func(_ context.Context, items []int) error {
					mu.Lock()
					for _, v := range items {
						seen[v]++
					}
					mu.Unlock()
					if items[0]%3 == 0 {
						time.Sleep(20 * time.Microsecond)
					}
					return nil
				}}
			if err := k.Start(); err != nil {
				t.Fatal(err)
			}
			e := k.e
			var stop atomic.Bool
			checked := make(chan [2]int)
			go func() {
				var n [2]int // checks, and those that found a batch in unstarted
				for !stop.Load() {
					msg, queued := e.checkLinks()
					if msg != "" {
						t.Error(msg)
						break
					}
					n[0]++
					if queued > 0 {
						n[1]++
					}
					runtime.Gosched() // leave the locks to the producers (GOMAXPROCS=1)
				}
				checked <- n
			}()
			const producers, per = 4, 3000
			var wg sync.WaitGroup
			for p := range producers {
				wg.Go(func() {
					for i := p * per; i < (p+1)*per; i++ {
						if err := k.Add(context.Background(), i); err != nil {
							t.Errorf("add %d: %v", i, err)
						}
						if p == 0 && i%50 == 0 {
							if err := k.Flush(context.Background()); err != nil {
								t.Errorf("flush: %v", err)
							}
						}
					}
				})
			}
			wg.Wait()
			if err := k.Stop(); err != nil {
				t.Fatal(err)
			}
			stop.Store(true)
			n := <-checked
			t.Logf("%d checks, %d with a batch in unstarted", n[0], n[1])
			if msg, _ := e.checkLinks(); msg != "" {
				t.Error(msg)
			}
			fired := 0
			for v, n := range seen {
				if n != 1 {
					t.Errorf("item %d fired %d times", v, n)
				}
				fired++
			}
			s := k.Stats()
			if s.Added+s.Refused != producers*per || uint64(fired)+s.Dropped != s.Added || s.Fired != s.Done || s.Pending != 0 {
				t.Errorf("fired %d, stats %+v", fired, s)
			}
			e.fmu.Lock()
			defer e.fmu.Unlock()
			if e.unstarted.head != nil || len(e.parked) != 0 {
				t.Errorf("after Stop: unstarted %v, %d goroutines parked", e.unstarted.head, len(e.parked))
			}
		})
	}
}

// checkLinks checks the invariants of the engine's lists (see
// TestBatchLinksInvariant), under both locks; it returns what is wrong, and
// how many batches unstarted holds.
func (e *engine[K, T]) checkLinks() (string, int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fmu.Lock()
	defer e.fmu.Unlock()
	open := map[*batch[K, T]]bool{}
	items := 0
	var prev *batch[K, T]
	for b := e.open.head; b != nil; b = b.next {
		if open[b] {
			return "the open FIFO loops", 0
		}
		open[b] = true
		items += b.n
		if b.prev != prev || b.ks.cur != b || b.first.IsZero() {
			return "a batch in the open FIFO is not its key's open batch, or its links are wrong", 0
		}
		prev = b
	}
	if e.open.tail != prev || items != e.openItems {
		return "the open FIFO's tail or item count is wrong", 0
	}
	n := 0
	prev = nil
	for b := e.unstarted.head; b != nil; b = b.next {
		if n++; open[b] || b.ks.cur == b || b.prev != prev || b.n == 0 {
			return "a batch in unstarted is open, empty, or wrongly linked", 0
		}
		prev = b
	}
	if e.unstarted.tail != prev || n > e.inflight {
		return "unstarted's tail is wrong, or it holds more batches than are in flight", 0
	}
	idle := append([]*batch[K, T]{e.spare.Load()}, e.free...)
	for _, b := range idle {
		if b != nil && (b.prev != nil || b.next != nil || b.n != 0 || open[b] || e.unstarted.head == b || e.unstarted.tail == b) {
			return "a spare or free batch is still linked or holds items", 0
		}
	}
	return "", 0
}
