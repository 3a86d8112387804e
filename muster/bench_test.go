package muster_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/musterhq/muster/muster"
)

// Benchmarks of the add path. Every benchmark adds b.N items (so ns/op is
// ns/item), in batches of 100, with a size trigger (and a 1h timeout where the
// implementation has one, so the timer is armed as in production), and waits
// inside the timed region until every item has been fired; it fails if the
// fired count differs. The fire function only counts.
//
// Baselines, written here so that they run in the same process:
//   - mutexBatcher: a mutex-protected slice; the producer that fills a batch
//     fires it. The floor for a lock-based Add.
//   - mutex-go: the same, firing each batch on a goroutine of its own, as the
//     seed's contract (and muster) requires. The gap to mutexBatcher is the
//     price of that contract.
//   - chanBatcher: a buffered channel (1024) and one consumer goroutine. The
//     floor for a channel API.
//   - seedBatcher: facebookgo/muster's design: a worker goroutine draining
//     Work with its double select over a timer, a goroutine per fired batch.
//
// Run: go test -run '^$' -bench . -benchmem -count 6 -cpu 2 ./muster/ | benchstat -

const benchBatch = 100

type benchTarget struct {
	add  func(v int)
	stop func()
}

func runProducers(b *testing.B, producers int, mk func(fired *atomic.Int64) benchTarget) {
	var fired atomic.Int64
	tgt := mk(&fired)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N / producers
	for p := range producers {
		n := per
		if p == 0 {
			n += b.N - per*producers
		}
		wg.Go(func() {
			for i := range n {
				tgt.add(i)
			}
		})
	}
	wg.Wait()
	tgt.stop()
	b.StopTimer()
	if got := fired.Load(); got != int64(b.N) {
		b.Fatalf("fired %d items, added %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
}

// mutexBatcher is the minimal lock-based batcher.
type mutexBatcher struct {
	mu    sync.Mutex
	items []int
	fire  func([]int)
}

func (m *mutexBatcher) add(v int) {
	m.mu.Lock()
	m.items = append(m.items, v)
	if len(m.items) < benchBatch {
		m.mu.Unlock()
		return
	}
	full := m.items
	m.items = make([]int, 0, benchBatch)
	m.mu.Unlock()
	m.fire(full)
}

func (m *mutexBatcher) flush() {
	m.mu.Lock()
	full := m.items
	m.items = nil
	m.mu.Unlock()
	if len(full) > 0 {
		m.fire(full)
	}
}

// chanBatcher is the minimal channel-based batcher.
type chanBatcher struct {
	ch   chan int
	done chan struct{}
	fire func([]int)
}

func newChanBatcher(fire func([]int)) *chanBatcher {
	c := &chanBatcher{ch: make(chan int, 1024), done: make(chan struct{}), fire: fire}
	go func() {
		defer close(c.done)
		items := make([]int, 0, benchBatch)
		for v := range c.ch {
			items = append(items, v)
			if len(items) == benchBatch {
				c.fire(items)
				items = items[:0]
			}
		}
		if len(items) > 0 {
			c.fire(items)
		}
	}()
	return c
}

// seedBatcher reproduces facebookgo/muster's worker, with the same Batch
// type as muster's Client gets (Add through the interface, Fire on a
// goroutine with a Notifier): the double select that
// prefers draining Work, a timer per batch, a goroutine per fire.
type seedBatcher struct {
	Work     chan interface{}
	timeout  time.Duration
	maker    func() muster.Batch
	inflight sync.WaitGroup
	worker   sync.WaitGroup
}

// wgNotifier is the seed's Notifier: Done releases the batch.
type wgNotifier struct{ wg *sync.WaitGroup }

func (n wgNotifier) Done() { n.wg.Done() }

func newSeedBatcher(capacity int, maker func() muster.Batch) *seedBatcher {
	s := &seedBatcher{Work: make(chan interface{}, capacity), timeout: time.Hour, maker: maker}
	s.worker.Add(1)
	go s.run()
	return s
}

func (s *seedBatcher) run() {
	defer s.worker.Done()
	batch := s.maker()
	count := 0
	var timer *time.Timer
	var timeout <-chan time.Time
	send := func() {
		s.inflight.Add(1)
		go batch.Fire(wgNotifier{&s.inflight})
		batch = s.maker()
		count = 0
		if timer != nil {
			timer.Stop()
			timer, timeout = nil, nil
		}
	}
	recv := func(item interface{}, open bool) bool {
		if !open {
			if count > 0 {
				send()
			}
			return true
		}
		batch.Add(item)
		count++
		if count >= benchBatch {
			send()
		} else if timeout == nil {
			timer = time.NewTimer(s.timeout)
			timeout = timer.C
		}
		return false
	}
	for {
		select {
		case item, open := <-s.Work:
			if recv(item, open) {
				return
			}
		default:
			select {
			case item, open := <-s.Work:
				if recv(item, open) {
					return
				}
			case <-timeout:
				send()
			}
		}
	}
}

func (s *seedBatcher) stop() {
	close(s.Work)
	s.worker.Wait()
	s.inflight.Wait()
}

func BenchmarkAdd(b *testing.B) {
	ctx := context.Background()
	for _, producers := range []int{1, 8} {
		b.Run(fmt.Sprintf("impl=mutex-baseline/producers=%d", producers), func(b *testing.B) {
			runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
				m := &mutexBatcher{items: make([]int, 0, benchBatch), fire: func(items []int) { fired.Add(int64(len(items))) }}
				return benchTarget{add: m.add, stop: m.flush}
			})
		})
		b.Run(fmt.Sprintf("impl=mutex-go-baseline/producers=%d", producers), func(b *testing.B) {
			runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
				var wg sync.WaitGroup
				m := &mutexBatcher{items: make([]int, 0, benchBatch), fire: func(items []int) {
					wg.Go(func() { fired.Add(int64(len(items))) })
				}}
				return benchTarget{add: m.add, stop: func() { m.flush(); wg.Wait() }}
			})
		})
		b.Run(fmt.Sprintf("impl=chan-baseline/producers=%d", producers), func(b *testing.B) {
			runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
				c := newChanBatcher(func(items []int) { fired.Add(int64(len(items))) })
				return benchTarget{add: func(v int) { c.ch <- v }, stop: func() { close(c.ch); <-c.done }}
			})
		})
		b.Run(fmt.Sprintf("impl=muster-Batcher/producers=%d", producers), func(b *testing.B) {
			runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
				mb := &muster.Batcher[int]{MaxBatchSize: benchBatch, BatchTimeout: time.Hour,
					Fire: func(ctx context.Context, items []int) error { fired.Add(int64(len(items))); return nil }}
				if err := mb.Start(); err != nil {
					b.Fatal(err)
				}
				return benchTarget{add: func(v int) { _ = mb.Add(ctx, v) }, stop: func() { _ = mb.Stop() }}
			})
		})
		b.Run(fmt.Sprintf("impl=muster-Batcher-emptyhooks/producers=%d", producers), func(b *testing.B) {
			runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
				mb := &muster.Batcher[int]{MaxBatchSize: benchBatch, BatchTimeout: time.Hour, Hooks: &muster.Hooks{},
					Fire: func(ctx context.Context, items []int) error { fired.Add(int64(len(items))); return nil }}
				if err := mb.Start(); err != nil {
					b.Fatal(err)
				}
				return benchTarget{add: func(v int) { _ = mb.Add(ctx, v) }, stop: func() { _ = mb.Stop() }}
			})
		})
		for _, capacity := range []uint{0, 1024} {
			b.Run(fmt.Sprintf("impl=seed-design-cap%d/producers=%d", capacity, producers), func(b *testing.B) {
				runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
					s := newSeedBatcher(int(capacity), func() muster.Batch { return &countBatch{fired: fired} })
					return benchTarget{add: func(v int) { s.Work <- v }, stop: s.stop}
				})
			})
			b.Run(fmt.Sprintf("impl=muster-Client.Work-cap%d/producers=%d", capacity, producers), func(b *testing.B) {
				runProducers(b, producers, func(fired *atomic.Int64) benchTarget {
					c := &muster.Client{MaxBatchSize: benchBatch, BatchTimeout: time.Hour, PendingWorkCapacity: capacity,
						BatchMaker: func() muster.Batch { return &countBatch{fired: fired} }}
					if err := c.Start(); err != nil {
						b.Fatal(err)
					}
					return benchTarget{add: func(v int) { c.Work <- v }, stop: func() { _ = c.Stop() }}
				})
			})
		}
	}
}

