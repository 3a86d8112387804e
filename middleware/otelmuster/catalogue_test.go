package otelmuster_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// panicky is a seed Batch whose Add panics on the item "bad".
type panicky struct{}

func (p panicky) Add(item any) {
	if item == "bad" {
		panic("bad item")
	}
}
func (p panicky) Fire(n muster.Notifier) { n.Done() }

// TestCatalogueCounts drives real batchers through known events (items
// taken, refused for each of several reasons, dropped, batches fired by size
// and at shutdown, failed, retried, rate limited, producers blocked) and
// checks every instrument of the catalogue against what its name, unit and
// description say it counts: its exported value is the count the script
// makes, its unit and description are the catalogue's, and the Prometheus
// exporter publishes it under the catalogue's Prometheus name and type. An
// instrument added to the catalogue without a check here fails the test.
func TestCatalogueCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
		mustNil(t, err)
		manual := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(manual), sdkmetric.WithReader(exp))
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)

		// "a": batches of 4, one in flight, 4 items of queue; its first batch
		// waits 20 ms for tokens, is retried once and fails for good.
		release := make(chan struct{})
		a := &muster.Batcher[int]{
			Name: "a", MaxBatchSize: 4, MaxConcurrentBatches: 1, PendingWorkCapacity: 4, Hooks: h,
			Fire: func(ctx context.Context, items []int) error {
				<-release
				if items[0] != 0 {
					return nil
				}
				muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit, Tokens: 1, Duration: 20 * time.Millisecond})
				muster.ReportRetry(ctx, muster.RetryInfo{Attempt: 1, Err: fmt.Errorf("try: %w", context.DeadlineExceeded)})
				return quotaError{}
			},
		}
		// "k": a Keyed with one key at most and batches of 2, dropping the
		// oldest queued item when its 2 items of queue are full.
		releaseK := make(chan struct{})
		k := &muster.Keyed[string, string]{
			Name: "k", Key: func(s string) string { return s[:1] }, MaxKeys: 1,
			MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 2, Overflow: muster.OverflowDropOldest, Hooks: h,
			Fire: func(context.Context, []string) error { <-releaseK; return nil },
		}
		// "t": a Keyed by first letter with one loud key, L, and batches of
		// 2, one in flight: the z batch holds the slot while the others wait.
		releaseT := make(chan struct{})
		tk := &muster.Keyed[string, string]{
			Name: "t", Key: func(s string) string { return s[:1] },
			MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 100, Hooks: h,
			Fire: func(context.Context, []string) error { <-releaseT; return nil },
		}
		// "c": the seed's Client, whose Batch.Add panics on one item.
		c := &muster.Client{Name: "c", MaxBatchSize: 10, PendingWorkCapacity: 10, Hooks: h,
			BatchMaker: func() muster.Batch { return panicky{} }}
		mustStart(t, a.Start)
		mustStart(t, k.Start)
		mustStart(t, tk.Start)
		mustStart(t, c.Start)
		ctx := context.Background()

		for i := range 12 { // [0-3] in flight, [4-7] waiting, [8-11] queued
			mustNil(t, a.Add(ctx, i))
		}
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		if err := a.Add(tctx, 12); err == nil { // held 1 s by backpressure, then refused
			t.Fatal("Add past the queue was taken")
		}
		cancel()
		for _, s := range []string{"x1", "x2", "x3", "x4", "x5", "x6", "x7"} { // x5 is dropped for x7
			mustNil(t, k.Add(ctx, s))
		}
		if err := k.Add(ctx, "y1"); err == nil {
			t.Fatal("a second key was taken with MaxKeys 1")
		}
		mustNil(t, tk.Add(ctx, "z1"))
		mustNil(t, tk.Add(ctx, "z2")) // [z1 z2] fires and holds the slot
		synctest.Wait()
		for _, s := range []string{"q1", "L1", "L2", "L3", "L4", "L5", "L6", "L7", "L8", "L9", "r1", "r2", "r3"} {
			mustNil(t, tk.Add(ctx, s))
		}
		c.Work <- "ok1"
		c.Work <- "bad"
		c.Work <- "ok2"
		synctest.Wait()

		live := collect(t, manual)
		a1, k1 := kv("muster.batcher.name", "a"), kv("muster.batcher.name", "k")
		live.wantSum("muster.item.added", a1, 12) // taken, though only one batch fired
		live.wantSum("muster.item.pending", a1, 12)
		live.wantSum("muster.queue.size", a1, 4)
		live.wantSum("muster.queue.capacity", a1, 4)
		live.wantSum("muster.batch.inflight", a1, 1)
		live.wantSum("muster.batch.inflight.limit", a1, 1)
		live.wantSum("muster.batcher.keys", k1, 1)
		live.wantSum("muster.item.added", k1, 7)
		live.wantSum("muster.item.pending", k1, 6)
		// The top keys by items taken and not fired, of the Keyed batchers
		// only: L holds 9 ([L1 L2] to [L7 L8] waiting, [L9] open), r 3, q
		// 1; z's batch is in flight, so it holds no pending item.
		live.wantKeys("muster.key.pending", "t", map[string]int64{"L": 9, "r": 3, "q": 1, "z": 0})
		live.wantKeys("muster.key.waiting", "t", map[string]int64{"L": 4, "r": 1, "q": 0, "z": 0})
		live.wantKeys("muster.key.pending", "k", map[string]int64{"x": 4}) // x3 x4 x6 x7
		live.wantKeys("muster.key.waiting", "k", map[string]int64{"x": 2}) // [x3 x4], [x6] (x5 dropped from it)
		live.wantKeys("muster.key.pending", "a", nil)
		top := map[string]muster.KeyStats[string]{}
		for _, s := range tk.TopKeys(10) {
			top[s.Key] = s
		}
		for _, key := range []string{"L", "r", "q", "z"} {
			st := top[key]
			if got := live.gauges("muster.key.pending", kv("muster.batcher.name", "t", "muster.batch.key", key)); len(got) != 1 || st.Pending != int(slices.Collect(maps.Values(got))[0]) {
				t.Errorf("muster.key.pending{key=%s} = %v; TopKeys says %d", key, got, st.Pending)
			}
		}

		close(release)
		close(releaseK)
		synctest.Wait()
		mustNil(t, a.Add(ctx, 12))
		mustNil(t, a.Add(ctx, 13))

		// The Prometheus names, while every instrument has a series (the
		// clients still live, every kind of event seen).
		families, err := reg.Gather()
		mustNil(t, err)
		promTypes := map[string]string{}
		for _, mf := range families {
			promTypes[mf.GetName()] = strings.ToLower(mf.GetType().String())
		}
		for _, s := range musterconv.All() {
			if got, ok := promTypes[s.PrometheusName()]; !ok {
				t.Errorf("%s: no Prometheus family %s (have %v)", s.Name(), s.PrometheusName(), promTypes)
			} else if got != s.Kind().PrometheusType() {
				t.Errorf("%s: Prometheus type %s, want %s", s.PrometheusName(), got, s.Kind().PrometheusType())
			}
		}

		mustNil(t, a.Stop()) // fires [12 13] at shutdown
		mustNil(t, k.Stop()) // fires [x7] at shutdown
		close(releaseT)
		mustNil(t, tk.Stop())
		mustNil(t, c.Stop()) // fires [ok1 ok2] at shutdown
		synctest.Wait()
		if err := a.Add(ctx, 14); err == nil {
			t.Fatal("Add after Stop was taken")
		}

		s := collect(t, manual)
		c1 := kv("muster.batcher.name", "c")
		et := func(name, v string) []string { return []string{"muster.batcher.name", name, "error.type", v} }
		trig := func(name, v string) []string { return []string{"muster.batcher.name", name, "muster.batch.trigger", v} }
		checks := map[string]func(){
			"muster.item.added": func() {
				s.wantSum("muster.item.added", a1, 14) // stopped clients stay counted
				s.wantSum("muster.item.added", k1, 7)  // x5 was taken before it was dropped
				s.wantSum("muster.item.added", c1, 2)
			},
			"muster.item.refused": func() {
				s.wantSum("muster.item.refused", kv(et("a", "timeout")...), 1)
				s.wantSum("muster.item.refused", kv(et("a", "stopped")...), 1)
				s.wantSum("muster.item.refused", kv(et("k", "too_many_keys")...), 1)
				s.wantSum("muster.item.refused", kv(et("c", "panic")...), 1)
				if n := s.points("muster.item.refused"); n != 4 {
					t.Errorf("muster.item.refused: %d series, want 4", n)
				}
			},
			"muster.item.dropped": func() {
				s.wantSum("muster.item.dropped", kv(et("k", "dropped")...), 1)
				s.wantSum("muster.item.dropped", kv(et("a", "dropped")...), 0) // exported from the start
				s.wantSum("muster.item.dropped", kv(et("c", "dropped")...), 0)
				s.wantSum("muster.item.dropped", kv(et("t", "dropped")...), 0)
				if n := s.points("muster.item.dropped"); n != 4 {
					t.Errorf("muster.item.dropped: %d series, want 4", n)
				}
			},
			"muster.item.processed": func() {
				s.wantSum("muster.item.processed", a1, 10)
				s.wantSum("muster.item.processed", kv(et("a", "quota")...), 4)
				s.wantSum("muster.item.processed", k1, 6)
				s.wantSum("muster.item.processed", c1, 2)
			},
			"muster.batch.items": func() {
				s.wantHist("muster.batch.items", kv(trig("a", "size")...), 3, 12)
				s.wantHist("muster.batch.items", kv(trig("a", "shutdown")...), 1, 2)
				s.wantHist("muster.batch.items", kv(trig("k", "size")...), 3, 5) // [x1 x2] [x3 x4] [x6]
				s.wantHist("muster.batch.items", kv(trig("k", "shutdown")...), 1, 1)
				s.wantHist("muster.batch.items", kv(trig("c", "shutdown")...), 1, 2)
			},
			"muster.batch.utilization.ratio": func() {
				s.wantHist("muster.batch.utilization.ratio", kv(trig("a", "size")...), 3, 3)
				s.wantHist("muster.batch.utilization.ratio", kv(trig("a", "shutdown")...), 1, 0.5)
				s.wantHist("muster.batch.utilization.ratio", kv(trig("k", "size")...), 3, 2.5)
				s.wantHist("muster.batch.utilization.ratio", kv(trig("c", "shutdown")...), 1, 0.2)
			},
			"muster.batch.wait.duration": func() {
				// [0-3] fired at once; [4-7] and [8-11], added at 0 s, fired
				// after the release at 1 s.
				s.wantHist("muster.batch.wait.duration", kv(trig("a", "size")...), 3, 2)
				s.wantHist("muster.batch.wait.duration", kv(trig("a", "shutdown")...), 1, 0)
			},
			"muster.batch.duration": func() {
				s.wantHist("muster.batch.duration", kv(et("a", "quota")...), 1, 1) // held until the release
				s.wantHist("muster.batch.duration", a1, 3, 0)
			},
			"muster.batch.inflight": func() {
				s.wantSum("muster.batch.inflight", a1, 0)
				s.wantSum("muster.batch.inflight", k1, 0)
			},
			"muster.add.blocked.duration": func() {
				s.wantHist("muster.add.blocked.duration", a1, 1, 1)
			},
			"muster.ratelimit.wait.duration": func() {
				s.wantHist("muster.ratelimit.wait.duration", a1, 1, 0.02)
			},
			"muster.batch.retries": func() {
				s.wantSum("muster.batch.retries", kv(et("a", "timeout")...), 1)
			},
		}
		// Observed from live clients only: checked above, and gone now.
		for _, n := range []string{"muster.item.pending", "muster.queue.size", "muster.queue.capacity", "muster.batch.inflight.limit", "muster.batcher.keys", "muster.key.pending", "muster.key.waiting"} {
			checks[n] = func() {
				if s.points(n) != 0 {
					t.Errorf("%s observed after Stop", n)
				}
			}
		}

		checkSpecs(t, musterconv.All(), checks, s, live)

		// Conservation: what was taken was processed or dropped.
		for _, name := range []string{"a", "k", "t", "c"} {
			set := kv("muster.batcher.name", name)
			added, _ := s.sum("muster.item.added", set)
			var out int64
			for _, n := range []string{"muster.item.processed", "muster.item.dropped"} {
				m := s.metrics[n]
				if d, ok := m.Data.(metricdata.Sum[int64]); ok {
					for _, p := range d.DataPoints {
						if v, _ := p.Attributes.Value("muster.batcher.name"); v.AsString() == name {
							out += p.Value
						}
					}
				}
			}
			if added != out {
				t.Errorf("%s: %d added, %d processed or dropped", name, added, out)
			}
		}
	})
}

