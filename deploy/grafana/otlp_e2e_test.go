package grafana

import (
	"context"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/collector/receiver/otlpreceiver"
	"go.opentelemetry.io/collector/receiver/receivertest"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// The demo's telemetry over OTLP to a real receiver: the OpenTelemetry
// Collector's otlpreceiver (v0.165.0, built on otel v1.47 like the library),
// in this process on 127.0.0.1, with traces over gRPC and metrics over
// HTTP, configured only by the standard OTEL_* environment the demo
// honours. The demo runs a short load cycle (surge, brownout) and exits,
// flushing what it has; then the received data must show what the design
// promises an engineer who traces a slow request.

// Span and event names of the demo and of middleware/otelmuster.
const (
	batchSpanName   = "fire orders"   // one span per batch of the batcher "orders"
	requestSpanName = "handle order"  // the demo's request span, whose context reaches Add
	insertSpanName  = "INSERT orders" // one attempt at the downstream, a child of the batch span
	createSpanName  = "create orders" // an item's span in its request's trace, from Add to its batch's fire
	retryEvent      = "muster.retry"
	rateLimitEvent  = "muster.ratelimit.wait"
)

// received is what the receiver got, indexed for the checks.
type received struct {
	spans   map[pcommon.SpanID]ptrace.Span
	byName  map[string][]ptrace.Span
	metrics map[string]bool // OpenTelemetry metric names
}

// startOTLPReceiver starts an otlpreceiver with gRPC and HTTP on free
// loopback ports and returns the sinks and the two addresses.
func startOTLPReceiver(t *testing.T) (*consumertest.TracesSink, *consumertest.MetricsSink, string, string) {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	f := otlpreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*otlpreceiver.Config)
	cfg.Protocols.GRPC.GetOrInsertDefault().NetAddr.Endpoint = grpcAddr
	cfg.Protocols.HTTP.GetOrInsertDefault().ServerConfig.NetAddr.Endpoint = httpAddr
	set := receivertest.NewNopSettings(f.Type())
	traces, metrics := new(consumertest.TracesSink), new(consumertest.MetricsSink)
	ctx := context.Background()
	tr, err := f.CreateTraces(ctx, set, cfg, traces)
	if err != nil {
		t.Fatal(err)
	}
	mr, err := f.CreateMetrics(ctx, set, cfg, metrics)
	if err != nil {
		t.Fatal(err)
	}
	host := componenttest.NewNopHost()
	if err := tr.Start(ctx, host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Shutdown(context.Background()) })
	if err := mr.Start(ctx, host); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mr.Shutdown(context.Background()) })
	return traces, metrics, grpcAddr, httpAddr
}

func collect(traces *consumertest.TracesSink, metrics *consumertest.MetricsSink) received {
	r := received{spans: map[pcommon.SpanID]ptrace.Span{}, byName: map[string][]ptrace.Span{}, metrics: map[string]bool{}}
	for _, td := range traces.AllTraces() {
		for _, rs := range td.ResourceSpans().All() {
			for _, ss := range rs.ScopeSpans().All() {
				for _, s := range ss.Spans().All() {
					r.spans[s.SpanID()] = s
					r.byName[s.Name()] = append(r.byName[s.Name()], s)
				}
			}
		}
	}
	for _, md := range metrics.AllMetrics() {
		for _, rm := range md.ResourceMetrics().All() {
			for _, sm := range rm.ScopeMetrics().All() {
				for _, m := range sm.Metrics().All() {
					r.metrics[m.Name()] = true
				}
			}
		}
	}
	return r
}

func TestE2EOTLP(t *testing.T) {
	t.Parallel() // the end-to-end tests overlap: most of their time is waiting
	if os.Getenv("MUSTER_E2E_OTLP") == "0" {
		t.Skip("MUSTER_E2E_OTLP=0")
	}
	traces, metrics, grpcAddr, httpAddr := startOTLPReceiver(t)
	bin := buildDemo(t)

	env := map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":  "http://" + grpcAddr,
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL":  "grpc",
		"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://" + httpAddr + "/v1/metrics",
		"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "http/protobuf",
		"OTEL_METRIC_EXPORT_INTERVAL":         "1000",
		"OTEL_BSP_SCHEDULE_DELAY":             "500",
		"OTEL_BSP_MAX_QUEUE_SIZE":             "65536",
	}
	// Two load cycles of 4s: surges that the rate limit must absorb and
	// brownouts whose failures are retried. At 100 orders/s per producer
	// (the default is 60), a surge of 0.8s fills the queue and blocks
	// producers, for muster.add.blocked.duration.
	_, out, exited := runDemoEnv(t, bin, []string{"-duration", "8s", "-cycle", "4s", "-rate", "100", "-progress", "0"}, env)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		t.Fatalf("the demo did not exit within 60s:\n%s", out)
	}
	if !strings.Contains(out.String(), "OTLP push (grpc) to http://"+grpcAddr) {
		t.Errorf("the demo's banner does not name the OTLP trace endpoint:\n%s", out)
	}
	r := collect(traces, metrics)
	var names []string
	for n, s := range r.byName {
		names = append(names, n+"="+strconv.Itoa(len(s)))
	}
	sort.Strings(names)
	t.Logf("received %d spans (%s) and %d metric names", len(r.spans), strings.Join(names, " "), len(r.metrics))

	checkBatchSpans(t, r)
	checkMetricNames(t, r)
	checkRequestToBatchLinks(t, r)
}

