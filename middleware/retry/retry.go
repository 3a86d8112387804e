// Package retry is a muster middleware that calls a batch's FireFunc again
// when it fails: exponential backoff with jitter, a cap on attempts and on
// elapsed time, errors marked Permanent left alone, a server's delay hint
// honoured, and a retry Budget shared across batches so that a failing
// downstream is not hammered.
//
//	fire := muster.Chain(retry.New[Row](retry.WithMaxAttempts(4)), ...)(insertRows)
//
// # What it asks of the FireFunc
//
// After a failed attempt the FireFunc is called again with the same context
// (or, with WithAttemptTimeout, a new one derived from it for each attempt)
// and the same items slice (or, in a partial retry, the items that failed),
// so:
//
//   - it must be idempotent, or tolerate seeing items it already partly
//     delivered (use an idempotency key or an upsert where the downstream
//     has one);
//   - it must not retain items, nor modify them in a way it could not take
//     again: the next attempt sees the items as the last one left them;
//   - it returns Permanent(err) for failures a retry cannot fix (a
//     malformed batch, a rejected credential), so that they are not retried.
//
// # Partial retries
//
// A bulk API that takes 97 items of 100 and rejects 3 is told about with a
// *muster.ItemErrors: the FireFunc returns one (possibly wrapped) whose Errs
// are index-aligned with the items it was called with, nil where the item
// succeeded. The middleware then judges each item on its own error: items
// that succeeded are never sent again; an item whose error is Permanent or
// refused by WithRetryIf keeps that error and is not resent; the others
// are retried, and only they. The next attempt calls the FireFunc with a
// slice holding just those items, in their original order; its
// *muster.ItemErrors (aligned with that slice) is mapped back to the
// batch's items, and so on until no item is left to retry. Any other error
// of such an attempt is every item's of that attempt. The slice is the
// middleware's own, allocated once per batch and reused by its attempts
// (never the caller's array, which is left as it was): the FireFunc must not
// keep it, as it must not keep any items slice.
//
// A *muster.ItemErrors whose length is not the number of items sent is an
// error of the batch as a whole, retried as any other; so is any error
// until an attempt reports per-item errors. Wrapping the *muster.ItemErrors
// in Permanent makes the middleware return it unchanged at the first
// attempt (resend none of its items at a later one).
//
// Everything else applies as to a whole batch: an attempt over some items
// is one attempt for WithMaxAttempts, draws one retry from the Budget, and
// waits its backoff (or the largest delay hint among the errors of the items
// it resends); WithMaxElapsedTime and WithAttemptTimeout bound it the same
// way.
//
// # Limits
//
// By default a batch gets at most 5 attempts, no wait starts that would end
// more than a minute after its first attempt started, and retries draw on a
// Budget of the middleware's own, NewBudget(0.2, 10): retries add at most
// 20% to the batches fired (plus 10 a second). Several batchers that call
// one downstream share one configuration and one Budget through a Policy,
// whatever their item types (or a Budget alone through WithBudget). Any of
// the three ending the retries makes the batch fail, with an error saying
// which: ErrExhausted (attempts), ErrElapsedLimit (time) or
// ErrBudgetExhausted.
//
// # Schedule
//
// The wait before attempt n+1 is drawn below a ceiling of
// Initial × Multiplier^(n-1), capped at Max (defaults: 100 ms, 2, 5 s), with
// full jitter by default: uniform in [0, ceiling), the variant that spreads
// competing clients best ("Exponential Backoff And Jitter", AWS Architecture
// Blog). EqualJitter keeps a floor of half the ceiling; NoJitter waits the
// ceiling. See Backoff.
//
// When an attempt's error (or one it wraps) has a method
//
//	RetryAfter() time.Duration
//
// returning more than zero (a server's Retry-After, a quota's reset time),
// that is the wait instead, not capped by Backoff.Max. Either way, a wait
// that would end past the WithMaxElapsedTime limit is not started: the
// middleware gives up at once.
//
// # Outcome
//
// The middleware returns nil as soon as an attempt succeeds. An error that
// is not retried (marked Permanent, or refused by WithRetryIf) is returned
// unchanged. Otherwise, on giving up, it returns an [*Error] matching
// ErrExhausted (attempts used up), ErrElapsedLimit (elapsed time used up;
// it matches ErrExhausted too), ErrBudgetExhausted (the Budget refused) or the cause of the batch context's end (muster.ErrIncomplete
// at a Shutdown deadline), and also the last attempt's error, so
// errors.Is(err, yourSentinel) holds through it.
//
// Once an attempt reported per-item errors, the outcome is nil when every
// item eventually succeeded, and otherwise a *muster.ItemErrors over the
// batch's items (the ones the middleware was called with, its length theirs)
// holding each item's final error: nil for an item that succeeded, the
// error that was not retried, unchanged, and for an item still failing when
// the middleware gave up, an *Error (one per item) with the reason as above
// and the item's own last error as Last. A muster.Result (from AddResult)
// sees its item's own error.
//
// # Observation and shutdown
//
// Before each wait it calls muster.ReportRetry, so the batcher's Hooks.Retried
// (tracing, metrics) see every failed attempt that will be retried: its
// number, error and the wait. The error is the attempt's own, as the
// FireFunc returned it: for a partial failure, its *muster.ItemErrors,
// aligned with the items of that attempt (which otelmuster classes as
// "partial"). Waits select on the batch's context: when a Shutdown deadline
// passes the core cancels it, the wait ends at once and the batch fails with
// an error wrapping muster.ErrIncomplete (in a partial retry, each item still
// failing does). The batch keeps its in-flight slot for all its attempts and
// waits.
//
// Where to put it among other middleware (rate limiting in particular) is
// discussed in the documentation of package middleware.
package retry

