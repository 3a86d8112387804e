package musterconv

import "go.opentelemetry.io/otel/attribute"

// Attribute keys. Each becomes a Prometheus label with its dots replaced by
// underscores ([PrometheusLabel]).
const (
	// BatcherNameKey names the batcher a measurement belongs to: the name a
	// user gives a client. It is on every measurement; its values must stay
	// few (one per client, never per item or per user), since each value
	// multiplies every series. Label: muster_batcher_name.
	BatcherNameKey = attribute.Key("muster.batcher.name")

	// BatchTriggerKey says why a batch fired: one of [TriggerSize],
	// [TriggerTimeout], [TriggerFlush], [TriggerShutdown] or [TriggerBytes]. Label:
	// muster_batch_trigger.
	BatchTriggerKey = attribute.Key("muster.batch.trigger")

	// ErrorTypeKey is OpenTelemetry's error.type: a low-cardinality class of
	// the error that ended an operation (an error type name or a short
	// code such as "canceled"), set only when the operation failed.
	// Label: error_type.
	ErrorTypeKey = attribute.Key("error.type")

	// BatchKeyKey is a Keyed batcher's key, in fmt's %v form: on batch
	// spans, and on [KeyPending] and [KeyWaiting], which report only the
	// few keys holding the most (top-k), so that its values per batcher
	// stay bounded however many keys there are. The same value on a
	// metric and on spans leads from the loud key to its batches.
	// Label: muster_batch_key.
	BatchKeyKey = attribute.Key("muster.batch.key")
)

// Values of [BatchTriggerKey].
const (
	// TriggerSize: the batch reached MaxBatchSize.
	TriggerSize = "size"
	// TriggerTimeout: BatchTimeout passed since the batch's first item.
	TriggerTimeout = "timeout"
	// TriggerFlush: a caller asked for a flush.
	TriggerFlush = "flush"
	// TriggerShutdown: the client stopped and fired its partial batch.
	TriggerShutdown = "shutdown"
	// TriggerBytes: the next item would have passed MaxBatchBytes.
	TriggerBytes = "bytes"
)

// BatcherName returns the [BatcherNameKey] attribute with the given value.
func BatcherName(name string) attribute.KeyValue { return BatcherNameKey.String(name) }

// BatchTrigger returns the [BatchTriggerKey] attribute with the given value,
// one of [TriggerSize], [TriggerTimeout], [TriggerFlush], [TriggerShutdown] or [TriggerBytes].
func BatchTrigger(trigger string) attribute.KeyValue { return BatchTriggerKey.String(trigger) }

// Bucket boundaries. The SDK's defaults (0, 5, 10, ..., 10000) suit
// milliseconds, not the seconds, item counts and ratios recorded here.
var (
	// secondsBuckets: 100 µs to 60 s in 1-2.5-5 steps. A size-triggered
	// batch under load fills in microseconds, a timeout batch waits
	// milliseconds to seconds, and a batch with retries can take tens of
	// seconds.
	secondsBuckets = []float64{
		0.0001, 0.00025, 0.0005,
		0.001, 0.0025, 0.005,
		0.01, 0.025, 0.05,
		0.1, 0.25, 0.5,
		1, 2.5, 5,
		10, 30, 60,
	}
	// itemBuckets: 1 to 10000 items in 1-2-5 steps.
	itemBuckets = []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000}
	// ratioBuckets: 0.05 to 1 in tenths, with 0.05 and 0.95 to tell nearly
	// empty and nearly full batches apart. A full batch records 1.
	ratioBuckets = []float64{0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1}
)

