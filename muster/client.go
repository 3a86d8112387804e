package muster

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Notifier is passed to a Batch's Fire; call Done when the batch is
// finished. The batch holds an in-flight slot until then. Calls after the
// first are ignored.
type Notifier interface {
	// Done marks the batch finished.
	Done()
}

// DoneWith finishes a batch with err (nil: success), so that hooks,
// Results and middleware see the outcome: the Notifier a Client passes has
// a DoneError(error) method; any other gets Done.
func DoneWith(n Notifier, err error) {
	if en, ok := n.(interface{ DoneError(error) }); ok {
		en.DoneError(err)
		return
	}
	n.Done()
}

// Batch collects items and fires them. The Client calls Add and Fire from
// its own goroutines, never concurrently for one batch: Add for each item,
// in order, then Fire once, on a goroutine of the batch's own.
type Batch interface {
	// Add adds an item to the batch.
	Add(item interface{})
	// Fire processes the batch and calls notifier.Done when finished.
	Fire(notifier Notifier)
}

// FireContexter is an optional interface for a Batch: when a Batch
// implements it, the Client calls FireContext instead of Fire, passing the
// batch's context (canceled when a Shutdown deadline passes; carrying the
// batch span when tracing is installed).
type FireContexter interface {
	FireContext(ctx context.Context, notifier Notifier)
}

// Client batches items for a Batch, as facebookgo/muster's Client does.
// Configure the exported fields, call Start, send items on Work (or call
// Add), and call Stop when done. A batch fires when it holds MaxBatchSize
// items or BatchTimeout after its first item, on a goroutine of its own,
// with at most MaxConcurrentBatches in flight (Done not yet called). Fields
// must not change after Start; a started Client is safe for concurrent use.
// Hide it behind a typed client of your own (see the package example), or
// use Batcher, which is typed.
type Client struct {
	// Maximum number of items in a batch. If this is zero batches will only
	// be dispatched upon hitting the BatchTimeout. It is an error for both
	// this and the BatchTimeout to be zero.
	MaxBatchSize uint

	// Duration after which to send a pending batch. If this is zero batches
	// will only be dispatched upon hitting the MaxBatchSize. It is an error
	// for both this and the MaxBatchSize to be zero, and for it to be
	// negative.
	BatchTimeout time.Duration

	// MaxConcurrentBatches determines how many parallel batches we'll allow
	// to be "in flight" concurrently. Once these many batches are in flight,
	// the next full batch waits for one to be done, and meanwhile nothing
	// drains Work, so producers block once PendingWorkCapacity is used up.
	// If this is zero, there is no limit.
	MaxConcurrentBatches uint

	// Capacity of the Work channel, and of the items Add queues behind a
	// batch that waits for an in-flight slot. If this is zero, the Work
	// channel will be blocking.
	PendingWorkCapacity uint

	// This function should create a new empty Batch on each invocation.
	BatchMaker func() Batch

	// Once this Client has been started, send work items here to add to
	// batch. Closing it is Stop's job; sending after Stop panics, as with
	// any closed channel: use Add where producers may outlive the Client.
	Work chan interface{}

	// Name and Hooks are as a Keyed's. Optional.
	Name  string
	Hooks Observer

	// Middleware wraps each batch's Fire (retries, rate limits) as it wraps
	// a Batcher's FireFunc, over a copy of the batch's items; each call it
	// makes to the FireFunc it wraps fires a Batch and waits for its Done:
	// the Batch that received the items for a first call with them
	// unchanged, else a fresh one from BatchMaker holding the items given
	// (a retry, a subset). The Client then keeps each batch's items too.
	// Optional.
	Middleware Middleware[any]

	// Overflow says what Add does when the pending capacity is used up
	// (not OverflowDropOldest); see Overflow for a send on Work.
	Overflow Overflow

	// BaseContext returns the context batches fire with (FireContexter,
	// hooks); nil: context.Background(). Start calls it once.
	BaseContext func() context.Context

	// The engine, a one-key Keyed's over the items, and the Work worker's
	// state: stopping is set when Stop or Shutdown begins (Add is refused
	// from then on, while the worker drains Work); fed is closed when the
	// worker has drained it; gaveUp ends wctx at a Shutdown deadline, after
	// which the worker refuses what Work still holds, counting it in late.
	e        *engine[struct{}, any]
	stopping atomic.Bool
	stopOnce sync.Once
	fed      chan struct{}
	gaveUp   sync.Once
	late     int
	// wctx is the context of the worker's adds (hooks see it for items
	// sent on Work); wcancel ends it at a Shutdown deadline.
	wctx    context.Context
	wcancel context.CancelFunc
}

