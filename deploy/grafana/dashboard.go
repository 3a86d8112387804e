// Package grafana generates muster's Grafana dashboard (classic JSON model)
// with github.com/grafana/grafana-foundation-sdk, taking every muster metric
// and label name from the instrument catalogue,
// github.com/musterhq/muster/telemetry/musterconv, so that the dashboard
// cannot drift from what the middleware records.
//
// The committed dashboards/muster.json is the generator's output; regenerate
// it after changing this package or the catalogue:
//
//	cd deploy/grafana && go generate ./...
//
// The tests check that the committed file is up to date, that every query
// parses and names only metrics of the real exposition, a re-implementation
// of grafana/dashboard-linter's rules, the Prometheus alert rules beside the
// dashboard (with promtool), and, given a Prometheus binary, that every query
// returns data from a live demo.
package grafana

//go:generate go run ./cmd/gendashboard -o dashboards/muster.json

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
	"github.com/grafana/grafana-foundation-sdk/go/units"
)

// Dashboard identity.
const (
	UID   = "muster-batcher"
	Title = "Muster batchers"
)

// datasource is the reference every panel and query uses: the datasource
// variable.
var datasource = dashboard.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

type panelKind int

const (
	kindTimeseries panelKind = iota
	kindStat
)

type target struct {
	expr, legend string
	dashed       bool // a limit or capacity: drawn as a dashed red line
	exemplar     bool // show the buckets' exemplars (trace ids) as points
}

type panel struct {
	kind        panelKind
	title, desc string
	unit        string
	width       uint32
	targets     []target
	noValue     string     // shown when the query returns nothing (an event that did not happen)
	stack       bool       // stack the series (shares)
	min, max    *float64   // axis bounds
	steps       []stepSpec // stat thresholds
}

type stepSpec struct {
	from  *float64
	color string
}

type row struct {
	title     string
	collapsed bool
	panels    []panel
}

func f(v float64) *float64 { return &v }

// byClient is the label list of per-client panels: job too, so that two
// services that each name a batcher "orders" stay two series.
var byClient = []string{"job", labelClient}

// quantiles returns p50, p95 and p99 targets of a histogram per client.
func quantiles(h hist, extra ...string) []target {
	var ts []target
	for _, q := range []struct {
		v    float64
		name string
	}{{0.5, "p50"}, {0.95, "p95"}, {0.99, "p99"}} {
		ts = append(ts, target{expr: quantile(q.v, h, byClient, extra...), legend: legend(q.name, labelClient), exemplar: true})
	}
	return ts
}

var healthSteps = func(orange, red float64) []stepSpec {
	return []stepSpec{{nil, "green"}, {f(orange), "orange"}, {f(red), "red"}}
}

