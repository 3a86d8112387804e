package muster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Errors returned by the package. Compare with errors.Is.
var (
	// ErrZeroBoth is returned by Start when MaxBatchSize and BatchTimeout are
	// both zero: no batch would ever fire. The message is the seed's.
	ErrZeroBoth = errors.New("muster: MaxBatchSize and BatchTimeout can't both be zero")

	// ErrInvalidConfig wraps every other configuration error Start returns
	// (a nil BatchMaker or Fire).
	ErrInvalidConfig = errors.New("muster: invalid configuration")

	// ErrNotStarted is returned by Add, Flush, Stop and Shutdown on a client
	// whose Start has not succeeded.
	ErrNotStarted = errors.New("muster: client not started")

	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("muster: client already started")

	// ErrStopped is returned by Add and Flush once Stop or Shutdown has begun.
	// The item was not taken.
	ErrStopped = errors.New("muster: client stopped")

	// ErrIncomplete is matched by the *ShutdownError Shutdown returns when its
	// context ends before every batch is done. It is also the error a Done
	// hook sees for a batch abandoned at that deadline without firing, and the
	// cause of the batch context's cancellation then.
	ErrIncomplete = errors.New("muster: shutdown deadline passed before all batches were done")

	// ErrPanic is matched by every *PanicError.
	ErrPanic = errors.New("muster: panic")
)

// PanicError is a batch's error when its Fire (or a Batch's Add, or a Fired
// hook) panicked. The panic is recovered, the batch is done with this error
// and its in-flight slot is released.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

// Error returns "muster: panic: " and the panic value.
func (p *PanicError) Error() string { return fmt.Sprintf("muster: panic: %v", p.Value) }

// Is reports whether target is ErrPanic.
func (p *PanicError) Is(target error) bool { return target == ErrPanic }

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// ShutdownError is returned by Shutdown when its context ends first. It
// matches ErrIncomplete and the context's error with errors.Is.
type ShutdownError struct {
	Batches int   // batches not done: still in flight, or abandoned before they fired
	Items   int   // items in those batches, plus items left unread in Work
	Cause   error // context.Cause of Shutdown's context
}

// Error says what was left.
func (e *ShutdownError) Error() string {
	return fmt.Sprintf("muster: shutdown incomplete: %d batches (%d items) not done: %v", e.Batches, e.Items, e.Cause)
}

// Unwrap returns ErrIncomplete and the cause.
func (e *ShutdownError) Unwrap() []error { return []error{ErrIncomplete, e.Cause} }

// Stats are a client's counters, read with Stats or through ClientInfo.
type Stats struct {
	Added     uint64 // items taken
	Refused   uint64 // items not taken by Add or the Work worker (stopped, context ended, full, dropped newest, too large, Batch.Add panicked)
	Dropped   uint64 // items taken, then dropped under OverflowDropOldest
	Fired     uint64 // batches fired
	Done      uint64 // batches done, failed ones included
	Failed    uint64 // batches done with an error
	Abandoned uint64 // items in batches abandoned at a Shutdown deadline, never fired
	InFlight  int    // batches fired and not yet done
	Pending   int    // items taken and not yet fired
	// Queued counts the items that PendingWorkCapacity bounds: those in the
	// Work channel plus those Add queued behind a batch waiting for a slot.
	Queued int
	// Keys counts the live keys (Keyed only): keys created and not yet
	// evicted.
	Keys int
}

// Notifier is passed to a Batch's Fire; call Done when the batch is finished.
// The batch holds an in-flight slot until then. The Notifier a Client passes
// also implements ErrorNotifier; calls after the first are ignored.
type Notifier interface {
	// Done marks the batch finished.
	Done()
}

// ErrorNotifier is implemented by the Notifier a Client passes to Fire. A
// batch that failed calls DoneError(err) instead of Done, so that hooks,
// metrics and tracing see the outcome; [DoneWith] does the type assertion.
type ErrorNotifier interface {
	Notifier
	// DoneError marks the batch finished with err (nil: success).
	DoneError(err error)
}

