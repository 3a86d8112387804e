package muster_test

// Helpers shared by the tests of this package.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
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

func items2any(items []int) []any {
	out := make([]any, len(items))
	for i, v := range items {
		out[i] = v
	}
	return out
}

// A Batch.Add that panics refuses the item with a *PanicError.
type panickyBatch struct{ recBatch }

func (b *panickyBatch) Add(item any) {
	if item == 13 {
		panic("unlucky")
	}
	b.recBatch.Add(item)
}

type batchFunc func(n muster.Notifier)

func (f batchFunc) Add(any)                { _ = 0 }
func (f batchFunc) Fire(n muster.Notifier) { f(n) }

// kitem is an item with its key.
type kitem struct {
	key string
	v   int
}

func kitemKey(it kitem) string { return it.key }

// keyedLog records the batches a Keyed client fired, with their times.
type keyedLog struct {
	mu      sync.Mutex
	batches []keyedBatch
	errs    []string
}

type keyedBatch struct {
	key   string
	items []int
	at    time.Duration // fake time since the test's start
}

// fire is a Keyed's FireFunc: a batch's key is its first item's, and every
// item must share it.
func (l *keyedLog) fire(start time.Time) muster.FireFunc[kitem] {
	return func(ctx context.Context, items []kitem) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		if len(items) == 0 {
			l.errs = append(l.errs, "an empty batch fired")
			return nil
		}
		key := items[0].key
		b := keyedBatch{key: key, at: time.Since(start)}
		for _, it := range items {
			if it.key != key {
				l.errs = append(l.errs, fmt.Sprintf("item %v in a batch of key %q", it, key))
			}
			b.items = append(b.items, it.v)
		}
		l.batches = append(l.batches, b)
		return nil
	}
}

func (l *keyedLog) get(t *testing.T) []keyedBatch {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
	return slices.Clone(l.batches)
}

func startKeyed[T any](t *testing.T, k *muster.Keyed[string, T]) {
	t.Helper()
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
}

// holdBatcher starts a Batcher whose batches wait on release, recording what
// fired, with MaxBatchSize 2, one slot and the given capacity and policy.
func holdBatcher(t *testing.T, capacity uint, policy muster.Overflow, hooks muster.Observer) (*muster.Batcher[int], chan struct{}, func() [][]int) {
	t.Helper()
	release := make(chan struct{})
	var mu sync.Mutex
	var fired [][]int
	b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: capacity, Overflow: policy, Hooks: hooks,
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
	return b, release, func() [][]int {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(fired)
	}
}

// listBatch records its items and fails the ones equal to "bad" with an
// *ItemErrors, index-aligned with the items it was given.
type listBatch struct{ items []any }

func (b *listBatch) Add(item any) { b.items = append(b.items, item) }
func (b *listBatch) Fire(n muster.Notifier) {
	errs := make([]error, len(b.items))
	failed := false
	for i, it := range b.items {
		if it == "bad" {
			errs[i], failed = errBadItem, true
		}
	}
	if failed {
		muster.DoneWith(n, &muster.ItemErrors{Errs: errs})
		return
	}
	n.Done()
}

var errBadItem = errors.New("bad item")

// refusals records what a Refused hook saw, in order.
type refusals struct {
	mu   sync.Mutex
	errs []error
	ctxs []context.Context
}

func (r *refusals) hook(ctx context.Context, info muster.AddInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, info.Err)
	r.ctxs = append(r.ctxs, ctx)
}

func (r *refusals) get() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// count returns how many refusals matched target.
func (r *refusals) count(target error) int {
	n := 0
	for _, err := range r.get() {
		if errors.Is(err, target) {
			n++
		}
	}
	return n
}

// eventLog records events (hooks run, calls made) in order, from any
// goroutine.
type eventLog struct {
	mu     sync.Mutex
	events []string
}

func (l *eventLog) note(s string) { l.mu.Lock(); l.events = append(l.events, s); l.mu.Unlock() }

func (l *eventLog) get() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

// observerFunc adapts a function to muster.Observer.
type observerFunc func(muster.ClientInfo) *muster.Hooks

func (f observerFunc) Observe(c muster.ClientInfo) *muster.Hooks { return f(c) }

// batchLog records a Batcher's batches (Fire) and their triggers (a Fired
// hook), in the order they fired.
type batchLog[T comparable] struct {
	mu       sync.Mutex
	batches  [][]T
	triggers []muster.Trigger
}

func (l *batchLog[T]) hooks() *muster.Hooks {
	return &muster.Hooks{Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.triggers = append(l.triggers, info.Trigger)
		return nil
	}}
}

func (l *batchLog[T]) fire(_ context.Context, items []T) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.batches = append(l.batches, slices.Clone(items))
	return nil
}

// check fails t unless exactly these batches fired, for these triggers.
func (l *batchLog[T]) check(t *testing.T, want [][]T, triggers []muster.Trigger) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.EqualFunc(l.batches, want, slices.Equal) {
		t.Fatalf("fired %v, want %v", l.batches, want)
	}
	if !slices.Equal(l.triggers, triggers) {
		t.Fatalf("triggers %v, want %v", l.triggers, triggers)
	}
}

// isZeroBoth reports whether err is Start's error for a client without a
// trigger: it matches ErrInvalidConfig, and its message is that error's
// followed by the seed's (as the package doc's "Migrating" says).
func isZeroBoth(err error) bool {
	const seeds = "muster: MaxBatchSize and BatchTimeout can't both be zero"
	return errors.Is(err, muster.ErrInvalidConfig) &&
		err.Error() == muster.ErrInvalidConfig.Error()+": "+strings.TrimPrefix(seeds, "muster: ")
}

// isAlreadyStarted reports whether err is a second Start's error.
func isAlreadyStarted(err error) bool {
	return errors.Is(err, muster.ErrInvalidConfig) && strings.Contains(err.Error(), "already started")
}

// isPanic reports whether err is (or wraps) a *muster.PanicError.
func isPanic(err error) bool {
	_, ok := errors.AsType[*muster.PanicError](err)
	return ok
}

// keyStats returns key's share of k from TopKeys, and whether it holds
// anything (TopKeys leaves out keys holding nothing).
func keyStats[K comparable, T any](k *muster.Keyed[K, T], key K) (muster.KeyStats[K], bool) {
	for _, s := range k.TopKeys(1 << 20) {
		if s.Key == key {
			return s, true
		}
	}
	return muster.KeyStats[K]{}, false
}