// The catalogue. Each variable is the spec of one instrument; create the
// instrument with its New method.
var (
	// ItemAdded counts items a batcher took (accepted), when it took them,
	// observed by a callback from the client's Stats.Added: an item
	// accepted is counted at once, whether its batch has fired or not, and
	// recording it costs Add nothing. Items taken and then dropped under
	// OverflowDropOldest stay counted here (and in [ItemDropped]). Refused
	// items are [ItemRefused]'s. For a batcher's live items:
	// added = processed + dropped + pending.
	ItemAdded = Int64ObservableCounterSpec{Spec{
		name:        "muster.item.added",
		kind:        KindObservableCounter,
		unit:        "{item}",
		description: "Items the batcher took (accepted), counted when taken; refused items are muster.item.refused.",
		promName:    "muster_item_added_total",
	}}

	// ItemRefused counts items a batcher did not take, by why.
	// Attributes: [ErrorTypeKey], always: full (OverflowFail), dropped (a
	// drop policy refused the newest item), stopped, timeout or canceled
	// (the producer's context ended while it was held), too_large,
	// too_many_keys, invalid_key, panic (a Batch's Add panicked),
	// shutdown_incomplete (an item a Client's Work still held at a
	// Shutdown deadline).
	ItemRefused = Int64CounterSpec{Spec{
		name:        "muster.item.refused",
		kind:        KindCounter,
		unit:        "{item}",
		description: "Items the batcher did not take; error.type says why (full, dropped, stopped, timeout, canceled, too_large, too_many_keys, invalid_key, panic, shutdown_incomplete).",
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_item_refused_total",
	}}

	// ItemDropped counts items a batcher took and then dropped to make
	// room for newer ones (OverflowDropOldest): counted in [ItemAdded]
	// too, never processed. Attributes: [ErrorTypeKey], "dropped".
	ItemDropped = Int64CounterSpec{Spec{
		name:        "muster.item.dropped",
		kind:        KindCounter,
		unit:        "{item}",
		description: "Items the batcher took and then dropped to make room (OverflowDropOldest); error.type is dropped.",
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_item_dropped_total",
	}}

	// ItemProcessed counts items whose batch finished, successfully or not,
	// and items of batches abandoned at a Shutdown deadline. Attributes:
	// [ErrorTypeKey] when the batch failed for good (after any retries),
	// shutdown_incomplete for an abandoned one; after a partial failure
	// each failed item has its own.
	ItemProcessed = Int64CounterSpec{Spec{
		name:        "muster.item.processed",
		kind:        KindCounter,
		unit:        "{item}",
		description: "Items whose batch finished, or was abandoned at a Shutdown deadline; error.type is set when it failed for good.",
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_item_processed_total",
	}}

	// BatchSize records the number of items in each fired batch; its count
	// is the number of batches fired, its sum the items fired. Attributes:
	// [BatchTriggerKey]. It is named muster.batch.items, not .size: in
	// OpenTelemetry's conventions a .size is in bytes (http.request.body.size),
	// and the exporter drops a unit in braces, so the name itself says
	// what is counted: muster_batch_items in Prometheus.
	BatchSize = Int64HistogramSpec{Spec{
		name:        "muster.batch.items",
		kind:        KindHistogram,
		unit:        "{item}",
		description: "Items per fired batch; the histogram's count is the number of batches fired, its sum the items fired.",
		buckets:     itemBuckets,
		attrs:       []attribute.Key{BatchTriggerKey},
		promName:    "muster_batch_items",
	}}

	// BatchUtilization records each fired batch's fill ratio, its size
	// divided by MaxBatchSize (0 to 1). Attributes: [BatchTriggerKey]. Its
	// unit is 1; the exporter adds _ratio, Prometheus's suffix for a 0-1
	// value, to gauges of unit 1 only, so the name carries it:
	// muster_batch_utilization_ratio (and an exporter that added it to
	// histograms too would not add it twice).
	BatchUtilization = Float64HistogramSpec{Spec{
		name:        "muster.batch.utilization.ratio",
		kind:        KindHistogram,
		unit:        "1",
		description: "Fill ratio of fired batches: items in the batch divided by MaxBatchSize.",
		buckets:     ratioBuckets,
		attrs:       []attribute.Key{BatchTriggerKey},
		promName:    "muster_batch_utilization_ratio",
	}}

	// BatchWaitDuration records, in seconds, the age of a batch's first
	// item when the batch fired. Attributes: [BatchTriggerKey].
	BatchWaitDuration = Float64HistogramSpec{Spec{
		name:        "muster.batch.wait.duration",
		kind:        KindHistogram,
		unit:        "s",
		description: "Age of a batch's first item when the batch fired.",
		buckets:     secondsBuckets,
		attrs:       []attribute.Key{BatchTriggerKey},
		promName:    "muster_batch_wait_duration_seconds",
	}}

	// BatchDuration records, in seconds, the time from a batch's fire to
	// its done, rate-limit waits and retries included. Attributes:
	// [ErrorTypeKey] when the batch failed for good.
	BatchDuration = Float64HistogramSpec{Spec{
		name:        "muster.batch.duration",
		kind:        KindHistogram,
		unit:        "s",
		description: "Time from a batch's fire to its done, rate-limit waits and retries included.",
		buckets:     secondsBuckets,
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_batch_duration_seconds",
	}}

	// BatchInflight is the number of batches fired and not yet done: add 1
	// at fire and -1 at done.
	BatchInflight = Int64UpDownCounterSpec{Spec{
		name:        "muster.batch.inflight",
		kind:        KindUpDownCounter,
		unit:        "{batch}",
		description: "Batches fired and not yet done.",
		promName:    "muster_batch_inflight",
	}}

	// BatchInflightLimit is the configured limit on batches in flight
	// (MaxConcurrentBatches), observed by a callback. An up-down counter
	// rather than a gauge, as OpenTelemetry's semantic conventions do for
	// limits and capacities (otel.sdk.processor.span.queue.capacity), so
	// that it sums across batchers like [BatchInflight].
	BatchInflightLimit = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.batch.inflight.limit",
		kind:        KindObservableUpDownCounter,
		unit:        "{batch}",
		description: "Configured limit on batches in flight at once.",
		promName:    "muster_batch_inflight_limit",
	}}

	// QueueSize is the number of items waiting to join a batch, observed
	// by a callback.
	QueueSize = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.queue.size",
		kind:        KindObservableUpDownCounter,
		unit:        "{item}",
		description: "Items waiting to join a batch.",
		promName:    "muster_queue_size",
	}}

	// QueueCapacity is the number of items the queue holds before producers
	// block, observed by a callback. Queue utilization is
	// muster_queue_size / muster_queue_capacity in PromQL.
	QueueCapacity = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.queue.capacity",
		kind:        KindObservableUpDownCounter,
		unit:        "{item}",
		description: "Items the queue holds before producers block.",
		promName:    "muster_queue_capacity",
	}}

	// BatcherKeys is the number of live keys of a Keyed batcher (keys
	// created and not yet evicted), observed by a callback. Only Keyed
	// batchers report it. It has no per-key attribute, so that a batcher's
	// series do not multiply with its keys: a key is a span attribute
	// ([BatchKeyKey]) and a label only on [KeyPending] and [KeyWaiting],
	// for the top few keys.
	BatcherKeys = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.batcher.keys",
		kind:        KindObservableUpDownCounter,
		unit:        "{key}",
		description: "Live keys of a Keyed batcher.",
		promName:    "muster_batcher_keys",
	}}

	// ItemPending is the number of items a batcher has accepted and not yet
	// done: queued, in an open batch, or in a batch in flight (its retries
	// included), observed by a callback. It is what a crash would lose.
	// Little's law ties it to the others: pending ≈ items per second ×
	// (batch wait + batch duration). The metrics middleware observes it from
	// the core's Stats.Pending.
	ItemPending = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.item.pending",
		kind:        KindObservableUpDownCounter,
		unit:        "{item}",
		description: "Items accepted and not yet done: queued, in an open batch or in flight.",
		promName:    "muster_item_pending",
	}}

	// KeyPending is, for each of the top keys of a Keyed batcher by
	// pending items (by default the 5 holding the most), the key's items
	// taken and not yet fired: in its open batch and in its batches waiting
	// for an in-flight slot (what MaxPendingPerKey bounds), observed at each
	// collection from the client's TopKeys. Attributes: [BatchKeyKey]. Only
	// the top keys are reported, so a batcher has at most that many series
	// per collection; a key that leaves the top stops being reported, and
	// its series goes stale (Prometheus ends it about 5 minutes after its
	// last sample, or at once when the target's scrape no longer has it).
	// It is how an operator finds the loud tenant: topk over it, by key.
	KeyPending = Int64ObservableGaugeSpec{Spec{
		name:        "muster.key.pending",
		kind:        KindObservableGauge,
		unit:        "{item}",
		description: "Items taken and not yet fired of each of a Keyed batcher's top keys by pending items (muster.batch.key); other keys are not reported.",
		attrs:       []attribute.Key{BatchKeyKey},
		promName:    "muster_key_pending",
	}}

	// KeyWaiting is, for the same top keys as [KeyPending], the key's
	// batches fired and waiting for an in-flight slot (MaxConcurrentBatches),
	// observed at each collection. Attributes: [BatchKeyKey].
	KeyWaiting = Int64ObservableGaugeSpec{Spec{
		name:        "muster.key.waiting",
		kind:        KindObservableGauge,
		unit:        "{batch}",
		description: "Batches waiting for an in-flight slot of each of a Keyed batcher's top keys by pending items (muster.batch.key).",
		attrs:       []attribute.Key{BatchKeyKey},
		promName:    "muster_key_waiting",
	}}

	// AddBlockedDuration records, in seconds, how long a producer was held
	// by backpressure before its item was taken or refused.
	AddBlockedDuration = Float64HistogramSpec{Spec{
		name:        "muster.add.blocked.duration",
		kind:        KindHistogram,
		unit:        "s",
		description: "Time a producer was held by backpressure before its item was taken or refused.",
		buckets:     secondsBuckets,
		promName:    "muster_add_blocked_duration_seconds",
	}}

	// RateLimitWaitDuration records, in seconds, how long a batch waited for
	// rate-limit tokens before its fire ran. The rate of its _sum is the
	// seconds spent rate limited per second.
	RateLimitWaitDuration = Float64HistogramSpec{Spec{
		name:        "muster.ratelimit.wait.duration",
		kind:        KindHistogram,
		unit:        "s",
		description: "Time a batch waited for rate-limit tokens before firing.",
		buckets:     secondsBuckets,
		promName:    "muster_ratelimit_wait_duration_seconds",
	}}

	// BatchRetries counts retry attempts made after a failed fire.
	// Attributes: [ErrorTypeKey], the failure that caused the retry.
	BatchRetries = Int64CounterSpec{Spec{
		name:        "muster.batch.retries",
		kind:        KindCounter,
		unit:        "{retry}",
		description: "Retry attempts after a failed fire; error.type is the failure that caused the retry.",
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_batch_retries_total",
	}}
)

// All returns the specs of every instrument in the catalogue, in a fixed
// order. The slice is new on each call.
func All() []Spec {
	return []Spec{
		ItemAdded.Spec,
		ItemRefused.Spec,
		ItemDropped.Spec,
		ItemProcessed.Spec,
		BatchSize.Spec,
		BatchUtilization.Spec,
		BatchWaitDuration.Spec,
		BatchDuration.Spec,
		BatchInflight.Spec,
		BatchInflightLimit.Spec,
		QueueSize.Spec,
		QueueCapacity.Spec,
		BatcherKeys.Spec,
		ItemPending.Spec,
		KeyPending.Spec,
		KeyWaiting.Spec,
		AddBlockedDuration.Spec,
		RateLimitWaitDuration.Spec,
		BatchRetries.Spec,
	}
}
