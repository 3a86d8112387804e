package telemetry

import (
	"context"
	"strings"
	"testing"
)

var otlpEnv = []string{
	"OTEL_EXPORTER_OTLP_ENDPOINT",
	"OTEL_EXPORTER_OTLP_PROTOCOL",
	"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
	"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
	"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
	"OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
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