// Start the background worker goroutine and get ready for accepting requests.
func (c *Client) Start() error {
	switch {
	case c.e != nil:
		return errAlreadyStarted
	case c.MaxBatchSize == 0 && c.BatchTimeout == 0:
		return errZeroBoth
	case c.BatchMaker == nil:
		return fmt.Errorf("%w: BatchMaker is nil", ErrInvalidConfig)
	case c.Overflow == OverflowDropOldest:
		return fmt.Errorf("%w: OverflowDropOldest is not available to a Client", ErrInvalidConfig)
	}
	work := make(chan interface{}, c.PendingWorkCapacity)
	k := Keyed[struct{}, any]{MaxBatchSize: c.MaxBatchSize, BatchTimeout: c.BatchTimeout,
		MaxConcurrentBatches: c.MaxConcurrentBatches, PendingWorkCapacity: c.PendingWorkCapacity,
		Overflow: c.Overflow, Name: c.Name, Hooks: c.Hooks, BaseContext: c.BaseContext}
	maker := c.BatchMaker
	err := k.start(func(cfg *config[struct{}, any]) {
		cfg.fire = c.fireFunc(maker)
		cfg.join = joinFunc(maker)
		cfg.keepItems = c.Middleware != nil
		cfg.outside = func() int { return len(work) }
	})
	if err != nil {
		return err
	}
	c.Work, c.e = work, k.e
	c.fed = make(chan struct{})
	c.wctx, c.wcancel = context.WithCancel(context.Background())
	go c.worker(work)
	return nil
}

// joinFunc returns the engine's join function for a Client: it hands an
// item to the batch's Batch, made by maker for its first item. A panic in
// either is the item's error.
func joinFunc(maker func() Batch) func(state *Batch, item any) error {
	return func(state *Batch, item any) (err error) {
		if *state == nil {
			u, err := newBatch(maker, item)
			if err == nil {
				*state = u
			}
			return err
		}
		defer func() {
			if r := recover(); r != nil {
				err = newPanicError(r)
			}
		}()
		(*state).Add(item)
		return nil
	}
}

// fireFunc returns how the engine fires a Client's batch.
func (c *Client) fireFunc(maker func() Batch) func(context.Context, *batch[struct{}, any]) error {
	mw := c.Middleware
	if mw == nil {
		return func(ctx context.Context, b *batch[struct{}, any]) error { return fireBatch(ctx, b.state) }
	}
	return func(ctx context.Context, b *batch[struct{}, any]) error {
		// The middleware gets a copy of the items, so that b.items stays
		// what the first Batch received: a first call with exactly those
		// items fires that Batch; any other call (a retry, a subset, items
		// changed in place or replaced) fires a fresh one.
		first := b.state
		inner := func(ctx context.Context, items []any) error {
			u := first
			if first = nil; u == nil || !sameItems(items, b.items) {
				var err error
				if u, err = newBatch(maker, items...); err != nil {
					return err
				}
			}
			return fireBatch(ctx, u)
		}
		return callFire(mw(inner), ctx, slices.Clone(b.items))
	}
}

