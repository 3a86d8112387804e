package grafana

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// exposition is a scrape: metric families by name, and the label names seen
// on each series name (_bucket, _sum and _count included).
type exposition struct {
	families map[string]*dto.MetricFamily
	labels   map[string]map[string]bool
}

// has reports whether a series name is in the scrape: a family, or a
// histogram's or summary's _bucket, _sum or _count.
func (x exposition) has(series string) bool {
	if _, ok := x.families[series]; ok {
		return true
	}
	base := familyOf(series)
	f, ok := x.families[base]
	if !ok || base == series {
		return false
	}
	switch f.GetType() {
	case dto.MetricType_HISTOGRAM:
		return true
	case dto.MetricType_SUMMARY:
		return !strings.HasSuffix(series, "_bucket")
	}
	return false
}

// labelsOf returns the label names of a series, with job and instance,
// which Prometheus adds when it scrapes, and le on buckets.
func (x exposition) labelsOf(series string) map[string]bool {
	out := map[string]bool{"job": true, "instance": true}
	for l := range x.labels[familyOf(series)] {
		out[l] = true
	}
	if strings.HasSuffix(series, "_bucket") {
		out["le"] = true
	}
	return out
}

var (
	scrapeOnce sync.Once
	scraped    exposition
	scrapeErr  string
)

// realExposition builds providers with telemetry.Setup, records one value
// on every instrument of the catalogue, and scrapes the metrics handler
// over HTTP. It runs once per test binary.
func realExposition(t *testing.T) exposition {
	t.Helper()
	scrapeOnce.Do(func() { scraped, scrapeErr = scrapeCatalogue() })
	if scrapeErr != "" {
		t.Fatal(scrapeErr)
	}
	return scraped
}

func scrapeCatalogue() (exposition, string) {
	ctx := context.Background()
	p, err := telemetry.Setup(ctx, telemetry.WithServiceName("muster-dashboard-test"), telemetry.WithoutOTLP())
	if err != nil {
		return exposition{}, "telemetry.Setup: " + err.Error()
	}
	defer p.Shutdown(ctx)
	if msg := recordCatalogue(ctx, p.MeterProvider().Meter("github.com/musterhq/muster/deploy/grafana")); msg != "" {
		return exposition{}, msg
	}

	srv := httptest.NewServer(p.MetricsHandler())
	defer srv.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/metrics", nil)
	if err != nil {
		return exposition{}, err.Error()
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4") // what Prometheus 2.x asks for first
	resp, err := srv.Client().Do(req)
	if err != nil {
		return exposition{}, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return exposition{}, err.Error()
	}
	if resp.StatusCode != http.StatusOK {
		return exposition{}, "scrape: " + resp.Status + ": " + string(body)
	}
	tp := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := tp.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return exposition{}, "parse scrape: " + err.Error()
	}
	x := exposition{families: fams, labels: map[string]map[string]bool{}}
	for name, f := range fams {
		ls := map[string]bool{}
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				ls[lp.GetName()] = true
			}
		}
		x.labels[name] = ls
	}
	return x, ""
}

