package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// syncBuffer is a bytes.Buffer safe for the demo's writers and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown flag", []string{"-frobnicate"}, "flag provided but not defined: -frobnicate"},
		{"parse error", []string{"-duration", "soon"}, `invalid value "soon" for flag -duration`},
		{"not a number", []string{"-producers", "many"}, `invalid value "many" for flag -producers`},
		{"extra argument", []string{"-duration", "1s", "now"}, `unexpected argument "now"`},
		{"negative duration", []string{"-duration", "-1s"}, "-duration must not be negative"},
		{"no producers", []string{"-producers", "0"}, "-producers must be at least 1"},
		{"negative producers", []string{"-producers", "-3"}, "-producers must be at least 1"},
		{"zero rate", []string{"-rate", "0"}, "-rate must be in (0, 1e6]"},
		{"negative rate limit", []string{"-rate-limit", "-1"}, "-rate-limit must be 0 (no limit) or a positive number"},
		{"NaN rate limit", []string{"-rate-limit", "NaN"}, "-rate-limit must be 0 (no limit) or a positive number"},
		{"shared without a limit", []string{"-redis-addr", "127.0.0.1:6379", "-rate-limit", "0"}, "-redis-addr shares the rate limit: it needs -rate-limit above 0"},
		{"shared without a key", []string{"-redis-addr", "127.0.0.1:6379", "-redis-key", ""}, "-redis-key must not be empty"},
		{"failure rate above 1", []string{"-failure-rate", "1.5"}, "-failure-rate must be in [0,1]"},
		{"negative failure rate", []string{"-failure-rate", "-0.1"}, "-failure-rate must be in [0,1]"},
		{"negative latency", []string{"-latency", "-5ms"}, "-latency must not be negative"},
		{"negative batch size", []string{"-batch-size", "-1"}, "-batch-size must not be negative"},
		{"no trigger", []string{"-batch-size", "0", "-batch-timeout", "0"}, "cannot both be 0"},
		{"negative inflight", []string{"-max-inflight", "-1"}, "-max-inflight must not be negative"},
		{"negative capacity", []string{"-capacity", "-10"}, "-capacity must not be negative"},
		{"redis journal without redis", []string{"-journal", "redis"}, "-journal redis needs -redis-addr"},
		{"zero shutdown timeout", []string{"-shutdown-timeout", "0s"}, "-shutdown-timeout must be positive"},
		{"zero request timeout", []string{"-request-timeout", "0s"}, "-request-timeout must be positive"},
		{"no items per request", []string{"-items-per-request", "0"}, "-items-per-request must be at least 1"},
		{"ack share above 1", []string{"-ack-share", "1.5"}, "-ack-share must be in [0,1]"},
		{"negative poison", []string{"-poison-every", "-5"}, "-poison-every must not be negative"},
		{"bad trace format", []string{"-trace-format", "xml"}, "-trace-format must be text or json"},
		{"two errors", []string{"-producers", "0", "-failure-rate", "2"}, "-failure-rate must be in [0,1]"},
		{"outage without length", []string{"-outage", "20s"}, "want START+LENGTH, such as 20s+30s"},
		{"outage of zero length", []string{"-outage", "20s+0s"}, "want a start >= 0 and a length > 0"},
		{"outage with a bad start", []string{"-outage", "soon+30s"}, `start "soon"`},
		{"prometheus not a URL", []string{"-prometheus", "localhost:9090"}, "-prometheus must be an http(s) URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr syncBuffer
			code := run(t.Context(), tc.args, &stdout, &stderr)
			if code != 2 {
				t.Errorf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("stderr does not say %q:\n%s", tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), "otel-demo -h") {
				t.Errorf("stderr has no hint at -h:\n%s", stderr.String())
			}
			if stdout.String() != "" {
				t.Errorf("stdout not empty:\n%s", stdout.String())
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	if code := run(t.Context(), []string{"-h"}, &stdout, &stderr); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	for _, want := range []string{"Usage: otel-demo", "-rate-limit", "-shutdown-timeout", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, stderr.String())
		}
	}
}

// summary holds the numbers of the summary's check line.
type summary struct{ added, delivered, failed, abandoned int }

var checkLine = regexp.MustCompile(`check +added (\d+) = delivered (\d+) \+ failed (\d+) \+ abandoned (\d+)(.*): (\w+)`)

func parseSummary(t *testing.T, out string) summary {
	t.Helper()
	m := checkLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no check line in the output:\n%s", out)
	}
	n := func(i int) int {
		v, err := strconv.Atoi(m[i])
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	s := summary{n(1), n(2), n(3), n(4)}
	if s.added != s.delivered+s.failed+s.abandoned || m[5] != "" || m[6] != "ok" {
		t.Errorf("the numbers do not add up: %q", m[0])
	}
	return s
}

func scrape(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// hasSeries reports whether the scrape has a sample of name whose labels
// include each of labels.
func hasSeries(scrape, name string, labels ...string) bool {
	for line := range strings.Lines(scrape) {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(line, l)
		}
		if ok {
			return true
		}
	}
	return false
}

