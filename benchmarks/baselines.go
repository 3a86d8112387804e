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
