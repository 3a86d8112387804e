package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var ds []time.Duration
		for _, n := range ns {
			ds = append(ds, time.Duration(n)*time.Millisecond)
		}
		return ds
	}
	for _, tc := range []struct {
		in   []time.Duration
		q    float64
		want time.Duration
	}{
		{nil, 0.99, 0},
		{ms(7), 0.99, 7 * time.Millisecond},
		{ms(5, 1, 3), 0.5, 3 * time.Millisecond},
		{ms(5, 1, 3), 0.99, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 0.9, 9 * time.Millisecond},
	} {
		if got := percentile(tc.in, tc.q); got != tc.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.q, got, tc.want)
		}
	}
}

func TestProgressLine(t *testing.T) {
	iv := interval{added: 1622, refused: 3, batches: 40, fill: 32, errors: 1, retries: 4,
		ages: []time.Duration{10 * time.Millisecond, 50 * time.Millisecond, 30 * time.Millisecond}}
	g := gauges{batchSize: 50, maxIn: 4, capacity: 200, limit: 1000, phase: "surge"}
	g.stats.InFlight, g.stats.Queued = 3, 120
	got := progressLine(7*time.Second, 2*time.Second, iv, g)
	for _, want := range []string{"7s surge", "in   811/s", "refused   3", "batches  20/s", "fill  80%", "p99 wait  50ms",
		"errors  1", "retries  4", "in-flight 3/4", "queue 120/200", "limit 1000/s"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress line lacks %q:\n%s", want, got)
		}
	}
	// No batches, no size trigger, no limits.
	got = progressLine(75*time.Second, time.Second, interval{}, gauges{phase: "quiet"})
	for _, want := range []string{"1m15s quiet", "fill    -", "p99 wait     -", "in-flight 0 ", "queue   0/0"} {
		if !strings.Contains(got, want) {
			t.Errorf("progress line lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "limit") {
		t.Errorf("progress line shows a limit that is not there:\n%s", got)
	}
}

// Two spans as the SDK's compact JSON writer makes them, written in pieces.
const spansJSON = `{"Name":"fire orders","SpanContext":{"TraceID":"c532e4bc7f779cef5b1d02664e41e84a","SpanID":"db2406922cd3929b","TraceFlags":"01"},"Parent":{"TraceID":"00000000000000000000000000000000","SpanID":"0000000000000000"},"SpanKind":1,"StartTime":"2026-11-27T03:01:18.242Z","EndTime":"2026-11-27T03:01:18.360Z","Attributes":[{"Key":"messaging.batch.message_count","Value":{"Type":"INT64","Value":50}},{"Key":"muster.batcher.name","Value":{"Type":"STRING","Value":"orders"}},{"Key":"muster.batch.trigger","Value":{"Type":"STRING","Value":"size"}},{"Key":"muster.batch.first_item_age","Value":{"Type":"FLOAT64","Value":0.046}}],"Events":[{"Name":"muster.ratelimit.wait","Attributes":[{"Key":"muster.wait.duration","Value":{"Type":"FLOAT64","Value":0.008}},{"Key":"muster.wait.reason","Value":{"Type":"STRING","Value":"ratelimit"}},{"Key":"muster.wait.tokens","Value":{"Type":"INT64","Value":50}}]},{"Name":"muster.retry","Attributes":[{"Key":"muster.retry.attempt","Value":{"Type":"INT64","Value":1}},{"Key":"muster.retry.backoff","Value":{"Type":"FLOAT64","Value":0.047}},{"Key":"error.type","Value":{"Type":"STRING","Value":"unavailable"}},{"Key":"error.message","Value":{"Type":"STRING","Value":"orders-db: 503 unavailable"}}]}],"Links":[{"SpanContext":{"TraceID":"2713cbfe00000000000000000000000a","SpanID":"0000000000000001"}},{"SpanContext":{"TraceID":"4c5b2bd200000000000000000000000b","SpanID":"0000000000000002"}}],"Status":{"Code":"Unset","Description":""},"Resource":[]}
{"Name":"INSERT orders","SpanContext":{"TraceID":"c532e4bc7f779cef5b1d02664e41e84a","SpanID":"9cbb9b6080c06bde"},"Parent":{"TraceID":"c532e4bc7f779cef5b1d02664e41e84a","SpanID":"db2406922cd3929b"},"SpanKind":3,"StartTime":"2026-11-27T03:01:18.250Z","EndTime":"2026-11-27T03:01:18.282Z","Attributes":[{"Key":"db.operation.batch.size","Value":{"Type":"INT64","Value":50}},{"Key":"http.response.status_code","Value":{"Type":"INT64","Value":503}}],"Status":{"Code":"Error","Description":"orders-db: 503 unavailable"}}
`

func TestSpanWriterText(t *testing.T) {
	var out bytes.Buffer
	w := newSpanWriter(&out, "text")
	for _, part := range []string{spansJSON[:100], spansJSON[100:1500], spansJSON[1500:]} {
		if n, err := w.Write([]byte(part)); n != len(part) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if w.Spans() != 2 {
		t.Errorf("Spans() = %d, want 2", w.Spans())
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out.String())
	}
	for _, want := range []string{"118ms  fire orders", "trace=c532e4bc7f779cef5b1d02664e41e84a span=db2406922cd3929b ok",
		"size=50 trigger=size age=46ms", "| ratelimit.wait waited=8ms tokens=50; retry attempt=1 backoff=47ms error.type=unavailable",
		"| links=2 [2713cbfe 4c5b2bd2]"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("batch line lacks %q:\n%s", want, lines[0])
		}
	}
	if strings.Contains(lines[0], "parent=") || strings.Contains(lines[0], "orders-db") {
		t.Errorf("batch line shows a parent or the error message:\n%s", lines[0])
	}
	for _, want := range []string{"32ms  INSERT orders", "parent=db2406922cd3929b ERROR size=50 status=503 | orders-db: 503 unavailable"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("attempt line lacks %q:\n%s", want, lines[1])
		}
	}
}

