package grafana

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/units"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

const regenerate = "regenerate it: cd deploy/grafana && go generate ./...  (or: go run ./cmd/gendashboard -o dashboards/muster.json)"

// TestCommittedDashboardIsGenerated: dashboards/muster.json is exactly what
// the generator makes.
func TestCommittedDashboardIsGenerated(t *testing.T) {
	want, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatalf("%v; %s", err, regenerate)
	}
	if !bytes.Equal(got, want) {
		gl, wl := strings.Split(string(got), "\n"), strings.Split(string(want), "\n")
		line := 0
		for line < len(gl) && line < len(wl) && gl[line] == wl[line] {
			line++
		}
		show := func(ls []string) string {
			if line < len(ls) {
				return ls[line]
			}
			return "<end of file>"
		}
		t.Fatalf("%s is not what the generator makes (first difference at line %d:\n  committed: %s\n  generated: %s)\n%s",
			dashboardFile, line+1, show(gl), show(wl), regenerate)
	}
}

// TestGeneratorIsDeterministic: two builds give the same bytes.
func TestGeneratorIsDeterministic(t *testing.T) {
	a, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	b, err := JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two runs of the generator differ")
	}
}

// TestDashboardShape: the classic model's essentials, the rows asked for,
// and the Go runtime row collapsed.
func TestDashboardShape(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != UID || d.Title != Title {
		t.Errorf("uid/title = %q/%q, want %q/%q", d.UID, d.Title, UID, Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: too old for ${datasource} references", d.SchemaVersion)
	}
	var rows []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			rows = append(rows, p.Title)
			if p.Title == "Go runtime" {
				if !p.Collapsed || len(p.Panels) == 0 {
					t.Errorf("row %q: want collapsed with its panels inside (collapsed=%v, %d panels)", p.Title, p.Collapsed, len(p.Panels))
				}
			} else if p.Collapsed || len(p.Panels) != 0 {
				t.Errorf("row %q: want expanded with its panels after it", p.Title)
			}
		}
	}
	want := []string{"Overview", "Throughput", "Batch shape", "Latency", "Saturation", "Errors, retries and data loss", "Journal", "Per process", "Go runtime"}
	if !slices.Equal(rows, want) {
		t.Errorf("rows = %q, want %q", rows, want)
	}
	row := ""
	for _, p := range d.Panels {
		if p.Type == "row" {
			row = p.Title
			continue
		}
		if (p.Type == "stat") != (row == "Overview") {
			t.Errorf("%s (row %q): stat panels make the Overview row, and only it", panelRef(p), row)
		}
	}
}

// TestQueriesParse: every target and variable query parses with
// Prometheus's parser once Grafana's variables are expanded.
func TestQueriesParse(t *testing.T) {
	d := loadDashboard(t)
	n := 0
	for _, p := range d.queryPanels() {
		for _, tg := range p.Targets {
			mustParse(t, panelRef(p)+" "+tg.RefID, tg.Expr)
			n++
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		sel, label, err := labelValuesArg(v.queryString())
		if err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
			continue
		}
		if !labelNameOK(label) {
			t.Errorf("variable %s: bad label %q", v.Name, label)
		}
		mustParse(t, "variable "+v.Name, sel)
		n++
	}
	if n < 40 {
		t.Errorf("only %d queries found; the dashboard has more", n)
	}
}

