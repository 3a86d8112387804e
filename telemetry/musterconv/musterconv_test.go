package musterconv_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/musterhq/muster/telemetry/musterconv"
)

func TestSpecsSane(t *testing.T) {
	specs := musterconv.All()
	if len(specs) != 19 {
		t.Errorf("All() has %d specs, want the 14 of DESIGN.md's catalogue, muster.item.pending, .refused, .dropped and muster.key.pending, .waiting", len(specs))
	}
	if n := len(musterconv.Journal()); n != 11 {
		t.Errorf("Journal() has %d specs, want 11", n)
	}
	specs = append(specs, musterconv.Journal()...)
	names := map[string]bool{}
	promNames := map[string]bool{}
	for _, s := range specs {
		t.Run(s.Name(), func(t *testing.T) {
			if !strings.HasPrefix(s.Name(), "muster.") {
				t.Errorf("name %q is outside the muster. namespace", s.Name())
			}
			if names[s.Name()] {
				t.Errorf("name %q appears twice", s.Name())
			}
			names[s.Name()] = true
			if promNames[s.PrometheusName()] {
				t.Errorf("Prometheus name %q appears twice", s.PrometheusName())
			}
			promNames[s.PrometheusName()] = true
			if s.Description() == "" || !strings.HasSuffix(s.Description(), ".") {
				t.Errorf("description %q: want a sentence", s.Description())
			}
			if s.Unit() == "" {
				t.Error("no unit")
			}
			if s.Kind().String() == "unknown" || s.Kind().PrometheusType() == "" {
				t.Errorf("kind %d is not one of the catalogue's", s.Kind())
			}
			keys := s.AttributeKeys()
			if len(keys) == 0 || keys[0] != musterconv.BatcherNameKey {
				t.Errorf("attribute keys %v do not start with %s", keys, musterconv.BatcherNameKey)
			}
			if len(slices.Compact(slices.Clone(keys))) != len(keys) {
				t.Errorf("attribute keys %v repeat", keys)
			}
			if got := s.PrometheusLabels(); len(got) != len(keys) || got[0] != "muster_batcher_name" {
				t.Errorf("PrometheusLabels() = %v", got)
			}
			series := s.PrometheusSeries()
			switch s.Kind() {
			case musterconv.KindCounter, musterconv.KindObservableCounter:
				if !strings.HasSuffix(s.PrometheusName(), "_total") {
					t.Errorf("counter %q lacks _total", s.PrometheusName())
				}
			case musterconv.KindHistogram:
				if len(series) != 3 {
					t.Errorf("histogram series %v", series)
				}
			}
			b := s.Buckets()
			if s.Kind() != musterconv.KindHistogram {
				if b != nil {
					t.Errorf("%s has buckets %v", s.Kind(), b)
				}
				return
			}
			if len(b) < 8 {
				t.Errorf("only %d buckets: %v", len(b), b)
			}
			for i := 1; i < len(b); i++ {
				if !(b[i] > b[i-1]) {
					t.Errorf("buckets not strictly increasing at %d: %v", i, b)
				}
			}
			if b[0] <= 0 {
				t.Errorf("first bucket %v: want positive", b[0])
			}
			switch s.Unit() {
			case "s":
				if b[0] > 0.0001 || b[len(b)-1] < 30 {
					t.Errorf("seconds buckets %v do not cover 0.0001..30", b)
				}
				if !strings.HasSuffix(s.PrometheusName(), "_seconds") {
					t.Errorf("seconds histogram %q lacks _seconds", s.PrometheusName())
				}
			case "1":
				if b[len(b)-1] != 1 || !slices.Contains(b, 0.5) {
					t.Errorf("ratio buckets %v: want steps up to 1", b)
				}
			case "{item}":
				if b[0] != 1 || b[len(b)-1] < 10000 {
					t.Errorf("item buckets %v do not cover 1..10000", b)
				}
			default:
				t.Errorf("no bucket rule for unit %q", s.Unit())
			}
		})
	}
}

func TestBucketsAreCopies(t *testing.T) {
	b := musterconv.BatchWaitDuration.Buckets()
	b[0] = 42
	if musterconv.BatchWaitDuration.Buckets()[0] == 42 {
		t.Fatal("Buckets() exposes the catalogue's slice")
	}
	k := musterconv.BatchSize.AttributeKeys()
	k[0] = "x"
	if musterconv.BatchSize.AttributeKeys()[0] != musterconv.BatcherNameKey {
		t.Fatal("AttributeKeys() exposes the catalogue's slice")
	}
}

