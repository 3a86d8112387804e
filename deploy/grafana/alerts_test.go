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
	"MusterQueueNearlyFull",
	"MusterErrorRatioHigh",
	"MusterItemsFailing",
	"MusterBatchWaitFarPastTimeout",
	"MusterInflightAtLimit",
	"MusterNoItemsProcessed",
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
		if _, err := time.ParseDuration(r.For); err != nil || r.For == "" {
			t.Errorf("%s: for %q: want a duration", where, r.For)
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
	firing, silent, severities := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTests {
			if len(at.ExpAlerts) == 0 {
				silent[at.Alertname] = true
			}
			for _, a := range at.ExpAlerts {
				firing[at.Alertname] = true
				severities[at.Alertname+"/"+a.ExpLabels["severity"]] = true
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