func labelNameOK(l string) bool {
	if l == "" {
		return false
	}
	for i, r := range l {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// validUnits are the Grafana unit ids the dashboard may use.
var validUnits = []string{
	units.OpsPerSecond, units.PercentUnit, units.Seconds, units.Short, units.BytesIEC,
	units.Milliseconds, units.CountsPerSecond, units.RequestsPerSecond, units.NoUnit,
}

// The lint tests re-implement grafana/dashboard-linter's rules
// (lint/rule_*.go) that apply to a Prometheus dashboard.

// template-datasource-rule, template-job-rule, template-instance-rule,
// template-on-time-change-reload-rule, template-label-promql-rule, plus the
// client variable.
func TestLintTemplates(t *testing.T) {
	d := loadDashboard(t)
	ds, ok := d.variable("datasource")
	switch {
	case !ok:
		t.Error("template-datasource-rule: no datasource variable")
	case ds.Type != "datasource" || ds.queryString() != "prometheus":
		t.Errorf("template-datasource-rule: datasource variable type %q query %q, want datasource/prometheus", ds.Type, ds.Query)
	}
	if len(d.Templating.List) == 0 || d.Templating.List[0].Name != "datasource" {
		t.Error("the datasource variable must come first")
	}
	for _, name := range []string{"job", "instance", "client"} {
		v, ok := d.variable(name)
		if !ok {
			t.Errorf("no %s variable", name)
			continue
		}
		if v.Type != "query" {
			t.Errorf("variable %s: type %q, want query", name, v.Type)
		}
		if v.Datasource == nil || (v.Datasource.UID != "${datasource}" && v.Datasource.UID != "$datasource") {
			t.Errorf("variable %s: datasource %+v, want ${datasource}", name, v.Datasource)
		}
		if !v.Multi || !v.IncludeAll || v.AllValue != ".+" {
			t.Errorf("variable %s: multi=%v includeAll=%v allValue=%q, want true, true, .+", name, v.Multi, v.IncludeAll, v.AllValue)
		}
		if v.Refresh != 2 {
			t.Errorf("template-on-time-change-reload-rule: variable %s refresh=%d, want 2 (on time range change)", name, v.Refresh)
		}
		sel, label, err := labelValuesArg(v.queryString())
		if err != nil {
			t.Errorf("variable %s: %v", name, err)
			continue
		}
		wantLabel := name
		if name == "client" {
			wantLabel = labelClient
		}
		if label != wantLabel {
			t.Errorf("variable %s: label_values of %q, want %q", name, label, wantLabel)
		}
		// Each narrows by the variables before it.
		e := mustParse(t, "variable "+name, sel)
		for _, s := range selectors(e) {
			if name != "job" && s.matcher("job") == nil {
				t.Errorf("variable %s: %s has no job matcher", name, s.vs)
			}
			if name == "client" && s.matcher("instance") == nil {
				t.Errorf("variable %s: %s has no instance matcher", name, s.vs)
			}
		}
	}
}

// panel-datasource-rule, panel-title-description-rule, panel-units-rule,
// panel-no-targets-rule, target datasources, legends, unique ids and refIds,
// a layout without overlaps.
func TestLintPanels(t *testing.T) {
	d := loadDashboard(t)
	ids := map[int]string{}
	for _, p := range d.allPanels() {
		if p.ID <= 0 {
			t.Errorf("%s: no id", panelRef(p))
		} else if other, dup := ids[p.ID]; dup {
			t.Errorf("panel id %d used by %q and %q", p.ID, other, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X < 0 || p.GridPos.X+p.GridPos.W > 24 {
			t.Errorf("%s: gridPos %+v out of the 24-column grid", panelRef(p), p.GridPos)
		}
	}
	for _, p := range d.queryPanels() {
		ref := panelRef(p)
		if strings.TrimSpace(p.Title) == "" || strings.TrimSpace(p.Description) == "" {
			t.Errorf("panel-title-description-rule: %s lacks a title or description", ref)
		}
		if u := p.FieldConfig.Defaults.Unit; !slices.Contains(validUnits, u) {
			t.Errorf("panel-units-rule: %s unit %q is not a known unit id", ref, u)
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || p.Datasource.Type != "prometheus" {
			t.Errorf("panel-datasource-rule: %s datasource %+v, want prometheus ${datasource}", ref, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel-no-targets-rule: %s has no targets", ref)
		}
		switch p.Type {
		case "timeseries":
			if l := p.Options.Legend; l == nil || !l.ShowLegend || l.DisplayMode == "" || l.Placement == "" {
				t.Errorf("%s: legend not set (%+v)", ref, l)
			}
			if tt := p.Options.Tooltip; tt == nil || tt.Mode == "" {
				t.Errorf("%s: tooltip mode not set", ref)
			}
		case "stat":
			if r := p.Options.ReduceOptions; r == nil || len(r.Calcs) == 0 {
				t.Errorf("%s: stat without a reduction", ref)
			}
		default:
			t.Errorf("%s: unexpected panel type %q", ref, p.Type)
		}
		refIDs := map[string]bool{}
		legends := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refIDs[tg.RefID] {
				t.Errorf("%s: missing or duplicate refId %q", ref, tg.RefID)
			}
			refIDs[tg.RefID] = true
			if tg.Datasource == nil || tg.Datasource.UID != "${datasource}" {
				t.Errorf("%s %s: target datasource %+v, want ${datasource}", ref, tg.RefID, tg.Datasource)
			}
			if strings.TrimSpace(tg.LegendFormat) == "" {
				t.Errorf("%s %s: no legendFormat", ref, tg.RefID)
			}
			if legends[tg.LegendFormat] {
				t.Errorf("%s %s: legend %q used twice", ref, tg.RefID, tg.LegendFormat)
			}
			legends[tg.LegendFormat] = true
		}
	}
	// No two panels of the visible layout overlap (collapsed rows' panels
	// are laid out when the row opens).
	var placed []jsonPanel
	for _, p := range d.Panels {
		for _, q := range placed {
			a, b := p.GridPos, q.GridPos
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("%s overlaps %s", panelRef(p), panelRef(q))
			}
		}
		placed = append(placed, p)
	}
}

// target-promql-rule, target-rate-interval-rule, target-job-rule,
// target-instance-rule, target-counter-agg-rule, plus the client matcher
// on muster's series.
func TestLintTargets(t *testing.T) {
	d := loadDashboard(t)
	for _, p := range d.queryPanels() {
		for _, tg := range p.Targets {
			where := fmt.Sprintf("%s %s", panelRef(p), tg.RefID)
			e := mustParse(t, where, tg.Expr)
			lintExpr(t, where, e, !isRuntimePanel(e))
		}
	}
}

// isRuntimePanel reports whether every selector of e is a Go runtime or
// process series.
func isRuntimePanel(e parser.Expr) bool {
	for _, s := range selectors(e) {
		if !isRuntime(s.metricName()) {
			return false
		}
	}
	return true
}

// lintExpr applies the target rules to one parsed expression.
func lintExpr(t errorer, where string, e parser.Expr, muster bool) {
	t.Helper()
	// target-rate-interval-rule: every range is $__rate_interval.
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.MatrixSelector:
			if n.Range != sampleRange {
				t.Errorf("target-rate-interval-rule: %s: range %v, want [$__rate_interval]", where, n.Range)
			}
		case *parser.SubqueryExpr:
			t.Errorf("%s: subquery %s; use a recording rule", where, n)
		case *parser.Call:
			if n.Func.Name == "irate" {
				t.Errorf("%s: irate hides spikes between points; use rate", where)
			}
		}
		return nil
	})
	sels := selectors(e)
	if len(sels) == 0 {
		t.Errorf("%s: no series selected", where)
	}
	for _, s := range sels {
		name := s.metricName()
		if name == "" {
			t.Errorf("%s: selector %s without a metric name", where, s.vs)
			continue
		}
		if isRuntime(name) == muster && muster {
			t.Errorf("%s: runtime series %s on a muster panel", where, name)
		}
		// target-job-rule and target-instance-rule.
		want := map[string]string{"job": sampleJob, "instance": sampleInstance}
		if !isRuntime(name) && !isSharedQuota(name) { // a shared quota's series carry its name, not the client's
			want[labelClient] = sampleClient
		} else if s.matcher(labelClient) != nil {
			t.Errorf("%s: %s has no %s label; the client matcher would select nothing", where, name, labelClient)
		}
		for label, value := range want {
			m := s.matcher(label)
			if m == nil || m.Type != labels.MatchRegexp || m.Value != value {
				t.Errorf("%s: %s lacks %s=~\"$%s\" (has %v)", where, s.vs, label, variableOf(label), m)
			}
		}
		// target-counter-agg-rule, for every monotonic series.
		if counterSeries(name) {
			if _, call, ok := s.inRangeFunc("rate", "increase"); !ok {
				what := "no function"
				if call != nil {
					what = call.Func.Name
				}
				t.Errorf("target-counter-agg-rule: %s: counter %s is not inside rate or increase (%s)", where, name, what)
			}
		} else if _, _, ok := s.inRangeFunc("rate", "increase", "irate"); ok {
			t.Errorf("%s: gauge %s inside rate/increase", where, name)
		}
	}
}

func variableOf(label string) string {
	if label == labelClient {
		return "client"
	}
	return label
}

// TestLintCatchesMistakes: the rules reject the mistakes they exist for.
func TestLintCatchesMistakes(t *testing.T) {
	bad := map[string]string{
		"no rate interval": `sum(rate(muster_item_added_total{job=~"$job", instance=~"$instance", muster_batcher_name=~"$client"}[5m]))`,
		"bare counter":     `sum(muster_item_added_total{job=~"$job", instance=~"$instance", muster_batcher_name=~"$client"})`,
		"no job":           `sum(muster_queue_size{instance=~"$instance", muster_batcher_name=~"$client"})`,
		"no instance":      `sum(muster_queue_size{job=~"$job", muster_batcher_name=~"$client"})`,
		"no client":        `sum(muster_queue_size{job=~"$job", instance=~"$instance"})`,
		"rate of a gauge":  `rate(muster_queue_size{job=~"$job", instance=~"$instance", muster_batcher_name=~"$client"}[$__rate_interval])`,
		"bucket not rated": `histogram_quantile(0.9, muster_batch_size_bucket{job=~"$job", instance=~"$instance", muster_batcher_name=~"$client"})`,
	}
	for name, expr := range bad {
		t.Run(name, func(t *testing.T) {
			ft := &fakeT{}
			e, err := parseExpr(expandSample(expr))
			if err != nil {
				t.Fatal(err)
			}
			lintExpr(ft, "probe", e, true)
			if !ft.failed {
				t.Errorf("lint accepted %s", expr)
			}
		})
	}
}

// errorer is the part of testing.T the lint uses, so that the lint can
// be run against known-bad queries.
type errorer interface {
	Helper()
	Errorf(format string, args ...any)
}

// fakeT records failures instead of failing the test.
type fakeT struct{ failed bool }

func (*fakeT) Helper()                 {}
func (f *fakeT) Errorf(string, ...any) { f.failed = true }

// TestDashboardAlertsAndRunbooks: the alert annotation selects the firing
// muster alerts of the selected jobs and clients, every runbook link
// points at a section of deploy/README.md for an alert the rules define,
// and the schema version is the one the README names.
func TestDashboardAlertsAndRunbooks(t *testing.T) {
	d, err := Build()
	if err != nil {
		t.Fatal(err)
	}
	if d.SchemaVersion != SchemaVersion {
		t.Errorf("schemaVersion %d, want %d", d.SchemaVersion, SchemaVersion)
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), fmt.Sprintf("schemaVersion %d", SchemaVersion)) {
		t.Errorf("deploy/README.md does not name schemaVersion %d", SchemaVersion)
	}
	var found bool
	for _, a := range d.Annotations.List {
		if a.Expr == nil {
			continue
		}
		found = true
		e := mustParse(t, "annotation "+a.Name, expand(*a.Expr, "5m", ".+", ".+", ".+"))
		sels := selectors(e)
		if len(sels) != 1 || sels[0].metricName() != "ALERTS" || sels[0].matcher("job") == nil ||
			sels[0].matcher(labelClient) == nil || sels[0].matcher("alertstate") == nil {
			t.Errorf("annotation %s: %s, want ALERTS of the firing alerts with job and client matchers", a.Name, *a.Expr)
		}
	}
	if !found {
		t.Error("no Prometheus annotation of the alerts")
	}
	titles := map[string]bool{}
	for _, p := range loadDashboard(t).allPanels() {
		titles[p.Title] = true
	}
	for title, alert := range runbooks {
		if !titles[title] {
			t.Errorf("runbook link for panel %q, which does not exist", title)
		}
		if !slices.Contains(wantAlerts, alert) || !strings.Contains(string(readme), "### "+alert+"\n") {
			t.Errorf("panel %q links to the runbook of %s: no such alert or section", title, alert)
		}
	}
}
