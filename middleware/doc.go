// Package middleware holds the layers a muster user puts around batches. It
// has no code of its own; each layer is a subpackage:
//
//   - middleware/otelmuster: tracing and metrics. They observe, so they are
//     hooks (muster.Hooks, set as the batcher's Hooks field), not
//     middleware: they see the whole batch, from fire to done, whatever the
//     layers below do.
//   - [github.com/musterhq/muster/middleware/slogmuster]: logs with log/slog
//     what an operator must see (refusals by reason, rate limited; panics
//     with their stacks; failed and abandoned batches). Hooks too.
//   - [github.com/musterhq/muster/middleware/retry]: calls the FireFunc again
//     after a failure, with backoff, caps and a retry budget.
//   - [github.com/musterhq/muster/middleware/throttle]: waits for tokens from
//     a rate limiter (package ratelimit) before the FireFunc runs.
//
// Retry and throttle change what happens to a batch, so they wrap the
// FireFunc (muster.Middleware); muster.Chain composes them, the first
// outermost. They tell the hooks what they do through the batch's context
// (muster.ReportRetry, muster.ReportWait), so a trace shows every wait and
// every attempt whatever the order.
//
// # Recommended order
//
//	b := &muster.Batcher[Row]{
//		Hooks: hooks, // tracing and metrics (middleware/otelmuster): the whole batch
//		Fire: muster.Chain(
//			retry.New[Row](),           // outside: decides whether to try again
//			throttle.New[Row](limiter), // inside: every attempt waits for tokens
//		)(insertRows),
//		// MaxBatchSize, BatchTimeout, ...
//	}
//
// Retry goes outside, throttle inside, so that every attempt, retries
// included, takes its tokens. The other order (one wait per batch, retries
// going out at once) looks cheaper but is wrong for the usual case, for three
// reasons:
//
//   - A rate limit stands for the downstream's quota, and the downstream
//     counts every request it gets, retries included. If retries bypassed
//     the limiter, the downstream would get more than its quota exactly when
//     it is failing, and a 429 would breed more 429s.
//   - An adaptive limiter (ratelimit.Adaptive) learns from every attempt it
//     hears about. Inside the retries, a failed attempt lowers the rate before
//     the retry waits for its tokens, so the retry goes out at the new rate.
//     Outside, it hears only the batch's final outcome: a batch that
//     succeeded at its third attempt counts as a success and hides the
//     overload.
//   - Retries queue for tokens with the fresh batches (a ratelimit.Limiter
//     serves waiters in order), so the total load stays at the limit. The
//     retry budget keeps retries from crowding fresh batches out: retries
//     number at most its ratio of the batches, plus its small reserve.
//
// The costs: a retried batch waits for tokens again after its backoff (its
// in-flight slot held all along), the token waits count towards
// retry.WithMaxElapsedTime, and retry.WithAttemptTimeout, whose context is
// made before the wait, also bounds the wait for tokens (a *rate.Limiter then
// refuses at once a wait that would outlast it). A trace shows: wait, attempt
// 1, backoff, wait, attempt 2.
//
// Put throttle outside retry,
//
//	muster.Chain(throttle.New[Row](limiter), retry.New[Row]())(insertRows)
//
// when the limit is your own pacing rather than the downstream's quota (to
// smooth your load, to share a machine): each batch then waits once, its
// retries follow their backoff only, and the retry budget alone bounds the
// extra load. An adaptive limiter there sees one outcome per batch.
//
// Two limits (requests and items) are two throttle middlewares side by side,
// either order, inside retry.
//
// # Shutdown
//
// Both layers wait on the batch's context, which the core cancels (cause
// muster.ErrIncomplete) when a Shutdown deadline passes: a backoff or a wait
// for tokens then ends at once and the batch fails with an error matching
// muster.ErrIncomplete (and retry.Error's or throttle.ErrWaitAborted's view
// of it). No batch is dropped without a Done hook seeing its error.
package middleware
