package otelmuster_test

import (
	"context"
	"fmt"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/middleware/otelmuster"
)

// A journal's metrics: the store's Stats are read at each collection, and
// the hooks, given to the journal layer, record appends, replays and dead
// letters. Here a stats function and direct hook calls stand in for a
// store and the layer.
func ExampleNewJournalMetrics() {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))

	stats := func() journal.StoreStats { // a store's Stats method
		return journal.StoreStats{Items: 120, Bytes: 48 << 10, MaxBytes: 64 << 20, Corrupt: 1}
	}
	jm, err := otelmuster.NewJournalMetrics("orders", stats, otelmuster.WithMeterProvider(mp))
	if err != nil {
		panic(err)
	}
	defer jm.Close()
	hooks := jm.Hooks() // the journal layer's configuration takes these
	hooks.Appended(800*time.Microsecond, nil)
	hooks.DeadLettered(3, fmt.Errorf("order 17: %w", journal.ErrExpired))

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		switch d := m.Data.(type) {
		case metricdata.Sum[int64]:
			for _, p := range d.DataPoints {
				et, _ := p.Attributes.Value("error.type")
				fmt.Println(m.Name, et.AsString(), p.Value)
			}
		case metricdata.Histogram[float64]:
			fmt.Println(m.Name, d.DataPoints[0].Count)
		}
	}
	// Unordered output:
	// muster.journal.items  120
	// muster.journal.bytes  49152
	// muster.journal.bytes.limit  67108864
	// muster.journal.append.duration 1
	// muster.journal.syncs  0
	// muster.journal.deadlettered expired 3
	// muster.journal.corrupt  1
	// muster.journal.takeovers  0
}