// rows is the dashboard's content, top to bottom.
func rows() []row {
	return []row{
		{title: "Overview", panels: []panel{
			{kind: kindStat, title: "Items in /s", unit: units.OpsPerSecond, width: 4,
				desc:    "Items accepted (taken) by the selected batchers per second, counted when taken, whether their batch has fired or not. Refused items are not included; see Throughput.",
				targets: []target{{expr: sumBy(rate(sel(itemAdded))), legend: "in"}}},
			{kind: kindStat, title: "Items processed /s", unit: units.OpsPerSecond, width: 4,
				desc:    "Items whose batch finished per second, successfully or not. Well below 'Items in /s' for long means batches are not completing: look at Saturation and Latency.",
				targets: []target{{expr: sumBy(rate(sel(itemProcessed))), legend: "processed"}}},
			{kind: kindStat, title: "Failure ratio", unit: units.PercentUnit, width: 4, noValue: "0",
				desc:    "Share of processed items whose batch failed for good (after retries): those items are lost unless the application handles the error. Alert at 5%.",
				targets: []target{{expr: ratio(sumBy(rate(sel(itemProcessed, failed))), sumBy(rate(sel(itemProcessed)))), legend: "failed"}},
				steps:   healthSteps(0.001, 0.05)},
			{kind: kindStat, title: "Batch wait p99", unit: units.Seconds, width: 4,
				desc:    "99th percentile of the age of a batch's first item when the batch fired, across the selected batchers. Near BatchTimeout is normal for quiet batchers; far above it means batches wait for an in-flight slot.",
				targets: []target{{expr: quantile(0.99, batchWait, nil), legend: "p99"}}},
			{kind: kindStat, title: "In-flight vs limit", unit: units.PercentUnit, width: 4,
				desc: "Batches in flight divided by MaxConcurrentBatches, for the most saturated client and process. At 100% new batches wait for a slot and backpressure reaches producers. Empty when no client has a limit.",
				targets: []target{{legend: "in flight / limit", expr: "max(" + ratio(
					sumBy(sel(batchInflight), perInstance...),
					sumBy(sel(inflightLimit)+" > 0", perInstance...), perInstance...) + ")"}},
				steps: healthSteps(0.8, 1)},
			{kind: kindStat, title: "Batches fired /s", unit: units.OpsPerSecond, width: 4,
				desc:    "Batches fired per second by the selected batchers, whatever the trigger.",
				targets: []target{{expr: sumBy(rate(sel(batchSize.count))), legend: "batches"}}},
		}},
		{title: "Throughput", panels: []panel{
			{title: "Items added vs processed /s", unit: units.OpsPerSecond, width: 8,
				desc: "Per client: items accepted (counted when taken) and items whose batch finished, per second. The two lines track each other when batches complete; added above processed for long is a backlog building up (see Pending items), whatever the batches do.",
				targets: []target{
					{expr: sumBy(rate(sel(itemAdded)), byClient...), legend: legend("added", labelClient)},
					{expr: sumBy(rate(sel(itemProcessed)), byClient...), legend: legend("processed", labelClient)},
				}},
			{title: "Batches fired /s by trigger", unit: units.OpsPerSecond, width: 8,
				desc: "Batches fired per second per client and trigger: size (MaxBatchSize reached), bytes (MaxBatchBytes would be passed), timeout (BatchTimeout passed), flush, shutdown.",
				targets: []target{{expr: sumBy(rate(sel(batchSize.count)), "job", labelClient, labelTrigger),
					legend: legend("", "job", labelClient, labelTrigger)}}},
			{title: "Items refused or dropped /s by error type", unit: units.OpsPerSecond, width: 8, noValue: "0",
				desc: "Items a producer offered that were not taken (refused), per client and error.type: full (queue full under OverflowFail), dropped (the newest, refused by a drop overflow policy), too_large (larger than MaxBatchBytes), too_many_keys (a Keyed batcher at MaxKeys), stopped (added after Stop), timeout or canceled (the producer's context ended while blocked by backpressure), panic (a Batch's Add panicked); and items taken then dropped to make room under OverflowDropOldest (dropped, taken). These items are not processed; see also the data-loss row.",
				targets: []target{
					{expr: sumBy(rate(sel(itemRefused)), "job", labelClient, labelError), legend: legend("refused", "job", labelClient, labelError)},
					{expr: sumBy(rate(sel(itemDropped)), "job", labelClient, labelError), legend: legend("dropped, taken", "job", labelClient, labelError)},
				}},
		}},
		{title: "Batch shape", panels: []panel{
			{title: "Batch size", unit: units.Short, width: 8,
				desc: "Items per fired batch per client: p50, p95, p99 and the average. Batches much smaller than MaxBatchSize fire on timeout and cost more per item downstream.",
				targets: append(quantiles(batchSize), target{
					expr:   ratio(sumBy(rate(sel(batchSize.sum)), byClient...), sumBy(rate(sel(batchSize.count)), byClient...)),
					legend: legend("avg", labelClient)})},
			{title: "Fill ratio", unit: units.PercentUnit, width: 8, min: f(0), max: f(1),
				desc: "Items per batch divided by MaxBatchSize, per client: median and average. 100% means batches fire because they are full; low values mean BatchTimeout fires them half empty.",
				targets: []target{
					{expr: quantile(0.5, batchFill, byClient), legend: legend("p50", labelClient)},
					{expr: ratio(sumBy(rate(sel(batchFill.sum)), byClient...), sumBy(rate(sel(batchFill.count)), byClient...)),
						legend: legend("avg", labelClient)},
				}},
			{title: "Trigger mix", unit: units.PercentUnit, width: 8, stack: true, min: f(0), max: f(1),
				desc: "Share of batches fired by each trigger (size, bytes, timeout, flush, shutdown), per client (from the batch size histogram's count). Mostly timeout: traffic is light for MaxBatchSize. Mostly size: batches are full, and BatchTimeout rarely matters. Mostly bytes: items are large, and MaxBatchBytes, not MaxBatchSize, sets the batch size.",
				targets: []target{{
					expr: sumBy(rate(sel(batchSize.count)), "job", labelClient, labelTrigger) + " / on (job, " + labelClient + ") group_left " +
						sumBy(rate(sel(batchSize.count)), byClient...),
					legend: legend("", "job", labelClient, labelTrigger)}}},
		}},
		{title: "Latency", panels: []panel{
			{title: "Batch wait", unit: units.Seconds, width: 6,
				desc:    "Age of a batch's first item when the batch fired, per client: p50, p95, p99. Bounded by BatchTimeout unless batches wait for an in-flight slot.",
				targets: quantiles(batchWait)},
			{title: "Batch wait p99 by trigger", unit: units.Seconds, width: 6,
				desc: "99th percentile of batch wait per client and trigger. Timeout-triggered batches wait about BatchTimeout; size- and bytes-triggered ones wait as long as filling takes.",
				targets: []target{{expr: quantile(0.99, batchWait, []string{"job", labelClient, labelTrigger}),
					legend: legend("p99", "job", labelClient, labelTrigger)}}},
			{title: "Batch duration", unit: units.Seconds, width: 6,
				desc:    "Time from a batch's fire to its done, per client: p50, p95, p99. It includes rate-limit waits and retries, so it is the downstream's latency plus the cost of failures.",
				targets: quantiles(batchDuration)},
			{title: "Batch duration p99: succeeded vs failed", unit: units.Seconds, width: 6,
				desc: "99th percentile of batch duration per client, for batches that succeeded and, by error.type, for those that failed for good (after every retry).",
				targets: []target{
					{expr: quantile(0.99, batchDuration, byClient, succeeded), legend: legend("ok", labelClient)},
					{expr: quantile(0.99, batchDuration, []string{"job", labelClient, labelError}, failed),
						legend: legend("failed", "job", labelClient, labelError)},
				}},
		}},
		{title: "Saturation", panels: []panel{
			{title: "In-flight batches vs limit", unit: units.Short, width: 8,
				desc: "Batches fired and not yet done per client, against MaxConcurrentBatches (dashed). Pinned at the limit: the downstream is the bottleneck, new batches wait for a slot and producers are held back.",
				targets: []target{
					{expr: sumBy(sel(batchInflight), byClient...), legend: legend("in flight", labelClient)},
					{expr: sumBy(sel(inflightLimit), byClient...), legend: legend("limit", labelClient), dashed: true},
				}},
			{title: "Queue size vs capacity", unit: units.Short, width: 8,
				desc: "Items waiting to join a batch per client, against the queue capacity (PendingWorkCapacity, dashed). A full queue blocks producers.",
				targets: []target{
					{expr: sumBy(sel(queueSize), byClient...), legend: legend("queued", labelClient)},
					{expr: sumBy(sel(queueCapacity), byClient...), legend: legend("capacity", labelClient), dashed: true},
				}},
			{title: "Live keys", unit: units.Short, width: 8,
				desc:    "Live keys of each Keyed batcher: keys created by an Add and not yet evicted (idle for KeyIdleTimeout, or to make room). Each key holds its own batch and queue, so queue size, batches in flight and memory grow with it. Near MaxKeys, new keys evict the least recently used idle key, or are refused (error.type too_many_keys). Plain batchers report none; keys are a label only of the top-k series (Loudest keys).",
				targets: []target{{expr: sumBy(sel(batcherKeys), byClient...), legend: legend("keys", labelClient)}}},
			{title: "Producer blocked time p99", unit: units.Seconds, width: 6,
				desc:    "99th percentile of the time an Add was held by backpressure before its item was taken or refused, per client. Zero when producers never wait.",
				targets: []target{{expr: quantile(0.99, addBlocked, byClient), legend: legend("p99", labelClient)}}},
			{title: "Blocked adds /s", unit: units.OpsPerSecond, width: 6, noValue: "0",
				desc:    "Adds per second that were held by backpressure (a full queue or no free in-flight slot), per client.",
				targets: []target{{expr: sumBy(rate(sel(addBlocked.count)), byClient...), legend: legend("blocked", labelClient)}}},
			{title: "Rate-limit wait p99", unit: units.Seconds, width: 6,
				desc:    "99th percentile of the time a batch waited for rate-limit tokens before its fire ran, per client. The batch holds its in-flight slot while it waits.",
				targets: []target{{expr: quantile(0.99, rateLimitWait, byClient), legend: legend("p99", labelClient)}}},
			{title: "Batches waiting for tokens", unit: units.Short, width: 6, noValue: "0",
				desc:    "Average number of batches waiting for rate-limit tokens at once, per client: rate-limit seconds waited per second (Little's law). Close to MaxConcurrentBatches: the rate limit, not the downstream, sets the pace.",
				targets: []target{{expr: sumBy(rate(sel(rateLimitWait.sum)), byClient...), legend: legend("waiting", labelClient)}}},
			loudestKeysPanel(),
			loudestKeysWaitingPanel(),
			sharedQuotaPanel(),
		}},
		{title: "Errors, retries and data loss", panels: []panel{
			{title: "Failure ratio by client", unit: units.PercentUnit, width: 8, noValue: "0",
				desc: "Share of processed items whose batch failed for good (after retries), per client.",
				targets: []target{{
					expr:   ratio(sumBy(rate(sel(itemProcessed, failed)), byClient...), sumBy(rate(sel(itemProcessed)), byClient...), byClient...),
					legend: legend("", labelClient)}}},
			{title: "Failed items /s by error type", unit: units.OpsPerSecond, width: 8, noValue: "0",
				desc: "Items whose batch failed for good per second, per client and error.type. shutdown_incomplete: abandoned at a Shutdown deadline; panic: Fire panicked; after a partial failure (a *muster.ItemErrors), each failed item counts with its own error.type and the others as processed.",
				targets: []target{{expr: sumBy(rate(sel(itemProcessed, failed)), "job", labelClient, labelError),
					legend: legend("", "job", labelClient, labelError)}}},
			{title: "Retries /s by error type", unit: units.OpsPerSecond, width: 8, noValue: "0",
				desc: "Retry attempts per second after a failed fire, per client and the error.type that caused them. Retries without failures are transient errors absorbed; with failures, the retry budget or attempts ran out.",
				targets: []target{{expr: sumBy(rate(sel(batchRetries)), "job", labelClient, labelError),
					legend: legend("", "job", labelClient, labelError)}}},
			{title: "Batches failing after retries /s", unit: units.OpsPerSecond, width: 8, noValue: "0",
				desc: "Batches per second that failed for good, after every retry, per client and error.type (the batch duration histogram's count).",
				targets: []target{{expr: sumBy(rate(sel(batchDuration.count, failed)), "job", labelClient, labelError),
					legend: legend("", "job", labelClient, labelError)}}},
			{title: "Refusals and drops /s by error type", unit: units.OpsPerSecond, width: 8, noValue: "0",
				desc: "Items that never reached a batch, per second, per client and error.type. Refused (never taken, the producer got the error): full (pending capacity full under OverflowFail), dropped (the newest, under a drop overflow policy), too_large (larger than MaxBatchBytes), too_many_keys (a Keyed batcher at MaxKeys with no idle key to evict), timeout or canceled (the producer gave up while held by backpressure), stopped (added after Stop), panic (a Batch's Add panicked). Dropped (taken, then discarded to make room under OverflowDropOldest: only the item's Result says so). These items are lost unless the producer retries them.",
				targets: []target{
					{expr: sumBy(rate(sel(itemRefused)), "job", labelClient, labelError), legend: legend("refused", "job", labelClient, labelError)},
					{expr: sumBy(rate(sel(itemDropped)), "job", labelClient, labelError), legend: legend("dropped, taken", "job", labelClient, labelError)},
				}},
			{title: "Pending items (lost on a crash)", unit: units.Short, width: 8,
				desc:    "Items each client has accepted and not yet done: queued, in an open batch, or in a batch in flight (retries included). This is what a crash or a kill now would lose. It grows with throughput × (batch wait + batch duration): a slow or failing downstream raises it, and so does a longer BatchTimeout.",
				targets: []target{{expr: sumBy(sel(itemPending), byClient...), legend: legend("pending", labelClient)}}},
			{title: "Items lost: failed, refused or dropped /s", unit: units.OpsPerSecond, width: 8, noValue: "0", stack: true,
				desc: "Items that did not make it, per second: failed for good (their batch failed after retries, or only they failed in a partial failure) and refused or dropped (never reached a batch: full, dropped, too_large, too_many_keys, timeout, canceled, stopped), per client and error.type. Anything here is data the application must handle or lose.",
				targets: []target{
					{expr: sumBy(rate(sel(itemProcessed, failed)), "job", labelClient, labelError), legend: legend("failed", "job", labelClient, labelError)},
					{expr: sumBy(rate(sel(itemRefused)), "job", labelClient, labelError), legend: legend("refused", "job", labelClient, labelError)},
					{expr: sumBy(rate(sel(itemDropped)), "job", labelClient, labelError), legend: legend("dropped", "job", labelClient, labelError)},
				}},
		}},
		{title: "Journal", panels: journalPanels()},
		{title: "Per process", panels: []panel{
			{title: "Items processed /s per process", unit: units.OpsPerSecond, width: 8,
				desc:    "Items whose batch finished per second, per process (instance) and client: an instance far from its peers has a problem of its own (its host, its connection to the downstream).",
				targets: []target{{expr: sumBy(rate(sel(itemProcessed)), perInstance...), legend: legend("", "instance", labelClient)}}},
			{title: "Pending items per process", unit: units.Short, width: 8,
				desc:    "Items accepted and not yet done, per process and client: what a crash of that process would lose.",
				targets: []target{{expr: sumBy(sel(itemPending), perInstance...), legend: legend("", "instance", labelClient)}}},
			{title: "Failure ratio per process", unit: units.PercentUnit, width: 8, noValue: "0",
				desc: "Share of processed items whose batch failed for good, per process and client. One instance failing alone points at that instance; all failing together, at the downstream.",
				targets: []target{{
					expr:   ratio(sumBy(rate(sel(itemProcessed, failed)), perInstance...), sumBy(rate(sel(itemProcessed)), perInstance...), perInstance...),
					legend: legend("", "instance", labelClient)}}},
			{title: "In flight / limit per process", unit: units.PercentUnit, width: 12, min: f(0),
				desc: "Batches in flight divided by MaxConcurrentBatches, per process and client. At 100% new batches wait for a slot (MusterInflightAtLimit).",
				targets: []target{{
					expr:   ratio(sumBy(sel(batchInflight), perInstance...), sumBy(sel(inflightLimit)+" > 0", perInstance...), perInstance...),
					legend: legend("", "instance", labelClient)}}},
			{title: "Queue fill per process", unit: units.PercentUnit, width: 12, min: f(0),
				desc: "Items queued divided by the queue capacity, per process and client. Near 100% producers block (MusterQueueNearlyFull). Empty for unbuffered queues.",
				targets: []target{{
					expr:   ratio(sumBy(sel(queueSize), perInstance...), sumBy(sel(queueCapacity)+" > 0", perInstance...), perInstance...),
					legend: legend("", "instance", labelClient)}}},
		}},
		{title: "Go runtime", collapsed: true, panels: []panel{
			{title: "Goroutines", unit: units.Short, width: 6,
				desc:    "Goroutines per process (all of the process, not only muster). A steady climb is a leak.",
				targets: []target{{expr: runtimeSel(goGoroutines), legend: legend("", "instance")}}},
			{title: "Memory", unit: units.BytesIEC, width: 6,
				desc: "Heap bytes allocated and not yet freed (Go runtime) and resident memory (process), per process.",
				targets: []target{
					{expr: runtimeSel(goHeapAlloc), legend: legend("heap", "instance")},
					{expr: runtimeSel(processRSS), legend: legend("rss", "instance")},
				}},
			{title: "GC pause time", unit: units.PercentUnit, width: 6,
				desc: "Share of wall time the process spent in GC stop-the-world pauses (rate of go_gc_duration_seconds_sum), and GC cycles per second on the right axis.",
				targets: []target{
					{expr: rate(runtimeSel(goGCPauseSum)), legend: legend("paused", "instance")},
					{expr: rate(runtimeSel(goGCPauseCount)), legend: legend("GC/s", "instance")},
				}},
			{title: "CPU", unit: units.PercentUnit, width: 6,
				desc:    "CPU time used per second of wall time, per process: 100% is one core.",
				targets: []target{{expr: rate(runtimeSel(processCPU)), legend: legend("cpu", "instance")}}},
		}},
	}
}

