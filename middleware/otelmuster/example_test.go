package otelmuster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// Each batch is a span linked to the requests whose items it carried,
// through a short "create" span per item in the request's trace; the user's
// own spans inside Fire are children of the batch span.
func ExampleNewTracing() {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	tracer := tp.Tracer("shop")

	b := &muster.Batcher[string]{
		Name:                 "orders",
		MaxBatchSize:         3,
		MaxConcurrentBatches: 1,
		Fire: func(ctx context.Context, items []string) error {
			_, span := tracer.Start(ctx, "INSERT orders") // a child of the batch span
			defer span.End()
			if len(items) < 3 {
				return errors.New("disk full")
			}
			return nil
		},
		Hooks: otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)),
	}
	if err := b.Start(); err != nil {
		panic(err)
	}
	requests := map[string]string{} // span id -> request
	for _, req := range []string{"a", "b"} {
		ctx, span := tracer.Start(context.Background(), "request "+req)
		requests[span.SpanContext().SpanID().String()] = req
		_ = b.Add(ctx, req+"1")
		_ = b.Add(ctx, req+"2")
		span.End()
	}
	_ = b.Stop()

	batchSpans := map[string]bool{}
	for _, s := range sr.Ended() {
		if strings.HasPrefix(s.Name(), "fire ") {
			batchSpans[s.SpanContext().SpanID().String()] = true
		}
	}
	for _, s := range sr.Ended() {
		switch {
		case strings.HasPrefix(s.Name(), "create "):
			fmt.Printf("%s: child of request %s, linked to a batch span %v\n",
				s.Name(), requests[s.Parent().SpanID().String()], batchSpans[s.Links()[0].SpanContext.SpanID().String()])
		case s.Name() == "INSERT orders":
			fmt.Printf("%s: child of a batch span %v\n", s.Name(), batchSpans[s.Parent().SpanID().String()])
		case strings.HasPrefix(s.Name(), "fire "):
			a := attribute.NewSet(s.Attributes()...)
			count, _ := a.Value("messaging.batch.message_count")
			trigger, _ := a.Value("muster.batch.trigger")
			fmt.Printf("%s: %d items (%s), %d links, new root %v, status %s",
				s.Name(), count.AsInt64(), trigger.AsString(), len(s.Links()), !s.Parent().IsValid(), s.Status().Code)
			if errType, ok := a.Value("error.type"); ok {
				fmt.Printf(" %q, error.type %s", s.Status().Description, errType.AsString())
			}
			fmt.Println()
		}
	}
	// Output:
	// create orders: child of request a, linked to a batch span true
	// create orders: child of request a, linked to a batch span true
	// create orders: child of request b, linked to a batch span true
	// INSERT orders: child of a batch span true
	// fire orders: 3 items (size), 3 links, new root true, status Unset
	// create orders: child of request b, linked to a batch span true
	// INSERT orders: child of a batch span true
	// fire orders: 1 items (shutdown), 1 links, new root true, status Error "disk full", error.type *errors.errorString
}

// The instruments of the catalogue, per batcher name; a ManualReader shows
// what an exporter would get.
func ExampleNewMetrics() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	hooks, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}

	b := &muster.Batcher[int]{
		Name:         "orders",
		MaxBatchSize: 100,
		Fire: func(_ context.Context, items []int) error {
			if len(items) < 100 {
				return context.DeadlineExceeded
			}
			return nil
		},
		Hooks: hooks,
	}
	if err := b.Start(); err != nil {
		panic(err)
	}
	for i := range 250 {
		_ = b.Add(context.Background(), i)
	}
	_ = b.Stop()
	_ = b.Add(context.Background(), 250) // refused: stopped

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	var lines []string
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if strings.HasPrefix(m.Name, "muster.queue.") {
				continue // observed from live clients only (while started)
			}
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} %d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Value))
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					lines = append(lines, fmt.Sprintf("%s{%s} count=%d sum=%d", m.Name, p.Attributes.Encoded(attribute.DefaultEncoder()), p.Count, p.Sum))
				}
			}
		}
	}
	slices.Sort(lines)
	fmt.Println(strings.Join(lines, "\n"))
	// Output:
	// muster.batch.inflight{muster.batcher.name=orders} 0
	// muster.batch.items{muster.batch.trigger=shutdown,muster.batcher.name=orders} count=1 sum=50
	// muster.batch.items{muster.batch.trigger=size,muster.batcher.name=orders} count=2 sum=200
	// muster.item.added{muster.batcher.name=orders} 250
	// muster.item.dropped{error.type=dropped,muster.batcher.name=orders} 0
	// muster.item.processed{error.type=timeout,muster.batcher.name=orders} 50
	// muster.item.processed{muster.batcher.name=orders} 200
	// muster.item.refused{error.type=stopped,muster.batcher.name=orders} 1
}

// ErrorType classifies errors for the error.type attribute.
func ExampleErrorType() {
	for _, err := range []error{
		&muster.PanicError{Value: "boom"},
		fmt.Errorf("insert: %w", context.DeadlineExceeded),
		muster.ErrStopped,
		fmt.Errorf("insert: %w", quotaError{}), // has an ErrorType method
		errors.New("something else"),
	} {
		fmt.Println(otelmuster.ErrorType(err))
	}
	// Output:
	// panic
	// timeout
	// stopped
	// quota
	// *errors.errorString
}
