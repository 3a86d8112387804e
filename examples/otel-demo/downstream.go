package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/ratelimit"
)

// downstream simulates a bulk-insert API for orders ("orders-db"): each call
// takes a lognormal time around -latency, longer for fuller batches, and
// fails with probability -failure-rate, mostly with a 503. During a brownout
// of the load cycle it is eight times slower, fails twice as often, and
// most failures are 429s (load shedding, wrapping ratelimit.ErrOverloaded so
// that an adaptive limiter slows down). It validates every batch first, and
// rejects one that holds a malformed order as a whole (400, permanent): one
// bad order would cost its whole batch, a hazard of batching, which is why
// the demo's requests validate their orders before adding them (none
// reaches orders-db).
// During an outage scheduled with -outage, every write fails with a 503.
type downstream struct {
	tracer      trace.Tracer
	profile     profile
	latency     time.Duration
	failureRate float64
	batchSize   int
	ledger      *ledger // records each order written (nil: no -ledger)
}

// bulkError is a failed bulk insert, as an HTTP bulk API would report it.
// Its ErrorType method names it for the error.type attribute of spans and
// metrics (otelmuster.ErrorType looks for it); RetryAfter is the server's
// hint, which the retry middleware honours.
type bulkError struct {
	status     int
	kind       string
	detail     string
	retryAfter time.Duration
	cause      error
}

func (e *bulkError) Error() string {
	s := fmt.Sprintf("orders-db: %d %s", e.status, e.kind)
	if e.detail != "" {
		s += ": " + e.detail
	}
	if e.retryAfter > 0 {
		s += fmt.Sprintf(" (retry after %v)", e.retryAfter)
	}
	return s
}

func (e *bulkError) ErrorType() string         { return e.kind }
func (e *bulkError) Unwrap() error             { return e.cause }
func (e *bulkError) RetryAfter() time.Duration { return e.retryAfter }

// The error.type values of the downstream's failures.
const (
	errUnavailable = "unavailable" // 503: transient, retried
	errOverloaded  = "overloaded"  // 429: load shed, retried after its hint; lowers an adaptive limit
	errRejected    = "rejected"    // 400: a malformed order in the batch, permanent, never retried
)

var (
	dbOperationKey  = attribute.Key("db.operation.name")
	dbCollectionKey = attribute.Key("db.collection.name")
	dbBatchSizeKey  = attribute.Key("db.operation.batch.size")
	httpStatusKey   = attribute.Key("http.response.status_code")
)

// insertItems is the FireFunc at the core of the journaled chain (-journal):
// insert, as an upsert keyed by each order's journal ID (items[i].ID), so
// that an order delivered again (replayed after a crash that came after its
// write and before its journal knew) is one row, not two.
func (d *downstream) insertItems(ctx context.Context, items []journal.Item[Order]) error {
	orders := make([]Order, len(items))
	for i := range items {
		orders[i] = items[i].Value // upserted on items[i].ID
	}
	return d.insert(ctx, orders)
}

// insert is the FireFunc at the core of the chain: one attempt at writing a
// batch. It makes a CLIENT span, a child of the batch span, so that a batch's
// trace shows each attempt.
func (d *downstream) insert(ctx context.Context, orders []Order) error {
	ph := d.profile.now()
	ctx, span := d.tracer.Start(ctx, "INSERT orders",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			dbOperationKey.String("INSERT"),
			dbCollectionKey.String("orders"),
			dbBatchSizeKey.Int(len(orders)),
		))
	defer span.End()

	fail := d.failure(ph)
	for i := range orders {
		if orders[i].Quantity <= 0 {
			fail = &bulkError{status: 400, kind: errRejected,
				detail: fmt.Sprintf("order %d: quantity must be positive", orders[i].ID)}
			break
		}
	}
	took := d.sampleLatency(len(orders), ph)
	if fail != nil && fail.status != 503 {
		took /= 4 // shedding load, or refusing a malformed batch, is quick
	}
	t := time.NewTimer(took)
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
		err := context.Cause(ctx)
		span.SetAttributes(errorTypeKey.String(otelmuster.ErrorType(err)))
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if fail == nil {
		span.SetAttributes(httpStatusKey.Int(200))
		for i := range orders {
			d.ledger.record("written", orders[i].ID)
		}
		return nil
	}
	span.SetAttributes(httpStatusKey.Int(fail.status), errorTypeKey.String(fail.kind))
	span.SetStatus(codes.Error, fail.Error())
	if fail.status == 400 {
		return retry.Permanent(fail)
	}
	return fail
}

// brownoutSlowdown multiplies the downstream's latency in a brownout: slow
// enough that the in-flight slots cannot keep up with the steady load.
const brownoutSlowdown = 8

// brownoutFailures multiplies -failure-rate in a brownout: twice the
// failures, most of them 429s that lower the adaptive limit. Three attempts
// then lose a failure rate cubed: 0.1% of items at the default 5%, within
// the objective for the brownout's nine minutes (a brownout ten times
// worse would lose 12.5% of its items, a page).
const brownoutFailures = 2

// failure decides whether this attempt fails, and how.
func (d *downstream) failure(ph phase) *bulkError {
	if ph.outage {
		return &bulkError{status: 503, kind: errUnavailable, detail: "outage (-outage)"}
	}
	p := d.failureRate
	if ph.brownout {
		p = min(0.9, brownoutFailures*p)
	}
	if p <= 0 || rand.Float64() >= p {
		return nil
	}
	// Mostly 503s; in a brownout mostly 429s.
	r := rand.Float64()
	if ph.brownout && r < 0.6 || !ph.brownout && r < 0.05 {
		return &bulkError{
			status:     429,
			kind:       errOverloaded,
			retryAfter: time.Duration(50+rand.IntN(100)) * time.Millisecond,
			cause:      ratelimit.ErrOverloaded,
		}
	}
	return &bulkError{status: 503, kind: errUnavailable}
}

// sampleLatency draws a lognormal latency around the median, scaled by how
// full the batch is (an empty batch costs half a full one), brownoutSlowdown
// times longer in a brownout, capped at 20 medians.
func (d *downstream) sampleLatency(n int, ph phase) time.Duration {
	if d.latency <= 0 {
		return 0
	}
	f := math.Exp(0.5 * rand.NormFloat64())
	if d.batchSize > 0 {
		f *= 0.5 + 0.5*min(1, float64(n)/float64(d.batchSize))
	}
	if ph.brownout {
		f *= brownoutSlowdown
	}
	return time.Duration(min(f, 20) * float64(d.latency))
}
