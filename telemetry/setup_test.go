package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/musterhq/muster/telemetry"
)

// spanNames decodes the compact trace writer's output.
func spanNames(t *testing.T, out []byte) []string {
	t.Helper()
	var names []string
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var s struct{ Name string }
		if err := dec.Decode(&s); err != nil {
			t.Fatalf("decode %q: %v", out, err)
		}
		names = append(names, s.Name)
	}
	return names
}

func TestShutdownFlushesSpans(t *testing.T) {
	var buf bytes.Buffer
	p, err := telemetry.Setup(context.Background(),
		telemetry.WithoutPrometheus(), telemetry.WithoutOTLP(),
		telemetry.WithTraceWriter(&buf), telemetry.WithCompactOutput())
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	span.End()
	if buf.Len() != 0 {
		t.Fatalf("span written before Shutdown: %q", buf.String())
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := spanNames(t, buf.Bytes()); len(got) != 1 || got[0] != "fire orders" {
		t.Fatalf("after Shutdown the writer holds spans %q, want [fire orders]", got)
	}
	if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
		t.Errorf("compact output has %d lines, want 1", n)
	}

	// A second Shutdown is harmless and changes nothing.
	before := buf.Len()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if buf.Len() != before {
		t.Error("second Shutdown wrote again")
	}

	// Without Prometheus the handler answers 404.
	rec := httptest.NewRecorder()
	p.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound || p.Registry() != nil {
		t.Errorf("without Prometheus: handler status %d, registry %v", rec.Code, p.Registry())
	}
}

func TestTraceWriterPretty(t *testing.T) {
	var buf bytes.Buffer
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP(), telemetry.WithTraceWriter(&buf))
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := spanNames(t, buf.Bytes()); len(got) != 1 || got[0] != "fire orders" {
		t.Fatalf("spans %q", got)
	}
	if !strings.Contains(buf.String(), "\n\t") {
		t.Errorf("output is not indented:\n%s", buf.String())
	}
}

func TestShutdownExpiredContext(t *testing.T) {
	var buf bytes.Buffer
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP(), telemetry.WithTraceWriter(&buf))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := p.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown(expired ctx) = %v, want context.Canceled", err)
	}
	// Later calls report the same outcome, even with a live context.
	if err := p.Shutdown(context.Background()); !errors.Is(err, context.Canceled) {
		t.Fatalf("second Shutdown = %v, want the first result", err)
	}
}

// blockingWriter blocks every Write until release is closed, after telling
// entered.
type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
}

func (w *blockingWriter) Write(b []byte) (int, error) {
	select {
	case w.entered <- struct{}{}:
	default:
	}
	<-w.release
	return len(b), nil
}

// TestShutdownGivesUpAtDeadline: an exporter that hangs holds Shutdown only
// until its context ends.
func TestShutdownGivesUpAtDeadline(t *testing.T) {
	w := &blockingWriter{entered: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(w.release)
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP(), telemetry.WithTraceWriter(w))
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "stuck")
	span.End()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Shutdown(ctx) }()
	<-w.entered // Shutdown is flushing the span into the hung writer
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
}

func TestResource(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP(), telemetry.WithoutPrometheus(),
		telemetry.WithServiceName("orders"), telemetry.WithServiceVersion("1.2.3"),
		telemetry.WithResourceAttributes(attribute.String("deployment.environment.name", "test")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	want := map[attribute.Key]string{
		semconv.ServiceNameKey:          "orders",
		semconv.ServiceVersionKey:       "1.2.3",
		"deployment.environment.name":   "test",
		semconv.TelemetrySDKLanguageKey: "go",
	}
	for k, v := range want {
		if got, ok := p.Resource().Set().Value(k); !ok || got.Emit() != v {
			t.Errorf("resource %s = %q, want %q", k, got.Emit(), v)
		}
	}
	for _, k := range []attribute.Key{semconv.HostNameKey, semconv.ProcessPIDKey, semconv.ServiceInstanceIDKey} {
		if !p.Resource().Set().HasValue(k) {
			t.Errorf("resource lacks %s", k)
		}
	}
	if p.Resource().Set().HasValue(semconv.ProcessCommandArgsKey) {
		t.Error("resource carries the command line")
	}
}

func TestResourceFromEnv(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "from-env")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "service.version=9,team=batch")
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP(), telemetry.WithoutPrometheus(),
		telemetry.WithServiceName("from-code"), telemetry.WithServiceVersion("1"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	for k, v := range map[attribute.Key]string{"service.name": "from-env", "service.version": "9", "team": "batch"} {
		if got, _ := p.Resource().Set().Value(k); got.Emit() != v {
			t.Errorf("resource %s = %q, want %q", k, got.Emit(), v)
		}
	}
}

// TestGlobal is the only test that sets the otel globals.
func TestGlobal(t *testing.T) {
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP(), telemetry.WithGlobal())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if otel.GetTracerProvider() != p.TracerProvider() {
		t.Error("global TracerProvider not set")
	}
	if otel.GetMeterProvider() != p.MeterProvider() {
		t.Error("global MeterProvider not set")
	}
	fields := otel.GetTextMapPropagator().Fields()
	for _, f := range (propagation.TraceContext{}).Fields() {
		if !strings.Contains(strings.Join(fields, ","), f) {
			t.Errorf("global propagator fields %v lack %s", fields, f)
		}
	}
}

func TestSetupWithoutGlobalLeavesGlobals(t *testing.T) {
	before := otel.GetTracerProvider()
	p, err := telemetry.Setup(context.Background(), telemetry.WithoutOTLP())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if otel.GetTracerProvider() != before {
		t.Error("Setup without WithGlobal changed the global TracerProvider")
	}
}

// TestOTLPHTTPFromEnv pushes to a loopback OTLP/HTTP receiver named only by
// the environment: Shutdown delivers the pending span and a last metric
// collection.
func TestOTLPHTTPFromEnv(t *testing.T) {
	var mu sync.Mutex
	paths := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer srv.Close()
	for _, k := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")

	p, err := telemetry.Setup(context.Background(), telemetry.WithoutPrometheus())
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	span.End()
	c, err := p.MeterProvider().Meter("test").Int64Counter("muster.test")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if paths["/v1/traces"] != 1 || paths["/v1/metrics"] != 1 {
		t.Errorf("receiver got %v, want one /v1/traces and one /v1/metrics request", paths)
	}
}

type traceReceiver struct {
	coltracepb.UnimplementedTraceServiceServer
	spans chan string
}

func (r *traceReceiver) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				r.spans <- s.GetName()
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// TestOTLPGRPCFromEnv: the same over gRPC, chosen by
// OTEL_EXPORTER_OTLP_TRACES_PROTOCOL; metrics stay off OTLP because nothing
// names an endpoint or protocol for them.
func TestOTLPGRPCFromEnv(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	recv := &traceReceiver{spans: make(chan string, 10)}
	coltracepb.RegisterTraceServiceServer(srv, recv)
	go srv.Serve(lis)
	defer srv.Stop()

	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"} {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://"+lis.Addr().String())
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc")

	p, err := telemetry.Setup(context.Background(), telemetry.WithoutPrometheus())
	if err != nil {
		t.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(recv.spans)
	var got []string
	for s := range recv.spans {
		got = append(got, s)
	}
	if len(got) != 1 || got[0] != "fire orders" {
		t.Errorf("receiver got spans %q, want [fire orders]", got)
	}
}