// checkSpecs runs each spec's check of what it counts, and checks that the
// instrument was exported, in the first of the snapshots that has it, with
// the spec's unit, description and kind. A spec without a check fails.
func checkSpecs(t *testing.T, specs []musterconv.Spec, checks map[string]func(), snaps ...snapshot) {
	t.Helper()
	for _, spec := range specs {
		check, ok := checks[spec.Name()]
		if !ok {
			t.Errorf("%s: no check of what it counts", spec.Name())
			continue
		}
		check()
		var m metricdata.Metrics
		for _, s := range snaps {
			if m, ok = s.metrics[spec.Name()]; ok {
				break
			}
		}
		if !ok {
			t.Errorf("%s: never exported", spec.Name())
			continue
		}
		if m.Unit != spec.Unit() || m.Description != spec.Description() {
			t.Errorf("%s: unit %q, description %q; the catalogue says %q, %q", spec.Name(), m.Unit, m.Description, spec.Unit(), spec.Description())
		}
		if got := dataKind(m.Data); got != spec.Kind().PrometheusType() {
			t.Errorf("%s: exported as a %s, want a %s", spec.Name(), got, spec.Kind().PrometheusType())
		}
	}
}

// dataKind names exported data as the Prometheus exporter types it:
// monotonic sums are counters, other sums gauges.
func dataKind(d metricdata.Aggregation) string {
	switch d := d.(type) {
	case metricdata.Sum[int64]:
		if d.IsMonotonic {
			return "counter"
		}
		return "gauge"
	case metricdata.Sum[float64]:
		if d.IsMonotonic {
			return "counter"
		}
		return "gauge"
	case metricdata.Gauge[float64], metricdata.Gauge[int64]:
		return "gauge"
	case metricdata.Histogram[int64], metricdata.Histogram[float64]:
		return "histogram"
	}
	return fmt.Sprintf("%T", d)
}
