package telemetry

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

var otlpEnv = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
	"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
	"OTEL_TRACES_EXPORTER",
	"OTEL_METRICS_EXPORTER",
}

func TestPlanOTLP(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		env                   map[string]string
		opts                  []Option
		wantTraces, wantMetrs Protocol
		wantErr               string
	}{
		{name: "nothing set"},
		{
			name:       "endpoint only: http/protobuf",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			wantTraces: ProtocolHTTPProtobuf, wantMetrs: ProtocolHTTPProtobuf,
		},
		{
			name:       "protocol only",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
			wantTraces: ProtocolGRPC, wantMetrs: ProtocolGRPC,
		},
		{
			name: "per-signal protocol wins",
			env: map[string]string{
				"OTEL_EXPORTER_OTLP_PROTOCOL":        "grpc",
				"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
			},
			wantTraces: ProtocolHTTPProtobuf, wantMetrs: ProtocolGRPC,
		},
		{
			name:       "traces endpoint only",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
			wantTraces: ProtocolHTTPProtobuf,
		},
		{
			name:      "metrics protocol only",
			env:       map[string]string{"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
			wantMetrs: ProtocolGRPC,
		},
		{
			name: "WithoutOTLP beats the environment",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
			opts: []Option{WithoutOTLP()},
		},
		{
			name:       "WithOTLP without environment",
			opts:       []Option{WithOTLP(ProtocolGRPC)},
			wantTraces: ProtocolGRPC, wantMetrs: ProtocolGRPC,
		},
		{
			name:       "WithOTLP beats the environment's protocol",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"},
			opts:       []Option{WithOTLP(ProtocolGRPC)},
			wantTraces: ProtocolGRPC, wantMetrs: ProtocolGRPC,
		},
		{
			name:    "unsupported protocol in the environment",
			env:     map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
			wantErr: `unsupported OTLP protocol "http/json"`,
		},
		{
			name:       "OTEL_METRICS_EXPORTER=prometheus keeps metrics off a traces-only endpoint",
			env:        map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_METRICS_EXPORTER": "prometheus"},
			wantTraces: ProtocolHTTPProtobuf,
		},
		{
			name: "OTEL_TRACES_EXPORTER=none and OTEL_METRICS_EXPORTER=none",
			env:  map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"},
		},
		{
			name:       "OTEL_*_EXPORTER=otlp without endpoint: the exporters' defaults",
			env:        map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": " OTLP ", "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL": "grpc"},
			wantTraces: ProtocolHTTPProtobuf, wantMetrs: ProtocolGRPC,
		},
		{
			name:    "unknown trace exporter",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "jaeger"},
			wantErr: `OTEL_TRACES_EXPORTER="jaeger": unknown exporter "jaeger" (want a comma-separated list of otlp, console, or none)`,
		},
		{
			name:    "prometheus is no trace exporter",
			env:     map[string]string{"OTEL_TRACES_EXPORTER": "otlp,prometheus"},
			wantErr: `unknown exporter "prometheus"`,
		},
		{
			name:    "none combined",
			env:     map[string]string{"OTEL_METRICS_EXPORTER": "none,otlp"},
			wantErr: `none cannot be combined`,
		},
		{
			name:    "unsupported protocol in an option",
			opts:    []Option{WithOTLP("udp")},
			wantErr: `unsupported OTLP protocol "udp"`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range otlpEnv {
				t.Setenv(k, tc.env[k])
			}
			p, err := Setup(context.Background(), append([]Option{WithoutPrometheus()}, tc.opts...)...)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Setup error %v, want %q", err, tc.wantErr)
				}
				if p != nil {
					t.Fatal("Setup returned providers with an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			// Nothing listens on the endpoints and nothing was recorded; an
			// expired context keeps Shutdown from trying to export.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			defer p.Shutdown(ctx)
			if p.plan.traceOTLP != tc.wantTraces || p.plan.metricOTLP != tc.wantMetrs {
				t.Errorf("OTLP traces %q, metrics %q; want %q, %q",
					p.plan.traceOTLP, p.plan.metricOTLP, tc.wantTraces, tc.wantMetrs)
			}
		})
	}
}

// TestPlanExporterEnv: which exporters OTEL_TRACES_EXPORTER and
// OTEL_METRICS_EXPORTER select, with and against the options.
func TestPlanExporterEnv(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		env                      map[string]string
		opts                     []Option
		prom, tConsole, mConsole bool
		wantErr                  string
	}{
		{name: "unset: Prometheus", prom: true},
		{name: "prometheus", env: map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"}, prom: true},
		{name: "otlp only: no Prometheus", env: map[string]string{"OTEL_METRICS_EXPORTER": "otlp"}},
		{name: "none", env: map[string]string{"OTEL_METRICS_EXPORTER": "none"}},
		{name: "console both", env: map[string]string{"OTEL_METRICS_EXPORTER": "console,prometheus", "OTEL_TRACES_EXPORTER": "console"},
			prom: true, tConsole: true, mConsole: true},
		{name: "WithoutPrometheus beats the environment", env: map[string]string{"OTEL_METRICS_EXPORTER": "prometheus"},
			opts: []Option{WithoutPrometheus()}},
		{name: "registerer with Prometheus off", env: map[string]string{"OTEL_METRICS_EXPORTER": "none"},
			opts: []Option{WithPrometheusRegisterer(prometheus.NewRegistry(), nil)}, wantErr: "Prometheus is off"},
		{name: "nil registerer", opts: []Option{WithPrometheusRegisterer(nil, nil)}, wantErr: "nil registerer"},
		{name: "registerer that is no gatherer", opts: []Option{WithPrometheusRegisterer(prometheus.WrapRegistererWithPrefix("x_", prometheus.NewRegistry()), nil)},
			wantErr: "not a prometheus.Gatherer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string { return tc.env[k] }
			pl, err := newConfig(env, tc.opts).plan()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("plan error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if pl.prometheus != tc.prom || pl.traceConsole != tc.tConsole || pl.metricConsole != tc.mConsole {
				t.Errorf("plan %+v; want prometheus %v, console traces %v, metrics %v", pl, tc.prom, tc.tConsole, tc.mConsole)
			}
		})
	}
}

// TestConsoleExporters: console writes spans and metrics to standard
// output (here a buffer) at Shutdown.
func TestConsoleExporters(t *testing.T) {
	for _, k := range otlpEnv {
		t.Setenv(k, "")
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "console")
	t.Setenv("OTEL_METRICS_EXPORTER", "console")
	var out lockedBuffer // both exporters write, each from its own goroutine
	p, err := Setup(context.Background(), optionFunc(func(c *config) { c.stdout = &out }))
	if err != nil {
		t.Fatal(err)
	}
	if p.Registry() != nil {
		t.Error("OTEL_METRICS_EXPORTER=console: Prometheus is on")
	}
	_, span := p.TracerProvider().Tracer("test").Start(context.Background(), "fire orders")
	span.End()
	c, err := p.MeterProvider().Meter("test").Int64Counter("muster.console.test")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 1)
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"Name": "fire orders"`, `"Name": "muster.console.test"`} {
		if !strings.Contains(out.String(), want) {
			// out is no longer written to after Shutdown.
			t.Errorf("console output lacks %s:\n%s", want, out.String())
		}
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
