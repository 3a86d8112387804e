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
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/internal/catalogtest"
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

// recordCatalogue records every catalogue instrument on m
// (catalogtest.Record).
func recordCatalogue(t *testing.T, ctx context.Context, m metric.Meter) {
	t.Helper()
	if err := catalogtest.Record(ctx, m); err != nil {
		t.Fatal(err)
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
	for _, s := range catalogtest.Catalogue() {
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
	for _, s := range catalogtest.Catalogue() {
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
	for _, s := range catalogtest.Catalogue() {
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
