// Package ratelimit is flow control for batches, on [golang.org/x/time/rate]:
// it holds a batch back until the downstream's quota allows it.
//
// A rate-limiting middleware depends only on the [Waiter] interface, the one
// method WaitN(ctx, n) that *[rate.Limiter] already has, and calls it before
// each batch. This package adds what batches need on top of x/time/rate:
//
//   - [Limiter]: a token bucket that accepts requests larger than its burst,
//     serves waiters in order, applies [Limiter.SetLimit] and
//     [Limiter.SetBurst] to callers already waiting, and returns
//     context.Cause(ctx) on cancellation.
//   - [Adaptive]: a limiter that finds the rate the downstream sustains (AIMD),
//     fed by the optional [Observer] interface.
//   - [Wait]: WaitN plus the time it waited, for a metric or a span event.
//
// Most callers should create one [Limiter] (with [NewLimiter]) per downstream
// quota and hand it to the middleware.
//
// # Per-batch or per-item limits
//
// Count what the downstream's quota counts. If it limits requests (an API
// allowing 50 calls per second, whatever their size), limit batches: WaitN(ctx,
// 1) per batch, a Limiter in batches per second. If it limits volume (rows per
// second, messages per second, a write-capacity budget), limit items:
// WaitN(ctx, len(items)), a Limiter in items per second. Both can be used at
// once, with two limiters. A per-item limit makes a larger batch wait longer, so
// the item rate holds whatever the batch sizes; a per-batch limit lets bigger
// batches carry more items per second.
//
// # Bursts
//
// The burst is how many tokens may be taken at one instant after an idle
// period. For a per-item limit, set it to at least the batch size
// (MaxBatchSize) so that an idle limiter lets one full batch through at once.
// x/time/rate refuses larger requests: *rate.Limiter's WaitN returns an error
// when n exceeds the burst, which a per-item middleware would turn into a failed
// batch. [Limiter] serves them on credit instead: the request waits until the
// bucket has produced all n tokens and then proceeds whole, so it is never
// refused and the long-run rate holds. Pass a *rate.Limiter directly only if
// n never exceeds its burst.
//
// # Sharing a quota
//
// A quota belongs to the downstream, not to a client: when several clients (or
// several batchers in one process) call the same downstream, give them the same
// [*Limiter] or [*Adaptive]. All methods are safe for concurrent use, and
// waiters are served first come, first served, so the quota splits fairly
// between them. Different quotas need different limiters.
//
// # Adaptive limits
//
// When the sustainable rate is unknown or changes, use [Adaptive]: it raises its
// rate by a fixed step after each success and multiplies it by a factor below
// one after each overload, between a floor and a ceiling, like TCP's congestion
// window. It learns outcomes through [Observer], an optional interface that a
// middleware looks for on its Waiter (as database/sql looks for optional driver
// interfaces) and calls after every attempt. Which errors count as overload is
// configurable; return an error wrapping [ErrOverloaded] to mark one explicitly.
// Set [AdaptiveConfig].CoolDown when several batches are in flight at once, so
// that one wave of failures lowers the rate once, not once per batch. Export
// [Adaptive.Limit] as a gauge to see where it settled.
//
// # Distributed limits
//
// A [Limiter] enforces a quota within one process. When replicas share a quota,
// the tokens have to live in a shared store. Module
// github.com/musterhq/muster/ratelimit/redisrate does this with Redis (GCRA,
// leasing, a fallback to the replica's share while Redis fails, an AIMD rate
// shared by the replicas). For another store the plug-in point is [Waiter]:
// implement WaitN against the store (a [WaiterFunc] is enough) and give it to
// the middleware in place of a Limiter. A sketch, where take atomically takes n
// tokens in the store (a GCRA or token-bucket script in Redis, say) or says when
// to retry:
//
//	shared := ratelimit.WaiterFunc(func(ctx context.Context, n int) error {
//		for {
//			retryAfter, err := store.take(ctx, "quota:orders-api", n)
//			if err != nil || retryAfter == 0 {
//				return err // granted, or the store failed
//			}
//			t := time.NewTimer(retryAfter)
//			select {
//			case <-t.C:
//			case <-ctx.Done():
//				t.Stop()
//				return context.Cause(ctx)
//			}
//		}
//	})
//
// Decide whether a store failure fails the batch (as above) or falls back to a
// local Limiter set to the replica's share. To save round trips, take tokens from
// the store in blocks and serve them from a local Limiter. Such a Waiter can also
// implement [Observer] to share adaptive state between replicas.
//
// # Cost
//
// A WaitN that does not block costs about 10 ns on an unlimited ([rate.Inf])
// Limiter, which needs no lock and no clock, and about 100 ns when a finite
// limit is not binding, as much as a bare *rate.Limiter (most of it reading the
// clock), with no allocation (BenchmarkWaitNIdle). A WaitN that blocks allocates
// its queue entry and a timer.
package ratelimit
