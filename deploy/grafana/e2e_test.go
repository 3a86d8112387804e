package grafana

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// The end-to-end test: a real Prometheus (Debian's 2.42 in CI) scrapes a
// process exporting muster's metrics, then every dashboard query must
// return data and every alert rule must evaluate without error.
//
// Two targets, run in parallel:
//   - demo: examples/otel-demo, built from the repository (in its own
//     module) and run with -metrics-addr on a free port. Skipped while
//     examples/otel-demo/main.go does not exist. MUSTER_E2E_DEMO_ARGS
//     replaces its other flags (space-separated; default -duration 90s).
//   - standin: a server inside this test that records every instrument of
//     the catalogue through telemetry.Setup. It checks the queries against
//     the Prometheus that runs them whatever the demo does.
//     MUSTER_E2E_STANDIN=0 turns it off.
//
// Everything listens on 127.0.0.1, every wait is bounded, and every process
// started is killed by its pid when the test ends.

const (
	// e2eRateInterval replaces $__rate_interval: Grafana's rule gives
	// 4 x the 1s scrape interval; 15s leaves room for a late scrape.
	e2eRateInterval = "15s"
	// e2eDataWait bounds how long the queries may take to all return data.
	e2eDataWait = 25 * time.Second
)

// defaultDemoArgs: the demo's defaults with its load cycle (an hour, for
// the alert rules at their real scale) run in 20s and a failure rate that
// exhausts retries in steady operation too, so that every instrument of the
// catalogue has data within seconds (sizes and timeouts, a binding rate
// limit, backpressure and refusals, failures and retries); -duration bounds
// its run, should the test die before killing it.
var defaultDemoArgs = []string{"-duration", "90s", "-cycle", "20s", "-failure-rate", "0.2"}

func TestE2EPrometheus(t *testing.T) {
	t.Parallel() // the end-to-end tests overlap: most of their time is waiting
	prom := findTool(t, "PROMETHEUS", "prometheus")
	d := loadDashboard(t)
	t.Run("standin", func(t *testing.T) {
		if os.Getenv("MUSTER_E2E_STANDIN") == "0" {
			t.Skip("MUSTER_E2E_STANDIN=0")
		}
		t.Parallel()
		addr := startStandin(t)
		runE2E(t, prom, addr, d, true, nil)
	})
	t.Run("demo", func(t *testing.T) {
		main := filepath.Join(repoRoot, "examples", "otel-demo", "main.go")
		if _, err := os.Stat(main); err != nil {
			t.Fatalf("the demo the dashboard is tested against is missing: %v", err)
		}
		t.Parallel()
		addr, shared := startDemo(t)
		runE2E(t, prom, addr, d, shared, notInDemo)
	})
}

// notInDemo lists, by title, the dashboard panels the demo has no data for,
// skipped in the demo's run (the standin's runs them all). The demo runs
// with -journal (the Journal row), but a single run replays nothing (replays
// come after a crash or a Shutdown deadline) and expires nothing (the demo
// sets no MaxItemAge).
var notInDemo = []string{titleJournalReplayed, titleJournalExpired}

// runE2E starts Prometheus scraping addr and checks the dashboard and the
// alert rules against it; the shared quota panel only if sharedQuota (the
// target uses a shared rate limit); every panel but those titled in skip.
func runE2E(t *testing.T, prom, addr string, d jsonDashboard, sharedQuota bool, skip []string) {
	api := startPrometheus(t, prom, addr)
	waitTargetUp(t, api)

	type query struct{ where, expr string }
	var queries []query
	for _, p := range d.queryPanels() {
		if !sharedQuota && showsSharedQuota(p) {
			continue
		}
		if slices.Contains(skip, p.Title) {
			t.Logf("!!! %s: panel %q skipped (notInDemo)", addr, p.Title)
			continue
		}
		for _, tg := range p.Targets {
			queries = append(queries, query{panelRef(p) + " " + tg.RefID, expand(tg.Expr, e2eRateInterval, ".+", ".+", ".+")})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		sel, label, err := labelValuesArg(v.queryString())
		if err != nil {
			t.Fatal(err)
		}
		// What label_values asks for: the label's values on the series.
		queries = append(queries, query{"variable " + v.Name, "count by (" + label + ") (" + expand(sel, e2eRateInterval, ".+", ".+", ".+") + ")"})
	}

	// Poll until every query returns data, or the deadline.
	deadline := time.Now().Add(e2eDataWait)
	var empty []string
	for round := 0; ; round++ {
		empty = empty[:0]
		for _, q := range queries {
			n, err := instantQuery(api, q.expr)
			if err != nil {
				t.Fatalf("%s: %v\nquery: %s", q.where, err, q.expr)
			}
			if n == 0 {
				empty = append(empty, q.where+"\n      "+q.expr)
			}
		}
		if len(empty) == 0 {
			t.Logf("all %d dashboard queries returned data after %d rounds", len(queries), round+1)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d of %d dashboard queries returned no series after %v:\n  %s\nseries present: %s",
				len(empty), len(queries), e2eDataWait, strings.Join(empty, "\n  "), presentSeries(api))
			break
		}
		time.Sleep(time.Second)
	}

	checkRules(t, api)
}

