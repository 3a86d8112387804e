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

	added, err := musterconv.ItemAdded.New(p.MeterProvider().Meter("github.com/musterhq/muster/middleware"))
	if err != nil {
		log.Fatal(err)
	}
	added.Add(ctx, 3, metric.WithAttributes(musterconv.BatcherName("orders")))

	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if strings.Contains(line, musterconv.ItemAdded.PrometheusName()) {
			fmt.Print(line)
		}
	}
	// Output:
	// # HELP muster_item_added_total Items offered to the batcher; error.type is set when the item was refused.
	// # TYPE muster_item_added_total counter
	// muster_item_added_total{muster_batcher_name="orders"} 3
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
