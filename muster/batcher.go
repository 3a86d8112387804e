package muster

import (
	"context"
	"fmt"
	"math"
	"time"
)

// FireFunc processes one batch of items and reports its outcome. It runs on
// the batch's own goroutine. ctx is the batch's context: it carries what the
// Fired hooks put there (the batch span, with tracing) and is canceled when
// a Shutdown deadline passes.
//
// items is only valid until FireFunc returns: the batcher reuses its
// backing array for a later batch. Copy it to keep it (as with io.Writer's
// p).
type FireFunc[T any] func(ctx context.Context, items []T) error

// DeadLetterFunc receives items whose outcome is not delivery, and why, so
// that none vanishes: spill them, send them to a dead-letter queue, retry
// them later. It is called
//   - for a batch whose Fire returned an error (after every middleware, so
//     after a retry middleware's last attempt): with all its items and that
//     error, or, when the error is an [*ItemErrors] aligned with the batch,
//     with only the failed items and an *ItemErrors aligned with them. It
//     runs on the batch's goroutine with the batch's context, after Fire
//     returned and before the Done hook runs and the items' Results are
//     done. A batch in flight at a Shutdown deadline that then fails is one
//     of these: context.Cause(ctx) is ErrIncomplete;
//   - for an item dropped by an Overflow policy, with ErrDropped, on the
//     goroutine of the Add that dropped it, with that Add's context for the
//     incoming item, and for the oldest one the context the Added hook kept
//     for it (else context.Background());
//   - for a batch abandoned unfired at a Shutdown deadline, with
//     ErrIncomplete, on Shutdown's goroutine, with the batches' base context
//     (canceled by then), before the batch's Done hook.
//
// items is only valid until it returns (as FireFunc's). It must not block
// for long: it holds the batch's in-flight slot, the producer, or Shutdown.
// A panic in it is recovered and ignored.
type DeadLetterFunc[T any] func(ctx context.Context, items []T, err error)

// Middleware wraps a FireFunc with behaviour: retries, rate limits,
// timeouts. It is endpoint.Middleware from go-kit with FireFunc for
// Endpoint. The same Middleware serves a Batcher, a Keyed and a Client.
type Middleware[T any] func(next FireFunc[T]) FireFunc[T]

// Chain composes middlewares into one. Batches traverse them in the order
// they are declared: the first middleware is the outermost.
func Chain[T any](outer Middleware[T], others ...Middleware[T]) Middleware[T] {
	return func(next FireFunc[T]) FireFunc[T] {
		for i := len(others) - 1; i >= 0; i-- {
			next = others[i](next)
		}
		return outer(next)
	}
}

// Batcher batches typed items for a FireFunc. It behaves as Client does,
// with the same fields and triggers, but Add takes a T and costs a lock and
// an append (no channel hand-off, no allocation per item), and a batch is a
// slice handed to Fire: no Batch type to write.
//
// A Batcher is a Keyed with one key: a Keyed[struct{}, T] whose Key is nil,
// so that every item has the key struct{}{}. Its fields and methods are
// Keyed's; the per-key ones (Key, MaxPendingPerKey, MaxKeys,
// KeyIdleTimeout, KeyStats, TopKeys) do nothing while Key is nil.
//
//	b := &muster.Batcher[Row]{MaxBatchSize: 100, BatchTimeout: time.Second, Fire: insertRows}
//
// Configure the fields, call Start, then Add from any number of goroutines,
// and Stop or Shutdown at the end. Fields must not change after Start. A
// Batcher must not be copied after Start.
type Batcher[T any] = Keyed[struct{}, T]

// DefaultMaxKeys is the live-key bound of a Keyed whose MaxKeys is zero.
const DefaultMaxKeys = 1024

