package telemetry_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"

	"github.com/musterhq/muster/telemetry"
)

// errorRecorder collects what reaches otel.Handle while a test runs.
type errorRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (r *errorRecorder) Handle(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *errorRecorder) all() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs...)
}

func recordErrors(t *testing.T) *errorRecorder {
	t.Helper()
	r := &errorRecorder{}
	prev := otel.GetErrorHandler()
	otel.SetErrorHandler(r)
	t.Cleanup(func() { otel.SetErrorHandler(prev) })
	return r
}

// tracesOnlyBackend is an OTLP/HTTP receiver that knows traces only, as
// Jaeger does: /v1/metrics answers 404.
func tracesOnlyBackend(t *testing.T) (*httptest.Server, func() map[string]int) {
	t.Helper()
	var mu sync.Mutex
	paths := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths[r.URL.Path]++
		mu.Unlock()
		if r.URL.Path != "/v1/traces" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(srv.Close)
	return srv, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range paths {
			out[k] = v
		}
		return out
	}
}

func exportOne(t *testing.T, p *telemetry.Providers) error {
	t.Helper()
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	span.End()
	c, err := p.MeterProvider().Meter("test").Int64Counter("muster.test")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	return p.Shutdown(context.Background())
}

func clearOTLPEnv(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
		"OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"} {
		t.Setenv(k, "")
	}
}

// TestTracesOnlyBackend: with OTEL_EXPORTER_OTLP_ENDPOINT at a traces-only
// backend, OTEL_METRICS_EXPORTER=prometheus keeps metrics off OTLP: the
// span arrives, no metrics request is made and no error is reported. The
// control case (the variable unset) shows the 404 the issue reported.
func TestTracesOnlyBackend(t *testing.T) {
	for _, tc := range []struct {
		metricsExporter string
		wantErr         bool
	}{{"prometheus", false}, {"none", false}, {"", true}} {
		t.Run("OTEL_METRICS_EXPORTER="+tc.metricsExporter, func(t *testing.T) {
			srv, paths := tracesOnlyBackend(t)
			clearOTLPEnv(t)
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL)
			t.Setenv("OTEL_METRICS_EXPORTER", tc.metricsExporter)
			handled := recordErrors(t)
			p, err := telemetry.Setup(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			err = exportOne(t, p)
			got := paths()
			if got["/v1/traces"] != 1 {
				t.Errorf("receiver got %v, want one /v1/traces request", got)
			}
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "404") {
					t.Errorf("Shutdown: %v, want the metrics upload's 404", err)
				}
				return
			}
			if err != nil || len(handled.all()) > 0 || got["/v1/metrics"] != 0 {
				t.Errorf("Shutdown: %v; otel.Handle got %v; requests %v: want no error and no metrics request",
					err, handled.all(), got)
			}
		})
	}
}

// TestPrometheusDefaultRegisterer: Setup registers in the service's own
// registry (here the process-wide default one, which has the Go and process
// collectors already) without registering anything twice, and a scrape of
// the default gatherer serves the service's metrics and the
// MeterProvider's. The control case is the issue's: Setup's own registry
// merged with the default gatherer fails on the duplicate go_* series.
func TestPrometheusDefaultRegisterer(t *testing.T) {
	clearOTLPEnv(t)
	own := prometheus.NewCounter(prometheus.CounterOpts{Name: "orders_service_requests_total", Help: "Requests the service handled."})
	if err := prometheus.DefaultRegisterer.Register(own); err != nil {
		t.Fatal(err)
	}
	defer prometheus.DefaultRegisterer.Unregister(own)
	own.Inc()

	// Control: the merge of two registries with the Go collector fails.
	sep, err := telemetry.Setup(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer, sep.Registry()}, promhttp.HandlerOpts{}).
		ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("merged separate registries answered %d, want 500 (duplicate go_* series)", rec.Code)
	}
	sep.Shutdown(context.Background())

	p, err := telemetry.Setup(context.Background(),
		telemetry.WithPrometheusRegisterer(prometheus.DefaultRegisterer, prometheus.DefaultGatherer))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	if p.Registry() != nil {
		t.Error("Registry() is not nil with the service's registerer")
	}
	c, err := p.MeterProvider().Meter("test").Int64Counter("muster.item.added")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 3)
	for name, h := range map[string]http.Handler{
		"promhttp.Handler()": promhttp.Handler(),
		"Gatherers merge":    promhttp.HandlerFor(prometheus.Gatherers{prometheus.DefaultGatherer}, promhttp.HandlerOpts{}),
		"Providers' handler": p.MetricsHandler(),
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK {
			t.Errorf("%s: status %d:\n%s", name, rec.Code, body)
			continue
		}
		for _, want := range []string{"\norders_service_requests_total 1\n", "\nmuster_item_added_total 3\n", "\ngo_gc_duration_seconds_count "} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: scrape lacks %q", name, strings.TrimSpace(want))
			}
		}
		if n := strings.Count(body, "# TYPE go_goroutines gauge"); n != 1 {
			t.Errorf("%s: go_goroutines described %d times", name, n)
		}
	}

	// A registerer that is not a gatherer needs its gatherer.
	_, err = telemetry.Setup(context.Background(),
		telemetry.WithPrometheusRegisterer(prometheus.WrapRegistererWith(prometheus.Labels{"a": "b"}, prometheus.NewRegistry()), nil))
	if err == nil || !errors.Is(err, err) || !strings.Contains(err.Error(), "not a prometheus.Gatherer") {
		t.Errorf("Setup with a wrapped registerer and no gatherer: %v", err)
	}
}
