package grafana

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// The parts of a Prometheus rules file the checks read.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	KeepFiring  string            `yaml:"keep_firing_for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// The parts of a promtool test file the checks read.
type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		AlertRuleTests []struct {
			EvalTime  string `yaml:"eval_time"`
			Alertname string `yaml:"alertname"`
			ExpAlerts []struct {
				ExpLabels map[string]string `yaml:"exp_labels"`
			} `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

func loadYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// wantAlerts are the alerts the rules file must define.
var wantAlerts = []string{
	"MusterErrorBudgetBurn",
	"MusterErrorBudgetBurnSlow",
	"MusterInflightAtLimit",
	"MusterQueueNearlyFull",
	"MusterProducersBlocked",
	"MusterRateLimited",
	"MusterBatchWaitFarPastTimeout",
	"MusterNoItemsProcessed",
	"MusterJournalOldestItemTooOld",
	"MusterJournalFilling",
	"MusterJournalCorrupt",
}

// TestAlertsFileIsGenerated: the committed alerts.yml is what the
// generator makes of DefaultRuleConfig.
func TestAlertsFileIsGenerated(t *testing.T) {
	want, err := AlertRules(DefaultRuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("%s is not what the generator makes: run `cd deploy/grafana && go generate ./...`", alertsFile)
	}
}

// TestRuleConfigScaled: scaling compresses every window, keeps the
// thresholds, and leaves the default untouched.
func TestRuleConfigScaled(t *testing.T) {
	c := DefaultRuleConfig()
	s := c.Scaled(1.0 / 60)
	if s.Burn[0].Long != time.Minute || s.Burn[0].Short != 5*time.Second || s.Burn[0].For != 2*time.Second ||
		s.SaturationWindow != 3*time.Second || s.KeepFiringFor != 5*time.Second || s.Burn[2].Long != 72*time.Minute {
		t.Errorf("scaled 1/60: %+v", s)
	}
	if s.Objective != c.Objective || s.Burn[0].Factor != c.Burn[0].Factor || s.ProducersBlocked != c.ProducersBlocked {
		t.Error("scaling changed a threshold")
	}
	if c.Burn[0].Long != time.Hour {
		t.Error("Scaled changed its receiver's burn windows")
	}
	data, err := AlertRules(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), "[1m]") || !strings.Contains(string(data), "[1h12m]") || !strings.Contains(string(data), "keep_firing_for: 5s") {
		t.Errorf("scaled rules lack the compressed windows:\n%s", data)
	}
}

// TestRuleConfigInvalid: a configuration that cannot work is an error that
// says why.
func TestRuleConfigInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*RuleConfig)
		want   string
	}{
		{"objective 1", func(c *RuleConfig) { c.Objective = 1 }, "objective 1"},
		{"objective as a percentage", func(c *RuleConfig) { c.Objective = 99.9 }, "want a share in (0, 1)"},
		{"unreachable burn", func(c *RuleConfig) { c.Objective = 0.9; c.Burn[0].Factor = 14.4 }, "could never fire"},
		{"short not shorter", func(c *RuleConfig) { c.Burn[1].Short = c.Burn[1].Long }, "short (6h0m0s) < long (6h0m0s)"},
		{"too compressed", func(c *RuleConfig) { *c = c.Scaled(1.0 / 1000) }, "want at least 1s"},
		{"no burn", func(c *RuleConfig) { c.Burn = nil }, "no burn windows"},
	} {
		c := DefaultRuleConfig()
		tc.change(&c)
		_, err := AlertRules(c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// TestAlertRulesStatic: without promtool, the rules file is what the
// dashboard's checks demand of queries: it parses, names only series of the
// real exposition and their labels, wraps counters in rate, and every alert
// carries a severity, a summary, a description and a runbook.
func TestAlertRulesStatic(t *testing.T) {
	var rf ruleFile
	loadYAML(t, alertsFile, &rf)
	if len(rf.Groups) != 1 || rf.Groups[0].Name != "muster" {
		t.Fatalf("want one group named muster, got %d groups", len(rf.Groups))
	}
	x := realExposition(t)
	var names []string
	for _, r := range rf.Groups[0].Rules {
		where := "alert " + r.Alert
		if r.Alert == "" {
			t.Errorf("rule %q is not an alert", r.Record)
			continue
		}
		if !slices.Contains(names, r.Alert) {
			names = append(names, r.Alert)
		}
		e, err := parseExpr(r.Expr)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		if _, err := model.ParseDuration(r.For); err != nil || r.For == "" {
			t.Errorf("%s: for %q: want a duration", where, r.For)
		}
		if _, err := model.ParseDuration(r.KeepFiring); err != nil || r.KeepFiring == "" {
			t.Errorf("%s: keep_firing_for %q: want a duration (hysteresis)", where, r.KeepFiring)
		}
		for _, s := range selectors(e) {
			name := s.metricName()
			if !x.has(name) {
				t.Errorf("%s: %s is not in the exposition", where, name)
				continue
			}
			have := x.labelsOf(name)
			for _, m := range s.vs.LabelMatchers {
				if m.Name != "__name__" && !have[m.Name] {
					t.Errorf("%s: %s has no label %s", where, name, m.Name)
				}
			}
			if counterSeries(name) {
				if _, _, ok := s.inRangeFunc("rate", "increase"); !ok {
					t.Errorf("%s: counter %s outside rate/increase", where, name)
				}
			}
		}
		checkGrouping(t, where, e, x)
		if sev := r.Labels["severity"]; !slices.Contains([]string{"info", "warning", "critical"}, sev) {
			t.Errorf("%s: severity %q", where, sev)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", where, a)
			}
		}
		anchor := "#" + strings.ToLower(r.Alert)
		if !strings.HasSuffix(r.Annotations["runbook_url"], anchor) {
			t.Errorf("%s: runbook_url %q does not end in %s", where, r.Annotations["runbook_url"], anchor)
		}
		readme, err := os.ReadFile(filepath.Join("..", "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(readme), "### "+r.Alert+"\n") {
			t.Errorf("%s: deploy/README.md has no section \"### %s\" for its runbook", where, r.Alert)
		}
	}
	if !slices.Equal(names, wantAlerts) {
		t.Errorf("alerts = %q, want %q", names, wantAlerts)
	}
}

// TestAlertTestsCoverEveryAlert: alerts_test.yml has, for every alert, a
// case where it fires and one where it must not, and every severity an
// alert can have fires in some case.
func TestAlertTestsCoverEveryAlert(t *testing.T) {
	var rf ruleFile
	loadYAML(t, alertsFile, &rf)
	var tf ruleTestFile
	loadYAML(t, alertsTestFile, &tf)
	if !slices.Contains(tf.RuleFiles, "alerts.yml") {
		t.Errorf("%s does not load alerts.yml", alertsTestFile)
	}
	firing, silent, severities, burnRates := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTests {
			if len(at.ExpAlerts) == 0 {
				silent[at.Alertname] = true
			}
			for _, a := range at.ExpAlerts {
				firing[at.Alertname] = true
				severities[at.Alertname+"/"+a.ExpLabels["severity"]] = true
				burnRates[at.Alertname+"/"+a.ExpLabels["burn_rate"]] = true
			}
		}
	}
	for _, r := range rf.Groups[0].Rules {
		if !firing[r.Alert] {
			t.Errorf("%s: no test case where it fires", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("%s: no test case where it must not fire", r.Alert)
		}
		if !severities[r.Alert+"/"+r.Labels["severity"]] {
			t.Errorf("%s: no test case fires it with severity %s", r.Alert, r.Labels["severity"])
		}
		if br := r.Labels["burn_rate"]; br != "" && !burnRates[r.Alert+"/"+br] {
			t.Errorf("%s: no test case fires its burn rate %s rule", r.Alert, br)
		}
	}
}

// runTool runs a Prometheus binary with a deadline and returns its
// combined output.
func runTool(t *testing.T, dir, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPromtoolCheckRules: promtool accepts the rules file.
func TestPromtoolCheckRules(t *testing.T) {
	promtool := findTool(t, "PROMTOOL", "promtool")
	out, err := runTool(t, filepath.Dir(alertsFile), promtool, "check", "rules", filepath.Base(alertsFile))
	if err != nil {
		t.Fatalf("promtool check rules %s: %v\n%s", alertsFile, err, out)
	}
	t.Logf("%s", out)
}

// TestPromtoolTestRules: the unit tests of the alert rules pass.
func TestPromtoolTestRules(t *testing.T) {
	promtool := findTool(t, "PROMTOOL", "promtool")
	out, err := runTool(t, filepath.Dir(alertsTestFile), promtool, "test", "rules", filepath.Base(alertsTestFile))
	if err != nil {
		t.Fatalf("promtool test rules %s: %v\n%s", alertsTestFile, err, out)
	}
	t.Logf("%s", out)
}

// TestPromtoolParsesDashboard: the dashboard's queries parse in the
// Prometheus that runs them (promtool's parser, which may be older than the
// Go module's and reject newer syntax): each query, expanded, becomes a
// recording rule of a temporary file for promtool check rules.
func TestPromtoolParsesDashboard(t *testing.T) {
	promtool := findTool(t, "PROMTOOL", "promtool")
	d := loadDashboard(t)
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	n := 0
	for _, p := range d.queryPanels() {
		for _, tg := range p.Targets {
			n++
			fmt.Fprintf(&b, "      # %s %s\n      - record: dashboard:panel%d:%s\n        expr: %s\n",
				panelRef(p), tg.RefID, p.ID, strings.ToLower(tg.RefID), yamlQuote(expand(tg.Expr, "5m", ".+", ".+", ".+")))
		}
	}
	file := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, "", promtool, "check", "rules", file)
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("%d rules found", n); !strings.Contains(out, want) {
		t.Errorf("promtool: %q, want %q", out, want)
	}
}

// yamlQuote quotes a string for a YAML double-quoted scalar.
func yamlQuote(s string) string {
	return `"` + regexp.MustCompile(`["\\]`).ReplaceAllString(s, `\$0`) + `"`
}