func TestSpanWriterJSON(t *testing.T) {
	var out bytes.Buffer
	w := newSpanWriter(&out, "json")
	w.Write([]byte(spansJSON[:10]))
	if out.Len() != 0 {
		t.Errorf("wrote a partial line: %q", out.String())
	}
	w.Write([]byte(spansJSON[10:]))
	if out.String() != spansJSON || w.Spans() != 2 {
		t.Errorf("json output differs from its input (%d spans)", w.Spans())
	}
}

func TestOTLPFromEnv(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	for _, tc := range []struct {
		name                  string
		getenv                func(string) string
		wantTraces, wantMetrs string
	}{
		{"none", env(), "", ""},
		{"endpoint", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
			"push (http/protobuf) to http://collector:4318", "push (http/protobuf) to http://collector:4318"},
		{"grpc protocol only", env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"), "push (grpc) to localhost:4317", "push (grpc) to localhost:4317"},
		{"traces only", env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://jaeger:4318/v1/traces"),
			"push (http/protobuf) to http://jaeger:4318/v1/traces", ""},
		{"traces-only backend, metrics to Prometheus", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318", "OTEL_METRICS_EXPORTER", "prometheus"),
			"push (http/protobuf) to http://jaeger:4318", ""},
		{"exporters none", env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://jaeger:4318", "OTEL_METRICS_EXPORTER", "none", "OTEL_TRACES_EXPORTER", "none"), "", ""},
		{"otlp named without endpoint", env("OTEL_TRACES_EXPORTER", "console, otlp"), "push (http/protobuf) to localhost:4318", ""},
	} {
		got := otlpFromEnv(tc.getenv)
		if got.traces != tc.wantTraces || got.metrics != tc.wantMetrs {
			t.Errorf("%s: got %+v, want traces %q, metrics %q", tc.name, got, tc.wantTraces, tc.wantMetrs)
		}
	}
}

func TestProfile(t *testing.T) {
	start := time.Unix(1000, 0)
	p := profile{start: start, cycle: time.Hour}
	m := time.Minute
	for _, tc := range []struct {
		at   time.Duration
		want string
	}{
		{0, "steady"}, {3*m - 1, "steady"}, {3 * m, "surge"}, {12*m - 1, "surge"},
		{12 * m, "steady"}, {27 * m, "brownout"}, {36*m - 1, "brownout"}, {36 * m, "steady"},
		{51 * m, "quiet"}, {63 * m, "surge"},
	} {
		if got := p.at(start.Add(tc.at)).name; got != tc.want {
			t.Errorf("at %v: %s, want %s", tc.at, got, tc.want)
		}
	}
	if got := (profile{start: start}).at(start.Add(4 * time.Second)); got.name != "steady" || got.load != 1 || got.brownout {
		t.Errorf("no cycle: %+v, want steady", got)
	}
	for name, want := range map[string]string{"surge": "3m0s-12m0s", "brownout": "27m0s-36m0s", "quiet": "51m0s-1h0m0s", "outage": "none"} {
		if got := phaseSpan(time.Hour, name); got != want {
			t.Errorf("phaseSpan(1h, %s) = %s, want %s", name, got, want)
		}
	}
}

func TestOutage(t *testing.T) {
	cfg, err := parseFlags([]string{"-outage", "20s+30s"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.outage != (outage{20 * time.Second, 30 * time.Second}) || cfg.outage.String() != "20s+30s" {
		t.Fatalf("-outage 20s+30s parsed as %+v", cfg.outage)
	}
	start := time.Unix(1000, 0)
	p := profile{start: start, cycle: 10 * time.Second, outage: cfg.outage}
	for _, tc := range []struct {
		at     time.Duration
		outage bool
		name   string
	}{
		{19 * time.Second, false, "quiet"}, {20 * time.Second, true, "outage"}, {26 * time.Second, true, "outage"},
		{49 * time.Second, true, "outage"}, {50 * time.Second, false, "steady"},
	} {
		ph := p.at(start.Add(tc.at))
		if ph.outage != tc.outage || ph.name != tc.name || ph.outage && ph.brownout {
			t.Errorf("at %v: %+v, want outage %v (%s)", tc.at, ph, tc.outage, tc.name)
		}
	}
	d := &downstream{failureRate: 0}
	for range 100 {
		if f := d.failure(phase{outage: true}); f == nil || f.status != 503 || f.kind != errUnavailable {
			t.Fatalf("a write during the outage: %v, want a 503", f)
		}
	}
}