// Keyed batches typed items per key: a Key function routes each item to the
// batch of its key (tenant, destination, credentials), so that a batch
// never mixes keys. Each key has its own open batch, with its own size,
// bytes and time triggers; closed batches of all keys queue, oldest first,
// for one set of MaxConcurrentBatches in-flight slots, and
// PendingWorkCapacity bounds the items queued across all keys (backpressure
// is shared: what telemetry reports as capacity is what producers meet).
//
// By default one key can therefore use all of it: a tenant adding 100 times
// faster than the others fills PendingWorkCapacity and the others' Adds
// block (or fail) with it. MaxPendingPerKey makes the client fair to keys:
// it holds a key that has a batch waiting to that many items, so that the
// rest of the capacity stays with the other keys, and gives free slots to
// the keys with batches waiting in turn, so that at most one batch of each
// other key gets a slot before a quiet key's. KeyStats and TopKeys find the
// key that holds the most.
//
// Fire is a FireFunc, so any Middleware applies unchanged; a batch's key is
// Key(items[0]), and FireInfo.Key for hooks.
//
// A nil Key is allowed only when K is struct{} (a [Batcher]): every item
// then has the one key, and the client keeps no per-key state. For any
// other K, Start refuses a nil Key.
//
// Keys are created by the first Add that names them. A key holding nothing
// (no open batch, no batch waiting or in flight) is evicted after
// KeyIdleTimeout, or at once, least recently used first, when a new key
// needs room under MaxKeys; when every live key holds something, the new
// key's Add returns [ErrTooManyKeys]. A live key costs about 100 bytes plus
// its open batch.
//
// Configure the fields, call Start, then Add from any number of goroutines,
// and Stop or Shutdown at the end. Fields must not change after Start. A
// Keyed must not be copied after Start.
type Keyed[K comparable, T any] struct {
	// Key returns an item's key. It is called once per item, on the
	// producer's goroutine: it must be cheap and free of side effects. A
	// key not equal to itself (a NaN) is refused with ErrInvalidKey.
	// Required unless K is struct{}: nil then means one key (a Batcher).
	Key func(item T) K

	// MaxBatchSize fires a key's batch when it holds this many items. Zero:
	// no size trigger. It is an error for this, BatchTimeout and
	// MaxBatchBytes all to be zero.
	MaxBatchSize uint

	// BatchTimeout fires a key's batch this long after its first item
	// arrived. Zero: no time trigger. Negative: an error.
	BatchTimeout time.Duration

	// MaxBatchBytes fires a key's batch before the next item would take it
	// past this many bytes (or when it reaches them), as measured by Sizer.
	// An item larger than this on its own is refused with ErrTooLarge. Zero:
	// no bytes trigger. It requires Sizer, and Sizer requires it.
	MaxBatchBytes uint

	// Sizer returns an item's size for MaxBatchBytes. It is called once per
	// item, on the producer's goroutine, outside the client's lock. A
	// negative size or a panic refuses the item (ErrTooLarge, *PanicError).
	Sizer func(item T) int

	// MaxConcurrentBatches caps the batches in flight (fired, Fire not yet
	// returned) across all keys: never more than this many between Fired
	// and Done. A batch closed at the cap waits for a slot, with no
	// goroutine. Zero: no cap.
	MaxConcurrentBatches uint

	// PendingWorkCapacity is how many items Add accepts, across all keys,
	// behind the oldest batch waiting for an in-flight slot before the
	// Overflow policy applies (by default Add blocks). Zero: as soon as a
	// batch waits.
	PendingWorkCapacity uint

	// MaxPendingPerKey bounds one key's share. While a batch of a key waits
	// for a slot, the key may hold at most this many items that have not
	// fired (in its open batch and its waiting batches: KeyStats.Pending);
	// at that many, an Add of that key meets the Overflow policy as at full
	// capacity (OverflowFail's error matches ErrFull; OverflowDropOldest
	// drops that key's oldest queued item, never another key's), while the
	// other keys' items are still taken, up to PendingWorkCapacity. A key
	// thus never holds more than max(MaxPendingPerKey, MaxBatchSize) such
	// items (MaxBatchSize > 0), and a loud key leaves the other keys at
	// least PendingWorkCapacity - MaxPendingPerKey. It must be below
	// PendingWorkCapacity (Start fails otherwise: one key could still fill
	// it); make it at least MaxBatchSize, so that a held key still fills
	// batches.
	//
	// It also makes admission fair: a free slot goes to the oldest waiting
	// batch of the key served longest ago, round-robin over the keys with
	// batches waiting, instead of to the oldest batch of all; so at most
	// one batch of each other key gets a slot before a quiet key's, however
	// long a loud key's backlog.
	//
	// Zero: no per-key bound, and batches get slots oldest first.
	MaxPendingPerKey uint

	// Overflow says what Add does when the pending capacity, or a key's
	// MaxPendingPerKey, is used up: block (the default), fail fast, or drop
	// the newest or oldest item.
	Overflow Overflow

	// MaxKeys bounds the live keys. Zero: DefaultMaxKeys.
	MaxKeys int

	// KeyIdleTimeout is how long a key holding nothing stays live. Zero:
	// 10×BatchTimeout, and at least a minute.
	KeyIdleTimeout time.Duration

	// Fire processes each batch of one key. Required. Wrap it with Chain to
	// add middleware.
	Fire FireFunc[T]

	// Name identifies the client to hooks and telemetry (the
	// muster.batcher.name attribute). Keep it low-cardinality: the key goes
	// to FireInfo.Key, not here. Optional.
	Name string

	// Hooks observe the client: a *Hooks, or an Observer that gives each
	// client hooks of its own. Optional; nil costs nothing.
	Hooks Observer

	// BaseContext returns the context batches fire with. If nil,
	// context.Background() is used. It is called once, by Start.
	BaseContext func() context.Context

	// DeadLetter receives the items whose outcome is not delivery, with
	// why: those of a batch whose Fire (after every middleware: after the
	// retries) returned an error, those dropped by Overflow (ErrDropped),
	// and those of batches abandoned at a Shutdown deadline (ErrIncomplete).
	// See DeadLetterFunc. Optional; nil costs nothing.
	DeadLetter DeadLetterFunc[T]

	e *engine[K, T]
}