// Titles of the panels of the top keys.
const (
	titleLoudestKeys        = "Loudest keys (top-k)"
	titleLoudestKeysWaiting = "Loudest keys: batches waiting for a slot"
)

// loudestKeysTopK is how many keys the loudest-keys panel shows at each
// instant, across the selected clients: the metrics observer's default
// WithTopKeys(5) per client name, so that one client's top keys fit.
const loudestKeysTopK = 5

// loudestKeysPanel shows the keys (tenants) of Keyed batchers holding the
// most pending items: the top keys each process reports, summed over
// processes, and the loudest of those at each instant.
func loudestKeysPanel() panel {
	return panel{title: titleLoudestKeys, unit: units.Short, width: 12,
		desc: fmt.Sprintf("The %d keys of Keyed batchers holding the most pending items (taken and not fired: in their open batch and in their batches waiting for an in-flight slot), ", loudestKeysTopK) +
			"summed over processes, per client and key (muster.batch.key). One key far above the others is a loud tenant taking the shared PendingWorkCapacity and in-flight slots: " +
			"bound it with MaxPendingPerKey or rate-limit it upstream (runbook: finding the loud tenant). " +
			"Each process reports only its top keys at each scrape (otelmuster.WithTopKeys, default 5), so a key that leaves the top ends its series (it goes stale, it does not drop to 0) " +
			"and a line here is not a key's whole history. Empty without Keyed batchers, or when no key holds anything.",
		targets: []target{{
			expr:   topk(loudestKeysTopK, sumBy(sel(keyPending), "job", labelClient, labelKey)),
			legend: legend("", labelClient, labelKey),
		}}}
}

