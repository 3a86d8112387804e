package journal

import (
	"context"
	"errors"
	"time"
)

// ID identifies a journaled item. It is assigned by the Store's Append and is
// the same through retries, replays after a restart and takeovers by another
// replica, so that a sink can deduplicate on it (an SQL upsert on the ID, a
// Kafka key, a Nats-Msg-Id). It is unique per store (the Log's include the
// log's own random identity; a Redis store's include the stream).
type ID string

// Record is an item kept by a Store.
type Record struct {
	ID       ID        // assigned by Append
	Data     []byte    // the item as the Codec encoded it; valid only during the callback that receives it
	Accepted time.Time // when Add accepted the item (for MaxItemAge)
}

// Store keeps accepted items until they are finished. Implementations are
// safe for concurrent use.
type Store interface {
	// Append keeps data at the store's durability level and returns the
	// item's ID: when Append returns nil, the item survives what the level
	// promises (for the Log: a machine crash at Synced, a process crash at
	// Process). Concurrent Appends share one write (group commit). Append
	// keeps no reference to data once it returns: the caller may reuse it.
	//
	// When the store is at its byte bound, Append waits for room until ctx
	// ends if wait is true, and returns an error matching ErrFull at once
	// if it is false.
	Append(ctx context.Context, data []byte, accepted time.Time, wait bool) (ID, error)

	// Finish marks items final (delivered, dead-lettered, expired or
	// dropped): they are never recovered again and their space may be
	// reclaimed. Unknown or already finished IDs are ignored. Finish is
	// durable at the store's level when it returns; an item whose Finish
	// was lost to a crash is recovered, and delivered again (at least once).
	Finish(ids ...ID) error

	// Recover calls fn, one record at a time and oldest first, for every item
	// this store must deliver that no Append of this process returned:
	// the unfinished items of earlier runs, and, for a store shared by
	// replicas, the items of a dead replica as it takes them over. Memory
	// stays flat however many there are: fn should block (an Add under
	// backpressure) rather than buffer. An error from fn stops Recover and
	// is returned. Recover returns nil once nothing is left to recover for a
	// store that cannot take over (the Log), and ctx's error when ctx ends
	// for one that can (it keeps watching for dead replicas until then).
	Recover(ctx context.Context, fn func(Record) error) error

	// Stats returns the store's counters, for metrics.
	Stats() StoreStats

	// Close releases the store. Items not finished stay for the next Open.
	Close() error
}

// StoreStats are a store's counters. Counters only grow; the others are
// gauges read at the time of the call.
type StoreStats struct {
	Items     int           // items appended and not finished
	Bytes     int64         // bytes the store occupies (on disk, or in Redis)
	MaxBytes  int64         // the byte bound; 0: none
	Oldest    time.Time     // acceptance time of the oldest unfinished item; zero when none
	Appended  uint64        // items appended
	Finished  uint64        // items finished
	Recovered uint64        // items handed to Recover's fn
	Syncs     uint64        // group commits (writes, and fsyncs at Synced; pipelines for Redis)
	SyncTime  time.Duration // total time spent in them (SyncTime/Syncs is the mean latency)
	Corrupt   uint64        // records found corrupt and skipped (lost), since Open
	Takeovers uint64        // dead replicas whose items this store took over
}

// Errors of the journal. Compare with errors.Is.
var (
	// ErrFull is returned by Append (wait false) when the store is at its
	// byte bound.
	ErrFull = errors.New("journal: store full")

	// ErrClosed is returned by a Store's methods after Close.
	ErrClosed = errors.New("journal: store closed")

	// ErrExpired is the dead-letter error of an item older than
	// MaxItemAge when its batch fired: it was not delivered.
	ErrExpired = errors.New("journal: item expired before delivery")
)

// Hooks observe a journaled batcher, for metrics and logs. Any field may be
// nil. They run synchronously on the goroutine named and must not block.
type Hooks struct {
	// Appended is called on the producer's goroutine after each Append,
	// with how long it took (the group commit's wait included) and its
	// error.
	Appended func(d time.Duration, err error)

	// Recovered is called for each item Recover handed to the batcher again
	// (a replay after a restart, or a takeover), once the batcher took it.
	Recovered func()

	// DeadLettered is called once per dead-letter call, with the number of
	// items whose outcome is not delivery and why: the batch's final error,
	// ErrExpired or muster.ErrDropped. (Items abandoned at a Shutdown
	// deadline are kept in the journal, not dead-lettered.)
	DeadLettered func(n int, err error)
}
