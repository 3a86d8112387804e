// Package telemetry sets up OpenTelemetry for a service that uses muster, in
// one call: a resource that names the service, a TracerProvider and a
// MeterProvider, and the exporters that carry their data out.
//
// It is for applications. A library must not call [Setup]: it depends on the
// OpenTelemetry API only and takes its providers from its user (muster's
// middleware does so, defaulting to the otel globals), so that the
// application decides once how telemetry leaves the process.
//
// The shape follows OpenTelemetry's getting-started guide:
//
//	p, err := telemetry.Setup(ctx, telemetry.WithServiceName("orders"), telemetry.WithGlobal())
//	if err != nil {
//		return err
//	}
//	defer func() { err = errors.Join(err, p.Shutdown(context.Background())) }()
//	http.Handle("/metrics", p.MetricsHandler())
//
// # Exporters
//
// Each exporter is switched on its own:
//
//   - Prometheus (pull), on unless [WithoutPrometheus]: OpenTelemetry's
//     Prometheus exporter registers in a registry of its own (never the
//     global default registry), together with the Go runtime and process
//     collectors, and [Providers.MetricsHandler] serves it. Metric names are
//     those listed in package
//     github.com/musterhq/muster/telemetry/musterconv, with no
//     otel_scope_* labels; the resource appears once, as target_info.
//   - OTLP (push, traces and metrics) over gRPC or HTTP: on with [WithOTLP],
//     off with [WithoutOTLP], and otherwise on for a signal when the standard
//     environment names an OTLP endpoint or protocol for it
//     (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL, or their
//     _TRACES_ / _METRICS_ forms). Endpoint, headers, TLS and timeouts always
//     come from the OTEL_EXPORTER_OTLP_* variables.
//   - A writer for spans, for local runs and tests: [WithTraceWriter].
//
// # Buckets
//
// Setup adds no metric views. Histograms keep the explicit bucket
// boundaries their instruments advise (metric.WithExplicitBucketBoundaries,
// which musterconv applies to every muster histogram), so a seconds histogram
// is scraped with buckets from 100 µs to 60 s rather than the SDK's
// millisecond-sized defaults.
//
// # Shutdown
//
// [Providers.Shutdown] flushes pending spans, makes push readers export a
// last time, and stops every exporter, within its context's deadline.
package telemetry
