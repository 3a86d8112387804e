package telemetry_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/telemetry"
)

// A batch span (a new root) linked to a sampled request is sampled, however
// few roots the ratio lets through; one linked to nothing sampled is left
// to the ratio.
func TestLinkedSampler(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
		sdktrace.WithSampler(telemetry.LinkedSampler(sdktrace.ParentBased(sdktrace.NeverSample()))))
	defer tp.Shutdown(context.Background())
	tr := tp.Tracer("test")
	sampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{2}, SpanID: trace.SpanID{2}})
	ctx := context.Background()
	_, a := tr.Start(ctx, "linked to a sampled span", trace.WithNewRoot(),
		trace.WithLinks(trace.Link{SpanContext: unsampled}, trace.Link{SpanContext: sampled}))
	_, b := tr.Start(ctx, "linked to an unsampled span", trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: unsampled}))
	_, c := tr.Start(ctx, "no links", trace.WithNewRoot())
	for _, s := range []trace.Span{a, b, c} {
		s.End()
	}
	if got := a.SpanContext().IsSampled(); !got {
		t.Error("a root linked to a sampled span was not sampled")
	}
	if b.SpanContext().IsSampled() || c.SpanContext().IsSampled() {
		t.Error("spans linked to nothing sampled were sampled past the root sampler")
	}
	if n := len(rec.Ended()); n != 1 {
		t.Errorf("%d spans recorded, want 1", n)
	}
	if d := telemetry.LinkedSampler(sdktrace.AlwaysSample()).Description(); d != "LinkedSampler{AlwaysOnSampler}" {
		t.Errorf("Description() = %q", d)
	}
}

// Setup reads OTEL_TRACES_SAMPLER as the SDK does, and links it: under a
// ratio of 0 only the batch linked to a sampled request is sampled. A
// sampler it does not know is an error, not a silent default.
func TestSetupLinksTheEnvironmentSampler(t *testing.T) {
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "0")
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "none")
	p, err := telemetry.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tr := p.TracerProvider().Tracer("test")
	sampled := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled,
	})
	_, batch := tr.Start(context.Background(), "batch", trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: sampled}))
	_, other := tr.Start(context.Background(), "other", trace.WithNewRoot())
	if !batch.SpanContext().IsSampled() || other.SpanContext().IsSampled() {
		t.Errorf("sampled: linked %v, unlinked %v; want true, false", batch.SpanContext().IsSampled(), other.SpanContext().IsSampled())
	}

	t.Setenv("OTEL_TRACES_SAMPLER", "jaeger_remote")
	if p, err := telemetry.Setup(context.Background()); err == nil {
		p.Shutdown(context.Background())
		t.Error("Setup took an unknown OTEL_TRACES_SAMPLER")
	}
}
