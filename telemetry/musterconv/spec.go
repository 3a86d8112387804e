package musterconv

import (
	"slices"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Kind is the kind of an OpenTelemetry instrument.
type Kind uint8

// The instrument kinds used by the catalogue.
const (
	// KindCounter is a synchronous monotonic counter (metric.Int64Counter).
	KindCounter Kind = iota + 1
	// KindUpDownCounter is a synchronous up-down counter
	// (metric.Int64UpDownCounter).
	KindUpDownCounter
	// KindHistogram is a synchronous histogram with explicit bucket
	// boundaries (metric.Int64Histogram or metric.Float64Histogram).
	KindHistogram
	// KindObservableUpDownCounter is an asynchronous up-down counter
	// (metric.Int64ObservableUpDownCounter), read by a callback at
	// collection time.
	KindObservableUpDownCounter
	// KindObservableCounter is an asynchronous monotonic counter
	// (metric.Int64ObservableCounter or metric.Float64ObservableCounter),
	// read by a callback at collection time from a count kept elsewhere
	// (a client's or a store's Stats).
	KindObservableCounter
	// KindObservableGauge is an asynchronous gauge
	// (metric.Float64ObservableGauge or metric.Int64ObservableGauge): a
	// value that is not a sum, such as an age, or one key's share of a
	// batcher when only the top keys are reported.
	KindObservableGauge
)

// String returns the kind's name as written in the catalogue, for example
// "counter" or "async up-down counter".
func (k Kind) String() string {
	switch k {
	case KindCounter:
		return "counter"
	case KindUpDownCounter:
		return "up-down counter"
	case KindHistogram:
		return "histogram"
	case KindObservableUpDownCounter:
		return "async up-down counter"
	case KindObservableCounter:
		return "async counter"
	case KindObservableGauge:
		return "async gauge"
	default:
		return "unknown"
	}
}

// PrometheusType returns the Prometheus metric type the OpenTelemetry
// Prometheus exporter gives an instrument of this kind: "counter" for both
// counters, "histogram", or "gauge" for both up-down counters (they are
// non-monotonic sums) and gauges. It returns "" for an unknown kind.
func (k Kind) PrometheusType() string {
	switch k {
	case KindCounter, KindObservableCounter:
		return "counter"
	case KindHistogram:
		return "histogram"
	case KindUpDownCounter, KindObservableUpDownCounter, KindObservableGauge:
		return "gauge"
	default:
		return ""
	}
}

// Spec describes one instrument of the catalogue. Its fields are read through
// methods, which return copies, so a Spec cannot be changed by its users. The
// zero Spec describes nothing; the catalogue's specs come from the package
// variables ([ItemAdded], [BatchSize], ...) and [All].
type Spec struct {
	name        string
	kind        Kind
	unit        string
	description string
	buckets     []float64
	attrs       []attribute.Key // beyond BatcherNameKey
	promName    string
	nameKey     attribute.Key // the key on every measurement; "" means BatcherNameKey
}

// Name returns the OpenTelemetry instrument name, for example
// "muster.batch.wait.duration".
func (s Spec) Name() string { return s.name }

// Kind returns the instrument's kind.
func (s Spec) Kind() Kind { return s.kind }

// Unit returns the instrument's UCUM unit: "s", "1", or an annotation in
// braces such as "{item}".
func (s Spec) Unit() string { return s.unit }

// Description returns the instrument's description, which the Prometheus
// exporter publishes as the metric's HELP text.
func (s Spec) Description() string { return s.description }

// Buckets returns a copy of a histogram's explicit bucket boundaries (upper
// bounds, strictly increasing), or nil for any other kind.
func (s Spec) Buckets() []float64 { return slices.Clone(s.buckets) }

// AttributeKeys returns the attribute keys a measurement of this instrument
// may carry: [BatcherNameKey] first (it is on every measurement; for the
// shared rate limiter's instruments, [RateLimitNameKey]), then the
// instrument's own keys, such as [BatchTriggerKey] or [ErrorTypeKey].
func (s Spec) AttributeKeys() []attribute.Key {
	first := BatcherNameKey
	if s.nameKey != "" {
		first = s.nameKey
	}
	return append([]attribute.Key{first}, s.attrs...)
}

// PrometheusName returns the metric family name under which OpenTelemetry's
// Prometheus exporter (default translation, UnderscoreEscapingWithSuffixes)
// exposes the instrument, for example "muster_item_added_total" or
// "muster_batch_wait_duration_seconds". For a histogram it is the base name of
// its _bucket, _sum and _count series.
func (s Spec) PrometheusName() string { return s.promName }

// PrometheusSeries returns the names of the series the instrument appears as
// in a scrape: the name itself for counters and gauges, and the name with
// _bucket, _sum and _count appended for histograms.
func (s Spec) PrometheusSeries() []string {
	if s.kind == KindHistogram {
		return []string{s.promName + "_bucket", s.promName + "_sum", s.promName + "_count"}
	}
	return []string{s.promName}
}

// PrometheusLabels returns the Prometheus label names of [Spec.AttributeKeys],
// in the same order.
func (s Spec) PrometheusLabels() []string {
	keys := s.AttributeKeys()
	labels := make([]string, len(keys))
	for i, k := range keys {
		labels[i] = PrometheusLabel(k)
	}
	return labels
}

// PrometheusLabel returns the Prometheus label name the exporter makes of an
// attribute key: every character other than an ASCII letter, digit or
// underscore becomes an underscore, so "muster.batcher.name" becomes
// "muster_batcher_name" and "error.type" becomes "error_type". It is meant for
// the keys of this package; the exporter's rules for keys that start with a
// digit or with two underscores are not reproduced.
func PrometheusLabel(k attribute.Key) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		default:
			return '_'
		}
	}, string(k))
}