type countBatch struct {
	fired *atomic.Int64
	n     int64
}

func (c *countBatch) Add(any)                { c.n++ }
func (c *countBatch) Fire(n muster.Notifier) { c.fired.Add(c.n); n.Done() }

// BenchmarkAddScaling checks that the cost per item stays flat as the number
// of items grows (a backlog must not make each item dearer).
func BenchmarkAddScaling(b *testing.B) {
	ctx := context.Background()
	for _, total := range []int{10_000, 100_000, 1_000_000, 10_000_000} {
		b.Run(fmt.Sprintf("items=%d", total), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var fired atomic.Int64
				mb := &muster.Batcher[int]{MaxBatchSize: benchBatch, BatchTimeout: time.Hour,
					Fire: func(ctx context.Context, items []int) error { fired.Add(int64(len(items))); return nil }}
				_ = mb.Start()
				for i := range total {
					_ = mb.Add(ctx, i)
				}
				_ = mb.Stop()
				if fired.Load() != int64(total) {
					b.Fatalf("fired %d of %d", fired.Load(), total)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*total), "ns/item")
		})
	}
}

// BenchmarkAllocsPerBatch reports allocations per fired batch on the typed
// path (1 producer): the core's own, the user's FireFunc allocates nothing.
func BenchmarkAllocsPerBatch(b *testing.B) {
	ctx := context.Background()
	var fired atomic.Int64
	mb := &muster.Batcher[int]{MaxBatchSize: benchBatch, BatchTimeout: time.Hour, MaxConcurrentBatches: 1,
		Fire: func(ctx context.Context, items []int) error { fired.Add(int64(len(items))); return nil }}
	_ = mb.Start()
	b.ReportAllocs()
	for b.Loop() { // one batch per iteration
		for i := range benchBatch {
			_ = mb.Add(ctx, i)
		}
	}
	_ = mb.Stop()
}