import (
	"context"
	"math"
	"math/rand/v2"
	"runtime/debug"
	"time"

	"github.com/musterhq/muster/muster"
)

// Defaults, used where an option is not given.
const (
	defaultInitial     = 100 * time.Millisecond
	defaultMax         = 5 * time.Second
	defaultMultiplier  = 2
	defaultMaxAttempts = 5
	defaultMaxElapsed  = time.Minute
	defaultBudgetRatio = 0.2
	defaultBudgetMin   = 10
)

// Jitter says how a wait is drawn below the backoff's ceiling.
type Jitter uint8

// The jitter variants.
const (
	// FullJitter waits a uniform random time in [0, ceiling). The default.
	FullJitter Jitter = iota
	// EqualJitter waits half the ceiling plus a uniform random time in
	// [0, ceiling/2).
	EqualJitter
	// NoJitter waits the ceiling itself.
	NoJitter
)

// Backoff is the exponential schedule of waits between attempts. Zero fields
// take the defaults.
type Backoff struct {
	Initial    time.Duration // ceiling of the first wait; default 100 ms
	Max        time.Duration // cap on the ceiling; default 5 s
	Multiplier float64       // growth of the ceiling per attempt; default 2, below 1 counts as 1
	Jitter     Jitter        // default FullJitter
}

// ceiling returns the cap on the wait after the attempt-th attempt failed.
func (b Backoff) ceiling(attempt int) time.Duration {
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	if d >= float64(b.Max) || math.IsNaN(d) {
		return b.Max
	}
	return time.Duration(d)
}

// wait draws the wait after the attempt-th attempt failed; r is uniform in
// [0, 1).
func (b Backoff) wait(attempt int, r float64) time.Duration {
	c := b.ceiling(attempt)
	switch b.Jitter {
	case EqualJitter:
		return c/2 + time.Duration(r*float64(c-c/2))
	case NoJitter:
		return c
	}
	return time.Duration(r * float64(c))
}

// Option configures New or NewPolicy: the With functions make them, and a
// *Policy is one (all of its configuration, and its Budget).
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	backoff        Backoff
	maxAttempts    int
	maxElapsed     time.Duration
	attemptTimeout time.Duration
	retryIf        func(error) bool
	budget         *Budget
	rand           func() float64 // uniform in [0, 1); replaced by tests
}

