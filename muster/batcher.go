package muster

import (
	"context"
	"fmt"
	"time"
)

// FireFunc processes one batch of items and reports its outcome. It runs on
// the batch's own goroutine. ctx is the batch's context: it carries what the
// Fired hooks put there (the batch span, with tracing) and is canceled when a
// Shutdown deadline passes.
//
// items is only valid until FireFunc returns: the Batcher reuses its backing
// array for a later batch. Copy it to keep it (as with io.Writer's p).
type FireFunc[T any] func(ctx context.Context, items []T) error

// Middleware wraps a FireFunc with behaviour: retries, rate limits,
// timeouts. It is endpoint.Middleware from go-kit with FireFunc for Endpoint.
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

// Batcher batches typed items for a FireFunc. It behaves as Client does, with
// the same fields and triggers, but Add takes a T, costs a lock and an append
// (no channel hand-off, no allocation per item), and the batch is a slice
// handed to Fire: no Batch type to write.
//
// Configure the fields, call Start, then Add from any number of goroutines,
// and Stop or Shutdown at the end. Fields must not change after Start. A
// Batcher must not be copied after Start.
type Batcher[T any] struct {
	// MaxBatchSize fires a batch when it holds this many items. Zero: no size
	// trigger. It is an error for both this and BatchTimeout to be zero.
	MaxBatchSize uint

	// BatchTimeout fires a batch this long after its first item arrived.
	// Zero: no time trigger.
	BatchTimeout time.Duration

	// MaxConcurrentBatches caps the batches in flight (fired, Fire not yet
	// returned). A batch closed at the cap waits for a slot. Zero: no cap.
	MaxConcurrentBatches uint

	// PendingWorkCapacity is how many items Add accepts behind a batch that
	// waits for an in-flight slot before Add blocks. Zero: Add blocks as soon
	// as a batch waits.
	PendingWorkCapacity uint

	// MaxBatchBytes fires a batch before the next item would take it past
	// this many bytes (or when it reaches them), as measured by Sizer. An
	// item larger than this on its own is refused with ErrTooLarge. Zero: no
	// bytes trigger. Requires Sizer.
	MaxBatchBytes uint

	// Sizer returns an item's size for MaxBatchBytes. It is called once per
	// item, on the producer's goroutine, outside the client's lock (and, under
	// OverflowDropOldest, again for a dropped item, under it): it must be
	// cheap, free of side effects, and must not panic.
	Sizer func(item T) int

	// Overflow says what Add does when the pending capacity is used up:
	// block (the default), fail fast, or drop the newest or oldest item.
	Overflow Overflow

	// Fire processes each batch. Required. Wrap it with Chain to add
	// middleware.
	Fire FireFunc[T]

	// Name identifies the batcher to hooks and telemetry (the
	// muster.batcher.name attribute). Keep it low-cardinality. Optional.
	Name string

	// Hooks observe the batcher (see Hooks). Optional; nil costs nothing.
	Hooks *Hooks

	// BaseContext returns the context batches fire with. If nil,
	// context.Background() is used. It is called once, by Start.
	BaseContext func() context.Context

	e *engine[T]
}

// Start checks the configuration and makes the Batcher ready for Add. It
// starts no goroutine: batches get theirs as they fire.
func (b *Batcher[T]) Start() error {
	if b.MaxBatchSize == 0 && b.BatchTimeout == 0 && b.MaxBatchBytes == 0 {
		return ErrZeroBoth
	}
	if b.Fire == nil {
		return fmt.Errorf("%w: Fire is nil", ErrInvalidConfig)
	}
	if (b.MaxBatchBytes > 0) != (b.Sizer != nil) {
		return fmt.Errorf("%w: MaxBatchBytes and Sizer go together", ErrInvalidConfig)
	}
	if b.Overflow > OverflowDropOldest {
		return fmt.Errorf("%w: unknown Overflow %v", ErrInvalidConfig, b.Overflow)
	}
	if b.e != nil {
		return ErrAlreadyStarted
	}
	e := newEngine[T](engineConfig{
		name:        b.Name,
		max:         b.MaxBatchSize,
		timeout:     b.BatchTimeout,
		limit:       b.MaxConcurrentBatches,
		capacity:    b.PendingWorkCapacity,
		hooks:       b.Hooks,
		baseContext: b.BaseContext,
		overflow:    b.Overflow,
	})
	e.fire = b.Fire
	if b.MaxBatchBytes > 0 {
		e.maxBytes = clampInt(b.MaxBatchBytes)
		e.sizer = b.Sizer
	}
	e.plain = e.maxBytes == 0 && !e.keepCtxs && !e.keepTimes
	b.e = e
	e.started()
	return nil
}

// Add adds an item to the current batch; the call that fills the batch
// fires it. Under backpressure (MaxConcurrentBatches in flight and
// PendingWorkCapacity items queued) it blocks until there is room or ctx
// ends; then it returns ctx's error and the item is not taken. Once Stop or
// Shutdown has begun it returns ErrStopped. ctx reaches hooks (tracing links
// the batch to it); it is not the context the batch fires with. Add does not
// check ctx when there is room.
func (b *Batcher[T]) Add(ctx context.Context, item T) error {
	if b.e == nil {
		return ErrNotStarted
	}
	if b.e.plain {
		return b.e.addPlain(ctx, item)
	}
	return b.e.add(ctx, item, false, nil)
}

// AddResult adds an item as Add does and returns its Result, which is done
// when the item's batch is done (after the retries of a retry middleware):
// for a producer that must know its item was written, to acknowledge a
// message or answer a request. A refused item gets an error and no Result.
// It costs two allocations more than Add; Add stays as cheap as it was.
func (b *Batcher[T]) AddResult(ctx context.Context, item T) (*Result, error) {
	if b.e == nil {
		return nil, ErrNotStarted
	}
	return addResult(b.e, ctx, item)
}

// Flush fires the pending partial batch now and waits until every batch
// closed before the call is done, or ctx ends. It returns ErrStopped once
// stopping, and ErrIncomplete if a Shutdown deadline abandoned one of those
// batches. Batch errors are not returned: hooks see them.
func (b *Batcher[T]) Flush(ctx context.Context) error {
	if b.e == nil {
		return ErrNotStarted
	}
	return b.e.flush(ctx)
}

// Stop fires the partial batch and returns when every batch is done. Add
// returns ErrStopped from the moment Stop begins. Calling it again waits the
// same way and returns nil.
func (b *Batcher[T]) Stop() error { return b.Shutdown(context.Background()) }

// Shutdown stops as Stop does but gives up when ctx ends; see
// Client.Shutdown for what happens to batches then.
func (b *Batcher[T]) Shutdown(ctx context.Context) error {
	if b.e == nil {
		return ErrNotStarted
	}
	if b.e.beginStop() {
		b.e.closeLast()
	}
	return b.e.wait(ctx)
}

// Stats returns the batcher's counters. It is zero before Start.
func (b *Batcher[T]) Stats() Stats {
	if b.e == nil {
		return Stats{}
	}
	return b.e.snapshot()
}