// loudestKeysWaitingPanel shows, for the top keys the processes report,
// their batches waiting for an in-flight slot: a loud key also queues for
// the slots every key shares.
func loudestKeysWaitingPanel() panel {
	return panel{title: titleLoudestKeysWaiting, unit: units.Short, width: 12,
		desc: fmt.Sprintf("Of the keys each process reports as its top keys by pending items, the %d with the most batches fired and waiting for an in-flight slot (MaxConcurrentBatches, shared by all keys), summed over processes, per client and key. ", loudestKeysTopK) +
			"A loud key with many batches waiting holds back every other key's batches: MaxPendingPerKey bounds it. Series of keys that leave the top go stale.",
		targets: []target{{
			expr:   topk(loudestKeysTopK, sumBy(sel(keyWaiting), "job", labelClient, labelKey)),
			legend: legend("", labelClient, labelKey),
		}}}
}

// Titles of the Journal row's panels.
const (
	titleJournalItems     = "Journal items"
	titleJournalBytes     = "Journal bytes vs limit"
	titleJournalOldest    = "Oldest journaled item age"
	titleJournalAppend    = "Journal append latency"
	titleJournalCommit    = "Journal commit latency and rate"
	titleJournalReplayed  = "Replayed items /s"
	titleJournalDead      = "Dead-lettered items /s by error type"
	titleJournalExpired   = "Expired items /s"
	titleJournalCorrupt   = "Corrupt records and takeovers /s"
	journalRowDescription = "journaled batchers only (package journal)"
)

