package muster

import (
	"context"
	"time"
)

// Observer watches clients. A client's Start calls Observe once, before it
// takes any item; the Hooks it returns (nil: none) observe that client
// alone (some may run after its Stopped: see Hooks), so an observer keeps
// per-client state in their closures (as gRPC's stats.Handler does with
// TagConn). One Observer may watch many clients, from many goroutines. A
// *Hooks is an Observer that returns itself for every client.
type Observer interface {
	Observe(c ClientInfo) *Hooks
}

// Hooks is a set of functions a client calls at stages of an item's and a
// batch's life, in the manner of net/http/httptrace.ClientTrace. Any field
// may be nil, at no cost.
//
// Every hook takes a context first: the item's (Added, Refused, a
// producer's Waited), the batch's (Fired, Done, a batch's Waited, Retried)
// or the client's base context, canceled by then (Stopped). For one client:
// an item's Added runs before its batch's Fired; a batch's Fired, then any
// Waited and Retried, then its Done; Stopped after every Added and every
// batch's hooks. Refused and a producer's Waited run once the client's lock
// is released, so they may follow Stopped (even for an item taken, then
// dropped). Hooks run synchronously and must not block or call back into
// the client; a panic in one is recovered and ignored. The info values, and
// the slices in them, are valid only during the call.
type Hooks struct {
	// Added is called for each item taken, on the producer's goroutine (a
	// Client's worker for Work, whose context has no values and ends at a
	// Shutdown deadline), under the client's add lock: keep it short. The
	// context it returns is kept with the item and handed back in
	// FireInfo.Contexts; nil keeps none, at no cost.
	Added func(ctx context.Context, info AddInfo) context.Context

	// Refused is called for each item not taken, on the producer's
	// goroutine (the worker for Work), and for each item dropped under
	// OverflowDropOldest, on the goroutine of the Add that dropped it with
	// the context Added kept for it (or Background). info.Err says why (see
	// the package doc, "What happens to items").
	Refused func(ctx context.Context, info AddInfo)

	// Waited is the one report of a wait: a producer held by backpressure
	// (WaitBackpressure, once the wait ends, on its goroutine: after Added
	// when the item was then taken, else before Refused with info.Err), or
	// a batch waiting for a rate limiter, reported by a layer around Fire
	// with [ReportWait].
	Waited func(ctx context.Context, info WaitInfo)

	// Fired is called on the batch's goroutine once the batch holds an
	// in-flight slot, just before Fire. The context it returns (derived
	// from ctx; nil keeps ctx) is the one Fire and Done receive.
	Fired func(ctx context.Context, info FireInfo) context.Context

	// Retried is called when a layer around Fire reports, with
	// [ReportRetry], that an attempt failed and will be retried.
	Retried func(ctx context.Context, info RetryInfo)

	// Done is called once per batch that fired, on its goroutine when Fire
	// has finished, while it still holds its slot; and once per batch
	// abandoned unfired at a Shutdown deadline, on Shutdown's goroutine,
	// with info.Abandoned set and ctx the base context, canceled by then.
	Done func(ctx context.Context, info DoneInfo)

	// Stopped is called once, when every batch is done or abandoned, on
	// the goroutine that saw the last one end (or Stop's, Shutdown's).
	Stopped func(ctx context.Context, info ClientInfo)
}

// empty reports whether h calls nothing.
func (h *Hooks) empty() bool {
	return h == nil || h.Added == nil && h.Refused == nil && h.Waited == nil && h.Fired == nil &&
		h.Retried == nil && h.Done == nil && h.Stopped == nil
}

// Observe returns h: a *Hooks observes every client the same way.
func (h *Hooks) Observe(ClientInfo) *Hooks { return h }

