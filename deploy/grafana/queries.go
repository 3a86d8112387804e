package grafana

import (
	"fmt"
	"strings"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// Label names, from the catalogue's attribute keys.
var (
	labelClient  = musterconv.PrometheusLabel(musterconv.BatcherNameKey)  // muster_batcher_name
	labelTrigger = musterconv.PrometheusLabel(musterconv.BatchTriggerKey) // muster_batch_trigger
	labelError   = musterconv.PrometheusLabel(musterconv.ErrorTypeKey)    // error_type
	labelKey     = musterconv.PrometheusLabel(musterconv.BatchKeyKey)     // muster_batch_key
)

// Extra matchers. error.type is set only when an operation failed, so a
// successful series has no error_type label at all: error_type="" selects
// it, error_type!="" selects the failures.
var (
	failed    = labelError + `!=""`
	succeeded = labelError + `=""`
)

// Every muster selector carries these matchers (dashboard-linter's
// target-job-rule and target-instance-rule, plus the client variable).
var musterMatchers = []string{
	`job=~"$job"`,
	`instance=~"$instance"`,
	labelClient + `=~"$client"`,
}

// Selectors of the Go runtime and process collectors, which know nothing of
// clients, carry only these.
var runtimeMatchers = []string{
	`job=~"$job"`,
	`instance=~"$instance"`,
}

// rateInterval is the range of every rate and increase: Grafana sets it to
// at least four scrape intervals.
const rateInterval = "$__rate_interval"

// promSeries is a Prometheus series name. Muster's come from the catalogue (see
// name and histogram); the Go runtime's are the client_golang collectors'
// that telemetry.Setup registers.
type promSeries string

// name returns the series name of a counter or gauge of the catalogue.
func name(s musterconv.Spec) promSeries {
	series := s.PrometheusSeries()
	if len(series) != 1 {
		panic(fmt.Sprintf("grafana: %s is a histogram; use histogram()", s.Name()))
	}
	return promSeries(series[0])
}

// hist is the three series of a histogram of the catalogue.
type hist struct{ bucket, sum, count promSeries }

// histogram returns the _bucket, _sum and _count series of a histogram of
// the catalogue, as the catalogue names them.
func histogram(s musterconv.Spec) hist {
	var h hist
	for _, series := range s.PrometheusSeries() {
		switch series {
		case s.PrometheusName() + "_bucket":
			h.bucket = promSeries(series)
		case s.PrometheusName() + "_sum":
			h.sum = promSeries(series)
		case s.PrometheusName() + "_count":
			h.count = promSeries(series)
		}
	}
	if h.bucket == "" || h.sum == "" || h.count == "" {
		panic(fmt.Sprintf("grafana: %s is not a histogram", s.Name()))
	}
	return h
}

// The catalogue's series used by the dashboard.
var (
	itemAdded      = name(musterconv.ItemAdded.Spec)
	itemRefused    = name(musterconv.ItemRefused.Spec)
	itemDropped    = name(musterconv.ItemDropped.Spec)
	itemProcessed  = name(musterconv.ItemProcessed.Spec)
	batchRetries   = name(musterconv.BatchRetries.Spec)
	batchInflight  = name(musterconv.BatchInflight.Spec)
	inflightLimit  = name(musterconv.BatchInflightLimit.Spec)
	queueSize      = name(musterconv.QueueSize.Spec)
	queueCapacity  = name(musterconv.QueueCapacity.Spec)
	batcherKeys    = name(musterconv.BatcherKeys.Spec)
	itemPending    = name(musterconv.ItemPending.Spec)
	keyPending     = name(musterconv.KeyPending.Spec)
	keyWaiting     = name(musterconv.KeyWaiting.Spec)
	batchSize      = histogram(musterconv.BatchSize.Spec)
	batchFill      = histogram(musterconv.BatchUtilization.Spec)
	batchWait      = histogram(musterconv.BatchWaitDuration.Spec)
	batchDuration  = histogram(musterconv.BatchDuration.Spec)
	addBlocked     = histogram(musterconv.AddBlockedDuration.Spec)
	rateLimitWait  = histogram(musterconv.RateLimitWaitDuration.Spec)
	journalItems   = name(musterconv.JournalItems.Spec)
	journalBytes   = name(musterconv.JournalBytes.Spec)
	journalLimit   = name(musterconv.JournalBytesLimit.Spec)
	journalOldest  = name(musterconv.JournalOldestAge.Spec)
	journalAppend  = histogram(musterconv.JournalAppendDuration.Spec)
	journalSyncs   = name(musterconv.JournalSyncs.Spec)
	journalSyncT   = name(musterconv.JournalSyncTime.Spec)
	journalReplay  = name(musterconv.JournalRecovered.Spec)
	journalDead    = name(musterconv.JournalDeadLettered.Spec)
	journalCorrupt = name(musterconv.JournalCorrupt.Spec)
	journalTakeov  = name(musterconv.JournalTakeovers.Spec)
	goGoroutines   = promSeries("go_goroutines")
	goHeapAlloc    = promSeries("go_memstats_heap_alloc_bytes")
	processRSS     = promSeries("process_resident_memory_bytes")
	goGCPauseSum   = promSeries("go_gc_duration_seconds_sum")
	goGCPauseCount = promSeries("go_gc_duration_seconds_count")
	processCPU     = promSeries("process_cpu_seconds_total")
)

// sel is a selector of a muster series with the dashboard's matchers and
// extra ones.
func sel(m promSeries, extra ...string) string {
	return string(m) + "{" + strings.Join(append(append([]string(nil), musterMatchers...), extra...), ", ") + "}"
}

// runtimeSel is a selector of a Go runtime or process series.
func runtimeSel(m promSeries) string {
	return string(m) + "{" + strings.Join(runtimeMatchers, ", ") + "}"
}

// rate is rate(selector[$__rate_interval]).
func rate(selector string) string { return "rate(" + selector + "[" + rateInterval + "])" }

// sumBy is sum by (labels) (expr), or sum(expr) without labels.
func sumBy(expr string, labels ...string) string {
	if len(labels) == 0 {
		return "sum(" + expr + ")"
	}
	return "sum by (" + strings.Join(labels, ", ") + ") (" + expr + ")"
}

// quantile is the q-quantile of a histogram's buckets per the given labels,
// over the dashboard's selection plus extra matchers.
func quantile(q float64, h hist, by []string, extra ...string) string {
	return fmt.Sprintf("histogram_quantile(%g, %s)", q, sumBy(rate(sel(h.bucket, extra...)), append([]string{"le"}, by...)...))
}

// topk is topk(k, expr).
func topk(k int, expr string) string { return fmt.Sprintf("topk(%d, %s)", k, expr) }

// ratio is a / b, matched on the given labels (one-to-one).
func ratio(a, b string, on ...string) string {
	if len(on) == 0 {
		return a + " / " + b
	}
	return a + " / on (" + strings.Join(on, ", ") + ") " + b
}

// legend is a Grafana legend template naming the given labels. A client
// is shown as job/client (batchers of the same name in two services are two
// clients), so a job label of its own is left out.
func legend(prefix string, labels ...string) string {
	parts := make([]string, 0, len(labels)+1)
	if prefix != "" {
		parts = append(parts, prefix)
	}
	for _, l := range labels {
		switch l {
		case "job":
		case labelClient:
			parts = append(parts, "{{job}}/{{"+l+"}}")
		default:
			parts = append(parts, "{{"+l+"}}")
		}
	}
	return strings.Join(parts, " ")
}
