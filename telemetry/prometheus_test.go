package telemetry_test

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// setupPrometheus returns providers with only the Prometheus exporter, shut
// down at the end of the test.
func setupPrometheus(t *testing.T) *telemetry.Providers {
	t.Helper()
	p, err := telemetry.Setup(context.Background(),
		telemetry.WithServiceName("musterconv-test"),
		telemetry.WithoutOTLP(), // hermetic whatever the environment says
	)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Shutdown(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return p
}

// recordCatalogue creates every catalogue instrument on m and records one
// measurement (two for the counters with error.type) with
// muster.batcher.name and the instrument's other attributes.
func recordCatalogue(t *testing.T, ctx context.Context, m metric.Meter) {
	t.Helper()
	name := musterconv.BatcherName("orders")
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{name}, kv...)...))
	}
	failed := musterconv.ErrorTypeKey.String("canceled")
	bySize := musterconv.BatchTrigger(musterconv.TriggerSize)
	observe := func(v int64) metric.Int64ObservableOption {
		return metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(v, with())
			return nil
		})
	}

	record := map[string]func() error{
		musterconv.ItemAdded.Name(): func() error {
			_, err := musterconv.ItemAdded.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(100, with())
				return nil
			}))
			return err
		},
		musterconv.ItemRefused.Name(): func() error {
			c, err := musterconv.ItemRefused.New(m)
			c.Add(ctx, 1, with(failed))
			return err
		},
		musterconv.ItemDropped.Name(): func() error {
			c, err := musterconv.ItemDropped.New(m)
			c.Add(ctx, 2, with(musterconv.ErrorTypeKey.String("dropped")))
			return err
		},
		musterconv.ItemProcessed.Name(): func() error {
			c, err := musterconv.ItemProcessed.New(m)
			c.Add(ctx, 90, with())
			c.Add(ctx, 10, with(failed))
			return err
		},
		musterconv.BatchSize.Name(): func() error {
			h, err := musterconv.BatchSize.New(m)
			h.Record(ctx, 100, with(bySize))
			return err
		},
		musterconv.BatchUtilization.Name(): func() error {
			h, err := musterconv.BatchUtilization.New(m)
			h.Record(ctx, 1, with(bySize))
			return err
		},
		musterconv.BatchWaitDuration.Name(): func() error {
			h, err := musterconv.BatchWaitDuration.New(m)
			h.Record(ctx, 0.02, with(musterconv.BatchTrigger(musterconv.TriggerTimeout)))
			return err
		},
		musterconv.BatchDuration.Name(): func() error {
			h, err := musterconv.BatchDuration.New(m)
			h.Record(ctx, 0.15, with())
			h.Record(ctx, 2, with(failed))
			return err
		},
		musterconv.BatchInflight.Name(): func() error {
			c, err := musterconv.BatchInflight.New(m)
			c.Add(ctx, 2, with())
			return err
		},
		musterconv.BatchInflightLimit.Name(): func() error {
			_, err := musterconv.BatchInflightLimit.New(m, observe(4))
			return err
		},
		musterconv.QueueSize.Name(): func() error {
			_, err := musterconv.QueueSize.New(m, observe(7))
			return err
		},
		musterconv.QueueCapacity.Name(): func() error {
			_, err := musterconv.QueueCapacity.New(m, observe(1000))
			return err
		},
		musterconv.BatcherKeys.Name(): func() error {
			_, err := musterconv.BatcherKeys.New(m, observe(3))
			return err
		},
		musterconv.ItemPending.Name(): func() error {
			_, err := musterconv.ItemPending.New(m, observe(560))
			return err
		},
		musterconv.KeyPending.Name(): func() error {
			_, err := musterconv.KeyPending.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(400, with(musterconv.BatchKeyKey.String("eu")))
				return nil
			}))
			return err
		},
		musterconv.KeyWaiting.Name(): func() error {
			_, err := musterconv.KeyWaiting.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(3, with(musterconv.BatchKeyKey.String("eu")))
				return nil
			}))
			return err
		},
		musterconv.AddBlockedDuration.Name(): func() error {
			h, err := musterconv.AddBlockedDuration.New(m)
			h.Record(ctx, 0.0003, with())
			return err
		},
		musterconv.RateLimitWaitDuration.Name(): func() error {
			h, err := musterconv.RateLimitWaitDuration.New(m)
			h.Record(ctx, 0.5, with())
			return err
		},
		musterconv.BatchRetries.Name(): func() error {
			c, err := musterconv.BatchRetries.New(m)
			c.Add(ctx, 3, with(failed))
			return err
		},
		musterconv.JournalItems.Name(): func() error {
			_, err := musterconv.JournalItems.New(m, observe(12))
			return err
		},
		musterconv.JournalBytes.Name(): func() error {
			_, err := musterconv.JournalBytes.New(m, observe(4096))
			return err
		},
		musterconv.JournalBytesLimit.Name(): func() error {
			_, err := musterconv.JournalBytesLimit.New(m, observe(1<<30))
			return err
		},
		musterconv.JournalOldestAge.Name(): func() error {
			_, err := musterconv.JournalOldestAge.New(m, metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
				o.Observe(1.5, with())
				return nil
			}))
			return err
		},
		musterconv.JournalAppendDuration.Name(): func() error {
			h, err := musterconv.JournalAppendDuration.New(m)
			h.Record(ctx, 0.002, with())
			h.Record(ctx, 0.5, with(musterconv.ErrorTypeKey.String("journal_full")))
			return err
		},
		musterconv.JournalSyncs.Name(): func() error {
			_, err := musterconv.JournalSyncs.New(m, observe(40))
			return err
		},
		musterconv.JournalSyncTime.Name(): func() error {
			_, err := musterconv.JournalSyncTime.New(m, metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
				o.Observe(0.08, with())
				return nil
			}))
			return err
		},
		musterconv.JournalRecovered.Name(): func() error {
			c, err := musterconv.JournalRecovered.New(m)
			c.Add(ctx, 5, with())
			return err
		},
		musterconv.JournalDeadLettered.Name(): func() error {
			c, err := musterconv.JournalDeadLettered.New(m)
			c.Add(ctx, 2, with(musterconv.ErrorTypeKey.String("expired")))
			return err
		},
		musterconv.JournalCorrupt.Name(): func() error {
			_, err := musterconv.JournalCorrupt.New(m, observe(1))
			return err
		},
		musterconv.JournalTakeovers.Name(): func() error {
			_, err := musterconv.JournalTakeovers.New(m, observe(1))
			return err
		},
	}
	specs := append(musterconv.All(), musterconv.Journal()...)
	if len(record) != len(specs) {
		t.Fatalf("the test records %d instruments, the catalogue has %d", len(record), len(specs))
	}
	for _, s := range specs {
		f, ok := record[s.Name()]
		if !ok {
			t.Fatalf("the test does not record %s", s.Name())
		}
		if err := f(); err != nil {
			t.Fatalf("create %s: %v", s.Name(), err)
		}
	}
}

