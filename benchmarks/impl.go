package benchmarks

import (
	"sync"
	"sync/atomic"
)

// BatchSize is the size every implementation fires at.
const BatchSize = 100

// An Impl is one batching implementation under test.
type Impl struct {
	// ID identifies the implementation in benchmark names and -match
	// (letters, digits, '.', '-').
	ID string
	// Name describes it in tables.
	Name string
	// Ref is the ID of the implementation its ratio is taken against;
	// empty for the reference of references (the inline mutex baseline).
	Ref string
	// Start builds a running batcher whose batches report to c, and returns
	// the function producers call for each item (item is unique across
	// producers: 0..N-1) and the function that fires what is left and
	// returns when every batch has been fired. Both are timed. Setup
	// failures and refused items are reported with c.Fail; untimed
	// teardown is registered with c.Defer.
	Start func(c *Counter) (add func(item int), stop func())
}

// A Counter counts what an implementation fired, and collects its errors
// and its teardown.
type Counter struct {
	items   atomic.Int64
	batches atomic.Int64

	mu      sync.Mutex
	err     error
	cleanup []func()
}

// Fired records one batch of n items.
func (c *Counter) Fired(n int) {
	c.items.Add(int64(n))
	c.batches.Add(1)
}

// Fail records the first error of a run, which then fails.
func (c *Counter) Fail(err error) {
	if err == nil {
		return
	}
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

// Defer registers f to run after the timed region (in reverse order).
func (c *Counter) Defer(f func()) {
	c.mu.Lock()
	c.cleanup = append(c.cleanup, f)
	c.mu.Unlock()
}

func (c *Counter) teardown() {
	c.mu.Lock()
	fs := c.cleanup
	c.cleanup = nil
	c.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func (c *Counter) error() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// IDs of the references.
const (
	MutexInline   = "mutex"          // the inline mutex baseline, the reference of references
	MusterBatcher = "muster-Batcher" // muster's Batcher.Add, for its variants
	MutexPool     = "mutex-pool"     // the floor of the Batcher contract (baselines.go)
)

// Impls returns every implementation, references before the
// implementations compared with them.
func Impls() []Impl {
	var all []Impl
	all = append(all, baselineImpls()...)
	all = append(all, peerImpls()...)
	all = append(all, musterImpls()...)
	return all
}
