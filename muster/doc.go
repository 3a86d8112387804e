// Package muster batches items: it collects them and fires them in batches,
// when a batch is full (MaxBatchSize), or when its first item has waited long
// enough (BatchTimeout), with at most MaxConcurrentBatches batches in flight
// and PendingWorkCapacity items buffered for producers.
//
// It keeps facebookgo/muster's API and behaviour ([Client], [Batch],
// [Notifier]): a program written for that package works after changing only
// its import path. It adds typed items ([Batcher]), per-key batching
// ([Keyed]), contexts, errors, per-item results, overflow policies, flush,
// shutdown with a deadline, middleware around every batch, and hooks that
// cost nothing when unused. It imports only the standard library.
//
// # Which to use
//
// Most callers should use [Batcher]: items of their own type, a [FireFunc]
// (func(ctx, []T) error) instead of a Batch type, and an Add that is a lock
// and an append. [Keyed] batches per key (tenant, destination): a batch
// never mixes keys. Use [Client] for code written for facebookgo/muster, or
// for a Batch that must see items one at a time as they arrive.
//
// # One engine
//
// The three are one engine: a Batcher is a Keyed with one key, and a Client
// a Batcher whose batches are the user's Batch values. Each key has an open
// batch that items join. A closed batch queues, oldest first, for one set of
// MaxConcurrentBatches in-flight slots shared by all keys; it fires (Fired
// hook, then Fire) only once it holds a slot, and no goroutine exists for it
// before that. When PendingWorkCapacity items are queued behind the oldest
// waiting batch, Add applies the [Overflow] policy.
//
// The capacity is shared by the keys of a Keyed, so by default one loud key
// can fill it; Keyed.MaxPendingPerKey bounds each key's share and gives
// slots round-robin to the keys waiting, and Keyed.TopKeys (for an
// observer, ClientInfo.TopKeys) shows which keys hold the most.
//
// # What happens to items
//
//   - Start with an invalid configuration returns an error matching
//     [ErrInvalidConfig]; nothing runs.
//   - Add returns [ErrNotStarted] before Start and [ErrNilContext] for a
//     nil context, doing nothing. Otherwise it refuses an item (not taken;
//     the Refused hook sees why) with [ErrStopped] once Stop or Shutdown has
//     begun; the context's error when its context ends while it waits for
//     room; [ErrFull] at full capacity under OverflowFail; [ErrTooLarge] for
//     an item past MaxBatchBytes; [ErrInvalidKey] for a key not equal to
//     itself; [ErrTooManyKeys] for a new key when MaxKeys keys hold work.
//     Sending on Client.Work after Stop panics, as on any closed channel;
//     an item refused after its send on Work is seen by hooks, not the sender.
//   - Under OverflowDropNewest or OverflowDropOldest an item is dropped: Add
//     returns nil; the Refused hook, the item's [Result] and the DeadLetter
//     function see [ErrDropped].
//   - A Keyed key at MaxPendingPerKey meets the Overflow policy as at full
//     capacity, for that key only: it blocks, fails (matching ErrFull), or
//     drops the incoming item or that key's oldest queued one.
//   - A panic in Fire, BatchMaker, Batch.Add, Key or Sizer is recovered as a
//     [*PanicError], with the stack: a batch is done with it and releases
//     its slot, an item is refused with it.
//   - A batch fails when its FireFunc returns an error (or an [*ItemErrors]
//     to fail only some items), or its Batch calls [DoneWith] with one: its
//     items' Results and its Done hook see the error. The core does not
//     retry: wrap Fire with a retry [Middleware]. After every middleware,
//     the failed items reach the DeadLetter function of a Batcher or Keyed.
//   - Stop and Shutdown fire the partial batches and wait. When Shutdown's
//     context ends first, batches that have not fired are abandoned (Done
//     hooks, Results and the DeadLetter function see [ErrIncomplete];
//     Stats.Abandoned counts their items), items still in Work are refused
//     with ErrIncomplete, in-flight batches have their context canceled, and
//     a [*ShutdownError] counts what was not done.
//   - A Client has no DeadLetter function: its items are in its Batch values.
//   - To keep accepted items through a crash or a Shutdown deadline, wrap a
//     Batcher or Keyed with package journal: Add returns once the item is
//     journaled, and what was not finished is replayed at the next start.
//
// # Hooks and middleware
//
// An [Observer] is told of each client as it starts and returns the [Hooks]
// that observe it: an item taken or refused, a batch fired and done, a
// producer or a batch that waited, a retry, the client stopped. Events carry
// what cannot be seen from outside (batch id, key, size, trigger, age, slot
// wait, in-flight count, queue depth, the contexts an Added hook kept,
// duration, error); a Fired hook returns the context Fire runs with, which
// is how a tracing layer puts the batch span there. [Compose] combines
// observers.
//
// Behaviour that changes the outcome (retries, rate limits) wraps the
// FireFunc: a [Middleware] is func(FireFunc) FireFunc, and [Chain] composes
// them. The same middleware wraps a Batcher's or Keyed's Fire and a
// Client's Batch (Client.Middleware).
//
// # Concurrency
//
// Clients are safe for concurrent use once started. Each batch's Fire runs
// on a goroutine other than the producers'; Batch.Add is called under the
// client's lock, one item at a time, so a Batch needs no lock of its own
// (and must not call back into the client). Hooks run synchronously, on the
// goroutines their docs name, and must not block.
//
// A client starts no goroutine of its own, except a Client's worker, which
// drains Work. A batch's goroutine, once its batch is done, runs the next
// batch its slot admits, or parks: a started client keeps up to
// MaxConcurrentBatches parked goroutines (64 without a cap), a few KiB of
// stack each, until it stops.
//
// # Migrating from facebookgo/muster
//
// Change the import path. Then, optionally: replace Work <- item with Add,
// which returns ErrStopped instead of panicking after Stop and honours a
// context; replace Stop with Shutdown to bound the wait; implement
// [FireContexter] to receive the batch's context; call DoneWith to report
// errors. Differences from the seed: a Fire that panics no longer crashes
// the program; a second Stop no longer panics; a Done called twice no longer
// corrupts the in-flight count; a negative BatchTimeout is refused by Start
// (the seed fired every item at once); Start's error for no trigger matches
// ErrInvalidConfig, its message that error's followed by the seed's words.
package muster