// A short run: progress lines, a summary that adds up, a /metrics endpoint
// with muster's series while it runs, and a trace file in which a batch span
// links to the request spans that added its orders.
func TestRunShort(t *testing.T) {
	t.Parallel()
	traces := filepath.Join(t.TempDir(), "traces.log")
	var stdout, stderr syncBuffer
	scraped := make(chan string, 1)
	code := runDemo(t.Context(), []string{
		"-duration", "2s", "-metrics-addr", "127.0.0.1:0", "-traces", traces, "-cycle", "1s",
	}, &stdout, &stderr, func(url string) {
		go func() {
			// Scrape until the first batches are counted.
			var last string
			for range 40 {
				time.Sleep(50 * time.Millisecond)
				s, err := scrape(context.Background(), url)
				if err != nil {
					continue
				}
				last = s
				if hasSeries(s, musterconv.BatchSize.PrometheusName()+"_count") && hasSeries(s, "muster_item_processed_total") {
					break
				}
			}
			scraped <- last
		}()
	})
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit code %d; stdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	if n := strings.Count(out, " in-flight "); n < 1 {
		t.Errorf("%d progress lines, want at least 1:\n%s", n, out)
	}
	for _, want := range []string{"metrics: Prometheus at http://127.0.0.1:", "summary: ran 2s, stopped (-duration reached)", "shutdown  clean", traces,
		"keyed batcher \"orders\"", "per region (eu, us, ap)", "orders awaited (AddResult): confirmed "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	s := parseSummary(t, out)
	if s.added == 0 || s.delivered == 0 {
		t.Errorf("nothing went through: %+v", s)
	}
	if !regexp.MustCompile(`acks +[1-9]\d* orders awaited \(AddResult\): confirmed [1-9]`).MatchString(out) {
		t.Errorf("no order was confirmed to a request awaiting it:\n%s", out)
	}

	m := <-scraped
	for _, name := range []string{
		musterconv.ItemAdded.PrometheusName(),
		musterconv.ItemProcessed.PrometheusName(),
		musterconv.BatchSize.PrometheusName() + "_count",
		musterconv.BatchUtilization.PrometheusName() + "_count",
		musterconv.BatchWaitDuration.PrometheusName() + "_count",
		musterconv.BatchDuration.PrometheusName() + "_count",
		musterconv.BatchInflight.PrometheusName(),
		musterconv.BatchInflightLimit.PrometheusName(),
		musterconv.QueueSize.PrometheusName(),
		musterconv.QueueCapacity.PrometheusName(),
		musterconv.BatcherKeys.PrometheusName(),
	} {
		if !hasSeries(m, name, `muster_batcher_name="orders"`) {
			t.Errorf("/metrics has no %s series for orders", name)
		}
	}
	if !strings.Contains(m, `target_info{`) || !strings.Contains(m, `service_name="otel-demo"`) {
		t.Errorf("/metrics has no target_info naming the service")
	}

	checkTraceFile(t, traces)
}

// checkTraceFile finds a batch span in the text trace file and the request
// spans it links to.
func checkTraceFile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	requests := map[string]bool{} // trace id prefixes of request spans
	var batches []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	traceID := regexp.MustCompile(`trace=([0-9a-f]{32})`)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.Contains(line, " handle order "):
			if m := traceID.FindStringSubmatch(line); m != nil {
				requests[m[1][:8]] = true
			}
		case strings.Contains(line, " fire orders "):
			batches = append(batches, line)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(requests) == 0 || len(batches) == 0 {
		t.Fatalf("trace file has %d request spans and %d batch spans", len(requests), len(batches))
	}
	links := regexp.MustCompile(`links=\d+ \[([0-9a-f ]+)\]`)
	for _, b := range batches {
		m := links.FindStringSubmatch(b)
		if m == nil {
			continue
		}
		for _, id := range strings.Fields(m[1]) {
			if requests[id] {
				return // a batch span links to a request span
			}
		}
	}
	t.Errorf("no batch span links to a request span in %s; first batch line:\n%s", path, batches[0])
}

