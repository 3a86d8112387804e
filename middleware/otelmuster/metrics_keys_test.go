package otelmuster_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// A Keyed client reports its live keys as muster.batcher.keys, from its
// Start on (ClientInfo.MaxKeys says it is a Keyed), zero included; its
// capacity is PendingWorkCapacity, shared by all its keys; a plain client
// never reports keys; no measurement carries an attribute outside the
// catalogue (a key only on muster.key.*, TestMetricsTopKeys).
func TestMetricsKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mp, r := newMeterProvider()
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		keyed := &muster.Keyed[string, string]{
			Name:                "orders",
			Key:                 func(region string) string { return region },
			MaxBatchSize:        2,
			BatchTimeout:        10 * time.Millisecond,
			KeyIdleTimeout:      time.Second,
			PendingWorkCapacity: 10,
			Fire:                func(context.Context, []string) error { return nil },
			Hooks:               h,
		}
		plain := &muster.Batcher[string]{
			Name:         "plain",
			MaxBatchSize: 2,
			Fire:         func(context.Context, []string) error { return nil },
			Hooks:        h,
		}
		mustStart(t, keyed.Start)
		mustStart(t, plain.Start)
		name := musterconv.BatcherKeys.Name()
		orders, plainSet := kv("muster.batcher.name", "orders"), kv("muster.batcher.name", "plain")

		// No key yet: a Keyed all the same.
		s := collect(t, r)
		s.wantSum(name, orders, 0)
		s.wantSum("muster.queue.capacity", orders, 10)
		if _, ok := s.sum(name, plainSet); ok {
			t.Errorf("%s reported for a plain Batcher", name)
		}

		for _, region := range []string{"eu", "us", "eu", "ap"} {
			mustNil(t, keyed.Add(context.Background(), region))
			mustNil(t, plain.Add(context.Background(), region))
		}
		s = collect(t, r)
		s.wantSum(name, orders, 3)
		s.wantSum("muster.queue.capacity", orders, 10) // shared by the keys, not per key
		if _, ok := s.sum(name, plainSet); ok {
			t.Errorf("%s reported for a plain Batcher", name)
		}
		m := s.metrics[name]
		if m.Unit != "{key}" || m.Unit != musterconv.BatcherKeys.Unit() || m.Description != musterconv.BatcherKeys.Description() {
			t.Errorf("%s: unit %q, description %q", name, m.Unit, m.Description)
		}
		if d, ok := m.Data.(metricdata.Sum[int64]); !ok || d.IsMonotonic {
			t.Errorf("%s: %T, want a non-monotonic sum", name, m.Data)
		} else if len(d.DataPoints) != 1 {
			t.Errorf("%s: %d data points, want 1 (orders)", name, len(d.DataPoints))
		}

		// Idle keys are evicted: the count goes to 0, still reported.
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if st := keyed.Stats(); st.Keys != 0 {
			t.Fatalf("Stats.Keys = %d after the idle timeout, want 0", st.Keys)
		}
		s = collect(t, r)
		s.wantSum(name, orders, 0)

		// A key again.
		mustNil(t, keyed.Add(context.Background(), "us"))
		s = collect(t, r)
		s.wantSum(name, orders, 1)
		mustNil(t, keyed.Stop())
		mustNil(t, plain.Stop())
		s = collect(t, r)
		s.wantSum("muster.item.added", orders, 5)

		// No metric has a per-key attribute.
		allowed := map[string]bool{}
		for _, spec := range musterconv.All() {
			for _, k := range spec.AttributeKeys() {
				allowed[string(k)] = true
			}
		}
		for _, m := range s.metrics {
			var sets [][]string
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					sets = append(sets, keysOf(p.Attributes.ToSlice()))
				}
			case metricdata.Histogram[int64]:
				for _, p := range d.DataPoints {
					sets = append(sets, keysOf(p.Attributes.ToSlice()))
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					sets = append(sets, keysOf(p.Attributes.ToSlice()))
				}
			}
			for _, keys := range sets {
				for _, k := range keys {
					if !allowed[k] {
						t.Errorf("%s has attribute %s, outside the catalogue", m.Name, k)
					}
				}
			}
		}
	})
}

func keysOf(kvs []attribute.KeyValue) []string {
	var ks []string
	for _, kv := range kvs {
		ks = append(ks, string(kv.Key))
	}
	return ks
}

// muster.key.pending and muster.key.waiting report only the top n keys of a
// name by pending items (WithTopKeys), summed by key over the name's
// clients, with keys cut to MaxKeyLength bytes; WithTopKeys(0) reports
// none.
func TestMetricsTopKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mp, r := newMeterProvider()
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp), otelmuster.WithTopKeys(3))
		mustNil(t, err)
		offMP, offR := newMeterProvider()
		off, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(offMP), otelmuster.WithTopKeys(0))
		mustNil(t, err)
		newKeyed := func() *muster.Keyed[string, string] {
			return &muster.Keyed[string, string]{
				Name: "orders", Key: func(s string) string { return s },
				MaxBatchSize: 1000, BatchTimeout: time.Hour, PendingWorkCapacity: 1000,
				Fire:  func(context.Context, []string) error { return nil },
				Hooks: muster.Compose(h, off),
			}
		}
		one, two := newKeyed(), newKeyed()
		mustStart(t, one.Start)
		mustStart(t, two.Start)
		add := func(k *muster.Keyed[string, string], key string, n int) {
			for range n {
				mustNil(t, k.Add(context.Background(), key))
			}
		}
		for i := range 10 { // k0 holds 1, ..., k9 holds 10
			add(one, fmt.Sprintf("k%d", i), i+1)
		}
		add(one, "loud", 50)
		add(two, "k9", 20)              // the same name: k9 holds 30 in all
		long := strings.Repeat("é", 40) // 80 bytes
		add(two, long, 5)
		s := collect(t, r)
		s.wantKeys("muster.key.pending", "orders", map[string]int64{"loud": 50, "k9": 30, "k8": 9})
		s.wantKeys("muster.key.waiting", "orders", map[string]int64{"loud": 0, "k9": 0, "k8": 0})
		if n := collect(t, offR).points("muster.key.pending"); n != 0 {
			t.Errorf("WithTopKeys(0): %d points of muster.key.pending", n)
		}

		// one's batches fire: the long key of two enters the top 3.
		mustNil(t, one.Flush(context.Background()))
		synctest.Wait()
		add(one, "k8", 1)
		s = collect(t, r)
		cut := strings.Repeat("é", otelmuster.MaxKeyLength/2)
		s.wantKeys("muster.key.pending", "orders", map[string]int64{"k9": 20, "k8": 1, cut: 5})
		mustNil(t, one.Stop())
		mustNil(t, two.Stop())
	})
}
