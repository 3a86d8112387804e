package otelmuster_test

import (
	"context"
	"encoding/binary"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// newTracerProvider returns an always-sampling provider whose ended spans the
// recorder keeps.
func newTracerProvider() (*sdktrace.TracerProvider, *tracetest.SpanRecorder) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithSpanProcessor(sr),
	)
	return tp, sr
}

// remoteCtx returns a context carrying a made-up span context: trace n,
// span n, sampled or not.
func remoteCtx(n int, sampled bool) context.Context {
	var tid trace.TraceID
	var sid trace.SpanID
	binary.BigEndian.PutUint64(tid[8:], uint64(n)+1)
	binary.BigEndian.PutUint64(sid[:], uint64(n)+1)
	cfg := trace.SpanContextConfig{TraceID: tid, SpanID: sid, Remote: true}
	if sampled {
		cfg.TraceFlags = trace.FlagsSampled
	}
	return trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(cfg))
}

// attrs returns a span's attributes as a map.
func attrs(kvs []attribute.KeyValue) map[attribute.Key]attribute.Value {
	m := make(map[attribute.Key]attribute.Value, len(kvs))
	for _, kv := range kvs {
		m[kv.Key] = kv.Value
	}
	return m
}

// spansNamed returns the ended spans with the given name, in end order.
func spansNamed(sr *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	return out
}

func mustStart(t testing.TB, start func() error) {
	t.Helper()
	if err := start(); err != nil {
		t.Fatal(err)
	}
}

func mustNil(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantAttr(t testing.TB, m map[attribute.Key]attribute.Value, key string, want any) {
	t.Helper()
	v, ok := m[attribute.Key(key)]
	if !ok {
		t.Errorf("attribute %s missing", key)
		return
	}
	if got := v.AsInterface(); got != want {
		t.Errorf("attribute %s = %v (%T), want %v (%T)", key, got, got, want, want)
	}
}