// sameItems reports whether a and b hold equal items, in order; an
// uncomparable item counts as changed.
func sameItems(a, b []any) (same bool) {
	if len(a) != len(b) {
		return false
	}
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// fireBatch fires a Batch and waits for its Done.
func fireBatch(ctx context.Context, u Batch) (err error) {
	n := &notifier{done: make(chan struct{})}
	defer func() {
		if r := recover(); r != nil {
			n.DoneError(newPanicError(r))
		}
		<-n.done
		err = n.err
	}()
	if fc, ok := u.(FireContexter); ok {
		fc.FireContext(ctx, n)
	} else {
		u.Fire(n)
	}
	return nil
}

// notifier is the Notifier a Batch's Fire receives.
type notifier struct {
	once sync.Once
	done chan struct{}
	err  error
}

// Done marks the batch done. Calls after the first are ignored.
func (n *notifier) Done() { n.DoneError(nil) }

// DoneError marks the batch done with err (nil: success). Calls after the
// first are ignored.
func (n *notifier) DoneError(err error) {
	n.once.Do(func() { n.err = err; close(n.done) })
}

// worker drains Work until Stop closes it, adding each item as any
// producer does (under backpressure it blocks), a run of the items Work
// holds under one lock. As in the seed, it takes nothing from Work while a
// closed batch waits for a slot, so that producers block once
// PendingWorkCapacity items are in Work. After a Shutdown deadline it
// refuses what Work still holds.
func (c *Client) worker(work chan interface{}) {
	defer close(c.fed)
	defer c.wcancel()
	ctx := c.wctx
	for ctx.Err() == nil && c.e.awaitNoneWaiting(ctx.Done()) {
		item, ok := <-work
		if !ok {
			return
		}
		if err := c.e.addRun(ctx, item, work); err == ErrIncomplete {
			c.late++ // refused as Shutdown gave up: Work held it at the deadline
		}
	}
	for range work {
		c.late++
		c.e.refuse(ctx, ErrIncomplete, time.Time{})
	}
}

// Add adds an item as sending it on Work would, without a channel hand-off,
// and with Keyed.Add's errors (ErrStopped instead of a panic once the client
// stops) and its Overflow policy.
func (c *Client) Add(ctx context.Context, item interface{}) error {
	_, err := c.AddResult(ctx, item) // which checks c and ctx
	return err
}

// AddResult adds an item as Add does and returns its Result, done when the
// item's batch is. A refused item gets an error and no Result.
func (c *Client) AddResult(ctx context.Context, item interface{}) (Result, error) {
	if err := c.e.usable(ctx); err != nil {
		return Result{}, err
	}
	if c.stopping.Load() { // the worker may still be adding what Work held
		return Result{}, c.e.refuse(ctx, ErrStopped, time.Time{})
	}
	return c.e.add(ctx, item, true, false)
}

// Flush fires the open batch now and waits until every batch closed before
// the call is done, or ctx ends. Items still in the Work channel are not
// covered. It returns ErrStopped once stopping, and ErrIncomplete if a
// Shutdown deadline abandoned one of those batches.
func (c *Client) Flush(ctx context.Context) error {
	if err := c.e.usable(ctx); err != nil {
		return err
	}
	if c.stopping.Load() {
		return ErrStopped
	}
	return c.e.flush(ctx)
}

// Stop gracefully stops the client: it closes Work, adds what is left in
// it, fires the partial batch, and returns when every batch has called Done
// and the Stopped hook has run. Add returns ErrStopped from the moment Stop
// begins. Calling Stop again waits the same way and returns nil.
func (c *Client) Stop() error {
	return c.Shutdown(context.Background())
}

// Shutdown stops the client as Stop does, but gives up when ctx ends:
// batches not fired are abandoned (Done hooks and Results see
// ErrIncomplete), items still in Work are refused with ErrIncomplete,
// in-flight batches have their context canceled (cause ErrIncomplete) and
// are left to finish, and a *ShutdownError counts what was not done. It
// returns once the Stopped hook has run or, after the deadline, once the
// abandoned batches are reported. Calling it again, or Stop, waits for what
// is still in flight.
func (c *Client) Shutdown(ctx context.Context) error {
	if err := c.e.usable(ctx); err != nil {
		return err
	}
	c.stopOnce.Do(func() {
		c.stopping.Store(true)
		close(c.Work) // the worker adds what it holds, then exits
	})
	gaveUp := false
	select {
	case <-c.fed:
	case <-ctx.Done():
		c.gaveUp.Do(func() {
			c.wcancel() // the worker refuses what Work holds, even while backpressure holds it
			gaveUp = true
		})
	}
	<-c.fed
	if !gaveUp {
		c.e.beginStop()
		return c.e.wait(ctx)
	}
	// Abandon what has not fired, open batches included: nothing fires
	// after the deadline.
	err := c.e.abort(ctx)
	if c.late > 0 { // items Work held at the deadline
		if se, ok := err.(*ShutdownError); ok {
			se.Items += c.late
		} else {
			err = &ShutdownError{Items: c.late, Cause: context.Cause(ctx)}
		}
	}
	return err
}

// Stats returns the client's counters. It is zero before Start.
func (c *Client) Stats() Stats { return c.e.snapshot() }

// newBatch makes a Batch with maker and adds items to it; a panic in
// either is the error.
func newBatch(maker func() Batch, items ...any) (u Batch, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	if u = maker(); u == nil {
		panic("BatchMaker returned nil")
	}
	for _, it := range items {
		u.Add(it)
	}
	return u, nil
}