// BenchmarkTimeoutLateness measures how late a timeout-triggered batch fires
// on an idle client: from Add to the start of Fire, minus BatchTimeout,
// against a bare time.AfterFunc armed at the same moment in the same run.
// Run with -benchtime=500x; p50 and p99 are reported in microseconds.
func BenchmarkTimeoutLateness(b *testing.B) {
	const timeout = time.Millisecond
	report := func(b *testing.B, late []time.Duration) {
		slices.Sort(late)
		b.ReportMetric(float64(late[len(late)/2].Nanoseconds())/1e3, "p50-late-us")
		b.ReportMetric(float64(late[len(late)*99/100].Nanoseconds())/1e3, "p99-late-us")
	}
	b.Run("impl=bare-timer", func(b *testing.B) {
		late := make([]time.Duration, 0, b.N)
		fired := make(chan time.Time)
		for b.Loop() {
			start := time.Now()
			time.AfterFunc(timeout, func() { fired <- time.Now() })
			late = append(late, (<-fired).Sub(start)-timeout)
		}
		report(b, late)
	})
	b.Run("impl=muster-Batcher", func(b *testing.B) {
		late := make([]time.Duration, 0, b.N)
		fired := make(chan time.Time)
		mb := &muster.Batcher[int]{MaxBatchSize: benchBatch, BatchTimeout: timeout,
			Fire: func(ctx context.Context, items []int) error { fired <- time.Now(); return nil }}
		_ = mb.Start()
		for b.Loop() {
			start := time.Now()
			_ = mb.Add(context.Background(), 1)
			late = append(late, (<-fired).Sub(start)-timeout)
		}
		_ = mb.Stop()
		report(b, late)
	})
}