// flappingTest is a promtool test of the fast burn-rate rule on a failure
// ratio that hovers at its threshold (the series of alerts_test.yml's
// hysteresis case): at 70m the 5m window has been clean for two minutes.
const flappingTest = `rule_files: [rules.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'muster_item_processed_total{job="app", instance="a:9464", muster_batcher_name="orders"}'
        values: '0+96x90'
      - series: 'muster_item_processed_total{job="app", instance="a:9464", muster_batcher_name="orders", error_type="unavailable"}'
        values: '0+4x5 20x4 24+4x4 40x4 44+4x4 60x4 64+4x4 80x4 84+4x4 100x4 104+4x4 120x4 124+4x4 140x4 144+4x4 160x4'
    alert_rule_test:
      - eval_time: 70m
        alertname: MusterErrorBudgetBurn
        exp_alerts: []
`

// TestPromtoolHysteresis: keep_firing_for is what keeps the fast page
// firing through the dips of a hovering failure ratio. Without it the
// alert has resolved at 70m (and would page anew at the next rise); with
// the committed hysteresis it still fires there.
func TestPromtoolHysteresis(t *testing.T) {
	promtool := findTool(t, "PROMTOOL", "promtool")
	for _, keep := range []time.Duration{0, DefaultRuleConfig().KeepFiringFor} {
		c := DefaultRuleConfig()
		c.Burn = c.Burn[:1]
		c.KeepFiringFor = keep
		rules, err := AlertRules(c)
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "rules.yml"), rules, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "test.yml"), []byte(flappingTest), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := runTool(t, dir, promtool, "test", "rules", "test.yml")
		switch {
		case keep == 0 && err != nil:
			t.Errorf("without keep_firing_for the alert should have resolved at 70m: %v\n%s", err, out)
		case keep > 0 && (err == nil || !strings.Contains(out, `alertname="MusterErrorBudgetBurn"`)):
			t.Errorf("with keep_firing_for %v the alert should still fire at 70m: %v\n%s", keep, err, out)
		}
	}
}
