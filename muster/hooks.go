package muster

import (
	"context"
	"time"
)

// Trigger says why a batch fired.
type Trigger uint8

// The reasons a batch fires.
const (
	// TriggerSize: the batch reached MaxBatchSize items.
	TriggerSize Trigger = iota + 1
	// TriggerTimeout: BatchTimeout passed since the batch's first item.
	TriggerTimeout
	// TriggerFlush: Flush was called.
	TriggerFlush
	// TriggerShutdown: Stop or Shutdown fired the last, partial batch.
	TriggerShutdown
	// TriggerBytes: the next item would have passed MaxBatchBytes (or the
	// batch reached it).
	TriggerBytes
)

// String returns the trigger's lowercase name ("size", "timeout", "flush",
// "shutdown", "bytes"), the value telemetry uses for the muster.batch.trigger attribute.
func (t Trigger) String() string {
	switch t {
	case TriggerSize:
		return "size"
	case TriggerTimeout:
		return "timeout"
	case TriggerFlush:
		return "flush"
	case TriggerShutdown:
		return "shutdown"
	case TriggerBytes:
		return "bytes"
	}
	return "unknown"
}

// Hooks is a set of functions the client calls at stages of an item's and a
// batch's life, in the manner of net/http/httptrace.ClientTrace. Any field may
// be nil. A client with no Hooks pays nothing for them: every call site is a
// nil check.
//
// Hooks run synchronously on the goroutine named in each field's doc, and must
// not block: a slow hook delays producers (Added) or holds an in-flight slot
// (Fired, Done). They must not call back into the client that called them,
// except Stats from Started's info. Several Hooks combine with [Compose].
//
// The info values, and the slices inside them, are valid only during the call.
type Hooks struct {
	// Started is called once by Start, on Start's goroutine, after the client
	// is ready. info.Stats reads the client's live counters; a metrics layer
	// uses it for observable instruments (queue size, in-flight).
	Started func(info ClientInfo)

	// Added is called for every item offered through Add or the Work channel,
	// after the client's lock is released, on the producer's goroutine (the
	// Work channel's worker for items sent on Work). info.Err is nil when the
	// item was taken and says why when it was not.
	Added func(info AddInfo)

	// Fired is called on the batch's own goroutine just before the batch's
	// Fire. The context it returns (derived from ctx) is the one Fire
	// receives (through FireContexter or a FireFunc) and the one Done gets.
	// Returning nil keeps ctx.
	Fired func(ctx context.Context, info FireInfo) context.Context

	// Done is called once per batch when it is done: on the goroutine that
	// called the Notifier's Done (the batch's goroutine for a FireFunc), or on
	// Shutdown's goroutine for a batch abandoned at the deadline, which never
	// fired (info.Err is then ErrIncomplete). ctx is the context Fired
	// returned. The batch still holds its in-flight slot during the call.
	Done func(ctx context.Context, info DoneInfo)

	// Waited is called when a layer around Fire reports, with [ReportWait],
	// time the batch spent waiting (a rate limiter), on that layer's goroutine.
	Waited func(ctx context.Context, info WaitInfo)

	// Retried is called when a layer around Fire reports, with [ReportRetry],
	// that an attempt failed and will be retried.
	Retried func(ctx context.Context, info RetryInfo)

	// Stopped is called once when the client has stopped: every batch is
	// done, or Shutdown's deadline passed. It runs on the goroutine that saw
	// it happen.
	Stopped func(info ClientInfo)

	// KeepItemContexts asks the client to keep the context each item was added
	// with (context.Background for items sent on Work), for FireInfo.Contexts.
	// It costs one pointer store per item.
	KeepItemContexts bool

	// KeepItemTimes asks the client to keep the time each item was added, for
	// FireInfo.Enqueued. It costs a clock read per item (about 50 ns here).
	KeepItemTimes bool
}

// ClientInfo describes a client to Started and Stopped.
type ClientInfo struct {
	ID                   uint64        // unique per client in this process, from 1
	Name                 string        // the client's Name
	MaxBatchSize         int           // 0: no size trigger
	BatchTimeout         time.Duration // 0: no time trigger
	MaxConcurrentBatches int           // 0: no limit
	PendingWorkCapacity  int
	Stats                func() Stats // reads the client's counters; safe from any goroutine
}

// AddInfo describes one item offered to the client.
type AddInfo struct {
	Name    string          // the client's Name
	Ctx     context.Context // the context passed to Add (context.Background for Work)
	Blocked time.Duration   // time the producer was held by backpressure; 0 if it was not
	// Err is nil when the item was taken. Otherwise it says why not:
	// ErrStopped, ctx's error, ErrFull, ErrDropped, ErrTooLarge, or a
	// *PanicError from Batch.Add. An item taken and later dropped under
	// OverflowDropOldest is reported a second time, with ErrDropped.
	Err error
}

// FireInfo describes a batch as it fires.
type FireInfo struct {
	Name                 string  // the client's Name
	BatchID              uint64  // 1, 2, 3... in the order batches were closed, per client
	Size                 int     // items in the batch
	MaxBatchSize         int     // the client's MaxBatchSize (0: no size trigger)
	MaxConcurrentBatches int     // the client's limit (0: no limit)
	Trigger              Trigger // why it fired
	// Age is how long the first item had waited when the batch fired.
	Age time.Duration
	// SlotWait is how long the full batch waited for an in-flight slot.
	SlotWait time.Duration
	InFlight int       // batches in flight, this one included
	Queued   int       // Stats.Queued when the batch fired
	Start    time.Time // when it fired
	// Contexts holds each item's context, in order, when KeepItemContexts is set.
	Contexts []context.Context
	// Enqueued holds each item's enqueue time, in order, when KeepItemTimes is set.
	Enqueued []time.Time
	// Key is the batch's key, for a [Keyed] client; nil otherwise. With a
	// Keyed client BatchID numbers batches per key: Key and BatchID together
	// identify a batch.
	Key any
}