// journalPanels is the Journal row: what a journaled batcher keeps until
// its items' outcome is final, from the journal's instruments
// (musterconv.Journal). Batchers without a journal show nothing here.
func journalPanels() []panel {
	return []panel{
		{title: titleJournalItems, unit: units.Short, width: 6,
			desc:    "Items in each client's journal: accepted and not yet finished (delivered, dead-lettered, expired or dropped). Unlike pending items, they survive a crash and are replayed at the next start. Growing for long: the downstream is not keeping up; " + journalRowDescription + ".",
			targets: []target{{expr: sumBy(sel(journalItems), byClient...), legend: legend("items", labelClient)}}},
		{title: titleJournalBytes, unit: units.BytesIEC, width: 6,
			desc: "Bytes each client's journal occupies (on disk, or in Redis), against its byte bound (dashed). At the bound, Add waits or fails as the Overflow policy says (MusterJournalFilling alerts at 90%).",
			targets: []target{
				{expr: sumBy(sel(journalBytes), perInstance...), legend: legend("bytes", "instance", labelClient)},
				{expr: sumBy(sel(journalLimit), perInstance...), legend: legend("limit", "instance", labelClient), dashed: true},
			}},
		{title: titleJournalOldest, unit: units.Seconds, width: 6,
			desc:    "How long ago the oldest item still in each journal was accepted: the delivery SLO's signal, since an item stuck in a journal is late however healthy the rest looks. It grows steadily when the downstream rejects or never answers, and drops when the backlog drains (MusterJournalOldestItemTooOld).",
			targets: []target{{expr: "max by (job, " + labelClient + ") (" + sel(journalOldest) + ")", legend: legend("oldest", labelClient)}}},
		{title: titleJournalAppend, unit: units.Seconds, width: 6,
			desc:    "Time an Append to the journal took, the wait for its group commit included, per client: p50, p95, p99. It is what the journal adds to each Add; at the synced level, about the disk's fsync latency.",
			targets: quantiles(journalAppend)},
		{title: titleJournalCommit, unit: units.Seconds, width: 6,
			desc: "Mean time of a group commit (a write, fsynced at the synced level; a pipeline for Redis), per client, and commits per second on the right axis. Appends per commit is how well group commit batches producers.",
			targets: []target{
				{expr: ratio(sumBy(rate(sel(journalSyncT)), byClient...), sumBy(rate(sel(journalSyncs)), byClient...), byClient...), legend: legend("mean commit", labelClient)},
				{expr: sumBy(rate(sel(journalSyncs)), byClient...), legend: legend("commits/s", labelClient)},
			}},
		{title: titleJournalReplayed, unit: units.OpsPerSecond, width: 6, noValue: "0",
			desc:    "Items replayed from the journal into the batcher per second, per client: after a restart, or taken over from a dead replica. A replay after a crash is expected; a steady one means replicas keep dying.",
			targets: []target{{expr: sumBy(rate(sel(journalReplay)), byClient...), legend: legend("replayed", labelClient)}}},
		{title: titleJournalDead, unit: units.OpsPerSecond, width: 6, noValue: "0",
			desc:    "Items handed to the dead-letter function instead of being delivered, per second, per client and error.type: expired (older than MaxItemAge), dropped (an Overflow policy), shutdown_incomplete (abandoned at a deadline without a journal), or the batch's final error after every retry.",
			targets: []target{{expr: sumBy(rate(sel(journalDead)), "job", labelClient, labelError), legend: legend("", "job", labelClient, labelError)}}},
		{title: titleJournalExpired, unit: units.OpsPerSecond, width: 6, noValue: "0",
			desc:    "Items dead-lettered because they were older than MaxItemAge when their batch fired, per second, per client: a backlog (a long outage, a replay) outlived the age the application accepts.",
			targets: []target{{expr: sumBy(rate(sel(journalDead, labelError+`="expired"`)), byClient...), legend: legend("expired", labelClient)}}},
		{title: titleJournalCorrupt, unit: units.OpsPerSecond, width: 8, noValue: "0",
			desc: "Journal records found corrupt and skipped (their items are lost: a torn write, a bad disk), and dead replicas whose items this one took over, per second, per process and client (MusterJournalCorrupt).",
			targets: []target{
				{expr: sumBy(rate(sel(journalCorrupt)), perInstance...), legend: legend("corrupt", "instance", labelClient)},
				{expr: sumBy(rate(sel(journalTakeov)), perInstance...), legend: legend("takeovers", "instance", labelClient)},
			}},
	}
}

