package retry

import (
	"errors"
	"fmt"
	"time"
)

// Errors matched by the *Error the middleware returns when it gives up.
// Compare with errors.Is.
var (
	// ErrExhausted: the attempts allowed by WithMaxAttempts were made, or
	// the next wait would have ended past WithMaxElapsedTime.
	ErrExhausted = errors.New("retry: attempts exhausted")

	// ErrBudgetExhausted: the retry Budget refused the next attempt, because
	// retries already make up as much of the load as it allows.
	ErrBudgetExhausted = errors.New("retry: budget exhausted")
)

// Error is returned when the middleware gives up on a batch whose last
// attempt failed with a retryable error. It matches its Reason and the last
// attempt's error with errors.Is and errors.As, so a sentinel the FireFunc
// returned is still found through it.
type Error struct {
	// Attempts is how many times the FireFunc was called.
	Attempts int
	// Elapsed runs from the first attempt's start to giving up.
	Elapsed time.Duration
	// Reason is why no further attempt was made: ErrExhausted,
	// ErrBudgetExhausted, or context.Cause of the batch's context when it
	// ended (muster.ErrIncomplete at a Shutdown deadline).
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
	if e.Reason == ErrExhausted || e.Reason == ErrBudgetExhausted {
		return fmt.Sprintf("%v after %d %s: %v", e.Reason, e.Attempts, attempts, e.Last)
	}
	return fmt.Sprintf("retry: interrupted after %d %s: %v: %v", e.Attempts, attempts, e.Reason, e.Last)
}

// Unwrap returns Reason and Last.
func (e *Error) Unwrap() []error { return []error{e.Reason, e.Last} }

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
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Err: err}
}

// IsPermanent reports whether err, or an error it wraps, is a
// *PermanentError.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
