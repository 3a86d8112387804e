package musterconv_test

import (
	"context"
	"fmt"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// Instruments are created from their specs, so name, unit, description and
// buckets are the catalogue's. Attribute sets are built once, not per
// measurement.
func Example() {
	// A library takes the MeterProvider from its user (or otel.GetMeterProvider()).
	var mp metric.MeterProvider = noop.NewMeterProvider()
	meter := mp.Meter("github.com/musterhq/muster/middleware")

	size, err := musterconv.BatchSize.New(meter)
	if err != nil {
		panic(err)
	}
	bySize := metric.WithAttributeSet(attribute.NewSet(
		musterconv.BatcherName("orders"),
		musterconv.BatchTrigger(musterconv.TriggerSize),
	))
	size.Record(context.Background(), 100, bySize)

	fmt.Println(musterconv.BatchSize.Name(), musterconv.BatchSize.Unit(), musterconv.BatchSize.Buckets())
	// Output: muster.batch.items {item} [1 2 5 10 20 50 100 200 500 1000 2000 5000 10000]
}

// All lists the catalogue, for example to generate a dashboard.
func ExampleAll() {
	for _, s := range musterconv.All() {
		fmt.Printf("%-31s %-21s %-7s %s %s\n", s.Name(), s.Kind(), s.Unit(),
			s.PrometheusName(), strings.Join(s.PrometheusLabels(), ","))
	}
	// Output:
	// muster.item.added               async counter         {item}  muster_item_added_total muster_batcher_name
	// muster.item.refused             counter               {item}  muster_item_refused_total muster_batcher_name,error_type
	// muster.item.dropped             counter               {item}  muster_item_dropped_total muster_batcher_name,error_type
	// muster.item.processed           counter               {item}  muster_item_processed_total muster_batcher_name,error_type
	// muster.batch.items              histogram             {item}  muster_batch_items muster_batcher_name,muster_batch_trigger
	// muster.batch.utilization.ratio  histogram             1       muster_batch_utilization_ratio muster_batcher_name,muster_batch_trigger
	// muster.batch.wait.duration      histogram             s       muster_batch_wait_duration_seconds muster_batcher_name,muster_batch_trigger
	// muster.batch.duration           histogram             s       muster_batch_duration_seconds muster_batcher_name,error_type
	// muster.batch.inflight           up-down counter       {batch} muster_batch_inflight muster_batcher_name
	// muster.batch.inflight.limit     async up-down counter {batch} muster_batch_inflight_limit muster_batcher_name
	// muster.queue.size               async up-down counter {item}  muster_queue_size muster_batcher_name
	// muster.queue.capacity           async up-down counter {item}  muster_queue_capacity muster_batcher_name
	// muster.batcher.keys             async up-down counter {key}   muster_batcher_keys muster_batcher_name
	// muster.item.pending             async up-down counter {item}  muster_item_pending muster_batcher_name
	// muster.key.pending              async gauge           {item}  muster_key_pending muster_batcher_name,muster_batch_key
	// muster.key.waiting              async gauge           {batch} muster_key_waiting muster_batcher_name,muster_batch_key
	// muster.add.blocked.duration     histogram             s       muster_add_blocked_duration_seconds muster_batcher_name
	// muster.ratelimit.wait.duration  histogram             s       muster_ratelimit_wait_duration_seconds muster_batcher_name
	// muster.batch.retries            counter               {retry} muster_batch_retries_total muster_batcher_name,error_type
}

// PrometheusSeries gives the series a histogram appears as in a scrape.
func ExampleSpec_PrometheusSeries() {
	fmt.Println(musterconv.BatchWaitDuration.PrometheusSeries())
	fmt.Println(musterconv.ItemAdded.PrometheusSeries())
	// Output:
	// [muster_batch_wait_duration_seconds_bucket muster_batch_wait_duration_seconds_sum muster_batch_wait_duration_seconds_count]
	// [muster_item_added_total]
}