// Start checks the configuration and makes the client ready for Add. It
// starts no goroutine: batches get theirs as they fire. A second Start
// returns ErrAlreadyStarted.
func (k *Keyed[K, T]) Start() error { return k.start(nil) }

// start checks the configuration and makes the engine; client, for a
// Client, supplies the engine's fire function and join instead of Fire.
func (k *Keyed[K, T]) start(client func(*config[K, T])) error {
	if k.e != nil {
		return ErrAlreadyStarted // before anything else: Adds may be running
	}
	if k.MaxBatchSize == 0 && k.BatchTimeout == 0 && k.MaxBatchBytes == 0 {
		return ErrZeroBoth
	}
	_, oneKey := any(*new(K)).(struct{})
	switch {
	case k.Key == nil && !oneKey:
		return fmt.Errorf("%w: Key is nil", ErrInvalidConfig)
	case k.Fire == nil && client == nil:
		return fmt.Errorf("%w: Fire is nil", ErrInvalidConfig)
	case (k.MaxBatchBytes > 0) != (k.Sizer != nil):
		return fmt.Errorf("%w: MaxBatchBytes and Sizer go together", ErrInvalidConfig)
	case k.Overflow > OverflowDropOldest:
		return fmt.Errorf("%w: unknown Overflow %v", ErrInvalidConfig, k.Overflow)
	case k.BatchTimeout < 0 || k.MaxKeys < 0 || k.KeyIdleTimeout < 0:
		return fmt.Errorf("%w: negative BatchTimeout, MaxKeys or KeyIdleTimeout", ErrInvalidConfig)
	case k.MaxPendingPerKey > 0 && k.MaxPendingPerKey >= k.PendingWorkCapacity:
		return fmt.Errorf("%w: MaxPendingPerKey %d must be below PendingWorkCapacity %d, or one key can still fill it",
			ErrInvalidConfig, k.MaxPendingPerKey, k.PendingWorkCapacity)
	}
	fire := k.Fire
	c := config[K, T]{
		name: k.Name, max: clamp(k.MaxBatchSize), maxBytes: clamp(k.MaxBatchBytes), timeout: k.BatchTimeout,
		limit: clamp(k.MaxConcurrentBatches), capacity: clamp(k.PendingWorkCapacity), overflow: k.Overflow,
		perKey: clamp(k.MaxPendingPerKey), sizer: k.Sizer, maxKeys: k.MaxKeys, idle: k.KeyIdleTimeout, observer: k.Hooks, base: k.BaseContext,
		deadLetter: k.DeadLetter, keepItems: true,
		fire: func(ctx context.Context, b *batch[K, T]) error { return callFire(fire, ctx, b.items) },
	}
	if client != nil {
		client(&c)
	}
	if k.Key != nil {
		c.keyFn = k.Key
		if c.maxKeys == 0 {
			c.maxKeys = DefaultMaxKeys
		}
		if c.idle == 0 {
			c.idle = max(10*k.BatchTimeout, time.Minute)
		}
	}
	k.e = newEngine(c)
	k.e.observe()
	return nil
}