// checkRules waits for Prometheus to have evaluated every alert rule of
// alerts.yml and asserts none failed.
func checkRules(t *testing.T, api string) {
	t.Helper()
	var rf ruleFile
	loadYAML(t, alertsFile, &rf)
	want := len(rf.Groups[0].Rules)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var resp struct {
			Status string `json:"status"`
			Data   struct {
				Groups []struct {
					Name  string `json:"name"`
					Rules []struct {
						Name           string `json:"name"`
						Health         string `json:"health"`
						LastError      string `json:"lastError"`
						LastEvaluation string `json:"lastEvaluation"`
					} `json:"rules"`
				} `json:"groups"`
			} `json:"data"`
		}
		if err := getJSON(api+"/api/v1/rules?type=alert", &resp); err != nil {
			t.Fatal(err)
		}
		n, evaluated := 0, 0
		var bad []string
		for _, g := range resp.Data.Groups {
			for _, r := range g.Rules {
				n++
				if r.Health == "ok" {
					evaluated++
				} else if r.Health == "err" {
					bad = append(bad, fmt.Sprintf("%s: %s", r.Name, r.LastError))
				}
			}
		}
		if len(bad) > 0 {
			t.Fatalf("alert rules failed to evaluate:\n  %s", strings.Join(bad, "\n  "))
		}
		if n == want && evaluated == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Prometheus loaded %d alert rules and evaluated %d, want %d", n, evaluated, want)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// freeAddr returns a free TCP address on 127.0.0.1.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// lockedBuffer collects a process's output for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// all returns everything written.
func (l *lockedBuffer) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// String returns the last 4000 bytes written, for failure messages.
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.b.String()
	if len(s) > 4000 {
		s = "...\n" + s[len(s)-4000:]
	}
	return s
}

// startProcess starts a command and kills it by pid at the end of the test.
// The returned channel is closed when the process exits.
func startProcess(t *testing.T, name string, cmd *exec.Cmd) (*lockedBuffer, <-chan struct{}) {
	t.Helper()
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	pid := cmd.Process.Pid
	t.Cleanup(func() {
		// Its process group only: the process and any child it started.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, pid)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, out)
		}
	})
	return out, exited
}

