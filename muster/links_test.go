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
// takes both locks again and again and checks the engine (checkLocked,
// with the batches' shared link). At the end every item fired at most once,
// and every item is accounted for (fired, dropped or refused), with no
// batch left in unstarted and no goroutine parked.
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
			checked := make(chan int)
			go func() {
				n := 0 // checks
				for !stop.Load() {
					if err := e.check(); err != nil {
						t.Error(err)
						break
					}
					n++
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
			t.Logf("%d checks", <-checked)
			if err := e.check(); err != nil {
				t.Error(err)
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
