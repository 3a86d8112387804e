// Package redisjournal is a [journal.Store] on Redis Streams, shared by the
// replicas of a service: when a replica dies (SIGKILL, OOM, a lost node: no
// goodbye), another live replica takes over its unfinished items and
// delivers them. It is a module of its own, so that the muster library does
// not depend on a Redis client. Tested against Debian's redis-server 7.0.
//
//	rdb := redisjournal.NewClient(&redis.Options{Addr: "redis:6379"}) // fails fast
//	store, err := redisjournal.Open(ctx, redisjournal.Options{Client: rdb, Name: "orders"})
//	orders := journal.WrapKeyed(keyed, journal.Config[Order]{Store: store, Codec: journal.JSON[Order]()})
//
// The journal layer ([journal.Wrap], [journal.WrapKeyed]) appends each item
// before Add returns, finishes it when its outcome is final, and runs
// Recover from Start to Stop, so that this replica delivers the items of the
// replicas that die meanwhile (see Example_keyed).
//
// # How it works
//
// Every Open is a replica with a fresh random identity and a stream of its
// own, muster:journal:{Name}:s:<replica>, listed in the set
// muster:journal:{Name}:replicas. Append adds an entry (the data and the
// acceptance time) to that stream; concurrent Appends are gathered and sent
// as one MULTI/EXEC pipeline of XADDs, one round trip per group, while the
// next group queues behind it. An item's ID is "<replica>/<stream entry ID>":
// stable through retries, restarts and takeovers, and unique in the journal,
// so a sink can deduplicate on it. Finish deletes items (XDEL, one pipelined
// round trip per call), whichever replica appended them.
//
// Each replica sets a heartbeat key with a TTL of Options.DeadAfter every
// Options.HeartbeatInterval. Recover, which keeps running until its context
// ends, looks at the registered replicas every HeartbeatInterval; a replica
// whose heartbeat key it saw missing at three looks in a row (two
// intervals) is dead. The first live replica to claim it (SET NX of a claim
// key in a script that checks the replica is still registered and silent,
// its TTL refreshed by the claimer's heartbeat) hands its items to
// Recover's fn, oldest first, a page at a time; once every item of the dead
// stream is finished, the stream, its registration and the claim are
// deleted. A replica that restarts after a crash is a new identity: its old
// stream is taken over like any other dead replica's, by it or by another.
//
// # What survives, and the loss window
//
// When Append returns nil the item is in Redis: it survives the death of the
// replica that appended it and is delivered by another (or by the same
// process, restarted). It survives a restart of Redis only as far as Redis's
// persistence goes, which is Redis's loss window, not this package's: with
// appendonly yes and appendfsync always, nothing acknowledged is lost; with
// appendfsync everysec (the usual default), up to about one second of
// acknowledged Appends (and Finishes: those items are delivered again); a
// Redis without AOF (or RDB snapshots only) loses every item written since
// its last snapshot when it restarts; with replication, what the replica had
// not received when it was promoted (WAIT is not used).
//
// # Takeover bound
//
// A dead replica's items start to be delivered by another replica at most
// DeadAfter + 3 × HeartbeatInterval (plus a few round trips) after its last
// heartbeat: the heartbeat key expires DeadAfter after it was set, a live
// replica sees it missing at its next look, and claims it two looks later.
// With the defaults (1 s, 5 s): 8 s; measured 7.5 s from the SIGKILL to the
// last acknowledged item delivered (TestCrashTakeover with
// MUSTER_CRASH_HEARTBEAT=1s, two rounds). With the tests' 50 ms and 250 ms
// (bound 400 ms), from the SIGKILL of a replica appending from 16
// goroutines to the last of its acknowledged unfinished items delivered by
// another replica's Recover, 640 to 4,614 items per round: 344 to 782 ms
// over 20 rounds, the delivery of the items included (TestCrashTakeover
// with -race on a loaded 2-core machine; MUSTER_CRASH_ROUNDS=20 go test
// -race -run Crash -v).
//
// # At least once: when an item is delivered twice
//
// Delivery is at least once; the claim makes it once per takeover. A
// duplicate happens only when
//   - the claimer itself dies (or its Recover's fn returns an error, or it
//     is closed) after fn was given an item and before the item was
//     finished: the next claimer delivers it again;
//   - a replica (or claimer) stalls longer than DeadAfter (a long GC pause,
//     SIGSTOP, a network partition, Redis unreachable from it alone): it is
//     taken over while alive, and what it still holds is delivered by it and
//     by the claimer (when it comes back, its heartbeat makes the claimer
//     stop; a claimer whose claim expired stops at its next page);
//   - a Finish was lost: Redis restarted and lost it (see above), or Finish
//     returned an error;
//   - an Append returned an error after the entry reached Redis (a reply
//     lost, a timeout): the item was not acknowledged, but it is delivered.
//
// The confirmation over three looks keeps a Redis restart from being taken for
// the death of every replica: a replica that saw its own heartbeat fail
// looks again from the start, and the others have by then heartbeated.
//
// # Failure modes
//
// Redis unreachable: Append fails with an error matching [ErrUnavailable]
// within Options.Timeout (at once for a refused connection, with the
// client options above): nothing acknowledged is lost, because nothing was
// acknowledged; the caller (the journal layer's Add) reports the failure.
// Finish fails the same way; those items stay and are delivered again
// after a takeover. Heartbeats fail silently (this package logs nothing;
// go-redis logs failed dials through its own logger, redis.SetLogger
// silences it) and resume with Redis; a replica unreachable for longer than
// DeadAfter may be taken over (see above).
//
// Or, with Options.Fallback (typically the local journal.Log), an Append
// Redis cannot take goes there instead: the item is acknowledged at the
// fallback's durability, its ID is "local:" + the fallback's, and it is
// recovered from the fallback at this machine's next start (other replicas
// cannot take it over). Open with a Fallback succeeds with Redis
// unreachable.
//
// Redis restarted: the items it kept (its persistence) are still in their
// streams and are delivered by their replica's takeover as before; the
// replicas' heartbeats resume.
//
// The store has no byte bound of its own: Redis's maxmemory is the bound
// (with the noeviction policy, an Append Redis refuses fails with its OOM
// error). Stats reports the streams' memory (MEMORY USAGE), item count and
// oldest item as read by the last heartbeat.
package redisjournal
