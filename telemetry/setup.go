package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetricgrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlpmetric/otlpmetrichttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/exporters/stdout/stdoutmetric"
	"go.opentelemetry.io/otel/exporters/stdout/stdouttrace"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// Providers holds what [Setup] built: the resource, a TracerProvider, a
// MeterProvider and, with Prometheus on, the registry and its scrape handler.
// Its methods are safe for concurrent use. Call [Providers.Shutdown] before
// the process exits, or buffered telemetry is lost. Only Setup makes a usable
// Providers.
type Providers struct {
	resource *resource.Resource
	tracer   *sdktrace.TracerProvider
	meter    *sdkmetric.MeterProvider
	registry *prometheus.Registry // nil without Prometheus
	handler  http.Handler
	plan     plan

	shutdownOnce sync.Once
	shutdownErr  error
}

// plan records which exporters Setup chose, for tests and error messages.
type plan struct {
	prometheus    bool
	traceOTLP     Protocol // "" when off
	metricOTLP    Protocol // "" when off
	traceWriter   bool
	compactWriter bool
	traceConsole  bool // OTEL_TRACES_EXPORTER=console
	metricConsole bool // OTEL_METRICS_EXPORTER=console
}

// Setup builds the providers of an application (not a library: a library
// takes providers from its user, or uses the otel globals) in one call:
//
//   - a resource naming the service ([WithServiceName], OTEL_SERVICE_NAME,
//     OTEL_RESOURCE_ATTRIBUTES) with a service.instance.id, the host name, the
//     OS type, the process id, executable name and Go runtime, and the
//     telemetry SDK. The process's command line and owner are left out: they
//     can hold secrets and would make target_info long;
//   - a MeterProvider exporting to Prometheus (pull, on by default; see
//     [Providers.MetricsHandler]) and, when configured, OTLP (push);
//   - a TracerProvider exporting to OTLP when configured and to
//     [WithTraceWriter]'s writer. With no trace exporter it still samples and
//     makes valid span contexts, so trace links and exemplars keep working.
//
// Setup honours the SDK's standard environment variables (OTEL_TRACES_SAMPLER,
// OTEL_BSP_*, OTEL_METRIC_EXPORT_INTERVAL, OTEL_EXPORTER_OTLP_*, ...), and
// chooses exporters by OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER as the
// package documentation ("Exporters") describes; see [WithOTLP] for when OTLP
// is on without them. It sets no global unless given [WithGlobal].
//
// ctx bounds the detection of resource attributes and the creation of the
// exporters; it is not kept. A failure to detect part of the resource is
// reported to otel.Handle and does not fail Setup. On error, Setup releases
// what it had built and returns a nil *Providers.
func Setup(ctx context.Context, opts ...Option) (*Providers, error) {
	cfg := newConfig(os.Getenv, opts)
	pl, err := cfg.plan()
	if err != nil {
		return nil, err
	}

	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}

	p := &Providers{resource: res, plan: pl, handler: http.NotFoundHandler()}
	var (
		spanExporters []sdktrace.SpanExporter
		readers       []sdkmetric.Reader
	)
	fail := func(err error) (*Providers, error) {
		// Nothing was exported yet, so releasing is quick; do it even if
		// ctx has ended.
		rctx := context.WithoutCancel(ctx)
		errs := []error{err}
		for _, e := range spanExporters {
			errs = append(errs, e.Shutdown(rctx))
		}
		for _, r := range readers {
			errs = append(errs, r.Shutdown(rctx))
		}
		return nil, errors.Join(errs...)
	}

	if pl.prometheus {
		gather := cfg.gatherer
		if gather == nil && cfg.registerer != nil {
			gather = cfg.registerer.(prometheus.Gatherer) // checked by plan
		}
		reg, handler, reader, err := newPrometheus(cfg.registerer, gather)
		if err != nil {
			return fail(err)
		}
		p.registry, p.handler = reg, handler
		readers = append(readers, reader)
	}
	if pl.metricConsole {
		exp, err := stdoutmetric.New(stdoutmetric.WithWriter(cfg.stdout), stdoutmetric.WithPrettyPrint())
		if err != nil {
			return fail(fmt.Errorf("telemetry: console metric exporter: %w", err))
		}
		readers = append(readers, sdkmetric.NewPeriodicReader(exp))
	}
	if pl.metricOTLP != "" {
		exp, err := newOTLPMetricExporter(ctx, pl.metricOTLP)
		if err != nil {
			return fail(fmt.Errorf("telemetry: OTLP metric exporter: %w", err))
		}
		readers = append(readers, sdkmetric.NewPeriodicReader(exp))
	}
	if pl.traceOTLP != "" {
		exp, err := newOTLPTraceExporter(ctx, pl.traceOTLP)
		if err != nil {
			return fail(fmt.Errorf("telemetry: OTLP trace exporter: %w", err))
		}
		spanExporters = append(spanExporters, exp)
	}
	if pl.traceConsole {
		exp, err := stdouttrace.New(stdouttrace.WithWriter(cfg.stdout), stdouttrace.WithPrettyPrint())
		if err != nil {
			return fail(fmt.Errorf("telemetry: console trace exporter: %w", err))
		}
		spanExporters = append(spanExporters, exp)
	}
	if pl.traceWriter {
		wopts := []stdouttrace.Option{stdouttrace.WithWriter(cfg.traceWriter)}
		if !pl.compactWriter {
			wopts = append(wopts, stdouttrace.WithPrettyPrint())
		}
		exp, err := stdouttrace.New(wopts...)
		if err != nil {
			return fail(fmt.Errorf("telemetry: trace writer: %w", err))
		}
		spanExporters = append(spanExporters, exp)
	}

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	sampler := cfg.sampler
	if sampler == nil {
		if sampler, err = envSampler(cfg.getenv); err != nil {
			return fail(err)
		}
	}
	topts = append(topts, sdktrace.WithSampler(LinkedSampler(sampler)))
	for _, e := range spanExporters {
		topts = append(topts, sdktrace.WithBatcher(e))
	}
	p.tracer = sdktrace.NewTracerProvider(topts...)

	mopts := []sdkmetric.Option{sdkmetric.WithResource(res)}
	for _, r := range readers {
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	p.meter = sdkmetric.NewMeterProvider(mopts...)

	if cfg.global {
		otel.SetTracerProvider(p.tracer)
		otel.SetMeterProvider(p.meter)
		otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(
			propagation.TraceContext{}, propagation.Baggage{}))
	}
	return p, nil
}

