package benchmarks

import (
	"bytes"
	"context"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// TestFloorDoesTheWork checks that a traced floor's Fire ends one span with
// otelmuster's batch attributes and makes the seven metric updates, so that
// the floor is not cheaper than muster for doing less.
func TestFloorDoesTheWork(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(rec))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	f, err := newFloor(mp, tp)
	if err != nil {
		t.Fatal(err)
	}
	fired := 0
	fire := f.wrap(func(_ context.Context, items []int) error { fired += len(items); return nil })
	if err := fire(context.Background(), make([]int, BatchSize)); err != nil {
		t.Fatal(err)
	}
	if fired != BatchSize {
		t.Fatalf("fired %d items, want %d", fired, BatchSize)
	}

	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%d spans ended, want 1", len(spans))
	}
	s := spans[0]
	if s.Name() != "fire bench" {
		t.Errorf("span %q, want %q", s.Name(), "fire bench")
	}
	got := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		got[kv.Key] = kv.Value
	}
	for _, want := range []attribute.KeyValue{
		musterconv.BatcherName("bench"),
		musterconv.BatchTrigger("size"),
		batchMessageCountKey.Int(BatchSize),
		batchMaxSizeKey.Int(BatchSize),
		batchIDKey.Int64(1),
		batchFirstItemAgeKey.Float64(0),
		batchSlotWaitKey.Float64(0),
	} {
		if v, ok := got[want.Key]; !ok || v != want.Value {
			t.Errorf("span attribute %s = %v, want %v", want.Key, v.String(), want.Value.String())
		}
	}
	if len(got) != 7 {
		t.Errorf("%d span attributes, want 7: %v", len(got), s.Attributes())
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	counts := map[string]string{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Histogram[int64]:
				counts[m.Name] = histogram(d.DataPoints[0].Count, float64(d.DataPoints[0].Sum), len(d.DataPoints[0].Exemplars))
			case metricdata.Histogram[float64]:
				counts[m.Name] = histogram(d.DataPoints[0].Count, -1, len(d.DataPoints[0].Exemplars))
			case metricdata.Sum[int64]:
				counts[m.Name] = "sum " + itoa(d.DataPoints[0].Value)
			}
		}
	}
	for name, want := range map[string]string{
		musterconv.BatchSize.Name():         "1 of 100, 1 exemplar",
		musterconv.BatchUtilization.Name():  "1, 1 exemplar",
		musterconv.BatchWaitDuration.Name(): "1, 1 exemplar",
		musterconv.BatchDuration.Name():     "1, 1 exemplar",
		musterconv.ItemProcessed.Name():     "sum 100",
		musterconv.BatchInflight.Name():     "sum 0",
	} {
		if counts[name] != want {
			t.Errorf("%s: %q, want %q", name, counts[name], want)
		}
	}
	if len(counts) != 6 {
		t.Errorf("%d instruments recorded, want 6: %v", len(counts), counts)
	}
}