// scrape GETs the handler through an HTTP server, with the given Accept
// header ("" for the default).
func scrape(t *testing.T, h http.Handler, accept string) (contentType, body string) {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	return resp.Header.Get("Content-Type"), string(b)
}

// seriesNames returns the distinct metric names of the sample lines of an
// exposition, and the label names seen on each.
func seriesNames(body string) map[string][]string {
	names := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		name := line[:end]
		labels := names[name]
		if line[end] == '{' {
			for _, kv := range strings.Split(line[end+1:strings.IndexByte(line, '}')], ",") {
				if l, _, ok := strings.Cut(kv, "="); ok && !slices.Contains(labels, l) {
					labels = append(labels, l)
				}
			}
		}
		names[name] = labels
	}
	return names
}

// TestPrometheusNames fixes the Prometheus names of the catalogue: every
// instrument created through Setup's MeterProvider appears in the scrape
// under exactly the series names, type, help and labels musterconv states,
// and no other muster_ series appears.
func TestPrometheusNames(t *testing.T) {
	p := setupPrometheus(t)
	recordCatalogue(t, context.Background(), p.MeterProvider().Meter("github.com/musterhq/muster/middleware"))

	ct, body := scrape(t, p.MetricsHandler(), "")
	if !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text format", ct)
	}
	t.Logf("scrape:\n%s", body)
	got := seriesNames(body)

	want := map[string]musterconv.Spec{}
	for _, s := range append(musterconv.All(), musterconv.Journal()...) {
		for _, series := range s.PrometheusSeries() {
			want[series] = s
		}
	}
	for series, s := range want {
		labels, ok := got[series]
		if !ok {
			t.Errorf("%s: series %s missing from the scrape", s.Name(), series)
			continue
		}
		allowed := s.PrometheusLabels()
		if strings.HasSuffix(series, "_bucket") {
			allowed = append(allowed, "le")
		}
		if !slices.Contains(labels, "muster_batcher_name") {
			t.Errorf("%s: no muster_batcher_name label (labels %v)", series, labels)
		}
		for _, l := range labels {
			if !slices.Contains(allowed, l) {
				t.Errorf("%s: label %s is not among the catalogue's %v", series, l, allowed)
			}
		}
	}
	var extra []string
	for series := range got {
		if strings.HasPrefix(series, "muster_") {
			if _, ok := want[series]; !ok {
				extra = append(extra, series)
			}
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("series not in the catalogue: %v", extra)
	}

	// TYPE and HELP, through the text parser.
	parser := expfmt.NewTextParser(model.LegacyValidation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range append(musterconv.All(), musterconv.Journal()...) {
		mf, ok := families[s.PrometheusName()]
		if !ok {
			t.Errorf("%s: no family %s", s.Name(), s.PrometheusName())
			continue
		}
		if got, want := strings.ToLower(mf.GetType().String()), s.Kind().PrometheusType(); got != want {
			t.Errorf("%s: TYPE %s, want %s", s.PrometheusName(), got, want)
		}
		if mf.GetHelp() != s.Description() {
			t.Errorf("%s: HELP %q, want %q", s.PrometheusName(), mf.GetHelp(), s.Description())
		}
	}

	// The exporter options: no scope labels, target_info present, and the
	// Go runtime and process collectors registered.
	for series, labels := range got {
		for _, l := range labels {
			if strings.HasPrefix(l, "otel_scope_") {
				t.Errorf("%s has scope label %s", series, l)
			}
		}
	}
	for _, series := range []string{"target_info", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count", "process_cpu_seconds_total"} {
		if _, ok := got[series]; !ok {
			t.Errorf("series %s missing", series)
		}
	}
	if ti := got["target_info"]; !slices.Contains(ti, "service_name") {
		t.Errorf("target_info labels %v lack service_name", ti)
	}
}

// TestPrometheusBuckets checks that histograms are scraped with the
// catalogue's bucket boundaries, not the SDK's millisecond-sized defaults,
// and that a 20 ms wait lands in the (0.01, 0.025] bucket.
func TestPrometheusBuckets(t *testing.T) {
	p := setupPrometheus(t)
	recordCatalogue(t, context.Background(), p.MeterProvider().Meter("test"))
	families, err := p.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, mf := range families {
		byName[mf.GetName()] = mf
	}
	for _, s := range append(musterconv.All(), musterconv.Journal()...) {
		if s.Kind() != musterconv.KindHistogram {
			continue
		}
		mf := byName[s.PrometheusName()]
		if mf == nil || len(mf.GetMetric()) == 0 {
			t.Errorf("%s: not gathered", s.PrometheusName())
			continue
		}
		for _, m := range mf.GetMetric() {
			var bounds []float64
			for _, b := range m.GetHistogram().GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			if !slices.Equal(bounds, s.Buckets()) {
				t.Errorf("%s: le bounds %v, want %v", s.PrometheusName(), bounds, s.Buckets())
			}
		}
	}

	// Through the handler: the le labels of the 20 ms wait.
	_, body := scrape(t, p.MetricsHandler(), "")
	cumulative := map[string]string{}
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, "muster_batch_wait_duration_seconds_bucket{"); ok {
			_, le, _ := strings.Cut(rest, `le="`)
			le, count, _ := strings.Cut(le, `"} `)
			cumulative[le] = strings.TrimSpace(count)
		}
	}
	for le, want := range map[string]string{"0.0001": "0", "0.01": "0", "0.025": "1", "60": "1", "+Inf": "1"} {
		if cumulative[le] != want {
			t.Errorf(`muster_batch_wait_duration_seconds_bucket{le=%q} = %q, want %s (all: %v)`, le, cumulative[le], want, cumulative)
		}
	}
	for _, sdkDefault := range []string{"750", "2500", "7500"} {
		if _, ok := cumulative[sdkDefault]; ok {
			t.Errorf("le=%q: the SDK's default buckets are in use", sdkDefault)
		}
	}
}