// ClientInfo describes a client to Observe and Stopped.
type ClientInfo struct {
	ID                   uint64        // unique per client in this process, from 1
	Name                 string        // the client's Name
	MaxBatchSize         int           // 0: no size trigger
	BatchTimeout         time.Duration // 0: no time trigger
	MaxConcurrentBatches int           // 0: no limit
	PendingWorkCapacity  int
	MaxKeys              int          // the live-key bound of a Keyed with a Key; 0 for a Client or a Batcher (Key nil)
	MaxPendingPerKey     int          // a Keyed's with a Key; 0: none
	Stats                func() Stats // reads the client's counters; safe from any goroutine
	// TopKeys is Keyed.TopKeys, for an observer that reports the top few
	// keys at scrape time; nil without a Key. Not to be called from Added,
	// which runs under the client's lock.
	TopKeys func(n int) []KeyStats[any]
}

// AddInfo describes one item offered to a client (Refused only: zero for
// Added).
type AddInfo struct {
	// Err says why the item was not taken, or ErrDropped.
	Err error
	// Taken is true for an item taken (counted in Stats.Added) and then
	// dropped under OverflowDropOldest (Stats.Dropped); false for an item
	// never taken (Stats.Refused).
	Taken bool
}

// FireInfo describes a batch as it fires.
type FireInfo struct {
	BatchID uint64  // 1, 2, 3... per client, in the order batches closed
	Key     any     // the batch's key, for a Keyed with a Key; nil for a Client or a Batcher (Key nil)
	Size    int     // items in the batch
	Trigger Trigger // why it closed
	// Age is how long the batch's first item had waited when it fired.
	Age time.Duration
	// SlotWait is how long the closed batch waited for an in-flight slot.
	SlotWait time.Duration
	InFlight int       // batches in flight, this one included (0 for a batch abandoned unfired)
	Queued   int       // Stats.Queued when the batch fired
	Start    time.Time // when it fired; zero for a batch abandoned at a Shutdown deadline
	// Contexts holds, index-aligned with the items, the contexts the Added
	// hook kept (nil where it kept none); nil when it kept none at all.
	Contexts []context.Context
}

// DoneInfo describes a batch that is done.
type DoneInfo struct {
	FireInfo
	Duration time.Duration // from fire to done, waits and retries included
	Err      error         // the outcome: nil, the error reported, a *PanicError, or ErrIncomplete
	// Abandoned is true for a batch abandoned unfired at a Shutdown
	// deadline: no Fired hook ran for it, Start is zero, InFlight and
	// SlotWait are 0, and Err is ErrIncomplete.
	Abandoned bool
}

// WaitReason says what was waited for.
type WaitReason uint8

// The reasons for a wait.
const (
	// WaitBackpressure: a producer was held in Add while the pending
	// capacity was used up (a send blocked on Work is not reported).
	WaitBackpressure WaitReason = iota + 1
	// WaitRateLimit: a batch waited for a rate limiter's tokens.
	WaitRateLimit
)

// String returns "backpressure" or "ratelimit", the value telemetry uses.
func (r WaitReason) String() string { return name(r, "backpressure", "ratelimit") }

// WaitInfo describes a wait.
type WaitInfo struct {
	Reason   WaitReason
	BatchID  uint64        // the batch that waited; 0 for a producer
	Tokens   int           // tokens asked for, for WaitRateLimit
	Duration time.Duration // how long it waited
	Err      error         // non-nil when the wait was cut short (for a producer: why its item was refused)
}

// RetryInfo describes a failed attempt that will be retried.
type RetryInfo struct {
	BatchID uint64        // the batch being retried
	Attempt int           // the attempt that failed: 1 for the first
	Err     error         // its error
	Backoff time.Duration // the wait before the next attempt
}

// Trigger says why a batch closed.
type Trigger uint8

// The reasons a batch closes.
const (
	// TriggerSize: the batch reached MaxBatchSize items.
	TriggerSize Trigger = iota + 1
	// TriggerTimeout: BatchTimeout passed since the batch's first item.
	TriggerTimeout
	// TriggerFlush: Flush was called.
	TriggerFlush
	// TriggerShutdown: Stop or Shutdown closed the last, partial batch.
	TriggerShutdown
	// TriggerBytes: the next item would have passed MaxBatchBytes, or the
	// batch reached it.
	TriggerBytes
)

// String returns the trigger's lowercase name ("size", "timeout", "flush",
// "shutdown", "bytes"), the muster.batch.trigger attribute's value.
func (t Trigger) String() string { return name(t, "size", "timeout", "flush", "shutdown", "bytes") }

