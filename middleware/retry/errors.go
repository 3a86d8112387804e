package retry

import (
	"errors"
	"fmt"
	"time"
)

// Errors matched by the *Error the middleware returns when it gives up.
// Compare with errors.Is.
var (
	// ErrExhausted: the attempts allowed by WithMaxAttempts were made. It is
	// also matched by ErrElapsedLimit, so that errors.Is(err, ErrExhausted)
	// holds whichever cap ended the retries.
	ErrExhausted = errors.New("retry: attempts exhausted")

	// ErrElapsedLimit: the next wait would have ended past the limit of
	// WithMaxElapsedTime. It matches ErrExhausted.
	ErrElapsedLimit error = elapsedLimit{}

	// ErrBudgetExhausted: the retry Budget refused the next attempt, because
	// retries already make up as much of the load as it allows.
	ErrBudgetExhausted = errors.New("retry: budget exhausted")
)

// elapsedLimit is ErrElapsedLimit's type: a sentinel that matches
// ErrExhausted as well.
type elapsedLimit struct{}

func (elapsedLimit) Error() string        { return "retry: elapsed-time limit reached" }
func (elapsedLimit) Is(target error) bool { return target == ErrExhausted }

// Error is returned when the middleware gives up on a batch whose last
// attempt failed with a retryable error, and is each failing item's error
// in the *muster.ItemErrors it returns when it gives up on a partial retry.
// It matches its Reason and the last attempt's error (the batch's, or the
// item's own) with errors.Is and errors.As, so a sentinel the FireFunc
// returned is still found through it.
type Error struct {
	// Attempts is how many times the FireFunc was called (for an item in a
	// partial retry: called with the item, which is the same number, as an
	// item is sent in every attempt until it succeeds or is not retried).
	Attempts int
	// Elapsed runs from the first attempt's start to giving up.
	Elapsed time.Duration
	// Reason is why no further attempt was made: ErrExhausted,
	// ErrElapsedLimit, ErrBudgetExhausted, or context.Cause of the batch's
	// context when it ended (muster.ErrIncomplete at a Shutdown deadline).
	Reason error
	// Last is the last attempt's error.
	Last error
}

// Error says why the middleware gave up, after how many attempts, and the
// last attempt's error.
func (e *Error) Error() string {
	attempts := "attempts"
	if e.Attempts == 1 {
		attempts = "attempt"
	}
	switch e.Reason {
	case ErrElapsedLimit:
		return fmt.Sprintf("%v after %d %s in %v: %v", e.Reason, e.Attempts, attempts, e.Elapsed.Round(time.Millisecond), e.Last)
	case ErrExhausted, ErrBudgetExhausted:
		return fmt.Sprintf("%v after %d %s: %v", e.Reason, e.Attempts, attempts, e.Last)
	}
	return fmt.Sprintf("retry: interrupted after %d %s: %v: %v", e.Attempts, attempts, e.Reason, e.Last)
}

// Unwrap returns Reason and Last.
func (e *Error) Unwrap() []error { return []error{e.Reason, e.Last} }

// errorTyper is an error that names its class for telemetry.
type errorTyper interface {
	error
	ErrorType() string
}

// Values of [Error.ErrorType] when the last attempt's error does not name
// itself.
const (
	// ErrorTypeExhausted: the attempts or the elapsed time allowed were
	// used up (Reason ErrExhausted or ErrElapsedLimit).
	ErrorTypeExhausted = "retries_exhausted"
	// ErrorTypeBudgetExhausted: the Budget refused the next attempt (Reason
	// ErrBudgetExhausted).
	ErrorTypeBudgetExhausted = "budget_exhausted"
	// ErrorTypeInterrupted: the batch's context ended (Reason its cause).
	ErrorTypeInterrupted = "retries_interrupted"
)

// ErrorType returns a low-cardinality class of the failure, for the
// error.type attribute of spans and metrics (otelmuster.ErrorType uses
// it): the ErrorType() of the last attempt's error, or of the first error
// it wraps that has that method, when it is not empty, so that a retried
// failure is counted under the downstream's own class; otherwise
// ErrorTypeExhausted, ErrorTypeBudgetExhausted or ErrorTypeInterrupted by
// Reason. The values are stable: dashboards and alerts may match on them.
func (e *Error) ErrorType() string {
	if et, ok := errors.AsType[errorTyper](e.Last); ok {
		if s := et.ErrorType(); s != "" {
			return s
		}
	}
	switch e.Reason {
	case ErrExhausted, ErrElapsedLimit:
		return ErrorTypeExhausted
	case ErrBudgetExhausted:
		return ErrorTypeBudgetExhausted
	}
	return ErrorTypeInterrupted
}

// PermanentError marks an error that must not be retried: the middleware
// returns it at once, unchanged. Make one with Permanent.
type PermanentError struct {
	Err error // the error that is not worth retrying
}

// Error returns the wrapped error's message.
func (p *PermanentError) Error() string { return p.Err.Error() }

// Unwrap returns the wrapped error, so errors.Is and errors.As see through
// the mark.
func (p *PermanentError) Unwrap() error { return p.Err }

// Permanent marks err as not worth retrying (a malformed batch, a rejected
// credential): return Permanent(err) from the FireFunc and the middleware
// returns it without a further attempt. errors.Is(result, err) still holds.
// In a *muster.ItemErrors, mark an item's own error to keep that item from
// being resent (a malformed row); marking the *muster.ItemErrors itself
// (Permanent(itemErrs)) keeps all of them from being resent. Permanent(nil)
// is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is a
// *PermanentError.
func IsPermanent(err error) bool {
	_, ok := errors.AsType[*PermanentError](err)
	return ok
}