// plan decides the exporters from the configuration and the environment.
//
// OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER, when set, list the
// exporters of their signal (comma-separated; "none" alone for none), as
// OpenTelemetry's SDK environment specification and contrib's autoexport
// spell them. Unset, traces go to OTLP when the OTLP environment names an
// endpoint or protocol for them, and metrics to Prometheus plus, likewise,
// OTLP. Options then have the last word: [WithOTLP] adds OTLP to both
// signals, [WithoutOTLP] removes it, [WithoutPrometheus] removes Prometheus.
func (c config) plan() (plan, error) {
	pl := plan{
		traceWriter:   c.traceWriter != nil,
		compactWriter: c.compact,
	}
	traces, tracesSet, err := c.exporters("OTEL_TRACES_EXPORTER", "otlp", "console")
	if err != nil {
		return plan{}, err
	}
	metrics, metricsSet, err := c.exporters("OTEL_METRICS_EXPORTER", "otlp", "prometheus", "console")
	if err != nil {
		return plan{}, err
	}
	if !tracesSet {
		traces["otlp"] = c.otlpEnvNamed("TRACES")
	}
	if !metricsSet {
		metrics["prometheus"] = true
		metrics["otlp"] = c.otlpEnvNamed("METRICS")
	}
	switch c.otlp {
	case otlpOn:
		traces["otlp"], metrics["otlp"] = true, true
	case otlpOff:
		traces["otlp"], metrics["otlp"] = false, false
	}
	if c.withoutPrometheus {
		metrics["prometheus"] = false
	}
	if c.registererSet {
		if c.registerer == nil {
			return plan{}, errors.New("telemetry: WithPrometheusRegisterer: nil registerer")
		}
		if _, ok := c.registerer.(prometheus.Gatherer); !ok && c.gatherer == nil {
			return plan{}, fmt.Errorf("telemetry: WithPrometheusRegisterer: the registerer (%T) is not a prometheus.Gatherer: pass the gatherer that serves it", c.registerer)
		}
		if !metrics["prometheus"] {
			return plan{}, errors.New("telemetry: WithPrometheusRegisterer given, but Prometheus is off (WithoutPrometheus, or OTEL_METRICS_EXPORTER without prometheus)")
		}
	}
	pl.prometheus = metrics["prometheus"]
	pl.traceConsole, pl.metricConsole = traces["console"], metrics["console"]
	if traces["otlp"] {
		if pl.traceOTLP, err = c.otlpProtocol("TRACES"); err != nil {
			return plan{}, err
		}
	}
	if metrics["otlp"] {
		if pl.metricOTLP, err = c.otlpProtocol("METRICS"); err != nil {
			return plan{}, err
		}
	}
	return pl, nil
}

