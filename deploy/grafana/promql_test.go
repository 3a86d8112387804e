package grafana

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// Sample values for Grafana's variables, as dashboard-linter
// (lint/variables.go) substitutes them before parsing. $__rate_interval
// gets a duration no one would type, so that the rate-interval rule can
// recognise it in the parsed ranges.
const (
	sampleJob          = "sample-job"
	sampleInstance     = "sample-instance:9464"
	sampleClient       = "sample-client"
	sampleRateInterval = "8869990787ms"
)

var sampleRange = func() time.Duration {
	d, err := time.ParseDuration(sampleRateInterval)
	if err != nil {
		panic(err)
	}
	return d
}()

// expand substitutes Grafana's variables in a query.
func expand(expr, rateInterval, job, instance, client string) string {
	return strings.NewReplacer(
		"${datasource}", "sample-datasource",
		"$__rate_interval", rateInterval,
		"$job", job,
		"$instance", instance,
		"$client", client,
	).Replace(expr)
}

// expandSample substitutes the sample values.
func expandSample(expr string) string {
	return expand(expr, sampleRateInterval, sampleJob, sampleInstance, sampleClient)
}

// leftover finds a variable reference expand does not know.
var leftover = regexp.MustCompile(`\$\{?[A-Za-z_]\w*`)

func parseExpr(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

// mustParse expands the sample values and parses.
func mustParse(t *testing.T, where, expr string) parser.Expr {
	t.Helper()
	x := expandSample(expr)
	if m := leftover.FindString(x); m != "" {
		t.Errorf("%s: unknown variable %s in %q", where, m, expr)
	}
	e, err := parseExpr(x)
	if err != nil {
		t.Fatalf("%s: %q does not parse: %v", where, expr, err)
	}
	return e
}

// selectors returns every vector selector of an expression with the nodes
// above it (outermost first).
func selectors(e parser.Expr) []selectorAt {
	var out []selectorAt
	parser.Inspect(e, func(n parser.Node, path []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, selectorAt{vs: vs, path: append([]parser.Node(nil), path...)})
		}
		return nil
	})
	return out
}

type selectorAt struct {
	vs   *parser.VectorSelector
	path []parser.Node
}

// metricName is the selector's __name__.
func (s selectorAt) metricName() string {
	if s.vs.Name != "" {
		return s.vs.Name
	}
	for _, m := range s.vs.LabelMatchers {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			return m.Value
		}
	}
	return ""
}

// matcher returns the selector's matcher of a label.
func (s selectorAt) matcher(name string) *labels.Matcher {
	for _, m := range s.vs.LabelMatchers {
		if m.Name == name {
			return m
		}
	}
	return nil
}

// inRangeFunc reports whether the selector is the range of a call to one of
// the functions, directly: fn(selector[range]).
func (s selectorAt) inRangeFunc(fns ...string) (*parser.MatrixSelector, *parser.Call, bool) {
	if len(s.path) < 2 {
		return nil, nil, false
	}
	ms, ok := s.path[len(s.path)-1].(*parser.MatrixSelector)
	if !ok {
		return nil, nil, false
	}
	call, ok := s.path[len(s.path)-2].(*parser.Call)
	if !ok {
		return ms, nil, false
	}
	for _, fn := range fns {
		if call.Func.Name == fn {
			return ms, call, true
		}
	}
	return ms, call, false
}

// counterSeries reports whether a series only ever grows: a counter
// (_total) or a histogram's or summary's _bucket, _sum or _count.
func counterSeries(name string) bool {
	for _, suffix := range []string{"_total", "_bucket", "_sum", "_count"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// familyOf strips a histogram's or summary's series suffix.
func familyOf(name string) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			return base
		}
	}
	return name
}

// isRuntime reports whether a series comes from the Go runtime or process
// collectors rather than from muster.
func isRuntime(name string) bool {
	return strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_")
}

// labelValuesArg returns the series selector inside label_values(selector,
// label), and the label.
func labelValuesArg(q string) (sel, label string, err error) {
	inner, ok := strings.CutPrefix(strings.TrimSpace(q), "label_values(")
	if !ok || !strings.HasSuffix(inner, ")") {
		return "", "", fmt.Errorf("not label_values(...): %q", q)
	}
	inner = strings.TrimSuffix(inner, ")")
	i := strings.LastIndex(inner, ",")
	if i < 0 {
		return "", "", fmt.Errorf("label_values without a label: %q", q)
	}
	return strings.TrimSpace(inner[:i]), strings.TrimSpace(inner[i+1:]), nil
}