// DoneInfo describes a batch that is done.
type DoneInfo struct {
	FireInfo
	Duration time.Duration // from fire to done, waits and retries included
	Err      error         // the batch's outcome: nil, the error reported, a *PanicError, or ErrIncomplete
}

// WaitInfo describes a wait reported by a layer around Fire.
type WaitInfo struct {
	Name     string        // the client's Name
	BatchID  uint64        // the batch that waited
	Reason   string        // what it waited for, e.g. "ratelimit"
	Tokens   int           // tokens asked for, when waiting for a rate limiter
	Duration time.Duration // how long it waited
	Err      error         // non-nil when the wait was cut short
}

// RetryInfo describes a failed attempt that will be retried.
type RetryInfo struct {
	Name    string        // the client's Name
	BatchID uint64        // the batch being retried
	Attempt int           // the attempt that failed: 1 for the first
	Err     error         // its error
	Backoff time.Duration // the wait before the next attempt
}

// Compose returns Hooks that call each of hooks in turn; nil entries are
// skipped. Fired hooks run in order, each receiving the context the previous
// one returned; Done hooks run in reverse order (the first hook wraps the
// others, as deferred calls unwind); every other hook runs in order. The
// Keep fields are the union of the inputs'. Compose returns nil when there is
// nothing to call.
func Compose(hooks ...*Hooks) *Hooks {
	var hs []*Hooks
	for _, h := range hooks {
		if h != nil {
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
	var (
		started, stopped []func(ClientInfo)
		added            []func(AddInfo)
		fired            []func(context.Context, FireInfo) context.Context
		done             []func(context.Context, DoneInfo)
		waited           []func(context.Context, WaitInfo)
		retried          []func(context.Context, RetryInfo)
	)
	for _, h := range hs {
		out.KeepItemContexts = out.KeepItemContexts || h.KeepItemContexts
		out.KeepItemTimes = out.KeepItemTimes || h.KeepItemTimes
		if h.Started != nil {
			started = append(started, h.Started)
		}
		if h.Stopped != nil {
			stopped = append(stopped, h.Stopped)
		}
		if h.Added != nil {
			added = append(added, h.Added)
		}
		if h.Fired != nil {
			fired = append(fired, h.Fired)
		}
		if h.Done != nil {
			done = append(done, h.Done)
		}
		if h.Waited != nil {
			waited = append(waited, h.Waited)
		}
		if h.Retried != nil {
			retried = append(retried, h.Retried)
		}
	}
	out.Started = fanOut(started)
	out.Stopped = fanOut(stopped)
	out.Added = fanOut(added)
	if len(fired) > 0 {
		out.Fired = func(ctx context.Context, info FireInfo) context.Context {
			for _, f := range fired {
				if c := f(ctx, info); c != nil {
					ctx = c
				}
			}
			return ctx
		}
	}
	if len(done) > 0 {
		out.Done = func(ctx context.Context, info DoneInfo) {
			for i := len(done) - 1; i >= 0; i-- {
				done[i](ctx, info)
			}
		}
	}
	out.Waited = fanOut2(waited)
	out.Retried = fanOut2(retried)
	return out
}

func fanOut[I any](fs []func(I)) func(I) {
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0] // Added runs per item: no loop around a single hook
	}
	return func(info I) {
		for _, f := range fs {
			f(info)
		}
	}
}

func fanOut2[I any](fs []func(context.Context, I)) func(context.Context, I) {
	switch len(fs) {
	case 0:
		return nil
	case 1:
		return fs[0]
	}
	return func(ctx context.Context, info I) {
		for _, f := range fs {
			f(ctx, info)
		}
	}
}

// reporterKey is the context key under which a firing batch's reporter is
// stored, so that layers around Fire can report waits and retries.
type reporterKey struct{}

// reporter is what ReportWait and ReportRetry find in a batch's context.
type reporter struct {
	hooks *Hooks
	name  string
	id    uint64
}

// ReportWait tells the hooks of the client whose batch ctx belongs to that
// the batch waited (for a rate limiter, say). Name and BatchID are filled in.
// It does nothing when ctx is not a batch's context or no hook listens. Layers
// around Fire (middleware) call it; users rarely need to.
func ReportWait(ctx context.Context, info WaitInfo) {
	if r, ok := ctx.Value(reporterKey{}).(*reporter); ok && r.hooks.Waited != nil {
		info.Name, info.BatchID = r.name, r.id
		r.hooks.Waited(ctx, info)
	}
}

// ReportRetry tells the hooks of the client whose batch ctx belongs to that an
// attempt failed and will be retried. Name and BatchID are filled in. It does
// nothing when ctx is not a batch's context or no hook listens.
func ReportRetry(ctx context.Context, info RetryInfo) {
	if r, ok := ctx.Value(reporterKey{}).(*reporter); ok && r.hooks.Retried != nil {
		info.Name, info.BatchID = r.name, r.id
		r.hooks.Retried(ctx, info)
	}
}
