package muster_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// invariantRun is one randomised scenario: producers add numbered items
// through one of the three paths while batches fire after varying (fake)
// delays, some panicking; a Flush now and then; then Stop, or Shutdown with
// a deadline that may cut work off. It checks the batching invariants.
type invariantRun struct {
	path      int // 0: Batcher.Add, 1: Client.Work, 2: Client.Add, 3: Keyed.Add (7 keys)
	max       uint
	timeout   time.Duration
	limit     uint
	capacity  uint
	producers int
	items     int
	delay     time.Duration // fire takes up to this long
	flushAt   int           // producer 0 flushes every flushAt items (0: never)
	deadline  time.Duration // 0: Stop; else Shutdown with this deadline
	policy    muster.Overflow
	maxBytes  uint // Batcher only: items weigh v%7+1
	perKey    uint // Keyed only: MaxPendingPerKey
}

func (r invariantRun) String() string {
	return fmt.Sprintf("path=%d max=%d timeout=%v limit=%d cap=%d producers=%d items=%d delay=%v flush=%d deadline=%v policy=%v bytes=%d perKey=%d",
		r.path, r.max, r.timeout, r.limit, r.capacity, r.producers, r.items, r.delay, r.flushAt, r.deadline, r.policy, r.maxBytes, r.perKey)
}

type tally struct {
	mu          sync.Mutex
	seen        map[int]int
	batches     int
	inflight    int
	maxInflight int
	maxBytes    int
	keyed       bool
	between     int // batches between the Fired and Done hooks
	errs        []string
}

// keyOf is the key of an item of a Keyed run.
func keyOf(v int) int { return v % 7 }

// hooks count the batches between Fired and Done: never above the limit.
func (ta *tally) hooks(limit uint) *muster.Hooks {
	return &muster.Hooks{
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			ta.mu.Lock()
			defer ta.mu.Unlock()
			ta.between++
			if limit > 0 && (ta.between > int(limit) || info.InFlight > int(limit)) {
				ta.errs = append(ta.errs, fmt.Sprintf("%d batches between Fired and Done (InFlight %d), above %d", ta.between, info.InFlight, limit))
			}
			if info.Size == 0 {
				ta.errs = append(ta.errs, "Fired for an empty batch")
			}
			return nil
		},
		Done: func(ctx context.Context, info muster.DoneInfo) {
			if info.InFlight == 0 { // abandoned at a deadline: never fired
				return
			}
			ta.mu.Lock()
			defer ta.mu.Unlock()
			ta.between--
		},
	}
}

func weight(v int) int { return v%7 + 1 }

func (ta *tally) fire(items []int, limit, max uint) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	ta.batches++
	if ta.maxBytes > 0 {
		sum := 0
		for _, v := range items {
			sum += weight(v)
		}
		if sum > ta.maxBytes {
			ta.errs = append(ta.errs, fmt.Sprintf("a batch of %d bytes, above MaxBatchBytes %d", sum, ta.maxBytes))
		}
	}
	if len(items) == 0 {
		ta.errs = append(ta.errs, "an empty batch fired")
	}
	if max > 0 && uint(len(items)) > max {
		ta.errs = append(ta.errs, fmt.Sprintf("a batch of %d items, above MaxBatchSize %d", len(items), max))
	}
	for _, v := range items {
		ta.seen[v]++
		if ta.keyed && keyOf(v) != keyOf(items[0]) {
			ta.errs = append(ta.errs, fmt.Sprintf("item %d in a batch of key %d", v, keyOf(items[0])))
		}
	}
	ta.inflight++
	ta.maxInflight = max2(ta.maxInflight, ta.inflight)
	if limit > 0 && uint(ta.inflight) > limit {
		ta.errs = append(ta.errs, fmt.Sprintf("%d batches in flight, above MaxConcurrentBatches %d", ta.inflight, limit))
	}
}

func (ta *tally) done() {
	ta.mu.Lock()
	ta.inflight--
	ta.mu.Unlock()
}