// waitHTTP polls url until it answers 200, the process exits, or the
// deadline.
func waitHTTP(t *testing.T, name, u string, exited <-chan struct{}, out *lockedBuffer, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(u)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before %s answered:\n%s", name, u, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not answer 200 within %v (last error %v):\n%s", name, u, within, err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startPrometheus runs Prometheus with a temporary TSDB, scraping target
// every second and evaluating the alert rules every second, and returns its
// base URL once ready.
func startPrometheus(t *testing.T, bin, target string) string {
	t.Helper()
	rules, err := filepath.Abs(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	return startPrometheusWith(t, bin, target, rules)
}

// startPrometheusWith is startPrometheus with another rules file.
func startPrometheusWith(t *testing.T, bin, target, rules string) string {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - %q
scrape_configs:
  - job_name: muster-e2e
    static_configs:
      - targets: [%q]
`, rules, target)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	cmd := exec.Command(bin,
		"--config.file="+cfgFile,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+listen,
		"--web.console.templates="+dir, // Debian's defaults point at /etc
		"--web.console.libraries="+dir,
		"--log.level=warn",
	)
	cmd.Dir = dir
	out, exited := startProcess(t, "prometheus", cmd)
	api := "http://" + listen
	waitHTTP(t, "prometheus", api+"/-/ready", exited, out, 20*time.Second)
	return api
}

// waitTargetUp waits until Prometheus has scraped the target successfully.
func waitTargetUp(t *testing.T, api string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var resp struct {
			Data struct {
				ActiveTargets []struct {
					Health    string `json:"health"`
					LastError string `json:"lastError"`
					ScrapeURL string `json:"scrapeUrl"`
				} `json:"activeTargets"`
			} `json:"data"`
		}
		err := getJSON(api+"/api/v1/targets", &resp)
		if err == nil && len(resp.Data.ActiveTargets) == 1 && resp.Data.ActiveTargets[0].Health == "up" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("target not up within 15s: %v %+v", err, resp.Data.ActiveTargets)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func getJSON(u string, v any) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: %s: %v: %s", u, resp.Status, err, body)
	}
	return nil
}

// instantQuery runs an instant query and returns the number of series.
func instantQuery(api, expr string) (int, error) {
	var resp struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string            `json:"resultType"`
			Result     []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := getJSON(api+"/api/v1/query?"+url.Values{"query": {expr}}.Encode(), &resp); err != nil {
		return 0, err
	}
	if resp.Status != "success" {
		return 0, fmt.Errorf("Prometheus: %s: %s", resp.ErrorType, resp.Error)
	}
	return len(resp.Data.Result), nil
}

// presentSeries lists the muster series Prometheus has, for failure
// messages.
func presentSeries(api string) string {
	var resp struct {
		Data []string `json:"data"`
	}
	if err := getJSON(api+"/api/v1/label/__name__/values", &resp); err != nil {
		return err.Error()
	}
	var names []string
	for _, n := range resp.Data {
		if strings.HasPrefix(n, "muster_") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	return strings.Join(names, " ")
}

// startDemo builds examples/otel-demo (in its own module, as `make demo`
// runs it, with the race detector), once for all tests, and starts it
// serving /metrics on a free port, sharing its quota through a Redis of its
// own when redis-server is there.
func startDemo(t *testing.T) (addr string, sharedQuota bool) {
	t.Helper()
	args := defaultDemoArgs
	if s := os.Getenv("MUSTER_E2E_DEMO_ARGS"); s != "" {
		args = strings.Fields(s)
	}
	// The journal's panels: the orders journaled on the local disk.
	args = append(slices.Clip(args), "-journal", filepath.Join(t.TempDir(), "journal"))
	if redis := startRedisForDemo(t); redis != "" { // the shared quota panel
		args = append(slices.Clip(args), "-redis-addr", redis)
		sharedQuota = true
	}
	addr, _, _ = runDemo(t, buildDemo(t), args)
	return addr, sharedQuota
}

// buildDemo builds examples/otel-demo in its own module, the first time it
// is called, and returns the binary's path.
func buildDemo(t *testing.T) string {
	t.Helper()
	demo.once.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			demo.err = fmt.Errorf("go not on PATH: %v", err)
			return
		}
		if demo.dir, err = os.MkdirTemp("", "muster-e2e-demo-"); err != nil {
			demo.err = err
			return
		}
		bin := filepath.Join(demo.dir, "otel-demo")
		// With the race detector: the library's packages are then those
		// make test has built already (for the library's tests, and for
		// vet -race here), so a cold cache costs a link, not a second
		// build; and a data race in the demo under real load shows.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		build := exec.CommandContext(ctx, goBin, "build", "-race", "-o", bin, ".")
		build.Dir = filepath.Join(repoRoot, "examples", "otel-demo") // a module of its own
		if out, err := build.CombinedOutput(); err != nil {
			demo.err = fmt.Errorf("build examples/otel-demo: %v\n%s", err, out)
			return
		}
		demo.bin = bin
	})
	if demo.err != nil {
		t.Fatal(demo.err)
	}
	return demo.bin
}

// demo is the demo binary, built once for the tests that run it
// (concurrently: three builds of it at once on a cold cache took minutes
// each), in a directory TestMain removes.
var demo struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if demo.dir != "" {
		os.RemoveAll(demo.dir)
	}
	os.Exit(code)
}

// runDemo starts the demo binary serving /metrics on a free port with the
// given flags, and returns the address, its output and a channel closed
// when it exits, once /metrics answers.
func runDemo(t *testing.T, bin string, args []string) (string, *lockedBuffer, <-chan struct{}) {
	t.Helper()
	return runDemoEnv(t, bin, args, nil)
}

// runDemoEnv is runDemo with variables added to the hermetic environment
// (OTEL_* ones, which it otherwise drops).
func runDemoEnv(t *testing.T, bin string, args []string, env map[string]string) (string, *lockedBuffer, <-chan struct{}) {
	t.Helper()
	return runDemoAt(t, bin, freeAddr(t), args, env)
}

// runDemoAt is runDemoEnv serving /metrics at addr.
func runDemoAt(t *testing.T, bin, addr string, args []string, env map[string]string) (string, *lockedBuffer, <-chan struct{}) {
	t.Helper()
	args = append([]string{"-metrics-addr", addr}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = hermeticEnv()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, exited := startProcess(t, "otel-demo", cmd)
	waitHTTP(t, "otel-demo "+strings.Join(args, " "), "http://"+addr+"/metrics", exited, out, 20*time.Second)
	return addr, out, exited
}

// hermeticEnv is the environment without OpenTelemetry exporter settings,
// so that the demo pushes nowhere.
func hermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

// startStandin serves, on 127.0.0.1, the exposition of telemetry.Setup
// while a goroutine records every instrument of the catalogue the way a
// busy, partly failing batcher would. It returns the host:port.
func startStandin(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p, err := telemetry.Setup(ctx, telemetry.WithServiceName("muster-e2e-standin"), telemetry.WithoutOTLP())
	if err != nil {
		t.Fatal(err)
	}
	m := p.MeterProvider().Meter("github.com/musterhq/muster/deploy/grafana/standin")
	rec, err := newStandinRecorder(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := recordSharedQuota(ctx, m); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", p.MetricsHandler())
	srv := httptest.NewServer(mux) // 127.0.0.1
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			rec.step(ctx, i)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		srv.Close()
		p.Shutdown(context.Background())
	})
	return strings.TrimPrefix(srv.URL, "http://")
}

type standinRecorder struct {
	added                               atomic.Int64 // observed as muster.item.added
	refused, dropped                    metric.Int64Counter
	processed, retries                  metric.Int64Counter
	size                                metric.Int64Histogram
	fill, wait, duration, blocked, rlim metric.Float64Histogram
	inflight                            metric.Int64UpDownCounter
	// The journal's.
	appendDur                 metric.Float64Histogram
	replayed, deadLettered    metric.Int64Counter
	syncs, corrupt, takeovers atomic.Int64
}

func newStandinRecorder(m metric.Meter) (*standinRecorder, error) {
	r := &standinRecorder{}
	var errs [30]error
	orders := metric.WithAttributes(musterconv.BatcherName("orders"))
	_, errs[0] = musterconv.ItemAdded.New(m, metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
		o.Observe(r.added.Load(), orders)
		return nil
	}))
	r.refused, errs[15] = musterconv.ItemRefused.New(m)
	r.dropped, errs[16] = musterconv.ItemDropped.New(m)
	r.processed, errs[1] = musterconv.ItemProcessed.New(m)
	r.retries, errs[2] = musterconv.BatchRetries.New(m)
	r.size, errs[3] = musterconv.BatchSize.New(m)
	r.fill, errs[4] = musterconv.BatchUtilization.New(m)
	r.wait, errs[5] = musterconv.BatchWaitDuration.New(m)
	r.duration, errs[6] = musterconv.BatchDuration.New(m)
	r.blocked, errs[7] = musterconv.AddBlockedDuration.New(m)
	r.rlim, errs[8] = musterconv.RateLimitWaitDuration.New(m)
	r.inflight, errs[9] = musterconv.BatchInflight.New(m)
	observe := func(v int64) metric.Int64ObservableOption {
		return metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(v, metric.WithAttributes(musterconv.BatcherName("orders")))
			return nil
		})
	}
	_, errs[10] = musterconv.BatchInflightLimit.New(m, observe(4))
	_, errs[11] = musterconv.QueueSize.New(m, observe(700))
	_, errs[12] = musterconv.QueueCapacity.New(m, observe(1000))
	_, errs[13] = musterconv.BatcherKeys.New(m, observe(3))
	_, errs[14] = musterconv.ItemPending.New(m, observe(560))
	// The top keys of a Keyed "orders": one loud key, two quiet ones.
	perKey := func(values map[string]int64) metric.Int64ObservableOption {
		return metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			for key, v := range values {
				o.Observe(v, metric.WithAttributes(musterconv.BatcherName("orders"), musterconv.BatchKeyKey.String(key)))
			}
			return nil
		})
	}
	_, errs[28] = musterconv.KeyPending.New(m, perKey(map[string]int64{"eu": 480, "us": 50, "ap": 30}))
	_, errs[29] = musterconv.KeyWaiting.New(m, perKey(map[string]int64{"eu": 3, "us": 0, "ap": 0}))
	// A journal whose oldest item ages and whose counters grow.
	start := time.Now()
	counter := func(v *atomic.Int64) metric.Int64ObservableOption {
		return metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(v.Load(), orders)
			return nil
		})
	}
	_, errs[17] = musterconv.JournalItems.New(m, observe(300))
	_, errs[18] = musterconv.JournalBytes.New(m, observe(300<<10))
	_, errs[19] = musterconv.JournalBytesLimit.New(m, observe(64<<20))
	_, errs[20] = musterconv.JournalOldestAge.New(m, metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
		o.Observe(time.Since(start).Seconds(), orders)
		return nil
	}))
	r.appendDur, errs[21] = musterconv.JournalAppendDuration.New(m)
	_, errs[22] = musterconv.JournalSyncs.New(m, counter(&r.syncs))
	_, errs[23] = musterconv.JournalSyncTime.New(m, metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
		o.Observe(float64(r.syncs.Load())*0.002, orders)
		return nil
	}))
	r.replayed, errs[24] = musterconv.JournalRecovered.New(m)
	r.deadLettered, errs[25] = musterconv.JournalDeadLettered.New(m)
	_, errs[26] = musterconv.JournalCorrupt.New(m, counter(&r.corrupt))
	_, errs[27] = musterconv.JournalTakeovers.New(m, counter(&r.takeovers))
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return r, nil
}

// step records one batch of batcher "orders": most fire on size, some on
// timeout; every fifth fails after two retries; a producer is blocked and
// an item refused now and then.
func (r *standinRecorder) step(ctx context.Context, i int) {
	name := musterconv.BatcherName("orders")
	set := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{name}, kv...)...))
	}
	trigger, size := musterconv.TriggerSize, int64(100)
	if i%3 == 0 {
		trigger, size = musterconv.TriggerTimeout, 40
	}
	bt := set(musterconv.BatchTrigger(trigger))
	r.added.Add(size)
	r.size.Record(ctx, size, bt)
	r.appendDur.Record(ctx, 0.001+float64(i%3)*0.001, set())
	r.syncs.Add(1)
	r.replayed.Add(ctx, 1, set())
	r.corrupt.Add(1)
	r.takeovers.Add(1)
	if i%6 == 0 {
		r.deadLettered.Add(ctx, 2, set(musterconv.ErrorTypeKey.String("expired")))
		r.deadLettered.Add(ctx, 1, set(musterconv.ErrorTypeKey.String("timeout")))
	}
	r.fill.Record(ctx, float64(size)/100, bt)
	r.wait.Record(ctx, 0.02+float64(i%5)*0.01, bt)
	r.inflight.Add(ctx, 1, set())
	r.rlim.Record(ctx, 0.005*float64(i%4), set())
	if i%5 == 0 {
		failed := set(musterconv.ErrorTypeKey.String("timeout"))
		r.retries.Add(ctx, 2, failed)
		r.processed.Add(ctx, size, failed)
		r.duration.Record(ctx, 1.5, failed)
	} else {
		r.processed.Add(ctx, size, set())
		r.duration.Record(ctx, 0.05, set())
	}
	r.inflight.Add(ctx, -1, set())
	if i%4 == 0 {
		r.blocked.Record(ctx, 0.003, set())
	}
	if i%7 == 0 {
		r.refused.Add(ctx, 1, set(musterconv.ErrorTypeKey.String("canceled")))
		r.added.Add(1)
		r.dropped.Add(ctx, 1, set(musterconv.ErrorTypeKey.String("dropped")))
	}
}