// WithBackoff sets the schedule of waits; zero fields keep their defaults.
func WithBackoff(b Backoff) Option {
	return optionFunc(func(c *config) {
		if b.Initial > 0 {
			c.backoff.Initial = b.Initial
		}
		if b.Max > 0 {
			c.backoff.Max = b.Max
		}
		if b.Multiplier != 0 {
			c.backoff.Multiplier = max(b.Multiplier, 1)
		}
		c.backoff.Jitter = b.Jitter
	})
}

// Unlimited, passed to WithMaxAttempts, removes the cap on attempts.
const Unlimited = math.MaxInt

// WithMaxAttempts caps the calls to the FireFunc per batch, the first
// included: 1 means no retry, and so do 0 and below (a batch is always
// tried once). Default 5; WithMaxAttempts(Unlimited) removes the cap.
func WithMaxAttempts(n int) Option {
	return optionFunc(func(c *config) { c.maxAttempts = max(n, 1) })
}

// WithMaxElapsedTime caps the time from a batch's first attempt to the start
// of its last: no wait is started that would end past it. Default 1 minute;
// d <= 0 removes the cap. With neither cap, a batch is retried until it
// succeeds, the budget refuses, or its context ends.
func WithMaxElapsedTime(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxElapsed = max(d, 0) })
}

// WithAttemptTimeout gives each attempt a context of its own that ends d
// after the attempt starts; an attempt cut short that way is retried like
// any failure. Default: none (d <= 0).
func WithAttemptTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) { c.attemptTimeout = max(d, 0) })
}

// WithRetryIf sets which errors are retried: those for which retryIf
// returns true. Errors marked Permanent never are. Default (nil): every
// other error.
func WithRetryIf(retryIf func(err error) bool) Option {
	return optionFunc(func(c *config) { c.retryIf = retryIf })
}

// WithBudget makes retries draw on b, which several middlewares (and so
// several batchers) may share. By default each New has a budget of its own,
// NewBudget(0.2, 10); WithBudget(nil) removes it.
func WithBudget(b *Budget) Option {
	return optionFunc(func(c *config) { c.budget = b })
}

func newConfig(opts []Option) *config {
	c := &config{
		backoff:     Backoff{Initial: defaultInitial, Max: defaultMax, Multiplier: defaultMultiplier},
		maxAttempts: defaultMaxAttempts,
		maxElapsed:  defaultMaxElapsed,
		budget:      NewBudget(defaultBudgetRatio, defaultBudgetMin),
		rand:        rand.Float64,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(c)
		}
	}
	return c
}

// Policy is a retry configuration with its Budget, built once and given to
// New for each batcher that calls one downstream, whatever their item types:
//
//	policy := retry.NewPolicy(retry.WithMaxAttempts(4))
//	client.Middleware = retry.New[any](policy)          // a Client
//	orders.Fire = retry.New[Order](policy)(writeOrders) // a Batcher[Order]
//
// Both then retry on the same schedule and draw on the same Budget, so that
// together their retries add at most the budget's share to the load. A
// Policy is an Option: options given after it in New change that batcher's
// copy only. It is safe for concurrent use.
type Policy struct{ c config }

// NewPolicy returns a Policy made of opts, the Options New takes. Its Budget
// (NewBudget(0.2, 10), unless WithBudget gives one or nil) is made here,
// once: every New given the Policy draws on it.
func NewPolicy(opts ...Option) *Policy { return &Policy{c: *newConfig(opts)} }

// Budget returns the Budget the policy's retries draw on, nil if
// WithBudget(nil) removed it.
func (p *Policy) Budget() *Budget { return p.c.budget }

// apply makes the policy the configuration; a nil Policy changes nothing.
func (p *Policy) apply(c *config) {
	if p != nil {
		*c = p.c
	}
}