// exporters reads an OTEL_*_EXPORTER variable: the exporters it names, and
// whether it is set at all. Names are trimmed and lowercased; "none" must
// stand alone; an unknown name is an error that lists the known ones.
func (c config) exporters(env string, known ...string) (map[string]bool, bool, error) {
	set := map[string]bool{}
	v := strings.TrimSpace(c.getenv(env))
	if v == "" {
		return set, false, nil
	}
	names := strings.Split(v, ",")
	for _, n := range names {
		n = strings.ToLower(strings.TrimSpace(n))
		switch {
		case n == "none" && len(names) == 1:
			return set, true, nil
		case n == "none":
			return nil, true, fmt.Errorf("telemetry: %s=%q: none cannot be combined with other exporters", env, v)
		case slices.Contains(known, n):
			set[n] = true
		default:
			return nil, true, fmt.Errorf("telemetry: %s=%q: unknown exporter %q (want a comma-separated list of %s, or none)",
				env, v, n, strings.Join(known, ", "))
		}
	}
	return set, true, nil
}

// otlpEnvNamed reports whether the OTLP environment names an endpoint or a
// protocol for a signal ("TRACES" or "METRICS"), or for all.
func (c config) otlpEnvNamed(signal string) bool {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT",
		"OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if c.getenv(k) != "" {
			return true
		}
	}
	return false
}

// otlpProtocol returns the OTLP protocol of a signal ("TRACES" or "METRICS")
// that is pushed over OTLP: [WithOTLP]'s, else the per-signal protocol
// variable's, else OTEL_EXPORTER_OTLP_PROTOCOL's, else http/protobuf.
func (c config) otlpProtocol(signal string) (Protocol, error) {
	p := c.protocol
	if c.otlp != otlpOn {
		p = Protocol(c.getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL"))
		if p == "" {
			p = Protocol(c.getenv("OTEL_EXPORTER_OTLP_PROTOCOL"))
		}
		if p == "" {
			p = ProtocolHTTPProtobuf
		}
	}
	switch p {
	case ProtocolGRPC, ProtocolHTTPProtobuf:
		return p, nil
	default:
		return "", fmt.Errorf("telemetry: unsupported OTLP protocol %q for %s (want %q or %q)",
			p, signal, ProtocolGRPC, ProtocolHTTPProtobuf)
	}
}

func newResource(ctx context.Context, cfg config) (*resource.Resource, error) {
	var own []resource.Option
	if cfg.serviceName != "" {
		own = append(own, resource.WithAttributes(semconv.ServiceName(cfg.serviceName)))
	}
	if cfg.serviceVersion != "" {
		own = append(own, resource.WithAttributes(semconv.ServiceVersion(cfg.serviceVersion)))
	}
	own = append(own, resource.WithAttributes(cfg.attrs...))

	// Later detectors override earlier ones: defaults, then the options,
	// then what is detected, then the environment.
	ropts := []resource.Option{resource.WithSchemaURL(semconv.SchemaURL), resource.WithService()}
	ropts = append(ropts, own...)
	ropts = append(ropts,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithOSType(),
		resource.WithProcessPID(),
		resource.WithProcessExecutableName(),
		resource.WithProcessRuntimeName(),
		resource.WithProcessRuntimeVersion(),
		resource.WithProcessRuntimeDescription(),
		resource.WithFromEnv(),
	)
	res, err := resource.New(ctx, ropts...)
	if errors.Is(err, resource.ErrPartialResource) {
		otel.Handle(err) // keep what was detected
		err = nil
	}
	if err != nil {
		return nil, fmt.Errorf("telemetry: resource: %w", err)
	}
	return res, nil
}

// newPrometheus builds a fresh registry with the Go runtime and process
// collectors and OpenTelemetry's Prometheus exporter, and the handler that
// serves it.
//
// Exporter options, chosen so that the scrape shows exactly the names in
// package musterconv:
//   - the translation strategy is set to UnderscoreEscapingWithSuffixes
//     explicitly. It is the v0.69 default, but its doc comment still describes
//     an older default and a future release may change it; pinning it keeps
//     the names (_total, _seconds, dots to underscores) the dashboards use.
//   - WithoutScopeInfo: no otel_scope_name, otel_scope_version and
//     otel_scope_schema_url labels on every series. The muster_ prefix already
//     says where a metric comes from, the version label would split every
//     series in two on each upgrade, and the series then carry only the
//     catalogue's labels.
//   - target_info stays: one series carrying the resource (service name,
//     instance id, host), which PromQL can join on job and instance.
//   - no namespace and no resource attributes as labels: the names are the
//     catalogue's, and per-series labels stay the instruments' own.
//   - histograms stay explicit-bucket (the default aggregation), so the
//     instruments' advisory boundaries become classic le buckets that
//     histogram_quantile reads without native-histogram support.
//
// With reg (see [WithPrometheusRegisterer]) the exporter registers there
// instead, and so do the Go runtime and process collectors unless reg has
// them already; the handler serves gather.
func newPrometheus(reg prometheus.Registerer, gather prometheus.Gatherer) (*prometheus.Registry, http.Handler, sdkmetric.Reader, error) {
	var own *prometheus.Registry
	if reg == nil {
		own = prometheus.NewRegistry()
		reg, gather = own, own
	}
	for _, c := range []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			if _, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
				continue // the service registered its own: keep it
			}
			return nil, nil, nil, fmt.Errorf("telemetry: register collector: %w", err)
		}
	}
	exp, err := otelprom.New(
		otelprom.WithRegisterer(reg),
		otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithSuffixes),
		otelprom.WithoutScopeInfo(),
	)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("telemetry: Prometheus exporter: %w", err)
	}
	h := promhttp.HandlerFor(gather, promhttp.HandlerOpts{
		// One metric that fails to translate costs that metric, not the
		// whole scrape (the exporter reports such failures as errors since
		// v0.61); the error goes to otel.Handle.
		ErrorHandling: promhttp.ContinueOnError,
		ErrorLog:      errorLog{},
		Registry:      reg, // counts errors in promhttp_metric_handler_errors_total
		// OpenMetrics when the scraper asks for it: it carries the
		// exemplars (trace ids) the SDK attaches to histogram buckets.
		EnableOpenMetrics: true,
	})
	return own, promhttp.InstrumentMetricHandler(reg, h), exp, nil
}