// variables returns the template variables: datasource, then job, instance
// and client, each narrowed by the ones before it.
func variables() []cog.Builder[dashboard.VariableModel] {
	anchor := string(queueCapacity) // present from a client's start, whatever it does
	query := func(name, label, desc, q string) cog.Builder[dashboard.VariableModel] {
		return dashboard.NewQueryVariableBuilder(name).
			Label(label).
			Description(desc).
			Query(dashboard.StringOrMap{String: cog.ToPtr(q)}).
			Definition(q).
			Datasource(datasource).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".+")
	}
	return []cog.Builder[dashboard.VariableModel]{
		dashboard.NewDatasourceVariableBuilder("datasource").
			Label("Data source").
			Description("The Prometheus that scrapes the services using muster.").
			Type("prometheus"),
		query("job", "job", "Prometheus job of the services using muster.",
			fmt.Sprintf("label_values(%s, job)", anchor)),
		query("instance", "instance", "Scraped process (Prometheus instance).",
			fmt.Sprintf(`label_values(%s{job=~"$job"}, instance)`, anchor)),
		query("client", "client", "Batcher: the name given to a muster client (label "+labelClient+").",
			fmt.Sprintf(`label_values(%s{job=~"$job", instance=~"$instance"}, %s)`, anchor, labelClient)),
	}
}

