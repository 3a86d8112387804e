package benchmarks

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// The observability floor (issue 16): what a Fire that did muster's
// observability work itself would cost. otelmuster's observers, per batch
// of the bare Batcher the benchmarks run (name "bench", batches of
// BatchSize, fired on size):
//
//   - tracing starts a span "fire bench" (a new root, kind INTERNAL, at the
//     batch's start) with muster.batcher.name, muster.batch.trigger and
//     messaging.batch.message_count; sets muster.batch.max_size,
//     muster.batch.id, muster.batch.first_item_age and
//     muster.batch.slot_wait on it; and ends it at the batch's end;
//   - metrics makes seven instrument updates: in Fired, the batch's size,
//     utilization and wait (histograms, by name and trigger) and in-flight
//     +1; in Done, items processed (counter), the batch's duration
//     (histogram) and in-flight -1 (by name).
//
// A floor makes the same updates, on instruments made from the same
// catalogue entries on a meter of the same kind of provider, with attribute
// sets built once (as otelmuster does), and, when it traces, the same span
// on a tracer of the same kind of provider, with the measurements made in
// the span's context (as NewHooks, tracing first, has them).
type floor struct {
	tracer trace.Tracer // nil: metrics only

	size                  metric.Int64Histogram
	utilization, wait     metric.Float64Histogram
	duration              metric.Float64Histogram
	itemProcessed         metric.Int64Counter
	inflight              metric.Int64UpDownCounter
	byTrigger, base       metric.MeasurementOption
	name, trigger, spanNm string
	batchID               atomic.Int64
}

// Span attribute keys, as otelmuster's tracing spells them.
const (
	batchMessageCountKey = attribute.Key("messaging.batch.message_count")
	batchIDKey           = attribute.Key("muster.batch.id")
	batchMaxSizeKey      = attribute.Key("muster.batch.max_size")
	batchFirstItemAgeKey = attribute.Key("muster.batch.first_item_age")
	batchSlotWaitKey     = attribute.Key("muster.batch.slot_wait")
)

// newFloor makes a floor's instruments on mp's meter and, if tp is not nil,
// its tracer.
func newFloor(mp metric.MeterProvider, tp trace.TracerProvider) (*floor, error) {
	meter := mp.Meter(otelmuster.ScopeName, metric.WithInstrumentationVersion(otelmuster.Version()))
	f := &floor{name: "bench", trigger: musterconv.TriggerSize, spanNm: "fire bench"}
	var errs [6]error
	f.size, errs[0] = musterconv.BatchSize.New(meter)
	f.utilization, errs[1] = musterconv.BatchUtilization.New(meter)
	f.wait, errs[2] = musterconv.BatchWaitDuration.New(meter)
	f.duration, errs[3] = musterconv.BatchDuration.New(meter)
	f.itemProcessed, errs[4] = musterconv.ItemProcessed.New(meter)
	f.inflight, errs[5] = musterconv.BatchInflight.New(meter)
	if err := errors.Join(errs[:]...); err != nil {
		return nil, err
	}
	name := musterconv.BatcherName(f.name)
	f.base = metric.WithAttributeSet(attribute.NewSet(name))
	f.byTrigger = metric.WithAttributeSet(attribute.NewSet(name, musterconv.BatchTrigger(f.trigger)))
	if tp != nil {
		f.tracer = tp.Tracer(otelmuster.ScopeName, trace.WithInstrumentationVersion(otelmuster.Version()))
	}
	return f, nil
}

// wrap returns fire with the floor's observability work around it.
func (f *floor) wrap(fire func(context.Context, []int) error) func(context.Context, []int) error {
	byTrigger := []metric.RecordOption{f.byTrigger}
	base := []metric.AddOption{f.base}
	baseRec := []metric.RecordOption{f.base}
	return func(ctx context.Context, items []int) error {
		start := time.Now()
		var span trace.Span
		if f.tracer != nil {
			ctx, span = f.tracer.Start(ctx, f.spanNm,
				trace.WithNewRoot(),
				trace.WithSpanKind(trace.SpanKindInternal),
				trace.WithTimestamp(start),
				trace.WithAttributes(
					musterconv.BatcherName(f.name),
					musterconv.BatchTrigger(f.trigger),
					batchMessageCountKey.Int(len(items)),
				))
			if span.IsRecording() {
				span.SetAttributes(
					batchMaxSizeKey.Int(BatchSize),
					batchIDKey.Int64(f.batchID.Add(1)),
					batchFirstItemAgeKey.Float64(0),
					batchSlotWaitKey.Float64(0),
				)
			}
		}
		f.size.Record(ctx, int64(len(items)), byTrigger...)
		f.utilization.Record(ctx, float64(len(items))/BatchSize, byTrigger...)
		f.wait.Record(ctx, 0, byTrigger...)
		f.inflight.Add(ctx, 1, base...)
		err := fire(ctx, items)
		f.itemProcessed.Add(ctx, int64(len(items)), base...)
		end := time.Now()
		f.duration.Record(ctx, end.Sub(start).Seconds(), baseRec...)
		f.inflight.Add(ctx, -1, base...)
		if span != nil {
			span.End(trace.WithTimestamp(end))
		}
		return err
	}
}