// recordCatalogue creates every instrument of the catalogue and records a
// value with muster.batcher.name and, where the instrument has them, a
// trigger and an error.type (failed and successful both).
func recordCatalogue(ctx context.Context, m metric.Meter) string {
	name := musterconv.BatcherName("orders")
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{name}, kv...)...))
	}
	failed := musterconv.ErrorTypeKey.String("timeout")
	trigger := musterconv.BatchTrigger(musterconv.TriggerTimeout)
	observe := func(v int64) metric.Int64ObservableOption {
		return metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(v, with())
			return nil
		})
	}
	counter := func(s musterconv.Int64CounterSpec) func() error {
		return func() error {
			c, err := s.New(m)
			if err == nil {
				c.Add(ctx, 10, with())
				c.Add(ctx, 1, with(failed))
			}
			return err
		}
	}
	floatHist := func(s musterconv.Float64HistogramSpec, v float64, kv ...attribute.KeyValue) func() error {
		return func() error {
			h, err := s.New(m)
			if err == nil {
				h.Record(ctx, v, with(kv...))
			}
			return err
		}
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
			if err == nil {
				c.Add(ctx, 1, with(failed))
			}
			return err
		},
		musterconv.ItemDropped.Name(): func() error {
			c, err := musterconv.ItemDropped.New(m)
			if err == nil {
				c.Add(ctx, 1, with(musterconv.ErrorTypeKey.String("dropped")))
			}
			return err
		},
		musterconv.ItemProcessed.Name(): counter(musterconv.ItemProcessed),
		musterconv.BatchRetries.Name():  counter(musterconv.BatchRetries),
		musterconv.JournalItems.Name(): func() error {
			_, err := musterconv.JournalItems.New(m, observe(12))
			return err
		},
		musterconv.JournalBytes.Name(): func() error {
			_, err := musterconv.JournalBytes.New(m, observe(4096))
			return err
		},
		musterconv.JournalBytesLimit.Name(): func() error {
			_, err := musterconv.JournalBytesLimit.New(m, observe(1<<20))
			return err
		},
		musterconv.JournalOldestAge.Name(): func() error {
			_, err := musterconv.JournalOldestAge.New(m, metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
				o.Observe(3.5, with())
				return nil
			}))
			return err
		},
		musterconv.JournalAppendDuration.Name(): func() error {
			h, err := musterconv.JournalAppendDuration.New(m)
			if err == nil {
				h.Record(ctx, 0.002, with())
				h.Record(ctx, 1, with(musterconv.ErrorTypeKey.String("journal_full")))
			}
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
			if err == nil {
				c.Add(ctx, 5, with())
			}
			return err
		},
		musterconv.JournalDeadLettered.Name(): func() error {
			c, err := musterconv.JournalDeadLettered.New(m)
			if err == nil {
				c.Add(ctx, 2, with(musterconv.ErrorTypeKey.String("expired")))
			}
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
		musterconv.BatchSize.Name(): func() error {
			h, err := musterconv.BatchSize.New(m)
			if err == nil {
				h.Record(ctx, 100, with(trigger))
			}
			return err
		},
		musterconv.BatchUtilization.Name():  floatHist(musterconv.BatchUtilization, 0.5, trigger),
		musterconv.BatchWaitDuration.Name(): floatHist(musterconv.BatchWaitDuration, 0.1, trigger),
		musterconv.BatchDuration.Name(): func() error {
			h, err := musterconv.BatchDuration.New(m)
			if err == nil {
				h.Record(ctx, 0.2, with())
				h.Record(ctx, 2, with(failed))
			}
			return err
		},
		musterconv.AddBlockedDuration.Name():    floatHist(musterconv.AddBlockedDuration, 0.001),
		musterconv.RateLimitWaitDuration.Name(): floatHist(musterconv.RateLimitWaitDuration, 0.05),
		musterconv.BatchInflight.Name(): func() error {
			c, err := musterconv.BatchInflight.New(m)
			if err == nil {
				c.Add(ctx, 2, with())
			}
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
			_, err := musterconv.ItemPending.New(m, observe(57))
			return err
		},
		musterconv.KeyPending.Name(): func() error {
			_, err := musterconv.KeyPending.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(40, with(musterconv.BatchKeyKey.String("eu")))
				return nil
			}))
			return err
		},
		musterconv.KeyWaiting.Name(): func() error {
			_, err := musterconv.KeyWaiting.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
				o.Observe(2, with(musterconv.BatchKeyKey.String("eu")))
				return nil
			}))
			return err
		},
	}
	for _, s := range catalogue() {
		f, ok := record[s.Name()]
		if !ok {
			return "the test does not record " + s.Name() + ", new in the catalogue: add it to recordCatalogue (and to the dashboard)"
		}
		if err := f(); err != nil {
			return "create " + s.Name() + ": " + err.Error()
		}
	}
	if err := recordSharedQuota(ctx, m); err != nil {
		return "shared quota: " + err.Error()
	}
	return ""
}

// catalogue is what the dashboard and the alert rules show: the batchers'
// instruments (musterconv.All) and the journal's (musterconv.Journal).
func catalogue() []musterconv.Spec {
	return append(musterconv.All(), musterconv.Journal()...)
}

