package musterconv

import "go.opentelemetry.io/otel/attribute"

// The journal's instruments (github.com/musterhq/muster/journal): the
// items a batcher accepted and keeps until their outcome is final. They
// carry [BatcherNameKey], the name of the batcher the journal serves, and
// are listed by [Journal], not [All]. The gauges and the counters kept by
// the store are read at collection from its StoreStats; the append latency,
// replays and dead letters are recorded from the journal's hooks.
var (
	// JournalItems is the number of items appended and not yet finished,
	// observed by a callback (StoreStats.Items).
	JournalItems = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.journal.items",
		kind:        KindObservableUpDownCounter,
		unit:        "{item}",
		description: "Items in the journal: appended and not yet finished (delivered, dead-lettered, expired or dropped).",
		promName:    "muster_journal_items",
	}}

	// JournalBytes is the space the journal occupies, on disk or in Redis,
	// observed by a callback (StoreStats.Bytes).
	JournalBytes = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.journal.bytes",
		kind:        KindObservableUpDownCounter,
		unit:        "By",
		description: "Bytes the journal occupies, on disk or in Redis.",
		promName:    "muster_journal_bytes",
	}}

	// JournalBytesLimit is the journal's byte bound, observed by a
	// callback (StoreStats.MaxBytes); absent when it has none. At the bound
	// Add waits or fails as the Overflow policy says.
	JournalBytesLimit = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.journal.bytes.limit",
		kind:        KindObservableUpDownCounter,
		unit:        "By",
		description: "The journal's byte bound; at it, Add waits or fails as the Overflow policy says.",
		promName:    "muster_journal_bytes_limit",
	}}

	// JournalOldestAge is, in seconds, how long ago the oldest unfinished
	// item was accepted (0 when the journal is empty), observed by a
	// callback from StoreStats.Oldest: the delivery SLO's signal, since an
	// item stuck in a journal is late however healthy the rest looks.
	JournalOldestAge = Float64ObservableGaugeSpec{Spec{
		name:        "muster.journal.oldest.age",
		kind:        KindObservableGauge,
		unit:        "s",
		description: "Age of the oldest item in the journal (since Add accepted it); 0 when the journal is empty.",
		promName:    "muster_journal_oldest_age_seconds",
	}}

	// JournalAppendDuration records, in seconds, how long each Append took,
	// the wait for its group commit included: the latency the journal adds
	// to Add. Attributes: [ErrorTypeKey] when the append failed
	// (journal_full, journal_closed, timeout, ...).
	JournalAppendDuration = Float64HistogramSpec{Spec{
		name:        "muster.journal.append.duration",
		kind:        KindHistogram,
		unit:        "s",
		description: "Time an Append to the journal took, its group commit included; error.type is set when it failed.",
		buckets:     secondsBuckets,
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_journal_append_duration_seconds",
	}}

	// JournalSyncs counts the journal's group commits (a write, and an
	// fsync at the synced level; a pipeline for Redis), observed by a
	// callback (StoreStats.Syncs). rate(sync time) / rate(syncs) is the
	// mean commit latency; items appended per sync is the group-commit
	// batching.
	JournalSyncs = Int64ObservableCounterSpec{Spec{
		name:        "muster.journal.syncs",
		kind:        KindObservableCounter,
		unit:        "{sync}",
		description: "Group commits of the journal: writes, fsynced at the synced level (pipelines for Redis).",
		promName:    "muster_journal_syncs_total",
	}}

	// JournalSyncTime is the total time, in seconds, the journal spent in
	// its group commits, observed by a callback (StoreStats.SyncTime).
	JournalSyncTime = Float64ObservableCounterSpec{Spec{
		name:        "muster.journal.sync.time",
		kind:        KindObservableCounter,
		unit:        "s",
		description: "Total time the journal spent in group commits; divided by muster.journal.syncs, the mean commit latency.",
		promName:    "muster_journal_sync_time_seconds_total",
	}}

	// JournalRecovered counts items handed to the batcher again from the
	// journal: replayed after a restart, or taken over from a dead
	// replica.
	JournalRecovered = Int64CounterSpec{Spec{
		name:        "muster.journal.recovered",
		kind:        KindCounter,
		unit:        "{item}",
		description: "Items replayed from the journal into the batcher (after a restart, or taken over from a dead replica).",
		promName:    "muster_journal_recovered_total",
	}}

	// JournalDeadLettered counts items whose outcome is not delivery,
	// handed to the dead-letter function. Attributes: [ErrorTypeKey], always:
	// expired (older than MaxItemAge), dropped (an Overflow policy),
	// shutdown_incomplete (abandoned at a deadline, without a journal), or
	// the class of the batch's final error.
	JournalDeadLettered = Int64CounterSpec{Spec{
		name:        "muster.journal.deadlettered",
		kind:        KindCounter,
		unit:        "{item}",
		description: "Items handed to the dead-letter function instead of being delivered; error.type says why (expired, dropped, or the batch's error).",
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_journal_deadlettered_total",
	}}

	// JournalCorrupt counts records found corrupt and skipped at recovery
	// (their items are lost), observed by a callback (StoreStats.Corrupt).
	JournalCorrupt = Int64ObservableCounterSpec{Spec{
		name:        "muster.journal.corrupt",
		kind:        KindObservableCounter,
		unit:        "{record}",
		description: "Journal records found corrupt and skipped: their items are lost.",
		promName:    "muster_journal_corrupt_total",
	}}

	// JournalTakeovers counts dead replicas whose items this replica's
	// journal took over, observed by a callback (StoreStats.Takeovers).
	JournalTakeovers = Int64ObservableCounterSpec{Spec{
		name:        "muster.journal.takeovers",
		kind:        KindObservableCounter,
		unit:        "{takeover}",
		description: "Dead replicas whose unfinished items this replica took over.",
		promName:    "muster_journal_takeovers_total",
	}}
)

// Journal returns the specs of the journal's instruments, in a fixed
// order. The slice is new on each call.
func Journal() []Spec {
	return []Spec{
		JournalItems.Spec,
		JournalBytes.Spec,
		JournalBytesLimit.Spec,
		JournalOldestAge.Spec,
		JournalAppendDuration.Spec,
		JournalSyncs.Spec,
		JournalSyncTime.Spec,
		JournalRecovered.Spec,
		JournalDeadLettered.Spec,
		JournalCorrupt.Spec,
		JournalTakeovers.Spec,
	}
}
