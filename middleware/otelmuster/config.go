package otelmuster

import (
	"runtime/debug"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope name of the tracer and meter this
// package creates: its import path.
const ScopeName = "github.com/musterhq/muster/middleware/otelmuster"

// DefaultTopKeys is how many keys of each Keyed batcher [NewMetrics] reports
// by default ([WithTopKeys]).
const DefaultTopKeys = 5

// DefaultMaxLinks is how many span links a batch span carries by default: the
// OpenTelemetry SDK's default LinkCountLimit.
const DefaultMaxLinks = 128

// defaultName stands in for a client's empty Name, in span names and in the
// muster.batcher.name attribute.
const defaultName = "muster"

// Version returns the version of this instrumentation, given to the tracer
// and meter as their instrumentation version. It is the version of the
// github.com/musterhq/muster module the program was built with, without its
// leading "v", or "devel" when the build carries none (tests, a work tree).
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	const module = "github.com/musterhq/muster"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := ""
	if bi.Main.Path == module {
		v = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == module {
			if d.Replace != nil {
				d = d.Replace
			}
			v = d.Version
		}
	}
	if v == "" || v == "(devel)" {
		return "devel"
	}
	return strings.TrimPrefix(v, "v")
})

// Option configures [NewTracing], [NewMetrics] and [NewHooks]. Each function
// reads the options that concern it and ignores the others, so one option
// list serves all three.
type Option interface {
	apply(*config)
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

type config struct {
	tp        trace.TracerProvider
	mp        metric.MeterProvider
	maxLinks  int
	spanKind  trace.SpanKind
	itemSpans bool
	topKeys   int
}

// newConfig applies opts over the defaults. The global providers are read
// here, at construction: they delegate to whatever provider is installed
// later with otel.SetTracerProvider or otel.SetMeterProvider, so hooks built
// before the SDK is set up still reach it.
func newConfig(opts []Option) config {
	c := config{maxLinks: DefaultMaxLinks, spanKind: trace.SpanKindInternal, itemSpans: true, topKeys: DefaultTopKeys}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	return c
}

// WithTracerProvider sets the TracerProvider batch spans are created with.
// If tp is nil, or the option is not given, otel.GetTracerProvider() is used.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.tp = tp
		}
	})
}

// WithMeterProvider sets the MeterProvider the instruments are created with.
// If mp is nil, or the option is not given, otel.GetMeterProvider() is used.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return optionFunc(func(c *config) {
		if mp != nil {
			c.mp = mp
		}
	})
}

// WithMaxLinks caps the links of a batch span at n (default
// [DefaultMaxLinks]). The links kept are the sampled item contexts first, in
// item order, then the others; the number left out is recorded as the
// muster.batch.links.dropped attribute. n == 0 gives batch spans no links; n
// < 0 removes the cap, leaving only the SDK's own LinkCountLimit, which keeps
// the last links and drops the first ones at a cost per link.
func WithMaxLinks(n int) Option {
	return optionFunc(func(c *config) { c.maxLinks = n })
}

// WithSpanKind sets the kind of batch spans. The default,
// trace.SpanKindInternal, suits a Fire that calls instrumented clients (a
// database driver, an HTTP client): their own CLIENT spans become children
// of the batch span, and one outgoing call is not counted twice by tools that
// derive service graphs from CLIENT spans. Use trace.SpanKindClient when Fire
// itself talks to a remote system without instrumentation of its own, and
// trace.SpanKindProducer when the batch span's context is injected into the
// messages Fire sends.
func WithSpanKind(kind trace.SpanKind) Option {
	return optionFunc(func(c *config) {
		if kind != trace.SpanKindUnspecified {
			c.spanKind = kind
		}
	})
}

// WithItemSpans says whether items added under a sampled span get a
// "create {name}" span (kind PRODUCER): a child of the request's span, from
// the moment the item was taken (in Add, under the client's lock) to the
// moment its batch fired, ended with a link to the batch span, which links
// back to it. From a slow request's trace, one click reaches the batch that
// carried its item, its wait, its retries. Items added without a sampled
// span (sent on Work, with context.Background, or an unsampled request) get
// none. On by default.
//
// The cost is one span per sampled item (BENCHMARKS.md measures it); turn
// it off when sampled requests add thousands of items each.
func WithItemSpans(on bool) Option {
	return optionFunc(func(c *config) { c.itemSpans = on })
}

// WithTopKeys sets how many keys of each Keyed batcher name [NewMetrics]
// reports in muster.key.pending and muster.key.waiting (label
// muster_batch_key): at each collection, the n keys holding the most
// pending items (by the client's TopKeys; clients of the same name are
// merged by key), so that a batcher has at most n series of each however
// many keys it has. The default is [DefaultTopKeys]; n <= 0 turns the two
// instruments off. A key is reported in fmt's %v form, cut to
// [MaxKeyLength] bytes.
//
// A key that leaves the top n is no longer reported: its series goes
// stale, as Prometheus treats any series that vanishes from a scrape, and
// ends rather than dropping to 0. A dashboard's topk over the gauge shows
// the keys that held the most at each instant.
//
// Reading the top keys takes the client's locks and reads every live key,
// once per client per collection, never per item: with 1,024 live keys a
// collection took 50 to 190 µs longer (median about 90 µs) than with
// WithTopKeys(0) on a loaded 2-core machine (BenchmarkCollectTopKeys);
// Add pays nothing for it.
func WithTopKeys(n int) Option {
	return optionFunc(func(c *config) { c.topKeys = max(n, 0) })
}
