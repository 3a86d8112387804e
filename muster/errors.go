package muster

import (
	"errors"
	"fmt"
	"runtime/debug"
)

// Errors returned by the package. Compare with errors.Is.
var (
	// ErrZeroBoth is returned by Start when no trigger is set: MaxBatchSize
	// and BatchTimeout are both zero (and, for a Batcher or Keyed,
	// MaxBatchBytes too). No batch would ever fire. The message is the
	// seed's.
	ErrZeroBoth = errors.New("muster: MaxBatchSize and BatchTimeout can't both be zero")

	// ErrInvalidConfig wraps every other configuration error Start returns:
	// a nil BatchMaker or Fire, a nil Key (of a Keyed whose K is not
	// struct{}), a negative BatchTimeout, MaxKeys or KeyIdleTimeout,
	// MaxBatchBytes without a Sizer or a Sizer without MaxBatchBytes, an
	// unknown Overflow (or OverflowDropOldest for a Client), a
	// MaxPendingPerKey not below PendingWorkCapacity.
	ErrInvalidConfig = errors.New("muster: invalid configuration")

	// ErrNotStarted is returned by Add, Flush, Stop and Shutdown on a client
	// whose Start has not succeeded.
	ErrNotStarted = errors.New("muster: client not started")

	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("muster: client already started")

	// ErrStopped is returned by Add and Flush once Stop or Shutdown has
	// begun. The item was not taken.
	ErrStopped = errors.New("muster: client stopped")

	// ErrIncomplete is matched by the *ShutdownError Shutdown returns when
	// its context ends before every batch is done. It is also the error of
	// a batch abandoned at that deadline without firing (its Done hook and
	// its items' Results see it), of an item a Client's Work held then, and
	// the cause of the batch contexts' cancellation.
	ErrIncomplete = errors.New("muster: shutdown deadline passed before all batches were done")

	// ErrPanic is matched by every *PanicError.
	ErrPanic = errors.New("muster: panic")

	// ErrFull is returned by Add under OverflowFail when the pending
	// capacity is used up. The item was not taken.
	ErrFull = errors.New("muster: pending work capacity full")

	// ErrDropped is the outcome of an item dropped to make room: the
	// incoming one under OverflowDropNewest (Add returns nil; the Refused
	// hook and its Result see ErrDropped), or the oldest queued one under
	// OverflowDropOldest.
	ErrDropped = errors.New("muster: item dropped to make room")

	// ErrTooLarge is returned by Add when an item's size alone passes
	// MaxBatchBytes, or its Sizer returned a negative size. The item was
	// not taken.
	ErrTooLarge = errors.New("muster: item larger than MaxBatchBytes")

	// ErrTooManyKeys is returned by a Keyed's Add when the item's key is
	// new, MaxKeys keys are live and every one of them holds items or
	// batches. The item was not taken.
	ErrTooManyKeys = errors.New("muster: too many live keys")

	// ErrInvalidKey is returned by a Keyed's Add when the item's key cannot
	// be a map key: it is not equal to itself (a NaN, or a struct holding
	// one) or holds an uncomparable value in an interface. The item was not
	// taken.
	ErrInvalidKey = errors.New("muster: key not equal to itself")

	// ErrNilContext is returned by Add, AddResult, Flush, Shutdown and
	// Result.Wait when their context is nil (pass context.Background() or
	// a request's context). The item was not taken; nothing was flushed,
	// stopped or waited for.
	ErrNilContext = errors.New("muster: nil context")

	// ErrWaitCanceled is matched by the error Result.Wait returns when its
	// context ends before the item's batch is done: the wait ended, not the
	// item, which is still in its batch and may yet be written. The error
	// matches the context's error too. It is never an item's outcome.
	ErrWaitCanceled = errors.New("muster: wait for the result ended before the item's batch was done (the item is still in its batch)")
)

// plural returns "1 item" or "n items": n and the noun's form for it.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// PanicError is the error of a batch whose Fire panicked, or of an item
// whose Batch.Add, BatchMaker, Key or Sizer panicked. The panic is
// recovered; a batch is done with this error and its slot released; an item
// is refused with it.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the panicking goroutine's stack
}

func newPanicError(r any) *PanicError { return &PanicError{Value: r, Stack: debug.Stack()} }

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

// ItemErrors reports that only some items of a batch failed, for a bulk API
// that rejects 3 items of 100: a FireFunc returns it (a Batch passes it to
// DoneWith) with Errs index-aligned with the batch's items, nil where the
// item succeeded. Results see each item's own error; the retry middleware
// resends only the failed items. The batch counts as failed. An ItemErrors
// whose length is not the batch's is a bug in the FireFunc: the whole batch
// fails, with an error that says so (it matches the item errors with
// errors.Is, and is not an *ItemErrors).
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
	return fmt.Sprintf("muster: %d of %s failed: %v", e.Failed(), plural(len(e.Errs), "item", "items"), first)
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

// Failed counts the items that failed.
func (e *ItemErrors) Failed() int {
	n := 0
	for _, err := range e.Errs {
		if err != nil {
			n++
		}
	}
	return n
}
