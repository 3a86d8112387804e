// Package redisrate is a rate limit shared by every replica of a service
// through Redis: the downstream's quota belongs to the downstream, not to one
// process. It is a module of its own, so that the muster library does not
// depend on a Redis client.
//
// Three lines set it up; the [Limiter] is a [ratelimit.Waiter], so
// middleware/throttle takes it unchanged, in items or batches per second:
//
//	rdb := redisrate.NewClient(&redis.Options{Addr: "redis:6379"})
//	quota, err := redisrate.New(redisrate.Config{Client: rdb, Key: "orders-api", Limit: 600, Burst: 100})
//	fire := throttle.New[Row](quota, throttle.WithPerItem())(insertRows)
//
// # How it works
//
// The quota is a GCRA bucket in Redis, as github.com/go-redis/redis_rate/v10
// implements it (one Lua script, Redis's clock, one key). Each WaitN makes one
// round trip that reserves its n tokens: the script is called with a burst so
// large that it always grants, moving the bucket's theoretical arrival time
// forward by n emission intervals, and the wait the configured Burst implies is
// computed from the reply and slept locally. So a batch costs exactly one round
// trip whether or not the limit binds (no retry loop), the replicas are served
// in the order their reservations reached Redis, and a request for more than
// Burst is served on credit as [ratelimit.Limiter] serves it: from a full
// bucket of b tokens at rate r, n tokens take (n-b)/r, and the bucket is in
// debt for the callers after it. When a caller's context ends while it waits,
// its tokens are given back (the same script with a negative cost; best
// effort).
//
// # Leasing
//
// At high rates one round trip per batch may be too many. With Config.Lease
// set, a replica reserves tokens in blocks of Lease (one round trip) and serves
// WaitN calls from the block locally, without a round trip, until it is spent.
// The trade: the quota is still never exceeded in the long run (every token
// served was reserved in Redis), but a block is taken whole, so a replica
// holds up to Lease tokens the others cannot use, fairness between replicas
// and the burst are only as fine as a block (up to Lease tokens may go out at
// one instant on one replica), and leased tokens not used within Config.LeaseTTL
// expire unused, so a replica whose load drops wastes up to one block per TTL.
// Choose Lease at most the quota's tolerance per replica (for example a tenth
// of a second of quota).
//
// # When Redis fails
//
// A round trip that fails or outlasts Config.Timeout switches the limiter by
// its [Policy]: [FailOpen] serves callers from a local [ratelimit.Limiter] at
// this replica's share of the quota (Limit divided by Config.Replicas, or by
// the replicas that sent a heartbeat to Redis in the last three heartbeat
// intervals; a replica that started while Redis was down has counted none
// and divides by Config.InitialReplicas, [DefaultInitialReplicas] unless
// set, rather than take the whole quota), starting with an empty bucket so
// that tokens just taken from the shared quota are not taken twice;
// [FailClosed] refuses callers with
// [ErrUnavailable]. WaitN never blocks past its context: the round trip runs
// on its own goroutine and is abandoned when the context ends (tokens it
// reserved late are given back).
//
// While on its fallback, the limiter probes Redis every heartbeat interval,
// first with a dial outside the client's pool (with the client's Dialer), so
// that go-redis does not log a failed dial per probe for as long as Redis is
// down: the first failure is logged, the metrics count the rest.
// The probe reserves this replica's share of the burst, charging the shared
// bucket for what the fallback may have spent in its last burst window, so
// that replicas returning together do not find a full bucket on top of it
// (no burst above the quota); on success the limiter is back on the shared
// quota. Leased tokens are dropped at a switch.
//
// The tolerance while failing over: the aggregate stays within the quota plus
// 10% over any window of a few seconds. The shares of the replicas sum to the
// quota; a fallback starts in debt for the tokens its replica had reserved in
// Redis and not yet used, and a replica back on Redis keeps to its share as
// well for Config.RecoveryGrace, while the others may still be on their
// fallbacks. What remains is a replica that switches a timeout later than the
// others, or a replica count that lags a heartbeat window. Measured (three
// processes, 600 items/s, Redis killed for 5 s and restarted on its port,
// TestAcrossProcesses): every replica on its fallback within 200 ms and back
// within 1 s, no batch failed, 596-620 items/s while Redis was down and
// 606-610 after, at most 660 in the single second after the restart.
//
// # Observability
//
// Every switch is visible. Metrics (the musterconv catalogue's
// [musterconv.SharedRateLimit] instruments): muster.ratelimit.store.requests
// and muster.ratelimit.store.duration for round trips (error.type on
// failures), muster.ratelimit.state (1 for the current mode: shared, local or
// closed) and muster.ratelimit.switches. On the batch span in the context
// given to WaitN: an event muster.ratelimit.mode_switch when that call
// switched the mode, muster.ratelimit.fallback when the fallback served it,
// muster.ratelimit.refused when fail-closed refused it.
//
// # Adaptive rate shared by replicas
//
// [Adaptive] keeps [ratelimit.Adaptive]'s AIMD state (the rate, the time of
// the last cut) in Redis and applies it with a Lua script, so that one
// replica seeing the downstream overloaded slows them all, and a cut is
// applied at most once per cool-down window across replicas, so one incident
// seen by every replica halves the rate once, not once per replica.
package redisrate
