package muster

import (
	"context"
	"fmt"
	"math"
	"time"
)

// FireFunc processes one batch of items and reports its outcome. It runs on
// the batch's own goroutine. ctx carries what the Fired hooks put there (the
// batch span) and is canceled when a Shutdown deadline passes. items is valid
// only until FireFunc returns: the batcher reuses its array (copy it to keep
// it, as with io.Writer's p).
type FireFunc[T any] func(ctx context.Context, items []T) error

// Middleware wraps a FireFunc with behaviour: retries, rate limits,
// timeouts (go-kit's endpoint.Middleware). The same Middleware serves a
// Batcher, a Keyed and a Client.
type Middleware[T any] func(next FireFunc[T]) FireFunc[T]

// Chain composes middlewares into one; the first is the outermost.
func Chain[T any](outer Middleware[T], others ...Middleware[T]) Middleware[T] {
	return func(next FireFunc[T]) FireFunc[T] {
		for i := len(others) - 1; i >= 0; i-- {
			next = others[i](next)
		}
		return outer(next)
	}
}

// Batcher batches typed items for a FireFunc: Add costs a lock and an append
// (no channel hand-off, no allocation per item), and a batch is a slice, with
// no Batch type to write. It is a Keyed with one key: its Key is nil, and the
// per-key fields and TopKeys do nothing.
//
//	b := &muster.Batcher[Row]{MaxBatchSize: 100, BatchTimeout: time.Second, Fire: insertRows}
type Batcher[T any] = Keyed[struct{}, T]

// defaultMaxKeys bounds the live keys of a Keyed whose MaxKeys is zero.
const defaultMaxKeys = 1024

// Keyed batches typed items per key (tenant, destination, credentials): a
// batch never mixes keys. Each key has its own open batch and triggers;
// closed batches of all keys share the MaxConcurrentBatches slots and the
// PendingWorkCapacity (see the package doc, "One engine"). A batch's key is
// Key(items[0]), and FireInfo.Key for hooks.
//
// A key is created by the first Add that names it. A key holding nothing is
// evicted after KeyIdleTimeout, or at once, least recently used first, when
// a new key needs room under MaxKeys; when every live key holds something,
// the new key's Add returns ErrTooManyKeys. A live key costs about 100 bytes
// plus its open batch.
//
// Configure the fields, call Start, Add from any number of goroutines, and
// Stop or Shutdown at the end. Fields must not change after Start; a started
// Keyed must not be copied.
type Keyed[K comparable, T any] struct {
	// Key returns an item's key, on the producer's goroutine: it must be
	// cheap and free of side effects. A key not equal to itself (a NaN) is
	// refused with ErrInvalidKey. Required unless K is struct{} (a Batcher).
	Key func(item T) K

	// MaxBatchSize fires a key's batch when it holds this many items. Zero:
	// no size trigger. At least one of MaxBatchSize, BatchTimeout and
	// MaxBatchBytes must be set.
	MaxBatchSize uint

	// BatchTimeout fires a key's batch this long after its first item
	// arrived. Zero: no time trigger. Negative: an error.
	BatchTimeout time.Duration

	// MaxBatchBytes fires a key's batch before the next item would take it
	// past this many bytes (or when it reaches them), as Sizer measures
	// them. An item larger on its own is refused with ErrTooLarge. Zero: no
	// bytes trigger. It and Sizer go together.
	MaxBatchBytes uint

	// Sizer returns an item's size for MaxBatchBytes, on the producer's
	// goroutine, outside the client's lock. A negative size or a panic
	// refuses the item (ErrTooLarge, *PanicError).
	Sizer func(item T) int

	// MaxConcurrentBatches caps the batches in flight (between Fired and
	// Done) across all keys. A batch closed at the cap waits for a slot,
	// with no goroutine. Zero: no cap.
	MaxConcurrentBatches uint

	// PendingWorkCapacity is how many items Add accepts, across all keys,
	// behind the oldest batch waiting for a slot, before the Overflow
	// policy applies. Zero: none.
	PendingWorkCapacity uint

	// MaxPendingPerKey bounds one key's share: while a batch of a key waits
	// for a slot, the key's Adds meet the Overflow policy once it holds this
	// many items that have not fired (KeyStats.Pending: at most this many, or
	// one full batch if that is more), and other keys' are still taken
	// (OverflowFail's error matches ErrFull; OverflowDropOldest drops that
	// key's oldest item, never another key's). It also makes admission fair:
	// a free slot goes round-robin to the keys with batches waiting, the key
	// served longest ago first, so that at most one batch of each other key
	// goes before a quiet key's. It must be below PendingWorkCapacity, and
	// should be at least MaxBatchSize. Zero: no bound, and batches get slots
	// oldest first.
	MaxPendingPerKey uint

	// Overflow says what Add does when the pending capacity, or a key's
	// MaxPendingPerKey, is used up. Zero: OverflowBlock.
	Overflow Overflow

	// MaxKeys bounds the live keys. Zero: 1,024.
	MaxKeys int

	// KeyIdleTimeout is how long a key holding nothing stays live. Zero:
	// 10×BatchTimeout, and at least a minute.
	KeyIdleTimeout time.Duration

	// Fire processes each batch. Required. Wrap it with Chain to add
	// middleware.
	Fire FireFunc[T]

	// Name identifies the client to hooks and telemetry (the
	// muster.batcher.name attribute). Keep it low-cardinality. Optional.
	Name string

	// Hooks observe the client: a *Hooks, or an Observer that gives each
	// client hooks of its own. Optional; nil costs nothing.
	Hooks Observer

	// BaseContext returns the context batches fire with; nil:
	// context.Background(). Start calls it once.
	BaseContext func() context.Context

	// DeadLetter receives, with why, the items whose outcome is not
	// delivery (see the package doc, "What happens to items"):
	//   - a batch whose Fire, after every middleware, failed: all its items
	//     with the error, or, for an [*ItemErrors] aligned with the batch,
	//     the failed items with an *ItemErrors aligned with them; on the
	//     batch's goroutine with its context, before the Done hook and the
	//     Results;
	//   - an item dropped by Overflow, with ErrDropped, on the goroutine of
	//     the Add that dropped it, with that Add's context (for the oldest
	//     item, the context the Added hook kept for it, or Background);
	//   - a batch abandoned unfired at a Shutdown deadline, with
	//     ErrIncomplete, on Shutdown's goroutine with the base context
	//     (canceled by then), before its Done hook.
	// items is valid only until it returns. It must not block for long (it
	// holds a slot, a producer, or Shutdown); a panic in it is recovered.
	// Optional; nil costs nothing.
	DeadLetter func(ctx context.Context, items []T, err error)

	e *engine[K, T]
}