// checkBatchSpans: one span per batch, a new root linked to the create
// spans of its items (each a child of the request span that added it); the
// downstream attempts are its children; retries and rate-limit waits are
// events on it.
func checkBatchSpans(t *testing.T, r received) {
	t.Helper()
	batches := r.byName[batchSpanName]
	if len(batches) == 0 {
		t.Fatalf("no %q span received", batchSpanName)
	}
	events := map[string]int{}
	unresolved, links := 0, 0
	for _, b := range batches {
		if !b.ParentSpanID().IsEmpty() {
			t.Errorf("batch span %s has a parent: want a new root", b.SpanID())
		}
		if b.Kind() == ptrace.SpanKindServer {
			t.Errorf("batch span %s is a server span", b.SpanID())
		}
		count, ok := b.Attributes().Get("messaging.batch.message_count")
		if !ok || count.Int() < 1 {
			t.Errorf("batch span %s: messaging.batch.message_count %v", b.SpanID(), count.AsRaw())
		}
		if b.Links().Len() == 0 {
			t.Errorf("batch span %s has no links to the requests whose items it carried", b.SpanID())
		}
		for _, l := range b.Links().All() {
			links++
			s, ok := r.spans[l.SpanID()]
			if !ok {
				unresolved++
				continue
			}
			if s.Name() != createSpanName || s.TraceID() != l.TraceID() {
				t.Errorf("batch span %s links to %q (trace %s), want a %q span", b.SpanID(), s.Name(), l.TraceID(), createSpanName)
				continue
			}
			if p, ok := r.spans[s.ParentSpanID()]; !ok || p.Name() != requestSpanName {
				t.Errorf("create span %s: parent %s is not a %q span", s.SpanID(), s.ParentSpanID(), requestSpanName)
			}
		}
		for _, e := range b.Events().All() {
			events[e.Name()]++
		}
	}
	// Every request span ended before the demo exited, and the exporter's
	// queue holds them all: each link must resolve.
	if unresolved > 0 {
		t.Errorf("%d of %d links from batch spans point at spans the receiver never got", unresolved, links)
	}
	for _, ev := range []string{retryEvent, rateLimitEvent} {
		if events[ev] == 0 {
			t.Errorf("no batch span has a %q event (events seen: %v)", ev, events)
		}
	}
	inserts := r.byName[insertSpanName]
	if len(inserts) < len(batches) {
		t.Errorf("%d %q spans for %d batches: want one per attempt", len(inserts), insertSpanName, len(batches))
	}
	for _, s := range inserts {
		if p, ok := r.spans[s.ParentSpanID()]; !ok || p.Name() != batchSpanName {
			t.Errorf("%q span %s: parent %s is not a batch span", insertSpanName, s.SpanID(), s.ParentSpanID())
			break
		}
	}
	t.Logf("%d batch spans, %d links, events %v", len(batches), links, events)
}

// checkMetricNames: every instrument the middleware records arrived under
// its catalogue name.
func checkMetricNames(t *testing.T, r received) {
	t.Helper()
	for _, s := range musterconv.All() {
		if !r.metrics[s.Name()] {
			t.Errorf("metric %s not received", s.Name())
		}
	}
	for _, s := range musterconv.Journal() {
		if !r.metrics[s.Name()] {
			t.Logf("!!! %s not received: the demo does not journal yet", s.Name())
		}
	}
}

// checkRequestToBatchLinks: from a request's trace one click reaches its
// batch: every create span (a child of a request span, kind PRODUCER) of an
// item that fired links to a batch span that links back to it.
func checkRequestToBatchLinks(t *testing.T, r received) {
	t.Helper()
	creates := r.byName[createSpanName]
	if len(creates) == 0 {
		t.Fatalf("no %q span received: a request's trace does not lead to its batch", createSpanName)
	}
	back := map[pcommon.SpanID][]pcommon.SpanID{} // create span -> batch spans linking to it
	for _, b := range r.byName[batchSpanName] {
		for _, l := range b.Links().All() {
			back[l.SpanID()] = append(back[l.SpanID()], b.SpanID())
		}
	}
	linked, missing := 0, 0
	for _, c := range creates {
		if p, ok := r.spans[c.ParentSpanID()]; !ok || p.Name() != requestSpanName || p.TraceID() != c.TraceID() {
			t.Errorf("create span %s: parent %s is not a %q span of its trace", c.SpanID(), c.ParentSpanID(), requestSpanName)
		}
		if c.Kind() != ptrace.SpanKindProducer {
			t.Errorf("create span %s: kind %v, want PRODUCER", c.SpanID(), c.Kind())
		}
		for _, l := range c.Links().All() {
			b, ok := r.spans[l.SpanID()]
			if !ok || b.Name() != batchSpanName {
				continue
			}
			linked++
			if !slices.Contains(back[c.SpanID()], b.SpanID()) {
				missing++
			}
		}
	}
	if linked == 0 {
		t.Errorf("no %q span links to a batch span", createSpanName)
	}
	if missing > 0 {
		t.Errorf("%d create->batch links have no batch->create link back", missing)
	}
	t.Logf("%d create spans, %d linked to their batch span both ways", len(creates), linked-missing)
}
