// Package throttle is a muster middleware that rate-limits batches: before
// the FireFunc it wraps runs, it waits for tokens from a [ratelimit.Waiter]
// (a *ratelimit.Limiter, a *ratelimit.Adaptive, a *rate.Limiter, or a
// limiter of your own).
//
//	rows := ratelimit.NewLimiter(5000, 500) // the downstream takes 5000 rows/s
//	fire := throttle.New[Row](rows, throttle.WithPerItem())(insertRows)
//
// # Tokens
//
// By default a batch takes one token: the limiter counts batches (requests).
// With WithPerItem it takes len(items) tokens: the limiter counts items (rows,
// messages). To limit both, chain two middlewares with two limiters:
//
//	muster.Chain(throttle.New[Row](requests), throttle.New[Row](rows, throttle.WithPerItem()))
//
// A *rate.Limiter refuses a request for more tokens than its burst (WaitN
// fails, and so does the batch); a *ratelimit.Limiter serves it. For a
// per-item limit use a ratelimit.Limiter, or a burst of at least
// MaxBatchSize.
//
// # Backpressure and shutdown
//
// The wait happens inside the batch's Fire, so the batch keeps its in-flight
// slot while it waits: with MaxConcurrentBatches set, the next batches wait
// for a slot, and producers block in Add once PendingWorkCapacity is used up.
// A rate limit thus slows producers down instead of letting work pile up.
//
// The wait honours the batch's context. When a Shutdown deadline passes, the
// core cancels it with cause muster.ErrIncomplete, the wait ends at once, the
// FireFunc is not called, and the batch fails with an error matching
// ErrWaitAborted and the cause (and the Waiter's own error): a batch is never
// dropped silently. The same happens, with the Waiter's error, when the
// Waiter refuses. Inside a retry middleware such a refusal is retried like
// any failure (a wait cut short by the batch's context is not): do not pass
// a *rate.Limiter a request larger than its burst, which it refuses every
// time.
//
// # Observation
//
// A wait that took time, or failed, is reported with muster.ReportWait, so
// the batcher's Hooks.Waited (tracing, the muster.ratelimit.wait.duration
// metric) sees it: Reason muster.WaitRateLimit, Tokens asked for, Duration waited, Err
// when it failed. Batches that found their tokens ready are not reported, so
// the count of reported waits is the count of batches the limit delayed.
// *ratelimit.Limiter and *ratelimit.Adaptive say exactly how long they waited
// (zero when they did not block); for any other Waiter the duration is
// measured around WaitN and is never quite zero, so every batch is reported.
//
// # Adaptive limits
//
// When the Waiter also implements ratelimit.Observer (*ratelimit.Adaptive
// does), the middleware reports the outcome of every call of the FireFunc to
// it, so the limiter slows down when the downstream is overloaded and speeds
// up when it recovers: Outcome{N: tokens, Err: the FireFunc's error,
// Duration: how long it took}. A batch whose wait failed never reached the
// downstream and is not reported.
//
// Where to put it among other middleware (retries in particular: whether each
// attempt pays for tokens) is discussed in the documentation of package
// middleware.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

// ErrWaitAborted is matched by the error of a batch whose wait for tokens
// ended before it got them: its context ended (a Shutdown deadline) or the
// Waiter failed. The FireFunc was not called. Compare with errors.Is.
var ErrWaitAborted = errors.New("throttle: rate-limit wait aborted")

// Option configures New.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	perItem bool
}

// WithPerItem makes each batch take len(items) tokens instead of one.
func WithPerItem() Option {
	return optionFunc(func(c *config) { c.perItem = true })
}

// New returns a Middleware that waits for tokens from w before each call of
// the FireFunc it wraps: one per batch, or one per item with WithPerItem. A
// nil w means no limit: the middleware returns the FireFunc unchanged. The
// middleware is safe for concurrent use, as w must be; one w shared by
// several middlewares (several batchers) enforces one limit across them.
func New[T any](w ratelimit.Waiter, opts ...Option) muster.Middleware[T] {
	var c config
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if w == nil {
		return func(next muster.FireFunc[T]) muster.FireFunc[T] { return next }
	}
	obs, _ := w.(ratelimit.Observer)
	perItem := c.perItem
	return func(next muster.FireFunc[T]) muster.FireFunc[T] {
		return func(ctx context.Context, items []T) error {
			n := 1
			if perItem {
				n = len(items)
			}
			waited, err := ratelimit.Wait(ctx, w, n)
			if err != nil {
				err = aborted(ctx, err)
			}
			if waited > 0 || err != nil {
				muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit, Tokens: n, Duration: waited, Err: err})
			}
			if err != nil {
				return err
			}
			if obs == nil {
				return next(ctx, items)
			}
			start := time.Now()
			err = next(ctx, items)
			obs.Observe(ratelimit.Outcome{N: n, Err: err, Duration: time.Since(start)})
			return err
		}
	}
}

// aborted wraps the Waiter's error with ErrWaitAborted and, when the batch's
// context has ended, its cause (unless the Waiter's error already carries it).
func aborted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		if cause := context.Cause(ctx); !errors.Is(err, cause) {
			return fmt.Errorf("%w: %w: %w", ErrWaitAborted, err, cause)
		}
	}
	return fmt.Errorf("%w: %w", ErrWaitAborted, err)
}