func max2(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// fireDelay is a deterministic delay per batch, from its first item.
func (r invariantRun) fireDelay(first int) time.Duration {
	if r.delay == 0 {
		return 0
	}
	return time.Duration(first*7919) % r.delay
}

type intBatch struct {
	r     invariantRun
	ta    *tally
	items []int
}

func (b *intBatch) Add(item any) { b.items = append(b.items, item.(int)) }

// Fire finishes asynchronously, from another goroutine, as the seed allows.
func (b *intBatch) Fire(n muster.Notifier) {
	b.ta.fire(b.items, b.r.limit, b.r.max)
	go func() {
		time.Sleep(b.r.fireDelay(b.items[0]))
		b.ta.done()
		n.Done()
		n.Done() // a second Done must change nothing
	}()
}

func (r invariantRun) check(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ta := &tally{seen: map[int]int{}, maxBytes: int(r.maxBytes), keyed: r.path == 3}
		var stats func() muster.Stats
		var keyed *muster.Keyed[int, int] // a Keyed
		// fire is a Batcher's or Keyed's FireFunc.
		fire := func(ctx context.Context, items []int) error {
			ta.fire(items, r.limit, r.max)
			defer ta.done()
			if s := stats(); r.limit > 0 && s.InFlight > int(r.limit) {
				ta.mu.Lock()
				ta.errs = append(ta.errs, fmt.Sprintf("Stats.InFlight %d, above %d", s.InFlight, r.limit))
				ta.mu.Unlock()
			}
			if items[0]%13 == 5 {
				panic("a downstream bug")
			}
			select {
			case <-time.After(r.fireDelay(items[0])):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		ctx := context.Background()
		var add func(ctx context.Context, v int) error
		var flush func(ctx context.Context) error
		var stop func() error
		var shutdown func(ctx context.Context) error
		switch r.path {
		case 0:
			b := &muster.Batcher[int]{MaxBatchSize: r.max, BatchTimeout: r.timeout, MaxConcurrentBatches: r.limit, PendingWorkCapacity: r.capacity,
				Overflow: r.policy, MaxBatchBytes: r.maxBytes, Hooks: ta.hooks(r.limit), Fire: fire}
			if r.maxBytes > 0 {
				b.Sizer = weight
			}
			stats = b.Stats
			if err := b.Start(); err != nil {
				t.Fatal(err)
			}
			add, flush, stop, shutdown = b.Add, b.Flush, b.Stop, b.Shutdown
		case 3:
			k := &muster.Keyed[int, int]{Key: keyOf, MaxBatchSize: r.max, BatchTimeout: r.timeout, MaxConcurrentBatches: r.limit,
				PendingWorkCapacity: r.capacity, MaxPendingPerKey: r.perKey, Overflow: r.policy, MaxBatchBytes: r.maxBytes,
				KeyIdleTimeout: 2 * time.Millisecond, Hooks: ta.hooks(r.limit), Fire: fire}
			if r.maxBytes > 0 {
				k.Sizer = weight
			}
			stats, keyed = k.Stats, k
			if err := k.Start(); err != nil {
				t.Fatal(err)
			}
			add, flush, stop, shutdown = k.Add, k.Flush, k.Stop, k.Shutdown
		default:
			c := &muster.Client{MaxBatchSize: r.max, BatchTimeout: r.timeout, MaxConcurrentBatches: r.limit, PendingWorkCapacity: r.capacity,
				Overflow: min(r.policy, muster.OverflowDropNewest), Hooks: ta.hooks(r.limit),
				BatchMaker: func() muster.Batch { return &intBatch{r: r, ta: ta} }}
			if err := c.Start(); err != nil {
				t.Fatal(err)
			}
			add = func(ctx context.Context, v int) error { return c.Add(ctx, v) }
			if r.path == 1 {
				add = func(_ context.Context, v int) error { c.Work <- v; return nil }
			}
			flush, stop, shutdown, stats = c.Flush, c.Stop, c.Shutdown, c.Stats
		}
		var wg sync.WaitGroup
		per := r.items / r.producers
		for p := range r.producers {
			wg.Go(func() {
				for i := p * per; i < (p+1)*per; i++ {
					if err := add(ctx, i); err != nil && !errors.Is(err, muster.ErrFull) {
						t.Errorf("add %d: %v", i, err)
					}
					// A key never holds more than its bound of items that have
					// not fired, or one batch when that is larger.
					if r.perKey > 0 && r.max > 0 {
						if s, _ := keyStats(keyed, keyOf(i)); s.Pending > int(max(r.perKey, r.max)) {
							t.Errorf("after add %d: key %d holds %d items, above MaxPendingPerKey %d and MaxBatchSize %d", i, keyOf(i), s.Pending, r.perKey, r.max)
						}
					}
					if i%(p+3) == 0 {
						time.Sleep(time.Duration(i%5) * time.Millisecond)
					}
					if p == 0 && r.flushAt > 0 && i%r.flushAt == 0 {
						if err := flush(ctx); err != nil {
							t.Errorf("flush: %v", err)
						}
					}
				}
			})
		}
		wg.Wait()
		added := per * r.producers
		if r.deadline == 0 {
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		} else {
			sctx, cancel := context.WithTimeout(ctx, r.deadline)
			err := shutdown(sctx)
			cancel()
			var se *muster.ShutdownError
			if err != nil && !errors.As(err, &se) {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := stop(); err != nil { // wait for what is still in flight
				t.Fatal(err)
			}
		}
		s := stats()
		ta.mu.Lock()
		defer ta.mu.Unlock()
		for _, e := range ta.errs {
			t.Error(e)
		}
		fired := 0
		for v, n := range ta.seen {
			if n != 1 {
				t.Errorf("item %d fired %d times", v, n)
			}
			if v < 0 || v >= added {
				t.Errorf("item %d was never added", v)
			}
			fired++
		}
		// Every item offered was refused (under an overflow policy, or left in
		// Work at the deadline) or taken; every item taken was fired exactly
		// once, abandoned at the deadline, or dropped to make room.
		refusable := r.policy != muster.OverflowBlock || r.path == 1 && r.deadline > 0
		if s.Added+s.Refused != uint64(added) || uint64(fired)+s.Abandoned+s.Dropped != s.Added ||
			!refusable && s.Refused != 0 || r.policy != muster.OverflowDropOldest && s.Dropped != 0 {
			t.Errorf("added %d, fired %d, abandoned %d, stats %+v", added, fired, s.Abandoned, s)
		}
		if r.deadline == 0 && s.Abandoned != 0 {
			t.Errorf("Stop abandoned %d items", s.Abandoned)
		}
		if s.InFlight != 0 || s.Waiting != 0 || s.Pending != 0 || s.Queued != 0 || ta.inflight != 0 || ta.between != 0 ||
			s.Fired != s.Done || int(s.Fired) != ta.batches {
			t.Errorf("after stop: stats %+v, tally in flight %d, between hooks %d, batches %d", s, ta.inflight, ta.between, ta.batches)
		}
	})
}

func FuzzInvariants(f *testing.F) {
	f.Add(uint8(0), uint8(3), uint8(0), uint8(1), uint8(0), uint8(2), uint16(50), uint8(3), uint8(0), uint8(0), uint8(0))
	f.Add(uint8(1), uint8(7), uint8(5), uint8(2), uint8(3), uint8(7), uint16(400), uint8(9), uint8(11), uint8(0), uint8(0))
	f.Add(uint8(2), uint8(0), uint8(4), uint8(3), uint8(1), uint8(4), uint16(300), uint8(20), uint8(0), uint8(5), uint8(0))
	f.Add(uint8(0), uint8(10), uint8(2), uint8(1), uint8(4), uint8(8), uint16(999), uint8(30), uint8(17), uint8(3), uint8(0))
	f.Add(uint8(1), uint8(1), uint8(0), uint8(0), uint8(0), uint8(1), uint16(10), uint8(0), uint8(2), uint8(1), uint8(0))
	f.Add(uint8(0), uint8(5), uint8(3), uint8(1), uint8(2), uint8(8), uint16(700), uint8(25), uint8(0), uint8(0), uint8(1))
	f.Add(uint8(2), uint8(5), uint8(0), uint8(1), uint8(2), uint8(8), uint16(700), uint8(25), uint8(0), uint8(4), uint8(2))
	f.Add(uint8(0), uint8(5), uint8(3), uint8(1), uint8(4), uint8(8), uint16(900), uint8(25), uint8(9), uint8(6), uint8(131))
	f.Add(uint8(0), uint8(0), uint8(7), uint8(2), uint8(1), uint8(3), uint16(500), uint8(15), uint8(0), uint8(0), uint8(200))
	f.Add(uint8(3), uint8(4), uint8(3), uint8(2), uint8(3), uint8(8), uint16(800), uint8(12), uint8(19), uint8(0), uint8(1))
	f.Add(uint8(3), uint8(6), uint8(2), uint8(1), uint8(2), uint8(6), uint16(600), uint8(20), uint8(0), uint8(7), uint8(131))
	f.Fuzz(func(t *testing.T, path, max, timeoutMs, limit, capacity, producers uint8, items uint16, delayMs, flushAt, deadlineMs, policy uint8) {
		r := invariantRun{
			path:      int(path % 4),
			max:       uint(max % 25),
			timeout:   time.Duration(timeoutMs%20) * time.Millisecond,
			limit:     uint(limit % 5),
			capacity:  uint(capacity % 10),
			producers: int(producers%8) + 1,
			items:     int(items % 1000),
			delay:     time.Duration(delayMs%40) * time.Millisecond,
			flushAt:   int(flushAt % 50),
			deadline:  time.Duration(deadlineMs%10) * time.Millisecond,
			policy:    muster.Overflow(policy % 4),
		}
		if (r.path == 0 || r.path == 3) && policy >= 128 {
			r.maxBytes = uint(policy%32) + 7
		}
		if r.path == 3 && r.capacity > 1 {
			r.perKey = min(uint(capacity/10%4)*5, r.capacity-1) // below PendingWorkCapacity, as Start requires
		}
		if r.max == 0 && r.timeout == 0 {
			r.max = 1
		}
		if r.path == 1 {
			r.flushAt = 0 // Flush does not cover items still in Work
		}
		if (r.path == 1 || r.path == 2) && r.policy == muster.OverflowDropOldest {
			r.policy = muster.OverflowDropNewest // a Client's Batch holds its items
		}
		t.Log(r)
		r.check(t)
	})
}

// TestInvariantsTable runs a spread of scenarios on every `go test`, beyond
// the fuzz corpus.
func TestInvariantsTable(t *testing.T) {
	for path := range 4 {
		for i, r := range []invariantRun{
			{max: 10, producers: 8, items: 2000},
			{max: 10, limit: 1, producers: 8, items: 800, delay: 5 * time.Millisecond},
			{timeout: 3 * time.Millisecond, limit: 2, capacity: 4, producers: 4, items: 600, delay: 10 * time.Millisecond},
			{max: 7, timeout: 2 * time.Millisecond, limit: 3, capacity: 1, producers: 5, items: 700, delay: 7 * time.Millisecond, flushAt: 13},
			{max: 5, limit: 1, capacity: 2, producers: 3, items: 300, delay: 20 * time.Millisecond, deadline: 30 * time.Millisecond},
			{max: 1, limit: 2, producers: 2, items: 100, delay: time.Millisecond},
			{max: 6, limit: 1, capacity: 3, producers: 8, items: 800, delay: 9 * time.Millisecond, policy: muster.OverflowFail},
			{max: 6, limit: 1, capacity: 3, producers: 8, items: 800, delay: 9 * time.Millisecond, policy: muster.OverflowDropNewest},
			{max: 6, timeout: 3 * time.Millisecond, limit: 1, capacity: 3, producers: 8, items: 800, delay: 9 * time.Millisecond, policy: muster.OverflowDropOldest, maxBytes: 20},
			{max: 50, limit: 2, capacity: 10, producers: 4, items: 600, delay: 3 * time.Millisecond, maxBytes: 13, deadline: 40 * time.Millisecond},
			// MaxPendingPerKey (Keyed only): bounds under each policy,
			// round-robin admission, a deadline.
			{max: 4, timeout: 2 * time.Millisecond, limit: 1, capacity: 9, producers: 8, items: 800, delay: 6 * time.Millisecond, perKey: 5},
			{max: 3, limit: 2, capacity: 6, producers: 6, items: 600, delay: 8 * time.Millisecond, policy: muster.OverflowFail, perKey: 3},
			{max: 5, timeout: 3 * time.Millisecond, limit: 1, capacity: 8, producers: 8, items: 800, delay: 9 * time.Millisecond, policy: muster.OverflowDropOldest, perKey: 6},
			{max: 2, limit: 1, capacity: 5, producers: 5, items: 400, delay: 7 * time.Millisecond, policy: muster.OverflowDropNewest, perKey: 1, deadline: 25 * time.Millisecond},
		} {
			r.path = path
			if r.perKey > 0 && path != 3 {
				continue // a Keyed's setting
			}
			if path == 1 {
				r.flushAt = 0
			}
			if path == 1 || path == 2 {
				r.maxBytes = 0
				if r.policy == muster.OverflowDropOldest {
					continue // a Client's Batch holds its items: no DropOldest
				}
			}
			t.Run(fmt.Sprintf("path%d/%d", path, i), func(t *testing.T) { r.check(t) })
		}
	}
}
