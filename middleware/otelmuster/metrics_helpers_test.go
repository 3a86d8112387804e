package otelmuster_test

import (
	"context"
	"maps"
	"math"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// snapshot is one collection from a ManualReader.
type snapshot struct {
	t       testing.TB
	metrics map[string]metricdata.Metrics
}

func collect(t testing.TB, r *sdkmetric.ManualReader) snapshot {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	s := snapshot{t: t, metrics: map[string]metricdata.Metrics{}}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			s.metrics[m.Name] = m
		}
	}
	return s
}

func kv(pairs ...string) attribute.Set {
	var kvs []attribute.KeyValue
	for i := 0; i < len(pairs); i += 2 {
		kvs = append(kvs, attribute.String(pairs[i], pairs[i+1]))
	}
	return attribute.NewSet(kvs...)
}

// sum returns the value of a sum's data point with exactly these attributes,
// and whether there is one.
func (s snapshot) sum(name string, set attribute.Set) (int64, bool) {
	s.t.Helper()
	m, ok := s.metrics[name]
	if !ok {
		return 0, false
	}
	d, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		s.t.Fatalf("%s is a %T", name, m.Data)
	}
	for _, p := range d.DataPoints {
		if p.Attributes.Equals(&set) {
			return p.Value, true
		}
	}
	return 0, false
}

// points returns how many data points a metric has.
func (s snapshot) points(name string) int {
	m, ok := s.metrics[name]
	if !ok {
		return 0
	}
	switch d := m.Data.(type) {
	case metricdata.Sum[int64]:
		return len(d.DataPoints)
	case metricdata.Gauge[int64]:
		return len(d.DataPoints)
	case metricdata.Histogram[int64]:
		return len(d.DataPoints)
	case metricdata.Histogram[float64]:
		return len(d.DataPoints)
	}
	s.t.Fatalf("%s is a %T", name, m.Data)
	return 0
}

// gauges returns an int64 gauge's data points whose attributes include
// these, each by its full attribute set's encoding.
func (s snapshot) gauges(name string, set attribute.Set) map[string]int64 {
	s.t.Helper()
	got := map[string]int64{}
	m, ok := s.metrics[name]
	if !ok {
		return got
	}
	d, ok := m.Data.(metricdata.Gauge[int64])
	if !ok {
		s.t.Fatalf("%s is a %T", name, m.Data)
	}
	for _, p := range d.DataPoints {
		match := true
		for _, want := range set.ToSlice() {
			if v, ok := p.Attributes.Value(want.Key); !ok || v != want.Value {
				match = false
			}
		}
		if match {
			got[p.Attributes.Encoded(attribute.DefaultEncoder())] = p.Value
		}
	}
	return got
}

// wantKeys checks an int64 gauge's points for one batcher name: exactly
// want, by muster.batch.key.
func (s snapshot) wantKeys(name, batcher string, want map[string]int64) {
	s.t.Helper()
	got := s.gauges(name, kv("muster.batcher.name", batcher))
	wantEnc := map[string]int64{}
	for k, v := range want {
		set := kv("muster.batch.key", k, "muster.batcher.name", batcher)
		wantEnc[set.Encoded(attribute.DefaultEncoder())] = v
	}
	if !maps.Equal(got, wantEnc) {
		s.t.Errorf("%s{muster.batcher.name=%s} = %v, want %v", name, batcher, got, wantEnc)
	}
}

func (s snapshot) wantSum(name string, set attribute.Set, want int64) {
	s.t.Helper()
	got, ok := s.sum(name, set)
	if !ok {
		s.t.Errorf("%s{%s}: no data point", name, set.Encoded(attribute.DefaultEncoder()))
		return
	}
	if got != want {
		s.t.Errorf("%s{%s} = %d, want %d", name, set.Encoded(attribute.DefaultEncoder()), got, want)
	}
}

// hist returns a histogram data point's count and sum (as float64).
func (s snapshot) hist(name string, set attribute.Set) (uint64, float64, bool) {
	s.t.Helper()
	m, ok := s.metrics[name]
	if !ok {
		return 0, 0, false
	}
	switch d := m.Data.(type) {
	case metricdata.Histogram[int64]:
		for _, p := range d.DataPoints {
			if p.Attributes.Equals(&set) {
				return p.Count, float64(p.Sum), true
			}
		}
	case metricdata.Histogram[float64]:
		for _, p := range d.DataPoints {
			if p.Attributes.Equals(&set) {
				return p.Count, p.Sum, true
			}
		}
	default:
		s.t.Fatalf("%s is a %T", name, m.Data)
	}
	return 0, 0, false
}

func (s snapshot) wantHist(name string, set attribute.Set, count uint64, sum float64) {
	s.t.Helper()
	c, got, ok := s.hist(name, set)
	if !ok {
		s.t.Errorf("%s{%s}: no data point", name, set.Encoded(attribute.DefaultEncoder()))
		return
	}
	if c != count || math.Abs(got-sum) > 1e-9 {
		s.t.Errorf("%s{%s}: count %d sum %v, want %d and %v", name, set.Encoded(attribute.DefaultEncoder()), c, got, count, sum)
	}
}

func newMeterProvider() (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	r := sdkmetric.NewManualReader()
	return sdkmetric.NewMeterProvider(sdkmetric.WithReader(r)), r
}
