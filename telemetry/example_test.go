package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// Setup a service with the Prometheus endpoint, record through its
// MeterProvider, and scrape it.
func ExampleSetup() {
	ctx := context.Background()
	p, err := telemetry.Setup(ctx,
		telemetry.WithServiceName("orders"),
		telemetry.WithoutOTLP(), // a real service would leave OTLP to the environment
	)
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := p.Shutdown(ctx); err != nil {
			log.Print(err)
		}
	}()
	mux := http.NewServeMux()
	mux.Handle("/metrics", p.MetricsHandler())

	processed, err := musterconv.ItemProcessed.New(p.MeterProvider().Meter("github.com/musterhq/muster/middleware"))
	if err != nil {
		log.Fatal(err)
	}
	processed.Add(ctx, 3, metric.WithAttributes(musterconv.BatcherName("orders")))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.Contains(line, musterconv.ItemProcessed.PrometheusName()) {
			fmt.Print(line)
		}
	}
	// Output:
	// # HELP muster_item_processed_total Items whose batch finished, or was abandoned at a Shutdown deadline; error.type is set when it failed for good.
	// # TYPE muster_item_processed_total counter
	// muster_item_processed_total{muster_batcher_name="orders"} 3
}

// WithTraceWriter prints spans for a local run; Shutdown flushes them.
func ExampleWithTraceWriter() {
	var out bytes.Buffer // os.Stdout in a local run
	p, err := telemetry.Setup(context.Background(),
		telemetry.WithTraceWriter(&out), telemetry.WithCompactOutput(),
		telemetry.WithoutPrometheus(), telemetry.WithoutOTLP())
	if err != nil {
		log.Fatal(err)
	}
	_, span := p.TracerProvider().Tracer("example").Start(context.Background(), "fire orders")
	span.End()
	if err := p.Shutdown(context.Background()); err != nil {
		log.Fatal(err)
	}

	var s struct{ Name string }
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		log.Fatal(err)
	}
	fmt.Println(s.Name)
	// Output: fire orders
}

// A service that already serves a registry of its own (here one with the Go
// collector) adds muster's metrics to it: one scrape, nothing registered
// twice.
func ExampleWithPrometheusRegisterer() {
	reg := prometheus.NewRegistry() // the service's; prometheus.DefaultRegisterer works the same
	reg.MustRegister(collectors.NewGoCollector())

	ctx := context.Background()
	p, err := telemetry.Setup(ctx, telemetry.WithPrometheusRegisterer(reg, nil), telemetry.WithoutOTLP())
	if err != nil {
		log.Fatal(err)
	}
	defer p.Shutdown(ctx)
	processed, err := musterconv.ItemProcessed.New(p.MeterProvider().Meter("github.com/musterhq/muster/middleware"))
	if err != nil {
		log.Fatal(err)
	}
	processed.Add(ctx, 3, metric.WithAttributes(musterconv.BatcherName("orders")))

	rec := httptest.NewRecorder() // the service's own handler; p.MetricsHandler() serves the same
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	fmt.Println(rec.Code, strings.Count(body, "# TYPE go_goroutines "), strings.Contains(body, `muster_item_processed_total{muster_batcher_name="orders"} 3`))
	// Output: 200 1 true
}
