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
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/internal/catalogtest"
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

// recordCatalogue records every instrument of the catalogue
// (catalogtest.Record) and of a shared rate limiter.
func recordCatalogue(ctx context.Context, m metric.Meter) string {
	if err := catalogtest.Record(ctx, m); err != nil {
		return err.Error()
	}
	if err := recordSharedQuota(ctx, m); err != nil {
		return "shared quota: " + err.Error()
	}
	return ""
}

// catalogue is what the dashboard and the alert rules show: the batchers'
// instruments (musterconv.All) and the journal's (musterconv.Journal).
func catalogue() []musterconv.Spec {
	return catalogtest.Catalogue()
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
