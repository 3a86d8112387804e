package otelmuster_test

import (
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// TestJournalMetrics drives a journal's hooks and a stats function as a
// journal layer and its store would, and checks every instrument of
// musterconv.Journal against what it counts, with the catalogue's unit,
// description and Prometheus name.
func TestJournalMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
		mustNil(t, err)
		manual := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(manual), sdkmetric.WithReader(exp))

		var mu sync.Mutex
		st := journal.StoreStats{}
		stats := func() journal.StoreStats { mu.Lock(); defer mu.Unlock(); return st }
		jm, err := otelmuster.NewJournalMetrics("orders", stats, otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		h := jm.Hooks()

		// An empty journal without a bound: age 0, no limit series.
		s := collect(t, manual)
		name := kv("muster.batcher.name", "orders")
		s.wantSum("muster.journal.items", name, 0)
		if s.points("muster.journal.bytes.limit") != 0 {
			t.Error("a bound reported for a journal without one")
		}
		wantGauge(t, s, "muster.journal.oldest.age", 0)

		accepted := time.Now()
		time.Sleep(90 * time.Second)
		mu.Lock()
		st = journal.StoreStats{Items: 12, Bytes: 4096, MaxBytes: 1 << 20, Oldest: accepted, Appended: 20, Finished: 8,
			Recovered: 5, Syncs: 40, SyncTime: 80 * time.Millisecond, Corrupt: 2, Takeovers: 1}
		mu.Unlock()
		for range 3 {
			h.Appended(2*time.Millisecond, nil)
		}
		h.Appended(time.Second, fmt.Errorf("append: %w", journal.ErrFull))
		for range 5 {
			h.Recovered()
		}
		h.DeadLettered(3, journal.ErrExpired)
		h.DeadLettered(2, quotaError{})
		h.DeadLettered(1, muster.ErrDropped)

		s = collect(t, manual)
		et := func(v string) []string { return []string{"muster.batcher.name", "orders", "error.type", v} }
		checks := map[string]func(){
			"muster.journal.items":       func() { s.wantSum("muster.journal.items", name, 12) },
			"muster.journal.bytes":       func() { s.wantSum("muster.journal.bytes", name, 4096) },
			"muster.journal.bytes.limit": func() { s.wantSum("muster.journal.bytes.limit", name, 1<<20) },
			"muster.journal.oldest.age":  func() { wantGauge(t, s, "muster.journal.oldest.age", 90) },
			"muster.journal.append.duration": func() {
				s.wantHist("muster.journal.append.duration", name, 3, 0.006)
				s.wantHist("muster.journal.append.duration", kv(et("journal_full")...), 1, 1)
			},
			"muster.journal.syncs":     func() { s.wantSum("muster.journal.syncs", name, 40) },
			"muster.journal.sync.time": func() { wantFloatSum(t, s, "muster.journal.sync.time", 0.08) },
			"muster.journal.recovered": func() { s.wantSum("muster.journal.recovered", name, 5) },
			"muster.journal.deadlettered": func() {
				s.wantSum("muster.journal.deadlettered", kv(et("expired")...), 3)
				s.wantSum("muster.journal.deadlettered", kv(et("quota")...), 2)
				s.wantSum("muster.journal.deadlettered", kv(et("dropped")...), 1)
			},
			"muster.journal.corrupt":   func() { s.wantSum("muster.journal.corrupt", name, 2) },
			"muster.journal.takeovers": func() { s.wantSum("muster.journal.takeovers", name, 1) },
		}
		checkSpecs(t, musterconv.Journal(), checks, s)
		families, err := reg.Gather()
		mustNil(t, err)
		promTypes := map[string]string{}
		for _, mf := range families {
			promTypes[mf.GetName()] = strings.ToLower(mf.GetType().String())
		}
		for _, spec := range musterconv.Journal() {
			if got := promTypes[spec.PrometheusName()]; got != spec.Kind().PrometheusType() {
				t.Errorf("%s: Prometheus family %s has type %q, want %s", spec.Name(), spec.PrometheusName(), got, spec.Kind().PrometheusType())
			}
		}

		// Closed: the store is no longer read; the hooks still record.
		mustNil(t, jm.Close())
		h.Recovered()
		s = collect(t, manual)
		for _, n := range []string{"muster.journal.items", "muster.journal.bytes", "muster.journal.syncs", "muster.journal.corrupt"} {
			if s.points(n) != 0 {
				t.Errorf("%s still observed after Close", n)
			}
		}
		s.wantSum("muster.journal.recovered", name, 6)
	})
}

func TestJournalMetricsNilStats(t *testing.T) {
	if _, err := otelmuster.NewJournalMetrics("x", nil); err == nil {
		t.Fatal("no error for a nil stats function")
	}
}

// wantGauge checks the one point of a float64 gauge.
func wantGauge(t *testing.T, s snapshot, name string, want float64) {
	t.Helper()
	g, ok := s.metrics[name].Data.(metricdata.Gauge[float64])
	if !ok || len(g.DataPoints) != 1 {
		t.Errorf("%s: %T, want one float64 gauge point", name, s.metrics[name].Data)
		return
	}
	if got := g.DataPoints[0].Value; math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}

// wantFloatSum checks the one point of a float64 sum.
func wantFloatSum(t *testing.T, s snapshot, name string, want float64) {
	t.Helper()
	d, ok := s.metrics[name].Data.(metricdata.Sum[float64])
	if !ok || len(d.DataPoints) != 1 {
		t.Errorf("%s: %T, want one float64 sum point", name, s.metrics[name].Data)
		return
	}
	if got := d.DataPoints[0].Value; math.Abs(got-want) > 1e-9 {
		t.Errorf("%s = %v, want %v", name, got, want)
	}
}
