// Package journal keeps the items a muster batcher accepted until their
// outcome is final, so that a crash, a Shutdown deadline or a downstream
// outage longer than a pod's grace period loses none of them.
//
// Two parts meet here: a Store, which keeps records (the embedded Log on the
// local disk, standard library only; a Redis Streams store in the module
// journal/redisjournal), and the layer over a muster.Batcher or muster.Keyed
// ([Wrap], [WrapKeyed]) that appends each item before Add returns and
// finishes it when its outcome is final.
//
// # Using it
//
// Configure a muster.Batcher (or Keyed) of [Item] values, with its Fire and
// middleware as usual, and wrap it:
//
//	log, err := journal.Open(dir, journal.LogOptions{}) // Synced
//	b := journal.Wrap(&muster.Batcher[journal.Item[Order]]{
//		MaxBatchSize: 500, BatchTimeout: 50 * time.Millisecond,
//		Fire: retry.New[journal.Item[Order]]()(insertOrders), // upsert on item.ID
//	}, journal.Config[Order]{Store: log, Codec: journal.JSON[Order](), DeadLetter: spill})
//	err = b.Start() // replays what an earlier run left
//	err = b.Add(ctx, order)
//
// Fire receives each item's [ID] beside its value: a sink that deduplicates
// on it (an SQL upsert on the ID, a Kafka key, a Nats-Msg-Id) turns the
// at-least-once delivery below into exactly-once effects.
//
// # Guarantees
//
// Add returns nil only once the item is in the Store at the Store's level,
// and the item leaves the Store only when its outcome is final. What an
// accepted item survives depends on that level:
//
//	level     survives                           loss window           cost per Add
//	Synced    process crash, machine crash,       none                  waits for a group commit:
//	          power loss (on a disk that                                one fsync shared by the
//	          honours flushes); the Log's default                       concurrent Adds
//	Interval  process crash; a machine crash      the last interval d   a write; one fsync per d
//	          loses at most the last d
//	Process   process crash (the OS keeps the     what the OS had not   a write, no fsync
//	          write); not a machine crash         flushed at a crash
//
// A store shared by replicas (journal/redisjournal) documents its own
// level; there, another live replica takes over a dead one's items.
//
// Delivery to Fire is at least once. An item is delivered (or dead-lettered)
// a second time exactly when its outcome was reached but its Finish was not
// durable in the Store when the process ended: a crash or a kill after
// Fire (or DeadLetter) returned and before Finish was durable; a Finish that
// failed (Stats.FinishFailed); or an item whose Add returned an error
// because the batcher refused it after it was journaled, when a crash came
// before its Finish. The next start replays such an item with the same ID.
// A retry middleware adds its own duplicates: an attempt that delivered but
// returned an error is sent again, with the same IDs.
//
// # What happens to items
//
//   - Refused: Add returns an error (encoding failed, the Store failed or
//     was full under OverflowFail, the batcher is stopped, ctx ended while
//     waiting for room): the item was not accepted, and is not in the
//     Store (or is finished there at once).
//   - Dropped: under a drop policy, an item the batcher drops goes to
//     Config.DeadLetter with muster.ErrDropped and is finished; the incoming
//     item when the Store is full goes to Config.DeadLetter with
//     muster.ErrDropped too, never having been journaled.
//   - Delivered: Fire (with its middleware) returned nil for it, or nil
//     at its index of an *muster.ItemErrors: it is finished.
//   - Failed for good: Fire returned an error after every middleware (the
//     retry budget spent, or an error marked permanent): DeadLetter
//     receives it with that error, then it is finished.
//   - Expired: older than Config.MaxItemAge when its batch fired: not
//     delivered; DeadLetter receives it with ErrExpired, then it is
//     finished.
//   - Undeliverable at replay: a record the Codec cannot decode
//     (DeadLetter receives it with its ID, a zero Value and the Codec's
//     error), or an item the batcher refuses for good (a Keyed's bad key,
//     a size past MaxBatchBytes: with the batcher's error). It is finished;
//     the replay goes on.
//   - Abandoned at a Shutdown deadline, or in flight then and failed as its
//     context was canceled: it stays in the Store, never deleted, and the
//     next start replays it; ShutdownError.Kept counts such items.
//   - Crash (a panic elsewhere, an OOM kill, kill -9, a node lost): every
//     item not finished stays in the Store (within its level's loss
//     window), and the next start replays it.
//
// DeadLetter is called before Finish, so that a crash between the two
// duplicates a dead letter rather than losing the item.
//
// The seed's Client, and its Work channel, cannot have this guarantee:
// Work accepts an item before any code of the library (and so any journal)
// sees it. Journal a Batcher or a Keyed.
//
// # Replay
//
// Start replays the Store's unfinished items of earlier runs (and, for a
// shared store, of dead replicas) through the same batcher: same
// middleware, limits and backpressure, oldest first (so in order per key),
// with Item.Replayed set and the Item.Accepted of the first acceptance, so
// that MaxItemAge bounds how stale a replayed item may be. ReplayLimiter
// paces it. Add works during the replay: a new item may be delivered before
// an older replayed one of its key. Flush does not wait for the replay;
// [Batcher.ReplayDone] does.
package journal