// DoneWith finishes a batch: n.DoneError(err) when n implements ErrorNotifier,
// n.Done() otherwise.
func DoneWith(n Notifier, err error) {
	if en, ok := n.(ErrorNotifier); ok {
		en.DoneError(err)
		return
	}
	n.Done()
}

// Batch collects items and fires them. The Client calls Add and Fire from its
// own goroutines, never concurrently for one batch: Add for each item, in
// order, then Fire once, on a new goroutine.
type Batch interface {
	// Add adds an item to the batch.
	Add(item interface{})
	// Fire processes the batch and calls notifier.Done when finished.
	Fire(notifier Notifier)
}

// FireContexter is an optional interface for a Batch: when a Batch implements
// it, the Client calls FireContext instead of Fire, passing the batch's
// context (canceled when a Shutdown deadline passes; carrying the batch span
// when tracing hooks are installed).
type FireContexter interface {
	FireContext(ctx context.Context, notifier Notifier)
}

// Client batches items for a Batch, as facebookgo/muster's Client does: a
// program written for it works unchanged. Configure the exported fields, call
// Start, send items on Work (or call Add), and call Stop when done.
//
// A batch fires when it holds MaxBatchSize items or BatchTimeout after its
// first item arrived, whichever comes first. Its Fire runs on a goroutine of
// its own; at most MaxConcurrentBatches fire at once.
//
// Fields must not change after Start. A Client is safe for concurrent use
// once started. Most callers should hide it behind a typed client of their
// own (see the package example), or use Batcher, which is typed.
type Client struct {
	// Maximum number of items in a batch. If this is zero batches will only
	// be dispatched upon hitting the BatchTimeout. It is an error for both
	// this and the BatchTimeout to be zero.
	MaxBatchSize uint

	// Duration after which to send a pending batch. If this is zero batches
	// will only be dispatched upon hitting the MaxBatchSize. It is an error
	// for both this and the MaxBatchSize to be zero.
	BatchTimeout time.Duration

	// MaxConcurrentBatches determines how many parallel batches we'll allow
	// to be "in flight" concurrently. Once these many batches are in flight,
	// the next full batch waits for one to be done, and meanwhile nothing
	// drains Work, so producers block once PendingWorkCapacity is used up.
	// If this is zero, there is no limit.
	MaxConcurrentBatches uint

	// Capacity of the Work channel, and of the queue Add keeps behind a batch
	// that waits for an in-flight slot. If this is zero, the Work channel will
	// be blocking.
	PendingWorkCapacity uint

	// This function should create a new empty Batch on each invocation.
	BatchMaker func() Batch

	// Once this Client has been started, send work items here to add to
	// batch. Closing it is Stop's job; sending after Stop panics, as with any
	// closed channel: use Add where producers may outlive the Client.
	Work chan interface{}

	// Name identifies the client to hooks and telemetry (the
	// muster.batcher.name attribute). Keep it low-cardinality. Optional.
	Name string

	// Hooks observe the client (see Hooks). Optional; nil costs nothing.
	Hooks *Hooks

	// Overflow says what Add does when the pending capacity is used up
	// (default OverflowBlock; OverflowDropOldest is not available to a
	// Client). Sending on Work always blocks, as in the seed.
	Overflow Overflow

	// BaseContext returns the context batches fire with (through
	// FireContexter and hooks). If nil, context.Background() is used. It is
	// called once, by Start.
	BaseContext func() context.Context

	e         *engine[any]
	closeOnce sync.Once
}

