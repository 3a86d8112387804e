package otelmuster_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// BenchmarkInstrumented measures what tracing and metrics cost per item: a
// muster.Batcher[int] fed by 8 producers, batches of 100 fired by size only,
// a FireFunc that only counts, every item fired inside the timed region
// (ns/op is ns/item). The SDKs are the real ones, set up as a service would:
// an always-on sampler and a BatchSpanProcessor (default queue, dropping
// when full) in front of an exporter that discards; a MeterProvider with a
// ManualReader (collection is not part of the add path).
//
//   - bare: no hooks.
//   - otel: NewHooks; items added with context.Background, so batch spans
//     have no links.
//   - otel-linked: NewHooks; each producer adds under a sampled span of its
//     own, so each item gets a create span (the default), ended at the
//     fire, and a batch span links to its 100 items' create spans.
//   - otel-linked-noitems: the same with WithItemSpans(false): a batch span
//     links to up to 8 distinct spans.
//   - otel-1pct: NewHooks with a 1% sampler (ParentBased(TraceIDRatioBased)),
//     what a busy service runs: 99% of batch spans are not recorded.
//   - tracing, metrics: NewTracing or NewMetrics alone; core-hooks: hooks
//     that do nothing but keep every item's context (an Added returning it,
//     a Fired, a Done), the core's own cost of running hooks. The breakdown
//     of otel.
//
// Besides ns/item (wall time), cpu-ns/item is the process's CPU time per item
// (every goroutine: producers, batches, the span processor, the GC), which
// other processes' load on a shared machine disturbs less.
//
// Run: go test -run '^$' -bench Instrumented -benchmem -count 6 -cpu 2 ./middleware/otelmuster/
func BenchmarkInstrumented(b *testing.B) {
	const producers = 8
	for _, bc := range []struct {
		name             string
		tracing, metrics bool
		linked           bool
		noItemSpans      bool
		sampler          sdktrace.Sampler
	}{
		{name: "bare"},
		{name: "otel", tracing: true, metrics: true},
		{name: "otel-linked", tracing: true, metrics: true, linked: true},
		{name: "otel-linked-noitems", tracing: true, metrics: true, linked: true, noItemSpans: true},
		{name: "otel-1pct", tracing: true, metrics: true, sampler: sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01))},
		{name: "tracing", tracing: true},
		{name: "metrics", metrics: true},
		{name: "core-hooks"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sampler := bc.sampler
			if sampler == nil {
				sampler = sdktrace.AlwaysSample()
			}
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithSampler(sampler),
				sdktrace.WithBatcher(tracetest.NewNoopExporter()),
			)
			defer tp.Shutdown(context.Background())
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
			defer mp.Shutdown(context.Background())
			opts := []otelmuster.Option{otelmuster.WithTracerProvider(tp), otelmuster.WithMeterProvider(mp),
				otelmuster.WithItemSpans(!bc.noItemSpans)}
			var hooks muster.Observer
			switch {
			case bc.tracing && bc.metrics:
				var err error
				if hooks, err = otelmuster.NewHooks(opts...); err != nil {
					b.Fatal(err)
				}
			case bc.tracing:
				hooks = otelmuster.NewTracing(opts...)
			case bc.metrics:
				var err error
				if hooks, err = otelmuster.NewMetrics(opts...); err != nil {
					b.Fatal(err)
				}
			case bc.name == "core-hooks":
				hooks = &muster.Hooks{
					Added: func(ctx context.Context, _ muster.AddInfo) context.Context { return ctx },
					Fired: func(ctx context.Context, _ muster.FireInfo) context.Context { return ctx },
					Done:  func(context.Context, muster.DoneInfo) {},
				}
			}
			ctxs := make([]context.Context, producers)
			for p := range ctxs {
				ctxs[p] = context.Background()
				if bc.linked {
					ctxs[p] = remoteCtx(p, true)
				}
			}
			var fired atomic.Int64
			bt := &muster.Batcher[int]{
				Name:         "bench",
				MaxBatchSize: 100,
				Fire: func(_ context.Context, items []int) error {
					fired.Add(int64(len(items)))
					return nil
				},
				Hooks: hooks,
			}
			if err := bt.Start(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu := processCPU()
			var wg sync.WaitGroup
			per := b.N / producers
			for p := range producers {
				n := per
				if p == 0 {
					n += b.N - per*producers
				}
				ctx := ctxs[p]
				wg.Go(func() {
					for i := range n {
						if err := bt.Add(ctx, i); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err := bt.Stop(); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu = processCPU() - cpu
			if got := fired.Load(); got != int64(b.N) {
				b.Fatalf("fired %d items, added %d", got, b.N)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/item")
			if cpu > 0 {
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/item")
			}
		})
	}
}

// BenchmarkCollectTopKeys measures one collection of the metrics observer's
// instruments (ManualReader.Collect) for a Keyed with 1,024 live keys, each
// holding an item in its open batch: topkeys-5 reports muster.key.pending
// and .waiting for the top 5 keys (the default), topkeys-0 turns them off
// (WithTopKeys(0)). The difference is what the top keys cost per scrape:
// TopKeys over every live key, under the client's locks.
//
// Run: go test -run '^$' -bench CollectTopKeys -benchmem -count 6 ./middleware/otelmuster/
func BenchmarkCollectTopKeys(b *testing.B) {
	for _, n := range []int{5, 0} {
		b.Run(fmt.Sprintf("topkeys-%d", n), func(b *testing.B) {
			r := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
			h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp), otelmuster.WithTopKeys(n))
			if err != nil {
				b.Fatal(err)
			}
			k := &muster.Keyed[int, int]{
				Name: "orders", Key: func(i int) int { return i % 1024 }, MaxKeys: 1024,
				MaxBatchSize: 1000, BatchTimeout: time.Hour, PendingWorkCapacity: 4096,
				Fire:  func(context.Context, []int) error { return nil },
				Hooks: h,
			}
			if err := k.Start(); err != nil {
				b.Fatal(err)
			}
			defer k.Stop()
			for i := range 1024 + 7 { // keys 0-6 hold 2 items, the others 1
				if err := k.Add(context.Background(), i); err != nil {
					b.Fatal(err)
				}
			}
			var rm metricdata.ResourceMetrics
			b.ReportAllocs()
			for b.Loop() {
				if err := r.Collect(context.Background(), &rm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
