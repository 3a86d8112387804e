package ratelimit

import (
	"context"
	"errors"
	"time"

	"golang.org/x/time/rate"
)

// ErrOverloaded reports that the downstream refused or shed work because it is
// overloaded (for example an HTTP 429 or 503, or a database's "too many
// connections"). Wrap it in the error a batch returns so that an [Adaptive]
// limiter configured to look for it slows down:
//
//	return fmt.Errorf("bulk insert: %w", ratelimit.ErrOverloaded)
//
// Compare with [errors.Is].
var ErrOverloaded = errors.New("ratelimit: downstream overloaded")

// Waiter is the one method a rate-limiting middleware needs: block until n
// events may happen or ctx is done. A per-batch limit calls WaitN(ctx, 1) before
// each batch, a per-item limit WaitN(ctx, len(items)).
//
// *[rate.Limiter], [*Limiter] and [*Adaptive] implement Waiter, and so can a
// limiter backed by a shared store (see "Distributed limits" in the package
// documentation). WaitN must be safe for concurrent use. It returns nil when the
// events may proceed and a non-nil error when they must not, which for a
// cancelled ctx should match ctx's error (context.Cause(ctx) is best).
//
// Note that *rate.Limiter's WaitN fails when n exceeds its burst; [*Limiter]
// does not.
type Waiter interface {
	WaitN(ctx context.Context, n int) error
}

// WaiterFunc adapts an ordinary function to the [Waiter] interface.
type WaiterFunc func(ctx context.Context, n int) error

// WaitN calls f(ctx, n).
func (f WaiterFunc) WaitN(ctx context.Context, n int) error { return f(ctx, n) }

// Observer is an optional interface for a [Waiter] that adapts to the health of
// the downstream it protects. A middleware discovers it by type assertion on its
// Waiter and, after every attempt that reached the downstream (every retry
// included), reports the attempt's [Outcome]:
//
//	if o, ok := w.(ratelimit.Observer); ok {
//		o.Observe(ratelimit.Outcome{N: len(items), Err: err, Duration: took})
//	}
//
// Attempts that never started (the wait for tokens itself failed) are not
// reported. Observe is called concurrently from the goroutines that ran the
// attempts; it must be safe for concurrent use and must not block.
// [*Adaptive] implements it.
type Observer interface {
	Observe(Outcome)
}

// Outcome describes one attempt for an [Observer]. It is a struct, not a list
// of parameters, so that fields can be added without breaking implementations.
type Outcome struct {
	N        int           // events the attempt used: 1 per batch, or its number of items
	Err      error         // the attempt's error; nil means success
	Duration time.Duration // how long the attempt took; zero if unknown (latency-based limiters use it, Adaptive does not)
}

// timedWaiter is implemented by this package's limiters, which know exactly
// how long a call waited (zero when it did not block) without reading the clock
// on their fast path.
type timedWaiter interface {
	wait(ctx context.Context, n int) (time.Duration, error)
}

// Wait calls w.WaitN(ctx, n) and also reports how long it waited, for a
// rate-limit wait histogram or a span event. For [*Limiter] and [*Adaptive] the
// duration is exact and zero when tokens were available; for any other Waiter it
// is the time measured around WaitN. A nil w means no limit: Wait returns
// (0, nil) at once.
func Wait(ctx context.Context, w Waiter, n int) (waited time.Duration, err error) {
	switch w := w.(type) {
	case nil:
		return 0, nil
	case timedWaiter:
		return w.wait(ctx, n)
	default:
		start := time.Now()
		err = w.WaitN(ctx, n)
		return time.Since(start), err
	}
}

var (
	_ Waiter   = (*rate.Limiter)(nil)
	_ Waiter   = (*Limiter)(nil)
	_ Waiter   = (*Adaptive)(nil)
	_ Observer = (*Adaptive)(nil)
	_ Waiter   = WaiterFunc(nil)
)
