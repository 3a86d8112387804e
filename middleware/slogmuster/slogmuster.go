// Package slogmuster logs, with log/slog, what the operator of a muster
// batcher must see and metrics alone do not say: which items were refused
// and why, panics with their stack, batches abandoned at a Shutdown
// deadline, and batches that failed for good.
//
//	b := &muster.Batcher[Row]{
//		Hooks: muster.Compose(metrics, slogmuster.New(slog.Default())),
//		// ...
//	}
//
// It is an observer (muster.Observer), like the metrics and tracing of
// middleware/otelmuster, and composes with them through muster.Compose.
//
// # What it logs
//
//	level  message                     when
//	WARN   "muster: item refused"      an item was not taken (full, dropped as the newest, stopped,
//	                                   timeout, canceled, too_large, too_many_keys, invalid_key;
//	                                   shutdown_incomplete: a Client's Work held it at a Shutdown
//	                                   deadline)
//	WARN   "muster: item dropped"      an item taken, then dropped to make room (OverflowDropOldest)
//	ERROR  "muster: item refused"      a Batch's Add (or BatchMaker, Key, Sizer) panicked: reason
//	                                   panic, with the panic value and its stack
//	ERROR  "muster: batch failed"      a batch's Fire failed for good (after any retries); a Fire
//	                                   that panicked adds the stack; a partial failure (a
//	                                   *muster.ItemErrors) says how many items failed
//	ERROR  "muster: batch abandoned"   a batch left unfired at a Shutdown deadline: its items were
//	                                   not delivered
//
// Every line carries muster.batcher.name (the client's Name) and reason,
// the error's class as otelmuster.ErrorType names it (the error.type of
// the metrics, so a log line and a dashboard series match). Lines are
// logged with the item's or the batch's context, so a handler that reads
// trace ids from it ties them to the trace.
//
// # Rate limits
//
// A downstream outage or a full queue refuses thousands of items a
// second; a log line each would bury everything else. Refusals, drops and
// failed batches are therefore limited per client and reason: at most
// [DefaultBurst] lines per [DefaultInterval] for each (a few lines a
// second however large the flood; [WithLimit] changes it). The lines not
// written are counted, and the next line of that reason carries the count
// as suppressed (the number of events of its reason left out since the
// previous line); what is still suppressed when the client stops is
// logged then, in one line per reason ("muster: suppressed"). Refusals
// may follow the stop (Adds made after it, refused as stopped): they stay
// limited, and those left out after their reason's last line are not
// reported. Abandoned batches are not limited: a shutdown abandons few
// batches, once.
//
// # Goroutines
//
// Lines are written synchronously, on the goroutine of the hook (the
// producer's for refusals, the batch's for failures, Shutdown's for
// abandoned batches), so the handler must not block for long: a slog
// handler writing to a file or stderr is fine.
package slogmuster

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// Defaults of the rate limit on refusals, drops and failed batches: per
// client and reason, at most DefaultBurst lines per DefaultInterval.
const (
	DefaultBurst    = 3
	DefaultInterval = time.Second
)

// Option configures [New].
type Option func(*config)

type config struct {
	burst    int
	interval time.Duration
}

// WithLimit sets the rate limit of refusals, drops and failed batches: at
// most burst lines per interval for each client and reason. burst <= 0 or
// interval <= 0 removes the limit (a line per event).
func WithLimit(burst int, interval time.Duration) Option {
	return func(c *config) { c.burst, c.interval = burst, interval }
}

// New returns an observer that logs to l what an operator must see (see the
// package documentation). A nil l logs to slog.Default().
func New(l *slog.Logger, opts ...Option) muster.Observer {
	c := config{burst: DefaultBurst, interval: DefaultInterval}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	return &observer{l: l, c: c}
}

type observer struct {
	l *slog.Logger
	c config
}

// Observe gives one client its hooks, with rate-limit state of its own.
func (o *observer) Observe(info muster.ClientInfo) *muster.Hooks {
	l := o.l
	if l == nil {
		l = slog.Default()
	}
	name := info.Name
	if name == "" {
		name = "muster"
	}
	cl := &clientLog{
		l:      l.With(slog.String("muster.batcher.name", name)),
		c:      o.c,
		limits: map[limitKey]*limit{},
	}
	return &muster.Hooks{Refused: cl.refused, Done: cl.done, Stopped: cl.stopped}
}

// limitKey is what a rate limit is kept for: one message and reason.
type limitKey struct{ msg, reason string }

