package benchmarks

// Every use of muster's API, and of its middleware, is in this file: when
// the core's API changes, only this file changes.

import (
	"context"
	"encoding/binary"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

func musterImpls() []Impl {
	return []Impl{
		batcherImpl(MusterBatcher, "muster Batcher.Add", MutexInline, nil),
		{
			// One key, as a caller with a key function would have it.
			ID:   "muster-Keyed-1key",
			Name: "muster Keyed.Add (1 key)",
			Ref:  MusterBatcher,
			Start: func(c *Counter) (func(int), func()) {
				return keyedStart(c, 1)
			},
		},
		{
			// 10,000 keys, item i under key i%10000: 100 items a key in a run
			// of 10^6 items, so every key's batch fills once.
			ID:   "muster-Keyed-10000keys",
			Name: "muster Keyed.Add (10,000 keys)",
			Ref:  MusterBatcher,
			Start: func(c *Counter) (func(int), func()) {
				return keyedStart(c, 10_000)
			},
		},
		{
			// The add cost of AddResult: the Results are not waited on.
			ID:   "muster-AddResult",
			Name: "muster Batcher.AddResult",
			Ref:  MusterBatcher,
			Start: func(c *Counter) (func(int), func()) {
				b := newBatcher(c, nil, nil)
				ctx := context.Background()
				return func(v int) {
						if _, err := b.AddResult(ctx, v); err != nil {
							c.Fail(err)
						}
					}, func() {
						c.Fail(b.Stop())
					}
			},
		},
		clientImpl(1024),
		clientImpl(0),
		// Instrumentation, each against the bare Batcher.
		batcherImpl("muster-emptyhooks", "muster Batcher + empty Hooks", MusterBatcher, func(*Counter) (muster.Observer, func(int) context.Context) {
			return &muster.Hooks{}, nil
		}),
		batcherImpl("muster-otel-metrics", "muster Batcher + otelmuster metrics", MusterBatcher, func(c *Counter) (muster.Observer, func(int) context.Context) {
			mp := meterProvider(c)
			h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
			c.Fail(err)
			return h, nil
		}),
		batcherImpl("muster-otel-nospan", "muster Batcher + otelmuster tracing+metrics (items without spans)", MusterBatcher, func(c *Counter) (muster.Observer, func(int) context.Context) {
			return otelHooks(c), nil
		}),
		batcherImpl("muster-otel-linked", "muster Batcher + otelmuster tracing+metrics (every item in a sampled span: a create span each)", MusterBatcher, func(c *Counter) (muster.Observer, func(int) context.Context) {
			ctxs := spanContexts(4096)
			return otelHooks(c), func(i int) context.Context { return ctxs[i%len(ctxs)] }
		}),
		batcherImpl("muster-otel-linked-nocreate", "muster Batcher + otelmuster tracing+metrics (every item in a sampled span, WithItemSpans(false): links only)", MusterBatcher, func(c *Counter) (muster.Observer, func(int) context.Context) {
			ctxs := spanContexts(4096)
			return otelHooks(c, otelmuster.WithItemSpans(false)), func(i int) context.Context { return ctxs[i%len(ctxs)] }
		}),
		// The observability floor (floor.go): a bare Batcher whose Fire does
		// the per-batch work of otelmuster's observers itself.
		floorImpl("floor-tracing", "floor: bare Batcher, Fire starts and ends the batch span and makes the 7 metric updates", true),
		floorImpl("floor-metrics", "floor: bare Batcher, Fire makes the 7 metric updates", false),
		{
			// retry (defaults: a budget of its own) around throttle on an
			// unlimited limiter, per item.
			ID:   "muster-retry-throttle",
			Name: "muster Batcher + retry + throttle (rate.Inf)",
			Ref:  MusterBatcher,
			Start: func(c *Counter) (func(int), func()) {
				mw := muster.Chain(retry.New[int](), throttle.New[int](ratelimit.NewLimiter(rate.Inf, 0), throttle.WithPerItem()))
				b := newBatcher(c, nil, mw)
				return addFunc(c, b, nil), func() { c.Fail(b.Stop()) }
			},
		},
	}
}

func countFire(c *Counter) muster.FireFunc[int] {
	return func(_ context.Context, items []int) error { c.Fired(len(items)); return nil }
}

// newBatcher starts the Batcher[int] every variant uses, with hooks (nil:
// none) and its FireFunc wrapped in mw (nil: none).
func newBatcher(c *Counter, hooks muster.Observer, mw muster.Middleware[int]) *muster.Batcher[int] {
	fire := countFire(c)
	if mw != nil {
		fire = mw(fire)
	}
	b := &muster.Batcher[int]{Name: "bench", MaxBatchSize: BatchSize, BatchTimeout: time.Hour, Fire: fire, Hooks: hooks}
	c.Fail(b.Start())
	return b
}

func addFunc(c *Counter, b *muster.Batcher[int], ctxOf func(int) context.Context) func(int) {
	if ctxOf == nil {
		ctx := context.Background()
		return func(v int) {
			if err := b.Add(ctx, v); err != nil {
				c.Fail(err)
			}
		}
	}
	return func(v int) {
		if err := b.Add(ctxOf(v), v); err != nil {
			c.Fail(err)
		}
	}
}

// batcherImpl is a Batcher[int] with the hooks setup returns (nil: none),
// whose items are added under ctxOf(item) (nil: context.Background()).
func batcherImpl(id, name, ref string, setup func(c *Counter) (hooks muster.Observer, ctxOf func(int) context.Context)) Impl {
	return Impl{
		ID:   id,
		Name: name,
		Ref:  ref,
		Start: func(c *Counter) (func(int), func()) {
			var hooks muster.Observer
			var ctxOf func(int) context.Context
			if setup != nil {
				hooks, ctxOf = setup(c)
			}
			b := newBatcher(c, hooks, nil)
			return addFunc(c, b, ctxOf), func() { c.Fail(b.Stop()) }
		},
	}
}

func keyedStart(c *Counter, keys int) (func(int), func()) {
	k := &muster.Keyed[int, int]{
		Key:          func(v int) int { return v % keys },
		MaxBatchSize: BatchSize, BatchTimeout: time.Hour, MaxKeys: keys,
		Fire: func(_ context.Context, items []int) error { c.Fired(len(items)); return nil },
	}
	c.Fail(k.Start())
	ctx := context.Background()
	return func(v int) {
			if err := k.Add(ctx, v); err != nil {
				c.Fail(err)
			}
		}, func() {
			c.Fail(k.Stop())
		}
}

// clientImpl is the seed path: muster's Client fed on its Work channel,
// against facebookgo/muster with the same capacity.
func clientImpl(capacity uint) Impl {
	return Impl{
		ID:   strings.Replace(FacebookgoID(capacity), "facebookgo", "muster-Client", 1),
		Name: "muster Client.Work <- (" + workName(capacity) + ")",
		Ref:  FacebookgoID(capacity),
		Start: func(c *Counter) (func(int), func()) {
			mc := &muster.Client{MaxBatchSize: BatchSize, BatchTimeout: time.Hour, PendingWorkCapacity: capacity,
				BatchMaker: func() muster.Batch { return &countBatch{c: c} }}
			if err := mc.Start(); err != nil {
				c.Fail(err)
				return func(int) {}, func() {}
			}
			return func(v int) { mc.Work <- v }, func() { c.Fail(mc.Stop()) }
		},
	}
}

// countBatch is muster's (the seed's) Batch: it counts.
type countBatch struct {
	c *Counter
	n int
}

func (b *countBatch) Add(any)                { b.n++ }
func (b *countBatch) Fire(n muster.Notifier) { b.c.Fired(b.n); n.Done() }

// meterProvider is an SDK MeterProvider with a ManualReader (collection is
// not part of the add path), shut down after the run.
func meterProvider(c *Counter) metric.MeterProvider {
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	c.Defer(func() { _ = mp.Shutdown(context.Background()) })
	return mp
}

// otelHooks traces (AlwaysSample, a BatchSpanProcessor over an exporter that
// discards: as a service runs it) and measures.
func otelHooks(c *Counter, opts ...otelmuster.Option) muster.Observer {
	h, err := otelmuster.NewHooks(append([]otelmuster.Option{otelmuster.WithTracerProvider(tracerProvider(c)), otelmuster.WithMeterProvider(meterProvider(c))}, opts...)...)
	c.Fail(err)
	return h
}

// tracerProvider is an SDK TracerProvider that samples every span and
// exports through a BatchSpanProcessor to an exporter that discards (as a
// service runs it), shut down after the run.
func tracerProvider(c *Counter) trace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	c.Defer(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// floorImpl is the bare Batcher (no hooks) whose Fire is wrapped in a
// floor: metrics, and a span if traced, on providers like otelHooks's.
func floorImpl(id, name string, traced bool) Impl {
	return Impl{
		ID:   id,
		Name: name,
		Ref:  MusterBatcher,
		Start: func(c *Counter) (func(int), func()) {
			var tp trace.TracerProvider
			if traced {
				tp = tracerProvider(c)
			}
			f, err := newFloor(meterProvider(c), tp)
			if err != nil {
				c.Fail(err)
				return func(int) {}, func() {}
			}
			b := newBatcher(c, nil, func(next muster.FireFunc[int]) muster.FireFunc[int] { return f.wrap(next) })
			return addFunc(c, b, nil), func() { c.Fail(b.Stop()) }
		},
	}
}

// spanContexts returns n contexts, each carrying a distinct sampled remote
// span context: consecutive items get distinct spans, so a batch of 100
// records 100 links.
func spanContexts(n int) []context.Context {
	ctxs := make([]context.Context, n)
	for i := range ctxs {
		var tid trace.TraceID
		var sid trace.SpanID
		binary.BigEndian.PutUint64(tid[8:], uint64(i)+1)
		binary.BigEndian.PutUint64(sid[:], uint64(i)+1)
		ctxs[i] = trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true}))
	}
	return ctxs
}