func legendOptions() cog.Builder[common.VizLegendOptions] {
	return common.NewVizLegendOptionsBuilder().
		ShowLegend(true).
		DisplayMode(common.LegendDisplayModeTable).
		Placement(common.LegendPlacementBottom).
		Calcs([]string{"mean", "max", "lastNotNull"})
}

func tooltipOptions() cog.Builder[common.VizTooltipOptions] {
	return common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending)
}

func thresholds(steps []stepSpec) cog.Builder[dashboard.ThresholdsConfig] {
	if len(steps) == 0 {
		steps = []stepSpec{{nil, "green"}}
	}
	ts := make([]dashboard.Threshold, len(steps))
	for i, s := range steps {
		ts[i] = dashboard.Threshold{Value: s.from, Color: s.color}
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

// dashedRed is the override of a limit or capacity series.
var dashedRed = []dashboard.DynamicConfigValue{
	{Id: "custom.lineStyle", Value: map[string]any{"fill": "dash", "dash": []int{10, 10}}},
	{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": "red"}},
	{Id: "custom.fillOpacity", Value: 0},
}

// rightAxis is the override of a second series with another scale.
var rightAxis = []dashboard.DynamicConfigValue{
	{Id: "custom.axisPlacement", Value: "right"},
	{Id: "unit", Value: units.OpsPerSecond},
}

func refID(i int) string { return string(rune('A' + i)) }

// runbooks maps a panel's title to the alert whose runbook section it
// links to: the panels an on-call engineer opens for that alert.
var runbooks = map[string]string{
	"Failure ratio":                   "MusterErrorBudgetBurn",
	"Failure ratio by client":         "MusterErrorBudgetBurn",
	"Failed items /s by error type":   "MusterErrorBudgetBurn",
	"Failure ratio per process":       "MusterErrorBudgetBurn",
	"In-flight vs limit":              "MusterInflightAtLimit",
	"In-flight batches vs limit":      "MusterInflightAtLimit",
	"In flight / limit per process":   "MusterInflightAtLimit",
	"Queue size vs capacity":          "MusterQueueNearlyFull",
	"Queue fill per process":          "MusterQueueNearlyFull",
	"Producer blocked time p99":       "MusterProducersBlocked",
	"Blocked adds /s":                 "MusterProducersBlocked",
	"Batches waiting for tokens":      "MusterRateLimited",
	"Rate-limit wait p99":             "MusterRateLimited",
	"Batch wait":                      "MusterBatchWaitFarPastTimeout",
	"Items added vs processed /s":     "MusterNoItemsProcessed",
	"Pending items (lost on a crash)": "MusterNoItemsProcessed",
	"Pending items per process":       "MusterNoItemsProcessed",
	titleJournalOldest:                "MusterJournalOldestItemTooOld",
	titleJournalBytes:                 "MusterJournalFilling",
	titleJournalCorrupt:               "MusterJournalCorrupt",
}

// runbookLink is a panel's link to the runbook section of an alert.
func runbookLink(alert string) []cog.Builder[dashboard.DashboardLink] {
	return []cog.Builder[dashboard.DashboardLink]{dashboard.NewDashboardLinkBuilder("Runbook: " + alert).
		Type(dashboard.DashboardLinkTypeLink).
		Url(RunbookBase + "#" + strings.ToLower(alert)).
		TargetBlank(true)}
}

func (p panel) builder(id uint32) cog.Builder[dashboard.Panel] {
	queries := make([]cog.Builder[variants.Dataquery], len(p.targets))
	for i, t := range p.targets {
		q := prometheus.NewDataqueryBuilder().
			RefId(refID(i)).
			Datasource(datasource).
			Expr(t.expr).
			LegendFormat(t.legend).
			Range()
		if t.exemplar {
			q.Exemplar(true)
		}
		queries[i] = q
	}
	const height = 8
	switch p.kind {
	case kindStat:
		b := stat.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.desc).Unit(p.unit).
			Span(p.width).Height(5).
			Datasource(datasource).
			Targets(queries).
			GraphMode(common.BigValueGraphModeArea).
			ColorMode(common.BigValueColorModeValue).
			TextMode(common.BigValueTextModeValue).
			Orientation(common.VizOrientationAuto).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			Thresholds(thresholds(p.steps))
		if p.noValue != "" {
			b.NoValue(p.noValue)
		}
		if alert, ok := runbooks[p.title]; ok {
			b.Links(runbookLink(alert))
		}
		return b
	default:
		b := timeseries.NewPanelBuilder().
			Id(id).Title(p.title).Description(p.desc).Unit(p.unit).
			Span(p.width).Height(height).
			Datasource(datasource).
			Targets(queries).
			Legend(legendOptions()).
			Tooltip(tooltipOptions()).
			FillOpacity(10).
			ShowPoints(common.VisibilityModeNever).
			Thresholds(thresholds(nil))
		if p.noValue != "" {
			b.NoValue(p.noValue)
		}
		if p.stack {
			b.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
		}
		if p.min != nil {
			b.Min(*p.min)
		}
		if p.max != nil {
			b.Max(*p.max)
		}
		for i, t := range p.targets {
			if t.dashed {
				b.OverrideByQuery(refID(i), dashedRed)
			}
		}
		if p.title == "GC pause time" || p.title == titleJournalCommit {
			b.OverrideByQuery(refID(1), rightAxis)
		}
		if alert, ok := runbooks[p.title]; ok {
			b.Links(runbookLink(alert))
		}
		return b
	}
}

// SchemaVersion is the dashboard JSON model's version: Grafana 10.0's,
// so that Grafana 10.0 and later import the file as is (later versions
// migrate it on load, as they do any older dashboard). The foundation SDK
// writes its own newest (42, Grafana 12's) unless told otherwise.
const SchemaVersion = 38

// alertAnnotationExpr marks, on every time series panel, when a muster
// alert of the selected jobs and clients fired (the ALERTS series
// Prometheus keeps for its alerting rules).
var alertAnnotationExpr = `ALERTS{alertstate="firing", alertname=~"Muster.+", job=~"$job", ` + labelClient + `=~"$client"}`

// Build returns the dashboard.
func Build() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder(Title).
		Uid(UID).
		Description("Throughput, batch shape, latency, saturation (keys of Keyed batchers included), errors and data loss (refusals and drops by error type), and the journal of journaled ones (items kept, oldest item age, latency, dead letters) of muster batchers, from the metrics of github.com/musterhq/muster/middleware/otelmuster exported to Prometheus.").
		Tags([]string{"muster", "batching", "opentelemetry"}).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Variables(variables()).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Annotations & Alerts").
			Datasource(dashboard.DataSourceRef{Type: cog.ToPtr("grafana"), Uid: cog.ToPtr("-- Grafana --")}).
			Type("dashboard").
			BuiltIn(1).
			Enable(true).
			Hide(true).
			IconColor("rgba(0, 211, 255, 1)")).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Muster alerts").
			Datasource(common.DataSourceRef{Type: datasource.Type, Uid: datasource.Uid}).
			Enable(true).
			IconColor("red").
			Expr(alertAnnotationExpr).
			Step("30s").
			TitleFormat("{{alertname}} ({{severity}})").
			TextFormat("{{job}}/{{" + labelClient + "}} {{instance}}").
			TagKeys("severity,job," + labelClient).
			UseValueForTime(false)).
		Link(dashboard.NewDashboardLinkBuilder("Runbook").
			Type(dashboard.DashboardLinkTypeLink).
			Icon("doc").
			Tooltip("What each alert means and what to do (deploy/README.md)").
			Url(RunbookBase + "#alert-rules").
			TargetBlank(true))
	var id uint32
	for _, r := range rows() {
		id++
		rb := dashboard.NewRowBuilder(r.title).Id(id)
		if r.collapsed {
			for _, p := range r.panels {
				id++
				rb.WithPanel(p.builder(id))
			}
			b.WithRow(rb)
			continue
		}
		b.WithRow(rb)
		for _, p := range r.panels {
			id++
			b.WithPanel(p.builder(id))
		}
	}
	d, err := b.Build()
	d.SchemaVersion = SchemaVersion
	return d, err
}

// JSON returns the dashboard as committed in dashboards/muster.json:
// indented with two spaces, ending with a newline.
func JSON() ([]byte, error) {
	d, err := Build()
	if err != nil {
		return nil, fmt.Errorf("grafana: build dashboard: %w", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep =~ and > readable in queries
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("grafana: encode dashboard: %w", err)
	}
	return buf.Bytes(), nil
}