// TestExpositionHasCatalogue: the scrape holds every series the catalogue
// names, with the labels it names, so the checks below compare the
// dashboard with the real thing.
func TestExpositionHasCatalogue(t *testing.T) {
	x := realExposition(t)
	for _, s := range catalogue() {
		for _, series := range s.PrometheusSeries() {
			if !x.has(series) {
				t.Errorf("%s: series %s not in the scrape", s.Name(), series)
			}
		}
		got := x.labelsOf(s.PrometheusName())
		for _, l := range s.PrometheusLabels() {
			if !got[l] {
				t.Errorf("%s: label %s not in the scrape (labels: %v)", s.Name(), l, sortedKeys(got))
			}
		}
	}
}

// TestDashboardMetricsExist: every series a dashboard query or variable
// names is in the real exposition, every label it matches or groups by is on
// the series it reads, and the dashboard uses every instrument of the
// catalogue.
func TestDashboardMetricsExist(t *testing.T) {
	x := realExposition(t)
	d := loadDashboard(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		e := mustParse(t, where, expr)
		for _, s := range selectors(e) {
			name := s.metricName()
			used[familyOf(name)] = true
			used[name] = true
			if !x.has(name) {
				t.Errorf("%s: %s is not in the exposition of telemetry.Setup", where, name)
				continue
			}
			have := x.labelsOf(name)
			for _, m := range s.vs.LabelMatchers {
				if m.Name != "__name__" && !have[m.Name] {
					t.Errorf("%s: %s has no label %s (labels: %v)", where, name, m.Name, sortedKeys(have))
				}
			}
		}
		checkGrouping(t, where, e, x)
	}
	for _, p := range d.queryPanels() {
		for _, tg := range p.Targets {
			check(panelRef(p)+" "+tg.RefID, tg.Expr)
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			sel, label, err := labelValuesArg(v.queryString())
			if err != nil {
				t.Fatal(err)
			}
			check("variable "+v.Name, sel)
			e := mustParse(t, v.Name, sel)
			for _, s := range selectors(e) {
				if !x.labelsOf(s.metricName())[label] {
					t.Errorf("variable %s: %s has no label %s", v.Name, s.metricName(), label)
				}
			}
		}
	}
	for _, s := range catalogue() {
		if !used[s.PrometheusName()] {
			t.Errorf("the dashboard does not show %s (%s)", s.Name(), s.PrometheusName())
		}
	}
}

// checkGrouping: the labels of every sum by (...) and on (...) are labels
// of the series below them.
func checkGrouping(t *testing.T, where string, e parser.Expr, x exposition) {
	t.Helper()
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		var groups []string
		switch n := n.(type) {
		case *parser.AggregateExpr:
			if n.Without {
				t.Errorf("%s: without (...) hides which labels remain; use by (...)", where)
			}
			groups = n.Grouping
		case *parser.BinaryExpr:
			if n.VectorMatching != nil && n.VectorMatching.On {
				groups = n.VectorMatching.MatchingLabels
			}
		default:
			return nil
		}
		have := map[string]bool{}
		for _, s := range selectors(n.(parser.Expr)) {
			for l := range x.labelsOf(s.metricName()) {
				have[l] = true
			}
		}
		for _, g := range groups {
			if !have[g] {
				t.Errorf("%s: groups by %s, which none of its series has (%v)", where, g, sortedKeys(have))
			}
		}
		return nil
	})
}

func sortedKeys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestExpositionLabelsAreCatalogue: muster's series carry only the
// catalogue's labels (no scope labels that would split series).
func TestExpositionLabelsAreCatalogue(t *testing.T) {
	x := realExposition(t)
	for _, s := range catalogue() {
		want := append(s.PrometheusLabels(), "job", "instance")
		if s.Kind() == musterconv.KindHistogram {
			want = append(want, "le")
		}
		for l := range x.labelsOf(s.PrometheusName()) {
			if !slices.Contains(want, l) {
				t.Errorf("%s: unexpected label %s on %s", s.Name(), l, s.PrometheusName())
			}
		}
	}
}