// instrumentOptions returns the unit and description as options.
func (s Spec) instrumentOptions() []metric.InstrumentOption {
	return []metric.InstrumentOption{metric.WithUnit(s.unit), metric.WithDescription(s.description)}
}

// Int64CounterSpec is the [Spec] of an instrument created as a
// [metric.Int64Counter].
type Int64CounterSpec struct{ Spec }

// New creates the counter on m with the catalogue's unit and description,
// then opts.
func (s Int64CounterSpec) New(m metric.Meter, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	all := make([]metric.Int64CounterOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Int64Counter(s.name, append(all, opts...)...)
}

// Int64UpDownCounterSpec is the [Spec] of an instrument created as a
// [metric.Int64UpDownCounter].
type Int64UpDownCounterSpec struct{ Spec }

// New creates the up-down counter on m with the catalogue's unit and
// description, then opts.
func (s Int64UpDownCounterSpec) New(m metric.Meter, opts ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	all := make([]metric.Int64UpDownCounterOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Int64UpDownCounter(s.name, append(all, opts...)...)
}

// Int64ObservableUpDownCounterSpec is the [Spec] of an instrument created as
// a [metric.Int64ObservableUpDownCounter]. Pass [metric.WithInt64Callback] to
// New, or observe it from a callback registered with
// [metric.Meter.RegisterCallback].
type Int64ObservableUpDownCounterSpec struct{ Spec }

// New creates the asynchronous up-down counter on m with the catalogue's unit
// and description, then opts.
func (s Int64ObservableUpDownCounterSpec) New(m metric.Meter, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	all := make([]metric.Int64ObservableUpDownCounterOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Int64ObservableUpDownCounter(s.name, append(all, opts...)...)
}

// Int64HistogramSpec is the [Spec] of an instrument created as a
// [metric.Int64Histogram].
type Int64HistogramSpec struct{ Spec }

// New creates the histogram on m with the catalogue's unit, description and
// explicit bucket boundaries, then opts (a later
// [metric.WithExplicitBucketBoundaries] in opts replaces the catalogue's).
func (s Int64HistogramSpec) New(m metric.Meter, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	all := make([]metric.Int64HistogramOption, 0, 3+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	all = append(all, metric.WithExplicitBucketBoundaries(s.Buckets()...))
	return m.Int64Histogram(s.name, append(all, opts...)...)
}

// Float64HistogramSpec is the [Spec] of an instrument created as a
// [metric.Float64Histogram].
type Float64HistogramSpec struct{ Spec }

// New creates the histogram on m with the catalogue's unit, description and
// explicit bucket boundaries, then opts (a later
// [metric.WithExplicitBucketBoundaries] in opts replaces the catalogue's).
func (s Float64HistogramSpec) New(m metric.Meter, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	all := make([]metric.Float64HistogramOption, 0, 3+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	all = append(all, metric.WithExplicitBucketBoundaries(s.Buckets()...))
	return m.Float64Histogram(s.name, append(all, opts...)...)
}

// Int64ObservableCounterSpec is the [Spec] of an instrument created as a
// [metric.Int64ObservableCounter]: a count kept elsewhere (a client's
// Stats), observed by a callback.
type Int64ObservableCounterSpec struct{ Spec }

// New creates the asynchronous counter on m with the catalogue's unit and
// description, then opts.
func (s Int64ObservableCounterSpec) New(m metric.Meter, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	all := make([]metric.Int64ObservableCounterOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Int64ObservableCounter(s.name, append(all, opts...)...)
}

// Float64ObservableCounterSpec is the [Spec] of an instrument created as a
// [metric.Float64ObservableCounter], such as a total time in seconds.
type Float64ObservableCounterSpec struct{ Spec }

// New creates the asynchronous counter on m with the catalogue's unit and
// description, then opts.
func (s Float64ObservableCounterSpec) New(m metric.Meter, opts ...metric.Float64ObservableCounterOption) (metric.Float64ObservableCounter, error) {
	all := make([]metric.Float64ObservableCounterOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Float64ObservableCounter(s.name, append(all, opts...)...)
}

// Float64ObservableGaugeSpec is the [Spec] of an instrument created as a
// [metric.Float64ObservableGauge].
type Float64ObservableGaugeSpec struct{ Spec }

// New creates the asynchronous gauge on m with the catalogue's unit and
// description, then opts.
func (s Float64ObservableGaugeSpec) New(m metric.Meter, opts ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	all := make([]metric.Float64ObservableGaugeOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Float64ObservableGauge(s.name, append(all, opts...)...)
}

// Int64ObservableGaugeSpec is the [Spec] of an instrument created as a
// [metric.Int64ObservableGauge], such as a count of a few reported keys.
type Int64ObservableGaugeSpec struct{ Spec }

// New creates the asynchronous gauge on m with the catalogue's unit and
// description, then opts.
func (s Int64ObservableGaugeSpec) New(m metric.Meter, opts ...metric.Int64ObservableGaugeOption) (metric.Int64ObservableGauge, error) {
	all := make([]metric.Int64ObservableGaugeOption, 0, 2+len(opts))
	for _, o := range s.instrumentOptions() {
		all = append(all, o)
	}
	return m.Int64ObservableGauge(s.name, append(all, opts...)...)
}