// TestPrometheusLint runs promlint over everything the registry serves.
func TestPrometheusLint(t *testing.T) {
	p := setupPrometheus(t)
	recordCatalogue(t, context.Background(), p.MeterProvider().Meter("test"))
	problems, err := testutil.GatherAndLint(p.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("promlint: %s: %s", pr.Metric, pr.Text)
	}
}

// TestPrometheusOpenMetrics checks the OpenMetrics exposition (what a
// Prometheus server negotiates): the same series names, and exemplars that
// carry the trace id of the span a measurement was recorded in.
func TestPrometheusOpenMetrics(t *testing.T) {
	p := setupPrometheus(t)
	ctx, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	recordCatalogue(t, ctx, p.MeterProvider().Meter("test"))
	span.End()

	ct, body := scrape(t, p.MetricsHandler(), "application/openmetrics-text; version=1.0.0")
	if !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("Content-Type %q, want OpenMetrics", ct)
	}
	got := seriesNames(body)
	for _, s := range musterconv.All() {
		for _, series := range s.PrometheusSeries() {
			if _, ok := got[series]; !ok {
				t.Errorf("OpenMetrics: series %s missing", series)
			}
		}
	}
	traceID := span.SpanContext().TraceID().String()
	if !strings.Contains(body, `trace_id="`+traceID+`"`) {
		t.Errorf("no exemplar with trace_id %s in\n%s", traceID, body)
	}
}