func TestPrometheusLabel(t *testing.T) {
	for k, want := range map[attribute.Key]string{
		musterconv.BatcherNameKey:  "muster_batcher_name",
		musterconv.BatchTriggerKey: "muster_batch_trigger",
		musterconv.ErrorTypeKey:    "error_type",
		"a-b/c_d9":                 "a_b_c_d9",
	} {
		if got := musterconv.PrometheusLabel(k); got != want {
			t.Errorf("PrometheusLabel(%q) = %q, want %q", k, got, want)
		}
	}
}

// recordingMeter captures the configuration each instrument is created with.
type recordingMeter struct {
	noop.Meter
	unit, desc string
	buckets    []float64
	callbacks  int
}

func (m *recordingMeter) Int64Counter(name string, opts ...metric.Int64CounterOption) (metric.Int64Counter, error) {
	c := metric.NewInt64CounterConfig(opts...)
	m.unit, m.desc = c.Unit(), c.Description()
	return m.Meter.Int64Counter(name, opts...)
}

func (m *recordingMeter) Int64UpDownCounter(name string, opts ...metric.Int64UpDownCounterOption) (metric.Int64UpDownCounter, error) {
	c := metric.NewInt64UpDownCounterConfig(opts...)
	m.unit, m.desc = c.Unit(), c.Description()
	return m.Meter.Int64UpDownCounter(name, opts...)
}

func (m *recordingMeter) Int64ObservableUpDownCounter(name string, opts ...metric.Int64ObservableUpDownCounterOption) (metric.Int64ObservableUpDownCounter, error) {
	c := metric.NewInt64ObservableUpDownCounterConfig(opts...)
	m.unit, m.desc, m.callbacks = c.Unit(), c.Description(), len(c.Callbacks())
	return m.Meter.Int64ObservableUpDownCounter(name, opts...)
}

func (m *recordingMeter) Int64ObservableCounter(name string, opts ...metric.Int64ObservableCounterOption) (metric.Int64ObservableCounter, error) {
	c := metric.NewInt64ObservableCounterConfig(opts...)
	m.unit, m.desc, m.callbacks = c.Unit(), c.Description(), len(c.Callbacks())
	return m.Meter.Int64ObservableCounter(name, opts...)
}

func (m *recordingMeter) Float64ObservableCounter(name string, opts ...metric.Float64ObservableCounterOption) (metric.Float64ObservableCounter, error) {
	c := metric.NewFloat64ObservableCounterConfig(opts...)
	m.unit, m.desc, m.callbacks = c.Unit(), c.Description(), len(c.Callbacks())
	return m.Meter.Float64ObservableCounter(name, opts...)
}

func (m *recordingMeter) Float64ObservableGauge(name string, opts ...metric.Float64ObservableGaugeOption) (metric.Float64ObservableGauge, error) {
	c := metric.NewFloat64ObservableGaugeConfig(opts...)
	m.unit, m.desc, m.callbacks = c.Unit(), c.Description(), len(c.Callbacks())
	return m.Meter.Float64ObservableGauge(name, opts...)
}

func (m *recordingMeter) Int64Histogram(name string, opts ...metric.Int64HistogramOption) (metric.Int64Histogram, error) {
	c := metric.NewInt64HistogramConfig(opts...)
	m.unit, m.desc, m.buckets = c.Unit(), c.Description(), c.ExplicitBucketBoundaries()
	return m.Meter.Int64Histogram(name, opts...)
}

func (m *recordingMeter) Float64Histogram(name string, opts ...metric.Float64HistogramOption) (metric.Float64Histogram, error) {
	c := metric.NewFloat64HistogramConfig(opts...)
	m.unit, m.desc, m.buckets = c.Unit(), c.Description(), c.ExplicitBucketBoundaries()
	return m.Meter.Float64Histogram(name, opts...)
}