// name returns the name of the n-th value of an enumeration numbered from
// 1, or "unknown".
func name[E ~uint8](n E, names ...string) string {
	if n == 0 || int(n) > len(names) {
		return "unknown"
	}
	return names[n-1]
}

// Compose returns an Observer that asks each of obs (nil entries skipped)
// for a client's Hooks and calls them in turn. Added and Fired run in order,
// each receiving the context the previous one returned (Added keeps the last
// non-nil one); Done runs in reverse order (the first observer wraps the
// others, as deferred calls unwind); every other hook runs in order. Compose
// returns nil when there is nothing to observe.
func Compose(obs ...Observer) Observer {
	var list []Observer
	for _, o := range obs {
		if o != nil && o != (*Hooks)(nil) {
			list = append(list, o)
		}
	}
	switch len(list) {
	case 0:
		return nil
	case 1:
		return list[0]
	}
	return composed(list)
}

type composed []Observer

func (c composed) Observe(info ClientInfo) *Hooks {
	var hs []*Hooks
	for _, o := range c {
		if h := o.Observe(info); h != nil {
			hs = append(hs, h)
		}
	}
	switch len(hs) {
	case 0:
		return nil
	case 1:
		return hs[0]
	}
	out := &Hooks{}
	for _, h := range hs {
		out.Added = chainCtx(out.Added, h.Added)
		out.Fired = chainCtx(out.Fired, h.Fired)
		out.Refused = both(out.Refused, h.Refused)
		out.Waited = both(out.Waited, h.Waited)
		out.Retried = both(out.Retried, h.Retried)
		out.Stopped = both(out.Stopped, h.Stopped)
		out.Done = both(h.Done, out.Done) // reverse order
	}
	return out
}

// both returns a hook calling f then g (either may be nil), each recovered
// on its own: one observer's panic does not cost another its event.
func both[I any](f, g func(context.Context, I)) func(context.Context, I) {
	if f == nil || g == nil {
		if f == nil {
			return g
		}
		return f
	}
	return func(ctx context.Context, info I) {
		safely(func() { f(ctx, info) })
		safely(func() { g(ctx, info) })
	}
}

// chainCtx returns a hook calling f then g, g receiving the context f
// returned (or ctx when f returned nil), and returning g's result or, when
// it is nil, f's.
func chainCtx[I any](f, g func(context.Context, I) context.Context) func(context.Context, I) context.Context {
	if f == nil || g == nil {
		if f == nil {
			return g
		}
		return f
	}
	return func(ctx context.Context, info I) context.Context {
		var kept, c context.Context
		safely(func() { kept = f(ctx, info) })
		if kept != nil {
			ctx = kept
		}
		if safely(func() { c = g(ctx, info) }); c != nil {
			return c
		}
		return kept
	}
}

// reporterKey is the context key under which a firing batch's reporter is
// stored, so that layers around Fire can report waits and retries.
type reporterKey struct{}

type reporter struct {
	hooks *Hooks
	id    uint64
}

// ReportWait tells the hooks of the client whose batch ctx belongs to that
// the batch waited (for a rate limiter, say), filling in BatchID, on the
// caller's goroutine; it does nothing when ctx is not a batch's or no hook
// listens. For layers around Fire.
func ReportWait(ctx context.Context, info WaitInfo) {
	if r, ok := ctx.Value(reporterKey{}).(*reporter); ok && r.hooks.Waited != nil {
		info.BatchID = r.id
		safely(func() { r.hooks.Waited(ctx, info) })
	}
}

// ReportRetry tells the hooks of the client whose batch ctx belongs to that
// an attempt failed and will be retried, as ReportWait does.
func ReportRetry(ctx context.Context, info RetryInfo) {
	if r, ok := ctx.Value(reporterKey{}).(*reporter); ok && r.hooks.Retried != nil {
		info.BatchID = r.id
		safely(func() { r.hooks.Retried(ctx, info) })
	}
}

// safely calls a hook, recovering a panic: observation never changes an
// item's fate.
func safely(f func()) {
	defer func() { _ = recover() }()
	f()
}