// clamp converts a uint setting to an int, saturating.
func clamp(u uint) int { return int(min(u, math.MaxInt)) }

// Add adds an item to its key's open batch; the call that fills the batch
// fires it. Under backpressure (MaxConcurrentBatches in flight and
// PendingWorkCapacity items queued, or the key at MaxPendingPerKey) it
// blocks until there is room or ctx ends, then returns ctx's error and the
// item is not taken; Overflow can make it fail or drop instead. Once Stop
// or Shutdown has begun it returns ErrStopped. A new key beyond MaxKeys,
// when no key can be evicted, gets ErrTooManyKeys. ctx reaches hooks
// (tracing links the batch to it); it is not the context the batch fires
// with, and is not checked when there is room. A nil ctx gets
// ErrNilContext.
func (k *Keyed[K, T]) Add(ctx context.Context, item T) error {
	if k.e == nil {
		return ErrNotStarted
	}
	if ctx == nil {
		return ErrNilContext
	}
	_, err := k.e.add(ctx, item, false, false)
	return err
}

// AddResult adds an item as Add does and returns its Result, which is done
// when the item's batch is done (after the retries of a retry middleware):
// for a producer that must know its item was written, to acknowledge a
// message or answer a request. A refused item gets an error and no Result.
// The Results of a batch share one allocation.
func (k *Keyed[K, T]) AddResult(ctx context.Context, item T) (Result, error) {
	if k.e == nil {
		return Result{}, ErrNotStarted
	}
	if ctx == nil {
		return Result{}, ErrNilContext
	}
	return k.e.add(ctx, item, true, false)
}

// Flush fires every key's open batch now and waits until every batch
// closed before the call is done, or ctx ends. It returns ErrStopped once
// stopping, and ErrIncomplete if a Shutdown deadline abandoned one of those
// batches. Batch errors are not returned: hooks and Results see them.
func (k *Keyed[K, T]) Flush(ctx context.Context) error {
	if k.e == nil {
		return ErrNotStarted
	}
	if ctx == nil {
		return ErrNilContext
	}
	return k.e.flush(ctx)
}

// Stop fires every key's partial batch and returns when every batch is
// done. Add returns ErrStopped from the moment Stop begins. Calling it
// again waits the same way and returns nil.
func (k *Keyed[K, T]) Stop() error { return k.Shutdown(context.Background()) }

// Shutdown stops as Stop does but gives up when ctx ends; see
// Client.Shutdown.
func (k *Keyed[K, T]) Shutdown(ctx context.Context) error {
	if k.e == nil {
		return ErrNotStarted
	}
	if ctx == nil {
		return ErrNilContext
	}
	k.e.beginStop()
	return k.e.wait(ctx)
}

// Stats returns the client's counters. It is zero before Start.
func (k *Keyed[K, T]) Stats() Stats {
	if k.e == nil {
		return Stats{}
	}
	return k.e.snapshot()
}

// KeyStats returns one key's share of the client: its items not yet fired,
// its batches waiting and in flight. It reports false for a key that is not
// live (never added, or evicted), before Start, and when Key is nil. It takes the client's
// locks for a map lookup.
func (k *Keyed[K, T]) KeyStats(key K) (KeyStats[K], bool) {
	if k.e == nil {
		return KeyStats[K]{}, false
	}
	return k.e.keyStats(key)
}

// TopKeys returns the n keys holding the most, most first: by
// KeyStats.Pending, then Waiting, then InFlight. Keys holding nothing are
// left out, so it may return fewer. It is for finding the loud tenant
// without a metric label per key (a dashboard's top-k): it reads every live
// key (at most MaxKeys) while holding the client's locks, so call it at
// scrape intervals, not per item (BenchmarkKeyedTopKeys measures it).
func (k *Keyed[K, T]) TopKeys(n int) []KeyStats[K] {
	if k.e == nil {
		return nil
	}
	return k.e.topKeys(n)
}