func TestNewAppliesSpec(t *testing.T) {
	check := func(t *testing.T, m *recordingMeter, s musterconv.Spec, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if m.unit != s.Unit() || m.desc != s.Description() || !slices.Equal(m.buckets, s.Buckets()) {
			t.Errorf("%s created with unit %q, description %q, buckets %v; want %q, %q, %v",
				s.Name(), m.unit, m.desc, m.buckets, s.Unit(), s.Description(), s.Buckets())
		}
	}
	m := &recordingMeter{}
	_, err := musterconv.ItemAdded.New(m)
	check(t, m, musterconv.ItemAdded.Spec, err)
	m = &recordingMeter{}
	_, err = musterconv.ItemRefused.New(m)
	check(t, m, musterconv.ItemRefused.Spec, err)
	m = &recordingMeter{}
	_, err = musterconv.JournalSyncTime.New(m)
	check(t, m, musterconv.JournalSyncTime.Spec, err)
	m = &recordingMeter{}
	_, err = musterconv.JournalOldestAge.New(m)
	check(t, m, musterconv.JournalOldestAge.Spec, err)
	m = &recordingMeter{}
	_, err = musterconv.BatchInflight.New(m)
	check(t, m, musterconv.BatchInflight.Spec, err)
	m = &recordingMeter{}
	_, err = musterconv.QueueSize.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error { return nil }))
	check(t, m, musterconv.QueueSize.Spec, err)
	if m.callbacks != 1 {
		t.Errorf("callback option not passed on")
	}
	m = &recordingMeter{}
	_, err = musterconv.BatchSize.New(m)
	check(t, m, musterconv.BatchSize.Spec, err)
	m = &recordingMeter{}
	_, err = musterconv.BatchDuration.New(m)
	check(t, m, musterconv.BatchDuration.Spec, err)

	// The caller's options come last and win.
	m = &recordingMeter{}
	if _, err := musterconv.BatchDuration.New(m, metric.WithExplicitBucketBoundaries(1, 2), metric.WithDescription("mine")); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m.buckets, []float64{1, 2}) || m.desc != "mine" || m.unit != "s" {
		t.Errorf("override: buckets %v, description %q, unit %q", m.buckets, m.desc, m.unit)
	}
}

// TestAPIOnly fixes the package's promise: importing it never pulls in the
// OpenTelemetry SDK, an exporter or Prometheus.
func TestAPIOnly(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found:", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{
		"go.opentelemetry.io/otel/sdk",
		"go.opentelemetry.io/otel/exporters",
		"github.com/prometheus/",
		"google.golang.org/grpc",
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if strings.HasPrefix(dep, f) {
				t.Errorf("musterconv depends on %s", dep)
			}
		}
	}
}

// TestDocTable keeps the table in doc.go in step with the catalogue.
func TestDocTable(t *testing.T) {
	src, err := os.ReadFile("doc.go")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for line := range strings.Lines(string(src)) {
		line = strings.TrimSpace(strings.TrimPrefix(line, "//"))
		if !strings.HasPrefix(line, "| muster.") {
			continue
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(line, "|"), "|") {
			cells = append(cells, strings.TrimSpace(c))
		}
		rows[cells[0]] = cells
	}
	specs := append(append(musterconv.All(), musterconv.SharedRateLimit()...), musterconv.Journal()...)
	if len(rows) != len(specs) {
		t.Errorf("doc.go's table has %d rows, the catalogue %d instruments", len(rows), len(specs))
	}
	for _, s := range specs {
		r, ok := rows[s.Name()]
		if !ok {
			t.Errorf("doc.go's table lacks %s", s.Name())
			continue
		}
		series := s.PrometheusName()
		if s.Kind() == musterconv.KindHistogram {
			series += "_{bucket,sum,count}"
		}
		if !strings.HasPrefix(r[1], s.Kind().String()) || r[2] != s.Unit() || r[3] != series {
			t.Errorf("doc.go's row %q, want kind %s, unit %s, series %s", r, s.Kind(), s.Unit(), series)
		}
	}
}

// TestItemPending: the pending-items gauge is a well-formed spec, named as
// the dashboard and alert rules expect.
func TestItemPending(t *testing.T) {
	s := musterconv.ItemPending
	if s.Name() != "muster.item.pending" || s.Unit() != "{item}" || s.Kind() != musterconv.KindObservableUpDownCounter ||
		s.PrometheusName() != "muster_item_pending" || !strings.HasSuffix(s.Description(), ".") {
		t.Errorf("ItemPending = %s %s %v %s %q", s.Name(), s.Unit(), s.Kind(), s.PrometheusName(), s.Description())
	}
	if got := s.PrometheusSeries(); len(got) != 1 || got[0] != "muster_item_pending" {
		t.Errorf("series %v", got)
	}
	if got := s.AttributeKeys(); len(got) != 1 || got[0] != musterconv.BatcherNameKey {
		t.Errorf("attribute keys %v", got)
	}
	if _, err := s.New(noop.NewMeterProvider().Meter("test")); err != nil {
		t.Fatal(err)
	}
}
