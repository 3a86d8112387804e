package benchmarks

import "sync"

// Baselines written here, the floors a batcher is measured against.
func baselineImpls() []Impl {
	return []Impl{
		{
			// A mutex-protected slice; the producer that fills a batch fires
			// it inline. The floor for any lock-based add.
			ID:   MutexInline,
			Name: "mutex baseline, fires inline",
			Start: func(c *Counter) (func(int), func()) {
				m := newMutexBatcher(func(items []int) { c.Fired(len(items)) })
				return m.add, m.flush
			},
		},
		{
			// The same, firing each batch on a goroutine of its own, as the
			// seed's contract ("Fire runs on its own goroutine") requires.
			ID:   "mutex-go",
			Name: "mutex baseline, fires on a goroutine",
			Ref:  MutexInline,
			Start: func(c *Counter) (func(int), func()) {
				var wg sync.WaitGroup
				m := newMutexBatcher(func(items []int) {
					wg.Go(func() { c.Fired(len(items)) })
				})
				return m.add, func() { m.flush(); wg.Wait() }
			},
		},
		{
			// The floor of muster's Batcher contract: a mutex and an append
			// per item, each batch fired on a goroutine other than the
			// producer's, the goroutines reused (up to 64 parked between
			// batches, as a Batcher without MaxConcurrentBatches keeps), the
			// in-flight count kept, the items arrays recycled. What a
			// Batcher does beyond this (its hooks, triggers, stages) is
			// muster's own cost.
			ID:   MutexPool,
			Name: "mutex baseline, fires on reused goroutines (the Batcher floor)",
			Ref:  MutexInline,
			Start: func(c *Counter) (func(int), func()) {
				p := newPoolBatcher(func(items []int) { c.Fired(len(items)) })
				return p.add, p.stop
			},
		},
		{
			// A buffered channel (1024) and one consumer goroutine: the floor
			// for a channel API.
			ID:   "chan",
			Name: "chan (1024) + consumer baseline",
			Ref:  MutexInline,
			Start: func(c *Counter) (func(int), func()) {
				ch := make(chan int, 1024)
				done := make(chan struct{})
				go func() {
					defer close(done)
					items := make([]int, 0, BatchSize)
					for v := range ch {
						items = append(items, v)
						if len(items) == BatchSize {
							c.Fired(len(items))
							items = items[:0]
						}
					}
					if len(items) > 0 {
						c.Fired(len(items))
					}
				}()
				return func(v int) { ch <- v }, func() { close(ch); <-done }
			},
		},
	}
}

// mutexBatcher is the minimal lock-based batcher.
type mutexBatcher struct {
	mu    sync.Mutex
	items []int
	fire  func([]int)
}

func newMutexBatcher(fire func([]int)) *mutexBatcher {
	return &mutexBatcher{items: make([]int, 0, BatchSize), fire: fire}
}

func (m *mutexBatcher) add(v int) {
	m.mu.Lock()
	m.items = append(m.items, v)
	if len(m.items) < BatchSize {
		m.mu.Unlock()
		return
	}
	full := m.items
	m.items = make([]int, 0, BatchSize)
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

// poolBatcher is mutexBatcher with each batch fired on a reused goroutine:
// what muster's Batcher contract requires of any implementation.
type poolBatcher struct {
	mu    sync.Mutex
	items []int
	fire  func([]int)

	fmu      sync.Mutex
	inflight int
	free     [][]int
	parked   []chan []int
	idle     sync.Cond // on fmu: signalled when inflight drops to 0
}

func newPoolBatcher(fire func([]int)) *poolBatcher {
	p := &poolBatcher{items: make([]int, 0, BatchSize), fire: fire}
	p.idle.L = &p.fmu
	return p
}

func (p *poolBatcher) add(v int) {
	p.mu.Lock()
	p.items = append(p.items, v)
	if len(p.items) < BatchSize {
		p.mu.Unlock()
		return
	}
	full := p.items
	p.fmu.Lock()
	p.inflight++
	var next []int
	if n := len(p.free); n > 0 {
		next, p.free = p.free[n-1], p.free[:n-1]
	}
	var to chan []int
	if n := len(p.parked); n > 0 {
		to, p.parked = p.parked[n-1], p.parked[:n-1]
	}
	p.fmu.Unlock()
	if next == nil {
		next = make([]int, 0, BatchSize)
	}
	p.items = next
	p.mu.Unlock()
	p.launch(full, to)
}

// launch hands a batch to a parked goroutine, or starts one.
func (p *poolBatcher) launch(items []int, to chan []int) {
	if to != nil {
		to <- items
		return
	}
	go p.run(items)
}

// maxPoolParked bounds a poolBatcher's idle goroutines, as muster bounds a
// Batcher's without MaxConcurrentBatches.
const maxPoolParked = 64

// run fires batches until stop: between them it parks, unless
// maxPoolParked goroutines are parked already.
func (p *poolBatcher) run(items []int) {
	next := make(chan []int, 1)
	for items != nil {
		p.fire(items)
		p.fmu.Lock()
		p.free = append(p.free, items[:0])
		park := len(p.parked) < maxPoolParked
		if park {
			p.parked = append(p.parked, next)
		}
		if p.inflight--; p.inflight == 0 {
			p.idle.Broadcast()
		}
		p.fmu.Unlock()
		if !park {
			return
		}
		items = <-next
	}
}

// stop fires what is left, waits for every batch, and ends the goroutines.
func (p *poolBatcher) stop() {
	p.mu.Lock()
	last := p.items
	p.items = nil
	p.mu.Unlock()
	if len(last) > 0 {
		p.fmu.Lock()
		p.inflight++
		p.fmu.Unlock()
		p.launch(last, nil)
	}
	p.fmu.Lock()
	for p.inflight > 0 {
		p.idle.Wait()
	}
	for _, ch := range p.parked {
		close(ch)
	}
	p.parked = nil
	p.fmu.Unlock()
}
