// Package muster batches items: it collects them and fires them in batches,
// when a batch is full (MaxBatchSize), or when its first item has waited long
// enough (BatchTimeout), with at most MaxConcurrentBatches batches in flight
// and PendingWorkCapacity items buffered for producers.
//
// It keeps facebookgo/muster's API and behaviour to the letter ([Client],
// [Batch], [Notifier]): a program written for that package works after
// changing only its import path. It adds typed items ([Batcher]), per-key
// batching ([Keyed]), contexts, errors, per-item results, overflow
// policies, [Client.Flush], [Client.Shutdown] with a deadline, middleware
// around every batch, and hooks around add, fire and done that cost nothing
// when unused. It imports only the standard library.
//
// As with facebookgo/muster, the intended use is in a hidden fashion: keep
// your client private to a typed client of your own (see the package
// example).
//
// # Which to use
//
// Most callers should use [Batcher]: it takes items of their own type and a
// [FireFunc] (a func(ctx, []T) error) instead of a Batch type; its Add is a
// lock and an append, several times cheaper than the seed's channel
// hand-off (BENCHMARKS.md in the repository). [Keyed] batches per key
// (tenant, destination): a batch never mixes keys. Use [Client] for code
// written for facebookgo/muster, or a Batch that must see items one at a
// time as they arrive.
//
// # One engine
//
// The three are one engine: a Batcher is a Keyed with one key, and a Client
// a Batcher whose batches are the user's Batch values. Each key has an open
// batch that items join. A closed batch queues, oldest first, for one set of
// MaxConcurrentBatches in-flight slots shared by all keys; it is in flight
// (its Fired hook has run, its Fire runs) only once it holds a slot, and no
// goroutine exists for it before that. When PendingWorkCapacity items are
// queued behind the oldest waiting batch, Add applies the Overflow policy:
// it blocks until its context ends ([OverflowBlock], the seed's behaviour),
// fails with [ErrFull], drops the incoming item, or drops the oldest queued
// one ([OverflowFail], [OverflowDropNewest], [OverflowDropOldest]). Sending
// on a Client's Work always blocks, as in the seed.
//
// That capacity is shared by the keys of a [Keyed]: by default a key adding
// far faster than the others can fill it, and the others' Adds then meet
// the Overflow policy too. Keyed.MaxPendingPerKey makes it fair: a key with
// a batch waiting takes no more items once it holds that many that have not
// fired (its further Adds meet the Overflow policy while other keys' items
// are still taken; a key thus holds at most the larger of MaxPendingPerKey
// and MaxBatchSize), and free slots go round-robin to the keys with batches
// waiting instead of oldest first. Keyed.KeyStats and Keyed.TopKeys (and, for an
// observer, ClientInfo.TopKeys) show which key holds the most.
//
// # What happens to items
//
//   - Invalid configuration: Start returns [ErrZeroBoth] or an error matching
//     [ErrInvalidConfig]; nothing runs.
//   - Add before Start returns [ErrNotStarted]; after Stop or Shutdown has
//     begun, [ErrStopped]; when its context ends while it waits for room, the
//     context's error; at full capacity under OverflowFail, [ErrFull]; an item
//     whose size passes MaxBatchBytes, [ErrTooLarge]; a Keyed's item whose key
//     is a NaN, [ErrInvalidKey]; a new key when MaxKeys keys hold work,
//     [ErrTooManyKeys]. In each case the item was not taken. Sending on
//     Client.Work after Stop panics, as sending on any closed channel does.
//   - Under OverflowDropNewest or OverflowDropOldest an item is dropped: Add
//     returns nil, and the Refused hook and the item's [Result] see
//     [ErrDropped]; a Batcher's or Keyed's DeadLetter function receives the
//     item.
//   - A Keyed's key at MaxPendingPerKey (a batch of it waits, and it holds
//     that many items not fired): its Add meets the Overflow policy as at
//     full capacity, for that key only. It blocks until one of the key's
//     batches gets a slot or ctx ends (the context's error); fails with an
//     error matching ErrFull; drops the incoming item; or drops that key's
//     oldest item queued behind the oldest waiting batch (never another
//     key's; with none, the incoming one). Other keys' items are taken as
//     long as PendingWorkCapacity has room.
//   - A Fire (or FireFunc, BatchMaker, Batch.Add, Key, Sizer) that panics:
//     the panic is recovered as a [*PanicError] (matching [ErrPanic], with
//     the stack); a batch is done with it and releases its slot, an item is
//     refused with it.
//   - A batch reports failure with [DoneWith] (or [ErrorNotifier]); a FireFunc
//     by returning an error, or an [*ItemErrors] to fail only some items.
//     The core does not retry: wrap Fire with a retry [Middleware]. The items
//     of a batch whose Fire failed (after the retries: every middleware has
//     run) reach the DeadLetter function of a Batcher or Keyed, all of them
//     with the error, or only the failed ones with an *ItemErrors aligned
//     with them ([DeadLetterFunc]).
//   - Done called twice: the second call is ignored.
//   - Stop and Shutdown fire the partial batches and wait; called twice, the
//     second waits for the same end. When Shutdown's context ends first,
//     batches that have not fired are abandoned (never fired; Done hooks and
//     Results see [ErrIncomplete], Stats.Abandoned counts their items), items
//     still in Work are refused with ErrIncomplete, in-flight batches have
//     their context canceled, and a [*ShutdownError] counts what was not done.
//     The items of the abandoned batches reach the DeadLetter function with
//     ErrIncomplete, so that they can be kept (a Client has none: its items
//     are in its Batch values).
//   - To keep accepted items through a crash or a Shutdown deadline, wrap a
//     Batcher or Keyed with package journal: Add returns once the item is
//     journaled, and what was not finished is replayed at the next start.
//
// # Hooks
//
// An [Observer] is told of each client as it starts and returns the [Hooks]
// that observe that client: functions called for every item taken
// (Added) or refused (Refused), when a batch fires and is done, when a
// producer or a batch waits, when an attempt is retried, and once when the
// client has stopped. Events carry what an observer cannot see from
// outside: batch id, key, size, trigger, age of the first item, time spent
// waiting for an in-flight slot, in-flight count, queue depth, the contexts
// an Added hook chose to keep, duration and error. A Fired hook returns the
// context Fire runs with: this is how a tracing layer puts the batch span
// there. Several observers combine with [Compose]; the middleware packages
// build tracing and metrics on them.
//
// # Middleware
//
// Behaviour that changes the outcome (retries, rate limits) wraps the
// [FireFunc]: a [Middleware] is func(FireFunc) FireFunc and [Chain] composes
// them, the first outermost. The same middleware wraps a Batcher's or a
// Keyed's Fire, and a Client's Batch through Client.Middleware.
//
// # Concurrency
//
// Clients are safe for concurrent use once started. Each batch's Fire runs
// on a goroutine other than the producers'; Batch.Add is called with the
// client's lock held, one item at a time, so a Batch needs no locking of its
// own (and must not call back into the client). Hooks run synchronously, on
// the goroutines their docs name, and must not block.
//
// A client starts no goroutine of its own, except a Client's worker, which
// drains Work. A batch's goroutine, once its batch is done, runs the next
// batch its freed slot admits, or else parks, waiting for one: a started
// client keeps up to MaxConcurrentBatches parked goroutines (64 without a
// cap), each a few KiB of stack, until Stop or Shutdown ends.
//
// # Migrating from facebookgo/muster
//
// Change the import path. Then, optionally: replace Work <- item with Add,
// which returns [ErrStopped] instead of panicking after Stop and honours a
// context; replace Stop with Shutdown to bound the wait; implement
// [FireContexter] to receive the batch's context; call [DoneWith] to report
// errors. Differences from the seed: a Fire that panics no longer crashes
// the program; a second Stop no longer panics; a Done called twice no longer
// corrupts the in-flight count; a negative BatchTimeout is refused by Start
// (the seed fired every item at once).
package muster
