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
// The operator chooses exporters with OpenTelemetry's standard environment,
// as contrib's autoexport reads it (package autoexport itself is not used:
// its Prometheus exporter serves on a port of its own, where Setup hands
// the application a handler and a registry it controls):
//
//   - OTEL_TRACES_EXPORTER: a comma-separated list of otlp and console, or
//     none. Unset: otlp when the OTLP environment names an endpoint or
//     protocol for traces (see below), else no exporter.
//   - OTEL_METRICS_EXPORTER: a comma-separated list of otlp, prometheus and
//     console, or none. Unset: prometheus, plus otlp when the OTLP
//     environment names an endpoint or protocol for metrics. With a
//     traces-only backend such as Jaeger behind OTEL_EXPORTER_OTLP_ENDPOINT,
//     set OTEL_METRICS_EXPORTER=prometheus (or none), or name the backend
//     with OTEL_EXPORTER_OTLP_TRACES_ENDPOINT alone.
//   - An unknown name is an error from Setup.
//
// Options have the last word: [WithOTLP] adds OTLP to both signals,
// [WithoutOTLP] removes it, [WithoutPrometheus] removes Prometheus.
//
// The exporters:
//
//   - prometheus (pull): OpenTelemetry's Prometheus exporter registers in a
//     registry of its own (never the global default registry), together
//     with the Go runtime and process collectors, and
//     [Providers.MetricsHandler] serves it; or, with
//     [WithPrometheusRegisterer], in the service's registry, beside what
//     the service registered there. Metric names are those listed in
//     package github.com/musterhq/muster/telemetry/musterconv, with no
//     otel_scope_* labels; the resource appears once, as target_info.
//   - otlp (push) over gRPC or HTTP, as OTEL_EXPORTER_OTLP_PROTOCOL or its
//     _TRACES_ / _METRICS_ form says (http/protobuf by default). Endpoint,
//     headers, TLS and timeouts always come from the OTEL_EXPORTER_OTLP_*
//     variables, per signal where set.
//   - console: indented JSON on standard output.
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