// Start the background worker goroutine and get ready for accepting requests.
func (c *Client) Start() error {
	if c.MaxBatchSize == 0 && c.BatchTimeout == 0 {
		return ErrZeroBoth
	}
	if c.BatchMaker == nil {
		return fmt.Errorf("%w: BatchMaker is nil", ErrInvalidConfig)
	}
	if c.Overflow > OverflowDropNewest {
		return fmt.Errorf("%w: Overflow %v is not available to a Client", ErrInvalidConfig, c.Overflow)
	}
	if c.e != nil {
		return ErrAlreadyStarted
	}
	work := make(chan interface{}, c.PendingWorkCapacity)
	e := newEngine[any](engineConfig{
		name:        c.Name,
		max:         c.MaxBatchSize,
		timeout:     c.BatchTimeout,
		limit:       c.MaxConcurrentBatches,
		capacity:    c.PendingWorkCapacity,
		hooks:       c.Hooks,
		baseContext: c.BaseContext,
		overflow:    c.Overflow,
	})
	e.maker = c.BatchMaker
	e.workLen = func() int { return len(work) }
	c.Work = work
	c.e = e
	go c.worker(work)
	e.started()
	return nil
}

// worker drains Work into batches until Stop closes it.
func (c *Client) worker(work chan interface{}) {
	for open := true; open; {
		c.e.workerWait()
		item, ok := <-work
		if !ok {
			break
		}
		open = addRun(c.e, item, work) // a refusal reaches the Added hook and Stats
	}
	c.e.closeLast()
}

// Add adds an item as sending it on Work would, but without a channel
// hand-off, and with an error instead of a panic once the client stops.
// Under backpressure it blocks until there is room or ctx ends; then it
// returns ctx's error and the item is not taken. After Stop or Shutdown has
// begun it returns ErrStopped. ctx reaches hooks (tracing links the batch to
// it); it is not the context the batch fires with.
func (c *Client) Add(ctx context.Context, item interface{}) error {
	if c.e == nil {
		return ErrNotStarted
	}
	return c.e.add(ctx, item, false, nil)
}

// AddResult adds an item as Add does and returns its Result, done when the
// item's batch is. A refused item gets an error and no Result.
func (c *Client) AddResult(ctx context.Context, item interface{}) (*Result, error) {
	if c.e == nil {
		return nil, ErrNotStarted
	}
	return addResult(c.e, ctx, item)
}

func addResult[T any](e *engine[T], ctx context.Context, item T) (*Result, error) {
	r := newResult()
	if err := e.add(ctx, item, false, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Flush fires the pending partial batch now and waits until every batch
// closed before the call is done, or ctx ends. Items still in the Work
// channel are not covered. It returns ErrStopped once stopping, and
// ErrIncomplete if a Shutdown deadline abandoned one of those batches.
func (c *Client) Flush(ctx context.Context) error {
	if c.e == nil {
		return ErrNotStarted
	}
	return c.e.flush(ctx)
}

// Stop gracefully stops the client: it closes Work, adds what is left in it,
// fires the partial batch, and returns when every batch has called Done. Add
// returns ErrStopped from the moment Stop begins. Calling Stop again waits
// the same way and returns nil.
func (c *Client) Stop() error {
	return c.Shutdown(context.Background())
}

// Shutdown stops the client as Stop does, but gives up when ctx ends: batches
// still waiting for an in-flight slot are abandoned (never fired; their Done
// hook sees ErrIncomplete), in-flight batches see their context canceled
// (with cause ErrIncomplete) and are left to finish, and the returned
// *ShutdownError counts what was not done. Calling it again, or Stop, waits
// for what is still in flight.
func (c *Client) Shutdown(ctx context.Context) error {
	if c.e == nil {
		return ErrNotStarted
	}
	if c.e.beginStop() {
		c.closeOnce.Do(func() { close(c.Work) }) // the worker drains it, then closes the last batch
	}
	return c.e.wait(ctx)
}

// Stats returns the client's counters. It is zero before Start.
func (c *Client) Stats() Stats {
	if c.e == nil {
		return Stats{}
	}
	return c.e.snapshot()
}
