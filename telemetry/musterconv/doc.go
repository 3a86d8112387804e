// Package musterconv is the catalogue of muster's metric instruments: the one
// place that names them. For every instrument it holds the OpenTelemetry name,
// kind, UCUM unit, description, explicit bucket boundaries (histograms), the
// attribute keys it may carry, and the Prometheus names that OpenTelemetry's
// Prometheus exporter makes of it. The metrics middleware creates its
// instruments from these specs, and the Grafana dashboard generator (in the
// deploy module) takes its metric names from them, so they cannot drift
// apart.
//
// The name follows OpenTelemetry Go's generated semantic-convention packages
// (httpconv, otelconv); it is not called semconv so that it can be imported
// next to go.opentelemetry.io/otel/semconv without renaming.
//
// # Dependencies
//
// The package depends on the OpenTelemetry API only
// (go.opentelemetry.io/otel/attribute and go.opentelemetry.io/otel/metric),
// never on the SDK or an exporter: library code imports it, and a library's
// users bring their own SDK.
//
// # Creating instruments
//
// Each catalogue entry is a typed spec whose New method creates the instrument
// on a [metric.Meter] with the catalogue's unit, description and bucket
// boundaries applied:
//
//	size, err := musterconv.BatchSize.New(meter)
//	size.Record(ctx, 100, metric.WithAttributeSet(attribute.NewSet(
//		musterconv.BatcherName("orders"),
//		musterconv.BatchTrigger(musterconv.TriggerSize),
//	)))
//
// Options passed to New are applied after the catalogue's, so a caller can
// still override, for example, the bucket boundaries of one histogram.
//
// # Prometheus names
//
// [Spec.PrometheusName] and [Spec.PrometheusSeries] give the names under which
// go.opentelemetry.io/otel/exporters/prometheus (v0.69, translation strategy
// UnderscoreEscapingWithSuffixes, its default) exposes each instrument: dots
// become underscores, counters get _total, unit s adds _seconds, units in
// braces such as {item} add nothing, unit By adds _bytes (once), and unit 1
// adds nothing to histograms and up-down counters (the exporter adds _ratio
// only to gauges with unit 1). Since a unit in braces is dropped and a
// ratio histogram gets no suffix, the names themselves carry what the
// Prometheus names need: muster.batch.items (a .size would read as bytes)
// and muster.batch.utilization.ratio. Attribute keys become labels the same way
// ([PrometheusLabel]). The tests of package
// github.com/musterhq/muster/telemetry scrape a real exporter and fix these
// names.
//
//	| instrument                     | kind                  | unit    | Prometheus series                                         |
//	|--------------------------------|-----------------------|---------|-----------------------------------------------------------|
//	| muster.item.added              | async counter         | {item}  | muster_item_added_total                                   |
//	| muster.item.refused            | counter               | {item}  | muster_item_refused_total                                 |
//	| muster.item.dropped            | counter               | {item}  | muster_item_dropped_total                                 |
//	| muster.item.processed          | counter               | {item}  | muster_item_processed_total                               |
//	| muster.batch.items             | histogram (int64)     | {item}  | muster_batch_items_{bucket,sum,count}                     |
//	| muster.batch.utilization.ratio | histogram (float64)   | 1       | muster_batch_utilization_ratio_{bucket,sum,count}         |
//	| muster.batch.wait.duration     | histogram (float64)   | s       | muster_batch_wait_duration_seconds_{bucket,sum,count}     |
//	| muster.batch.duration          | histogram (float64)   | s       | muster_batch_duration_seconds_{bucket,sum,count}          |
//	| muster.batch.inflight          | up-down counter       | {batch} | muster_batch_inflight                                     |
//	| muster.batch.inflight.limit    | async up-down counter | {batch} | muster_batch_inflight_limit                               |
//	| muster.queue.size              | async up-down counter | {item}  | muster_queue_size                                         |
//	| muster.queue.capacity          | async up-down counter | {item}  | muster_queue_capacity                                     |
//	| muster.batcher.keys            | async up-down counter | {key}   | muster_batcher_keys                                       |
//	| muster.item.pending            | async up-down counter | {item}  | muster_item_pending                                       |
//	| muster.key.pending             | async gauge           | {item}  | muster_key_pending                                        |
//	| muster.key.waiting             | async gauge           | {batch} | muster_key_waiting                                        |
//	| muster.add.blocked.duration    | histogram (float64)   | s       | muster_add_blocked_duration_seconds_{bucket,sum,count}    |
//	| muster.ratelimit.wait.duration | histogram (float64)   | s       | muster_ratelimit_wait_duration_seconds_{bucket,sum,count} |
//	| muster.batch.retries           | counter               | {retry} | muster_batch_retries_total                                |
//
// For a batcher's live clients, items are conserved: added = processed +
// dropped + pending (refused items were never added).
//
// Every instrument carries [BatcherNameKey] (label muster_batcher_name); the
// others are listed by [Spec.AttributeKeys].
//
// # The shared rate limiter
//
// A quota shared by replicas (github.com/musterhq/muster/ratelimit/redisrate)
// belongs to no one batcher, so its instruments carry [RateLimitNameKey]
// (label muster_ratelimit_name) instead of [BatcherNameKey], and are listed by
// [SharedRateLimit], not [All]:
//
//	| instrument                      | kind                  | unit      | Prometheus series                                          |
//	|---------------------------------|-----------------------|-----------|------------------------------------------------------------|
//	| muster.ratelimit.store.requests | counter               | {request} | muster_ratelimit_store_requests_total                      |
//	| muster.ratelimit.store.duration | histogram (float64)   | s         | muster_ratelimit_store_duration_seconds_{bucket,sum,count} |
//	| muster.ratelimit.state          | async up-down counter | {limiter} | muster_ratelimit_state                                     |
//	| muster.ratelimit.switches       | counter               | {switch}  | muster_ratelimit_switches_total                            |
//
// # Buckets
//
// The SDK's default histogram boundaries are millisecond-sized (0, 5, 10, ...,
// 10000), so a 20 ms wait recorded in seconds would land in the (0, 5] bucket
// and read as a p99 of about 5 seconds. Every histogram here therefore carries explicit
// advisory boundaries fit for its unit: seconds from 100 µs to 60 s in 1-2.5-5
// steps, item counts from 1 to 10000 in 1-2-5 steps, and fill ratios from 0.05
// to 1.
//
// # The journal
//
// A journaled batcher (github.com/musterhq/muster/journal) has instruments
// of its own, with [BatcherNameKey], listed by [Journal]:
//
//	| instrument                     | kind                  | unit       | Prometheus series                                         |
//	|--------------------------------|-----------------------|------------|-----------------------------------------------------------|
//	| muster.journal.items           | async up-down counter | {item}     | muster_journal_items                                      |
//	| muster.journal.bytes           | async up-down counter | By         | muster_journal_bytes                                      |
//	| muster.journal.bytes.limit     | async up-down counter | By         | muster_journal_bytes_limit                                |
//	| muster.journal.oldest.age      | async gauge           | s          | muster_journal_oldest_age_seconds                         |
//	| muster.journal.append.duration | histogram (float64)   | s          | muster_journal_append_duration_seconds_{bucket,sum,count} |
//	| muster.journal.syncs           | async counter         | {sync}     | muster_journal_syncs_total                                |
//	| muster.journal.sync.time       | async counter         | s          | muster_journal_sync_time_seconds_total                    |
//	| muster.journal.recovered       | counter               | {item}     | muster_journal_recovered_total                            |
//	| muster.journal.deadlettered    | counter               | {item}     | muster_journal_deadlettered_total                         |
//	| muster.journal.corrupt         | async counter         | {record}   | muster_journal_corrupt_total                              |
//	| muster.journal.takeovers       | async counter         | {takeover} | muster_journal_takeovers_total                            |
//
// The instrumentation scope name belongs to the package that records the
// measurements (the middleware), not to this catalogue.
package musterconv