// limit is the state of one rate limit: a fixed window.
type limit struct {
	start      time.Time // of the current window
	logged     int       // lines written in it
	suppressed int       // events not written since the last line
}

// clientLog is what the observer keeps for one client.
type clientLog struct {
	l *slog.Logger
	c config

	mu     sync.Mutex // guards limits
	limits map[limitKey]*limit
}

// allow says whether an event of k may be logged now and, if so, how many
// were suppressed before it.
func (cl *clientLog) allow(k limitKey) (ok bool, suppressed int) {
	if cl.c.burst <= 0 || cl.c.interval <= 0 {
		return true, 0
	}
	now := time.Now()
	cl.mu.Lock()
	defer cl.mu.Unlock()
	lm := cl.limits[k]
	if lm == nil {
		lm = &limit{start: now}
		cl.limits[k] = lm
	}
	if now.Sub(lm.start) >= cl.c.interval {
		lm.start, lm.logged = now, 0
	}
	if lm.logged >= cl.c.burst {
		lm.suppressed++
		return false, 0
	}
	lm.logged++
	suppressed, lm.suppressed = lm.suppressed, 0
	return true, suppressed
}

const (
	msgRefused   = "muster: item refused"
	msgDropped   = "muster: item dropped"
	msgFailed    = "muster: batch failed"
	msgAbandoned = "muster: batch abandoned"
)

func (cl *clientLog) refused(ctx context.Context, info muster.AddInfo) {
	msg, level := msgRefused, slog.LevelWarn
	if info.Taken {
		msg = msgDropped
	}
	reason := otelmuster.ErrorType(info.Err)
	var pe *muster.PanicError
	if errors.As(info.Err, &pe) {
		level = slog.LevelError
	}
	ok, suppressed := cl.allow(limitKey{msg, reason})
	if !ok {
		return
	}
	attrs := []slog.Attr{slog.String("reason", reason), slog.Any("error", info.Err)}
	if pe != nil {
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	cl.l.LogAttrs(ctx, level, msg, attrs...)
}

func (cl *clientLog) done(ctx context.Context, info muster.DoneInfo) {
	if info.Err == nil {
		return
	}
	reason := otelmuster.ErrorType(info.Err)
	batch := []slog.Attr{
		slog.Uint64("batch", info.BatchID),
		slog.Int("items", info.Size),
		slog.String("trigger", info.Trigger.String()),
	}
	if info.Key != nil {
		batch = append(batch, slog.Any("key", info.Key))
	}
	if info.Abandoned {
		// Abandoned unfired at a Shutdown deadline: never limited.
		attrs := append(batch, slog.String("reason", reason), slog.Duration("age", info.Age), slog.Any("error", info.Err))
		cl.l.LogAttrs(ctx, slog.LevelError, msgAbandoned, attrs...)
		return
	}
	ok, suppressed := cl.allow(limitKey{msgFailed, reason})
	if !ok {
		return
	}
	attrs := append(batch, slog.String("reason", reason), slog.Any("error", info.Err), slog.Duration("duration", info.Duration))
	var ie *muster.ItemErrors
	if errors.As(info.Err, &ie) {
		failed := 0
		for _, err := range ie.Errs {
			if err != nil {
				failed++
			}
		}
		attrs = append(attrs, slog.Int("failed", failed))
	}
	var pe *muster.PanicError
	if errors.As(info.Err, &pe) {
		attrs = append(attrs, slog.String("stack", string(pe.Stack)))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int("suppressed", suppressed))
	}
	cl.l.LogAttrs(ctx, slog.LevelError, msgFailed, attrs...)
}

// stopped logs what the rate limits still hold back: one line per message
// and reason with events suppressed since its last line.
func (cl *clientLog) stopped(ctx context.Context, _ muster.ClientInfo) {
	cl.mu.Lock()
	type left struct {
		k limitKey
		n int
	}
	var lines []left
	for k, lm := range cl.limits {
		if lm.suppressed > 0 {
			lines = append(lines, left{k, lm.suppressed})
			lm.suppressed = 0
		}
	}
	cl.mu.Unlock()
	slices.SortFunc(lines, func(a, b left) int {
		return cmp.Or(cmp.Compare(a.k.msg, b.k.msg), cmp.Compare(a.k.reason, b.k.reason))
	})
	for _, x := range lines {
		cl.l.LogAttrs(ctx, slog.LevelWarn, "muster: suppressed",
			slog.String("message", x.k.msg), slog.String("reason", x.k.reason), slog.Int("suppressed", x.n))
	}
}
