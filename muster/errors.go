package muster

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Errors returned by the package. Compare with errors.Is. The package doc
// ("What happens to items") says when each is returned and what became of
// the item.
var (
	// ErrInvalidConfig is matched by every error Start returns: no trigger
	// set, a nil BatchMaker, Fire or Key (of a Keyed whose K is not
	// struct{}), a negative BatchTimeout, MaxKeys or KeyIdleTimeout,
	// MaxBatchBytes without a Sizer or the reverse, an unknown Overflow (or
	// OverflowDropOldest for a Client), MaxPendingPerKey not below
	// PendingWorkCapacity, or a second Start.
	ErrInvalidConfig = errors.New("muster: invalid configuration")

	// ErrNotStarted: Add, Flush, Stop or Shutdown before a successful Start.
	ErrNotStarted = errors.New("muster: client not started")

	// ErrStopped: Add or Flush once Stop or Shutdown has begun.
	ErrStopped = errors.New("muster: client stopped")

	// ErrIncomplete is matched by the *ShutdownError Shutdown returns when
	// its context ends first. It is the outcome of a batch abandoned unfired
	// at that deadline and of an item a Client's Work held then, and the
	// cause of the batch contexts' cancellation.
	ErrIncomplete = errors.New("muster: shutdown deadline passed before all batches were done")

	// ErrFull: Add under OverflowFail with the pending capacity used up.
	ErrFull = errors.New("muster: pending work capacity full")

	// ErrDropped is the outcome of an item dropped to make room under
	// OverflowDropNewest (the incoming one; Add returns nil) or
	// OverflowDropOldest (the oldest queued one).
	ErrDropped = errors.New("muster: item dropped to make room")

	// ErrTooLarge: Add of an item whose size alone passes MaxBatchBytes, or
	// whose Sizer returned a negative size.
	ErrTooLarge = errors.New("muster: item larger than MaxBatchBytes")

	// ErrTooManyKeys: a Keyed's Add of a new key while MaxKeys keys are
	// live and every one holds items or batches.
	ErrTooManyKeys = errors.New("muster: too many live keys")

	// ErrInvalidKey: a Keyed's Add of an item whose key cannot be a map
	// key: not equal to itself (a NaN) or an uncomparable value in an
	// interface.
	ErrInvalidKey = errors.New("muster: key not equal to itself")

	// ErrNilContext: Add, AddResult, Flush, Shutdown or Result.Wait with a
	// nil context; nothing was done.
	ErrNilContext = errors.New("muster: nil context")

	// ErrWaitCanceled is matched by Result.Wait's error when its context
	// ends first: the wait ended, not the item, which may yet be written.
	// It is never an item's outcome.
	ErrWaitCanceled = errors.New("muster: wait for the result ended before the item's batch was done (the item is still in its batch)")

	// errZeroBoth says no trigger is set, in the seed's words.
	errZeroBoth       = fmt.Errorf("%w: MaxBatchSize and BatchTimeout can't both be zero", ErrInvalidConfig)
	errAlreadyStarted = fmt.Errorf("%w: already started", ErrInvalidConfig)
)

// plural returns "1 item" or "n items": n and the noun's form for it.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// PanicError is the error of a batch or an item whose function panicked
// (see the package doc, "What happens to items"). Match it with errors.As.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func newPanicError(r any) *PanicError { return &PanicError{Value: r, Stack: debug.Stack()} }

// Error returns "muster: panic: " and the panic value.
func (p *PanicError) Error() string { return fmt.Sprintf("muster: panic: %v", p.Value) }

// Unwrap returns the panic value when it is an error.
func (p *PanicError) Unwrap() error {
	if err, ok := p.Value.(error); ok {
		return err
	}
	return nil
}

// ShutdownError is returned by Shutdown when its context ends first; it
// matches ErrIncomplete and the context's error.
type ShutdownError struct {
	Batches int   // batches not done: in flight when the deadline passed, or abandoned before they fired
	Items   int   // items in those batches, plus the items a Client's Work still held
	Cause   error // context.Cause of Shutdown's context
	// Kept counts the items left in a journal for the next start; 0
	// without one. The journal layer (package journal) fills it.
	Kept int
}

// Error says what was left.
func (e *ShutdownError) Error() string {
	if e.Kept > 0 {
		return fmt.Sprintf("muster: shutdown incomplete: %s (%s) not done, %s kept in the journal: %v",
			plural(e.Batches, "batch", "batches"), plural(e.Items, "item", "items"), plural(e.Kept, "item", "items"), e.Cause)
	}
	return fmt.Sprintf("muster: shutdown incomplete: %s (%s) not done: %v", plural(e.Batches, "batch", "batches"), plural(e.Items, "item", "items"), e.Cause)
}

// Unwrap returns ErrIncomplete and the cause.
func (e *ShutdownError) Unwrap() []error { return []error{ErrIncomplete, e.Cause} }

// ItemErrors reports that only some items of a batch failed (a bulk API
// that rejects 3 items of 100): a FireFunc returns it, or a Batch passes it
// to DoneWith, with Errs index-aligned with the batch's items, nil where
// the item succeeded. Results see each item's own error, the retry
// middleware resends only the failed items, and the batch counts as failed.
// An ItemErrors not as long as the batch fails the whole batch, with an
// error that says so.
type ItemErrors struct {
	Errs []error
}

// Error summarises the failures.
func (e *ItemErrors) Error() string {
	var first error
	for _, err := range e.Errs {
		if err != nil {
			first = err
			break
		}
	}
	return fmt.Sprintf("muster: %d of %s failed: %v", len(e.Unwrap()), plural(len(e.Errs), "item", "items"), first)
}

// misalignedItemErrors is a batch's error when its FireFunc returned an
// *ItemErrors whose length is not the batch's: no item can be told its own
// error, so every item fails with this one.
type misalignedItemErrors struct {
	items int         // the batch's
	ie    *ItemErrors // the misaligned one
	err   error       // what Fire returned: ie, or an error wrapping it
}

// Error says what went wrong and quotes Fire's error.
func (e *misalignedItemErrors) Error() string {
	return fmt.Sprintf("muster: all %s of the batch failed: Fire returned an *ItemErrors of %s, not one per item: %v",
		plural(e.items, "item", "items"), plural(len(e.ie.Errs), "error", "errors"), e.err)
}

// Unwrap returns the non-nil errors of the *ItemErrors, so that
// errors.Is(err, yourSentinel) holds, but not the *ItemErrors itself: no
// item has an error of its own.
func (e *misalignedItemErrors) Unwrap() []error { return e.ie.Unwrap() }

// ErrorType names the class for the error.type attribute of metrics and
// spans (otelmuster.ErrorType): a whole-batch failure, not "partial".
func (e *misalignedItemErrors) ErrorType() string { return "item_errors_misaligned" }

// checkItemErrors returns err, unless it is (or wraps) an *ItemErrors not
// aligned with a batch of n items: then an error saying so, for the whole
// batch.
func checkItemErrors(err error, n int) error {
	if err == nil {
		return nil
	}
	if ie, ok := errors.AsType[*ItemErrors](err); ok && len(ie.Errs) != n {
		return &misalignedItemErrors{items: n, ie: ie, err: err}
	}
	return err
}

// Unwrap returns the non-nil item errors.
func (e *ItemErrors) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