// New returns a Middleware that retries failed attempts of the FireFunc it
// wraps, as the package doc describes. The middleware, and the Budget it
// holds, are shared by every batch (and every FireFunc) it wraps; it is safe
// for concurrent use. Each New has a Budget of its own unless given one
// (WithBudget) or a Policy: to share a budget and a configuration between
// batchers of different item types, build a Policy once and pass it to each
// New.
func New[T any](opts ...Option) muster.Middleware[T] {
	c := newConfig(opts)
	return func(next muster.FireFunc[T]) muster.FireFunc[T] {
		return func(ctx context.Context, items []T) error {
			return run(c, ctx, next, items)
		}
	}
}

// retryAfter is what a server's delay hint looks like on an error.
type retryAfter interface {
	error
	RetryAfter() time.Duration
}

func run[T any](c *config, ctx context.Context, next muster.FireFunc[T], items []T) error {
	start := time.Now()
	if c.budget != nil {
		c.budget.deposit(start)
	}
	// p is nil while attempts fail (or succeed) as a whole; from the first
	// attempt that reports per-item errors on, it tracks each item and
	// attempts send only the items to retry.
	var p *partial[T]
	for attempt := 1; ; attempt++ {
		var err error
		if p == nil {
			err = call(c, ctx, next, items)
			if err == nil {
				return nil
			}
			if ie := itemErrorsFor(err, len(items)); ie != nil && !permanentAbove(err, ie) {
				p = newPartial(c, items, ie.Errs)
			} else if !c.retryable(err) {
				return err
			}
		} else {
			err = call(c, ctx, next, p.items)
			p.update(c, err)
		}
		if p != nil && len(p.items) == 0 {
			return p.outcome()
		}
		if ctx.Err() != nil {
			return giveUp(p, attempt, start, context.Cause(ctx), err)
		}
		if attempt >= c.maxAttempts {
			return giveUp(p, attempt, start, ErrExhausted, err)
		}
		wait := c.backoff.wait(attempt, c.rand())
		hint := p.hintAfter(err)
		if hint > 0 {
			wait = hint
		}
		now := time.Now()
		if c.maxElapsed > 0 && now.Sub(start)+wait > c.maxElapsed {
			return giveUp(p, attempt, start, ErrElapsedLimit, err)
		}
		if c.budget != nil && !c.budget.withdraw(now) {
			return giveUp(p, attempt, start, ErrBudgetExhausted, err)
		}
		muster.ReportRetry(ctx, muster.RetryInfo{Attempt: attempt, Err: err, Backoff: wait})
		if !sleep(ctx, wait) {
			return giveUp(p, attempt, start, context.Cause(ctx), err)
		}
	}
}

// giveUp returns the outcome of a batch that gets no further attempt for
// reason: an *Error over the last attempt's error, or, once items are
// tracked one by one, a *muster.ItemErrors with an *Error for each item
// still failing.
func giveUp[T any](p *partial[T], attempts int, start time.Time, reason, last error) error {
	elapsed := time.Since(start)
	if p != nil {
		return p.giveUp(reason, attempts, elapsed)
	}
	return &Error{Attempts: attempts, Elapsed: elapsed, Reason: reason, Last: last}
}

// call makes one attempt, under its own timeout when one is set. A panic in
// the attempt is recovered and becomes that attempt's permanent error (a
// *muster.PanicError, as the core would make it): not retried, and, once
// items are tracked one by one, charged only to the items of that attempt,
// never to items an earlier attempt delivered.
func call[T any](c *config, ctx context.Context, next muster.FireFunc[T], items []T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = Permanent(&muster.PanicError{Value: r, Stack: debug.Stack()})
		}
	}()
	if c.attemptTimeout <= 0 {
		return next(ctx, items)
	}
	actx, cancel := context.WithTimeout(ctx, c.attemptTimeout)
	defer cancel()
	return next(actx, items)
}

// sleep waits d, or until ctx ends; it reports whether it waited the whole d.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
