package telemetry

import (
	"io"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Option configures [Setup].
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// Protocol is an OTLP transport, spelled as in OTEL_EXPORTER_OTLP_PROTOCOL.
type Protocol string

// The OTLP protocols Setup supports. OpenTelemetry's http/json is not
// implemented by the Go exporters.
const (
	// ProtocolGRPC is OTLP over gRPC, by default to localhost:4317.
	ProtocolGRPC Protocol = "grpc"
	// ProtocolHTTPProtobuf is OTLP over HTTP with protobuf bodies, by
	// default to localhost:4318. It is the default protocol.
	ProtocolHTTPProtobuf Protocol = "http/protobuf"
)

// otlpMode says whether Setup pushes over OTLP.
type otlpMode uint8

const (
	otlpAuto otlpMode = iota // when the environment names an endpoint or protocol
	otlpOn                   // WithOTLP
	otlpOff                  // WithoutOTLP
)

type config struct {
	serviceName    string
	serviceVersion string
	attrs          []attribute.KeyValue

	withoutPrometheus bool
	otlp              otlpMode
	protocol          Protocol // with otlpOn
	traceWriter       io.Writer
	compact           bool
	global            bool
	registerer        prometheus.Registerer
	gatherer          prometheus.Gatherer
	registererSet     bool
	sampler           sdktrace.Sampler

	getenv func(string) string
	stdout io.Writer // the console exporters'
}

func newConfig(getenv func(string) string, opts []Option) config {
	c := config{getenv: getenv, stdout: os.Stdout}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// WithServiceName sets the service.name resource attribute. The environment
// variables OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (service.name=...)
// override it, so that an operator can name a deployment without a rebuild.
// Without either, the name is "unknown_service:" followed by the executable's
// name, as the OpenTelemetry specification says.
func WithServiceName(name string) Option {
	return optionFunc(func(c *config) { c.serviceName = name })
}

// WithServiceVersion sets the service.version resource attribute.
// OTEL_RESOURCE_ATTRIBUTES overrides it.
func WithServiceVersion(version string) Option {
	return optionFunc(func(c *config) { c.serviceVersion = version })
}

// WithResourceAttributes adds attributes to the resource that describes the
// service. Detected attributes and OTEL_RESOURCE_ATTRIBUTES override them.
// Repeated calls add up.
func WithResourceAttributes(attrs ...attribute.KeyValue) Option {
	return optionFunc(func(c *config) { c.attrs = append(c.attrs, attrs...) })
}

// WithoutPrometheus turns off the Prometheus pull exporter, which is on by
// default. [Providers.MetricsHandler] then answers 404 and
// [Providers.Registry] returns nil.
func WithoutPrometheus() Option {
	return optionFunc(func(c *config) { c.withoutPrometheus = true })
}

// WithOTLP pushes traces and metrics over OTLP with the given protocol,
// whatever the environment says about enabling it. The endpoint, headers,
// TLS, compression and timeouts still come from the standard
// OTEL_EXPORTER_OTLP_* variables (the exporters' defaults otherwise). Setup
// fails if p is not a supported [Protocol].
//
// Without WithOTLP or [WithoutOTLP], Setup pushes a signal over OTLP only
// when one of OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL or
// their per-signal forms (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, ...) is set, with
// the protocol those variables name (the per-signal one first), http/protobuf
// by default.
func WithOTLP(p Protocol) Option {
	return optionFunc(func(c *config) { c.otlp, c.protocol = otlpOn, p })
}

// WithoutOTLP turns off OTLP push, whatever the environment says.
func WithoutOTLP() Option {
	return optionFunc(func(c *config) { c.otlp = otlpOff })
}

// WithTraceWriter writes finished spans to w as JSON, for local runs and
// tests: indented by default, one span per line with [WithCompactOutput].
// Spans are batched like any export, so they appear every few seconds
// (OTEL_BSP_SCHEDULE_DELAY) and at [Providers.Shutdown]. Writes to w come from
// one goroutine at a time. A nil w turns the writer off.
func WithTraceWriter(w io.Writer) Option {
	return optionFunc(func(c *config) { c.traceWriter = w })
}

// WithCompactOutput makes the [WithTraceWriter] output one JSON object per
// line instead of indented JSON.
func WithCompactOutput() Option {
	return optionFunc(func(c *config) { c.compact = true })
}

// WithSampler sets the TracerProvider's sampler, in place of the one
// OTEL_TRACES_SAMPLER names; Setup wraps it in [LinkedSampler] either way.
func WithSampler(s sdktrace.Sampler) Option {
	return optionFunc(func(c *config) { c.sampler = s })
}

// WithGlobal installs the providers as OpenTelemetry's globals
// (otel.SetTracerProvider, otel.SetMeterProvider) and sets the global
// propagator to W3C trace context plus baggage. Instrumentation that defaults
// to the globals, such as muster's middleware, then reports through Setup's
// providers. Without it Setup changes no global state.
func WithGlobal() Option {
	return optionFunc(func(c *config) { c.global = true })
}

// WithPrometheusRegisterer makes the Prometheus exporter register in the
// service's own registerer (prometheus.DefaultRegisterer, or a registry the
// service already serves) instead of a registry of Setup's, so that one
// scrape serves the service's metrics and muster's. Setup then registers the
// Go runtime and process collectors there only if reg does not have them
// already, so nothing is registered twice, and [Providers.MetricsHandler]
// serves gather: pass the gatherer behind reg (prometheus.DefaultGatherer
// for prometheus.DefaultRegisterer), or nil when reg is itself a
// prometheus.Gatherer, such as a *prometheus.Registry. [Providers.Registry]
// returns nil. Setup fails if reg is nil, if gather is nil and reg is not a
// Gatherer, or if Prometheus is off.
//
// Without it, Setup's registry is a fresh one: merging it with another
// registry that has the Go collector (prometheus.Gatherers) fails the scrape
// on the duplicate go_* series.
func WithPrometheusRegisterer(reg prometheus.Registerer, gather prometheus.Gatherer) Option {
	return optionFunc(func(c *config) {
		c.registerer, c.gatherer = reg, gather
		c.registererSet = true
	})
}
