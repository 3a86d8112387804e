// Package muster batches items: it collects them and fires them in batches,
// when a batch is full (MaxBatchSize), or when its first item has waited long
// enough (BatchTimeout), with at most MaxConcurrentBatches batches in flight
// and PendingWorkCapacity items buffered for producers.
//
// It keeps facebookgo/muster's API and behaviour to the letter ([Client],
// [Batch], [Notifier]): a program written for that package works after
// changing only its import path. It adds typed items ([Batcher]), contexts,
// errors, [Client.Flush], [Client.Shutdown] with a deadline, and [Hooks]
// around add, fire and done that cost nothing when unused. It imports only the
// standard library.
//
// As with facebookgo/muster, the intended use is in a hidden fashion: keep
// your muster.Client or muster.Batcher, and your Batch implementation,
// private to a typed client of your own (see the package example).
//
// # Which to use
//
// Most callers should use [Batcher]: it takes items of their own type, and a
// [FireFunc] (a func(ctx, []T) error) instead of a Batch type. Its Add is a
// lock and an append, 2-20x cheaper than the seed's channel hand-off
// (measured: see BENCHMARKS.md in the repository). Use [Client] when you have code written for facebookgo/muster, or
// a Batch that must see items one at a time as they arrive.
//
// # Per-key batching
//
// [Keyed] batches per key (tenant, destination, credentials): a Key function
// routes each item to its key's batch, so that a batch never mixes keys, and
// Fire receives the key. Each key has its own size, bytes and time triggers
// and its own pending capacity; MaxConcurrentBatches is shared by all keys.
// Keys are created on first use and evicted after KeyIdleTimeout with
// nothing pending or in flight; at most MaxKeys are live, and a new key
// beyond that evicts the least recently used empty key or, when every key
// holds items, is refused with [ErrTooManyKeys]. Hooks see the key in
// FireInfo.Key (and a tracing layer thereby on the batch span); Stats sum
// the keys, and Stats.Keys counts the live ones.
//
// # Backpressure, bytes and results
//
// When PendingWorkCapacity items are queued behind a batch waiting for an
// in-flight slot, Add blocks until its context ends ([OverflowBlock], the
// seed's behaviour), or, as the [Batcher.Overflow] field says, fails at once
// with [ErrFull], drops the incoming item, or drops the oldest queued one
// ([OverflowFail], [OverflowDropNewest], [OverflowDropOldest]); every drop is
// counted in [Stats] and reported to the Added hook with [ErrDropped].
// [Batcher.MaxBatchBytes] with a [Batcher.Sizer] fires a batch before the
// next item would pass a byte limit ([TriggerBytes]); an item too large on
// its own is refused with [ErrTooLarge]. [Batcher.AddResult] returns a
// [Result] to wait on for the outcome of the item's batch; a FireFunc that
// returns an [*ItemErrors] fails only the items it names.
//
// # Errors and what happens to items
//
//   - Invalid configuration: Start returns [ErrZeroBoth] or an error matching
//     [ErrInvalidConfig]; nothing runs.
//   - Add before Start returns [ErrNotStarted]; after Stop or Shutdown has
//     begun, [ErrStopped]; when its context ends while it waits for room, the
//     context's error. In each case the item was not taken. Sending on
//     Client.Work after Stop panics, as sending on any closed channel does.
//   - A Fire (or FireFunc) that panics: the panic is recovered, the batch is
//     done with a [*PanicError] (matching [ErrPanic], carrying the stack),
//     hooks see it, and its in-flight slot is released. Its items count as
//     failed.
//   - A batch reports failure with [DoneWith] (or [ErrorNotifier]); a FireFunc
//     by returning an error. The items are not retried by the core: wrap the
//     FireFunc with a retry [Middleware].
//   - Add at full capacity under OverflowFail: [ErrFull], the item not taken;
//     under OverflowDropNewest or OverflowDropOldest an item is dropped, and
//     hooks and its Result see [ErrDropped]. An item larger than
//     MaxBatchBytes: [ErrTooLarge], not taken.
//   - Done called twice: the second call is ignored.
//   - Stop and Shutdown fire the partial batch and wait; called twice, the
//     second waits for the same end. When Shutdown's context ends first,
//     batches still waiting for a slot are abandoned (never fired; Done hooks
//     see [ErrIncomplete]), in-flight batches have their context canceled,
//     and a [*ShutdownError] says how many batches and items were not done.
//
// # Hooks
//
// A [Hooks] value is a set of optional functions called when a client
// starts, for every item offered, when a batch fires, when it is done, and
// when a layer around Fire reports a wait or a retry ([ReportWait],
// [ReportRetry]). The events carry what an observer cannot see from outside:
// batch id, size, trigger, age of the first item, time spent waiting for an
// in-flight slot, in-flight count, queue depth, each item's context and
// enqueue time (on request), duration and error. A Fired hook returns the
// context Fire runs with: this is how a tracing layer puts the batch span
// there. Several Hooks combine with [Compose]. The middleware package builds
// tracing and metrics on them.
//
// # Middleware
//
// Behaviour that changes the outcome (retries, rate limits) wraps the
// [FireFunc]: a [Middleware] is func(FireFunc) FireFunc and [Chain] composes
// them, the first outermost.
//
// # Concurrency
//
// Client and Batcher are safe for concurrent use once started. Each batch's
// Fire runs on a goroutine of its own; Batch.Add is called with the client's
// lock held, one item at a time, so a Batch needs no locking of its own (and
// must not call back into the client). Hooks run synchronously, on the
// goroutines their docs name, and must not block.
//
// # Migrating from facebookgo/muster
//
// Change the import path. Then, optionally: replace Work <- item with Add,
// which returns [ErrStopped] instead of panicking after Stop and honours a
// context; replace Stop with Shutdown to bound the wait; implement
// [FireContexter] to receive the batch's context; call [DoneWith] to report
// errors. Differences from the seed: a Fire that panics no longer crashes the
// program; a second Stop no longer panics; a Done called twice no longer
// corrupts the in-flight count.
package muster