func histogram(count uint64, sum float64, exemplars int) string {
	s := itoa(int64(count))
	if sum >= 0 {
		s += " of " + itoa(int64(sum))
	}
	return s + ", " + itoa(int64(exemplars)) + " exemplar"
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// TestFloorRows checks the derived ratio on samples made up: each
// difference is taken against its own block's bare run.
func TestFloorRows(t *testing.T) {
	cpu := func(ns int) Sample { return Sample{Items: 1, CPU: time.Duration(ns), Wall: time.Duration(ns)} }
	r := &Report{Config: Config{Producers: []int{1}}, pairs: map[string][]pair{
		cellKey("muster-otel-nospan", 1): {{cpu(160), cpu(100)}, {cpu(150), cpu(110)}, {cpu(170), cpu(100)}},
		cellKey("floor-tracing", 1):      {{cpu(150), cpu(100)}, {cpu(140), cpu(100)}, {cpu(150), cpu(90)}},
	}, samples: map[string][]Sample{
		cellKey("muster-otel-nospan", 1): {cpu(160), cpu(150), cpu(170)},
		cellKey("floor-tracing", 1):      {cpu(150), cpu(140), cpu(150)},
		cellKey(MusterBatcher, 1):        {cpu(100), cpu(110), cpu(100), cpu(100), cpu(100), cpu(90)},
	}}
	rows := r.FloorRows()
	if len(rows) != 1 {
		t.Fatalf("%d rows, want 1 (no metrics pair ran)", len(rows))
	}
	row := rows[0]
	// Above bare: muster 60, 40, 70 (median 60), the floor 50, 40, 60
	// (median 50); per round 1.2, 1, 1.1667.
	if row.ImplAbove != 60 || row.FloorAbove != 50 || row.AboveCPU != 1.2 || row.AboveCPUMin != 1 || row.AboveCPUMax != 1.2 || row.Rounds != 3 {
		t.Errorf("above = %v / %v = %v (%v-%v) over %d rounds, want 60 / 50 = 1.2 (1-1.2) over 3",
			row.ImplAbove, row.FloorAbove, row.AboveCPU, row.AboveCPUMin, row.AboveCPUMax, row.Rounds)
	}
	if row.ImplVsBare != 1.6 || row.FloorVsBare != 1.5 {
		t.Errorf("× bare = %v, floor × bare = %v, want 1.6 and 1.5", row.ImplVsBare, row.FloorVsBare)
	}
	if row.Pooled != 1.2 { // (160 − 100) / (150 − 100)
		t.Errorf("pooled = %v, want 1.2", row.Pooled)
	}
	var buf bytes.Buffer
	r.floorMarkdown(&buf)
	if !strings.Contains(buf.String(), "| tracing + metrics (muster-otel-nospan vs floor-tracing) | 1 | 1.60 | 1.50 | 60.0 | 50.0 | 1.20 (1.00-1.20) | 1.20 | 1.20 | 3 |") {
		t.Errorf("table:\n%s", buf.String())
	}
}

// TestCoreFloors checks the Batcher's ratio to its contract's floor on
// samples made up: each against the mutex run of its own block.
func TestCoreFloors(t *testing.T) {
	cpu := func(ns int) Sample { return Sample{Items: 1, CPU: time.Duration(ns), Wall: time.Duration(ns)} }
	r := &Report{Config: Config{Producers: []int{1, 8}}, pairs: map[string][]pair{
		cellKey(MusterBatcher, 1): {{cpu(200), cpu(100)}, {cpu(240), cpu(100)}, {cpu(180), cpu(90)}},
		cellKey(MutexPool, 1):     {{cpu(150), cpu(100)}, {cpu(160), cpu(100)}, {cpu(200), cpu(100)}},
		cellKey(MusterBatcher, 8): {{cpu(200), cpu(100)}},
	}}
	cfs := r.CoreFloors()
	if len(cfs) != 1 {
		t.Fatalf("%d rows, want 1 (no floor ran at 8 producers)", len(cfs))
	}
	// Batcher × mutex 2, 2.4, 2 (median 2); floor 1.5, 1.6, 2 (median
	// 1.6); per round 1.333, 1.5, 1.
	c := cfs[0]
	if c.BatcherVsMutex != 2 || c.FloorVsMutex != 1.6 || c.RatioMin != 1 || math.Abs(c.RatioMax-1.5) > 1e-9 || c.Rounds != 3 || c.Ratio < 1.33 || c.Ratio > 1.34 {
		t.Errorf("got %+v, want 2 / 1.6, 1.33 (1-1.5) over 3 rounds", c)
	}
	var buf bytes.Buffer
	r.floorMarkdown(&buf)
	if !strings.Contains(buf.String(), "| 1 | 2.00 | 1.60 | 1.33 (1.00-1.50) | 3 |") {
		t.Errorf("table:\n%s", buf.String())
	}
}
