// Package benchmarks measures muster against its peers and against baselines
// written here, in a module of its own so that the library's module gains no
// dependency (as zap keeps its comparisons with other loggers).
//
// Every implementation batches int items into batches of 100, with the size
// trigger only (a timeout of an hour where the implementation has one, so
// that its timer is armed as in production) and a fire function that only
// counts. A run adds N items from 1 or 8 producers, waits inside the timed
// region until every item has been fired, and fails when the items fired
// differ from the items added.
//
// Two ways to run them:
//
//   - cmd/peers (make bench-peers) runs, in each of R rounds, every
//     implementation back to back with its reference (and that one's
//     reference), blocks and the order within them shuffled anew each round,
//     and prints a markdown table of the median ns and CPU ns per item, the
//     allocations per item and per batch, and the median over rounds of the
//     ratio to a named reference: two runs compared ran at nearly the same
//     moment of a shared machine.
//   - BenchmarkImpl, one sub-benchmark per implementation and producer
//     count, for go test -bench and benchstat.
//
// All use of muster's API (and of its middleware) by these comparisons is
// in muster_impls.go, behind the Impl type, so that a change of that API is
// adapted in one file.
//
// cmd/fairness (fairness.go) is another kind of benchmark: what quiet keys
// of a muster.Keyed meet (Add latency, lost items) when one key adds 100
// times faster, with and without Keyed.MaxPendingPerKey, against a run
// without the loud key, in interleaved rounds.
package benchmarks