// Start checks the configuration and makes the client ready for Add. It
// starts no goroutine: batches get theirs as they fire. A second Start is
// refused (ErrInvalidConfig).
func (k *Keyed[K, T]) Start() error { return k.start(nil) }

// start checks the configuration and makes the engine; client, for a
// Client, supplies the engine's fire function and join instead of Fire.
func (k *Keyed[K, T]) start(client func(*config[K, T])) error {
	if k.e != nil {
		return errAlreadyStarted // before anything else: Adds may be running
	}
	if k.MaxBatchSize == 0 && k.BatchTimeout == 0 && k.MaxBatchBytes == 0 {
		return errZeroBoth
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
		return fmt.Errorf("%w: unknown Overflow %d", ErrInvalidConfig, k.Overflow)
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
			c.maxKeys = defaultMaxKeys
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
// fires it. When the pending capacity is used up it applies the Overflow
// policy: by default it blocks until there is room or ctx ends (then it
// returns ctx's error and the item is not taken). The package doc lists its
// errors. ctx reaches hooks (tracing links the batch to it); it is not the
// context the batch fires with, and is not checked when there is room.
func (k *Keyed[K, T]) Add(ctx context.Context, item T) error {
	if err := k.e.usable(ctx); err != nil {
		return err
	}
	_, err := k.e.add(ctx, item, false, false)
	return err
}

// AddResult adds an item as Add does and returns its Result, done when the
// item's batch is done (after a retry middleware's retries): for a producer
// that must know its item was written. A refused item gets an error and no
// Result. The Results of a batch share one allocation.
func (k *Keyed[K, T]) AddResult(ctx context.Context, item T) (Result, error) {
	if err := k.e.usable(ctx); err != nil {
		return Result{}, err
	}
	return k.e.add(ctx, item, true, false)
}

// Flush fires every open batch now and waits until every batch closed
// before the call is done, or ctx ends. It returns ErrStopped once
// stopping, and ErrIncomplete if a Shutdown deadline abandoned one of those
// batches. Batch errors are not returned: hooks and Results see them.
func (k *Keyed[K, T]) Flush(ctx context.Context) error {
	if err := k.e.usable(ctx); err != nil {
		return err
	}
	return k.e.flush(ctx)
}

// Stop fires every partial batch and returns when every batch is done. Add
// returns ErrStopped from the moment Stop begins. Calling it again waits the
// same way and returns nil.
func (k *Keyed[K, T]) Stop() error { return k.Shutdown(context.Background()) }

// Shutdown stops as Stop does but gives up when ctx ends; see
// Client.Shutdown.
func (k *Keyed[K, T]) Shutdown(ctx context.Context) error {
	if err := k.e.usable(ctx); err != nil {
		return err
	}
	k.e.beginStop()
	return k.e.wait(ctx)
}

// Stats returns the client's counters. It is zero before Start.
func (k *Keyed[K, T]) Stats() Stats { return k.e.snapshot() }

// TopKeys returns the n keys holding the most, most first: by
// KeyStats.Pending, then Waiting, then InFlight; keys holding nothing are
// left out. It finds the loud tenant without a metric label per key, but
// reads every live key under the client's locks: call it at scrape
// intervals, not per item (13 µs for 1,024 keys: BenchmarkKeyedTopKeys).
// It returns nil before Start, and no keys when Key is nil.
func (k *Keyed[K, T]) TopKeys(n int) []KeyStats[K] {
	if k.e == nil {
		return nil
	}
	return k.e.topKeys(n)
}