// errorLog sends promhttp's errors to OpenTelemetry's error handler.
type errorLog struct{}

func (errorLog) Println(v ...any) {
	otel.Handle(errors.New("telemetry: metrics handler: " + fmt.Sprint(v...)))
}

func newOTLPTraceExporter(ctx context.Context, p Protocol) (sdktrace.SpanExporter, error) {
	if p == ProtocolGRPC {
		return otlptracegrpc.New(ctx)
	}
	return otlptracehttp.New(ctx)
}

func newOTLPMetricExporter(ctx context.Context, p Protocol) (sdkmetric.Exporter, error) {
	if p == ProtocolGRPC {
		return otlpmetricgrpc.New(ctx)
	}
	return otlpmetrichttp.New(ctx)
}

// TracerProvider returns the TracerProvider. Pass it to instrumentation
// (for muster's middleware, as an option) or install it with [WithGlobal].
func (p *Providers) TracerProvider() *sdktrace.TracerProvider { return p.tracer }

// MeterProvider returns the MeterProvider.
func (p *Providers) MeterProvider() *sdkmetric.MeterProvider { return p.meter }

// Resource returns the resource that describes the service on every span and
// metric.
func (p *Providers) Resource() *resource.Resource { return p.resource }

// MetricsHandler returns the handler that serves the Prometheus scrape (the
// text format, or OpenMetrics when asked) for the caller to mount, usually at
// /metrics. It serves everything in [Providers.Registry] (or, with
// [WithPrometheusRegisterer], in the gatherer given there): the
// MeterProvider's metrics, target_info, and the Go runtime (go_*), process
// (process_*) and handler (promhttp_*) collectors. Without Prometheus it
// answers 404.
func (p *Providers) MetricsHandler() http.Handler { return p.handler }

// Registry returns the Prometheus registry behind [Providers.MetricsHandler]
// when Setup made one of its own (never prometheus.DefaultRegisterer). An
// application can register its own client_golang collectors in it to serve
// them on the same endpoint. It is nil when Prometheus is off, and when the
// application passed its own registerer with [WithPrometheusRegisterer].
func (p *Providers) Registry() *prometheus.Registry { return p.registry }

// Shutdown flushes and stops the TracerProvider and the MeterProvider, and
// with them every exporter: pending spans are exported, push readers export a
// last collection, and the Prometheus exporter stops serving the
// MeterProvider's metrics. Both providers shut down concurrently, each within
// ctx: when ctx ends first, Shutdown returns without waiting for the rest and
// unexported telemetry is lost. The errors are joined (errors.Join).
//
// Only the first call does the work; later calls return its result. The
// globals set by [WithGlobal] keep pointing at the shut-down providers, which
// export nothing more.
func (p *Providers) Shutdown(ctx context.Context) error {
	p.shutdownOnce.Do(func() {
		var wg sync.WaitGroup
		var terr, merr error
		wg.Go(func() {
			if err := p.tracer.Shutdown(ctx); err != nil {
				terr = fmt.Errorf("telemetry: shut down tracer provider: %w", err)
			}
		})
		wg.Go(func() {
			if err := p.meter.Shutdown(ctx); err != nil {
				merr = fmt.Errorf("telemetry: shut down meter provider: %w", err)
			}
		})
		wg.Wait()
		p.shutdownErr = errors.Join(terr, merr)
	})
	return p.shutdownErr
}