// Canceling the context (Ctrl-C) shuts down cleanly, with exit status 0.
// The load is tuned so that every instrument of the catalogue has data
// within the run; the test stops the demo as soon as a scrape shows them all.
func TestRunInterruptedAllMetrics(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout, stderr syncBuffer
	var last string
	var missing []string
	done := make(chan struct{})
	code := runDemo(ctx, []string{
		"-duration", "12s", "-metrics-addr", "127.0.0.1:0", "-traces", "", "-progress", "0",
		"-cycle", "1s", "-rate", "100", "-capacity", "50", "-checkpoint", "250ms", "-failure-rate", "0.3", "-poison-every", "200",
		"-request-timeout", "30ms",
	}, &stdout, &stderr, func(url string) {
		go func() {
			defer close(done)
			defer cancel()
			for range 200 {
				time.Sleep(50 * time.Millisecond)
				s, err := scrape(context.Background(), url)
				if err != nil {
					continue
				}
				last = s
				if missing = missingSeries(s); len(missing) == 0 {
					return
				}
			}
		}()
	})
	out := stdout.String()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("the scraper did not finish; exit code %d, stdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	if code != 0 {
		t.Fatalf("exit code %d; stdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	if len(missing) > 0 {
		t.Errorf("series missing from /metrics: %v\nlast scrape:\n%s", missing, last)
	}
	if !strings.Contains(out, "stopped (interrupted)") {
		t.Errorf("the summary does not say it was interrupted:\n%s", out)
	}
	if strings.Contains(out, " in-flight ") {
		t.Errorf("progress lines printed with -progress 0:\n%s", out)
	}
	parseSummary(t, out)
}

// missingSeries lists the series a dashboard needs that the scrape lacks:
// every instrument of the catalogue, with the label variants the panels
// query (refused items, failed batches, both triggers).
func missingSeries(scrape string) []string {
	type want struct {
		name   string
		labels []string
	}
	var wants []want
	for _, s := range musterconv.All() {
		name := s.PrometheusName()
		if s.Kind() == musterconv.KindHistogram {
			name += "_count"
		}
		wants = append(wants, want{name: name})
	}
	wants = append(wants,
		want{musterconv.ItemRefused.PrometheusName(), []string{`error_type="timeout"`}},
		want{musterconv.ItemProcessed.PrometheusName(), []string{`error_type="`}},
		want{musterconv.BatchDuration.PrometheusName() + "_count", []string{`error_type="`}},
		want{musterconv.BatchRetries.PrometheusName(), []string{`error_type="`}},
		want{musterconv.BatchSize.PrometheusName() + "_count", []string{`muster_batch_trigger="size"`}},
		want{musterconv.BatchSize.PrometheusName() + "_count", []string{`muster_batch_trigger="timeout"`}},
		want{musterconv.BatchSize.PrometheusName() + "_count", []string{`muster_batch_trigger="flush"`}},
	)
	var missing []string
	for _, w := range wants {
		if !hasSeries(scrape, w.name, append(w.labels, `muster_batcher_name="orders"`)...) {
			missing = append(missing, w.name+strings.Join(w.labels, ","))
		}
	}
	return missing
}

// A shutdown deadline that passes with batches in flight and waiting: exit
// status 1, and the summary still accounts for every order.
func TestRunShutdownIncomplete(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	code := run(t.Context(), []string{
		"-duration", "300ms", "-metrics-addr", "", "-traces", "", "-cycle", "0", "-checkpoint", "0",
		"-latency", "5s", "-failure-rate", "0", "-rate-limit", "0",
		"-batch-size", "10", "-max-inflight", "2", "-capacity", "20", "-shutdown-timeout", "100ms",
	}, &stdout, &stderr)
	out := stdout.String()
	if code != 1 {
		t.Fatalf("exit code %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	if !strings.Contains(out, "shutdown  INCOMPLETE") {
		t.Errorf("the summary does not say the shutdown was incomplete:\n%s", out)
	}
	s := parseSummary(t, out)
	if s.delivered != 0 || s.failed == 0 || s.abandoned == 0 {
		t.Errorf("want nothing delivered, some failed (in flight, canceled) and some abandoned: %+v", s)
	}
	if !strings.Contains(out, "shutdown_incomplete") {
		t.Errorf("the failures are not shutdown_incomplete:\n%s", out)
	}
}

// A port already taken fails the start with exit status 1 and a message.
func TestRunPortBusy(t *testing.T) {
	t.Parallel()
	var url string
	ready, ended := make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer close(ended)
		runDemo(ctx, []string{"-metrics-addr", "127.0.0.1:0", "-traces", "", "-progress", "0"},
			io.Discard, io.Discard, func(u string) { url = u; close(ready) })
	}()
	defer func() { cancel(); <-ended }()
	select {
	case <-ready:
	case <-ended:
		t.Fatal("the first demo did not start")
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/metrics")
	var stdout, stderr syncBuffer
	if code := run(t.Context(), []string{"-metrics-addr", addr, "-traces", ""}, &stdout, &stderr); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "metrics endpoint") {
		t.Errorf("stderr does not name the problem:\n%s", stderr.String())
	}
}

// Malformed orders are refused at the request (400), never added: no batch
// fails for them, so they cost the objective nothing.
func TestMalformedOrdersRefusedAtRequest(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	code := run(t.Context(), []string{
		"-duration", "1s", "-metrics-addr", "", "-traces", "", "-progress", "0", "-cycle", "0",
		"-failure-rate", "0", "-poison-every", "10",
	}, &stdout, &stderr)
	out := stdout.String()
	if code != 0 {
		t.Fatalf("exit code %d; stdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	s := parseSummary(t, out)
	if s.failed != 0 || s.delivered == 0 {
		t.Errorf("want every added order delivered, none failed: %+v\n%s", s, out)
	}
	if !regexp.MustCompile(`invalid: [1-9]\d* requests \([1-9]\d* orders\) answered 400`).MatchString(out) {
		t.Errorf("the summary does not count the requests refused for a malformed order:\n%s", out)
	}
}
