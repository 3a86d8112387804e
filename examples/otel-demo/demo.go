package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
	"github.com/musterhq/muster/telemetry"
)

const (
	serviceName = "otel-demo"
	batcherName = "orders"
	scopeName   = "github.com/musterhq/muster/examples/otel-demo"
)

// run is the whole program: parse args, run the demo until ctx ends or
// -duration passes, shut down, print the summary. It returns the exit status:
// 0 after a clean shutdown, 1 when the shutdown deadline left work undone or
// the demo could not start, 2 for bad flags.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runDemo(ctx, args, stdout, stderr, nil)
}

// runDemo is run with a callback that learns the metrics URL once the
// endpoint is listening (tests scrape it).
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer, ready func(metricsURL string)) int {
	cfg, err := parseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		return 2
	}
	d, err := start(ctx, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "otel-demo: %v\n", err)
		return 1
	}
	if ready != nil && d.metricsURL != "" {
		ready(d.metricsURL)
	}
	return d.wait(ctx)
}

// demo is a running demo.
type demo struct {
	cfg            config
	stdout, stderr io.Writer
	began          time.Time
	profile        profile

	providers  *telemetry.Providers
	traceSink  *spanWriter // nil: no trace file
	traceClose func() error
	tracesDesc string
	traceFile  string // "" unless spans go to a file
	server     *http.Server
	metricsURL string
	metricsDsc string

	batcher      ordersBatcher
	journal      *journaled     // nil without -journal
	ledger       *ledger        // nil without -ledger
	limit        func() float64 // the current rate limit (0: none)
	closeLimiter func()         // stops a shared limiter's background work; nil for none
	limitMode    func() string  // a shared limiter's mode when not shared; nil for none
	tally        *tally

	stopProducers   chan struct{}
	producers       sync.WaitGroup
	lateAcks        sync.WaitGroup  // outcomes awaited past a request's deadline
	checkpointCtx   context.Context // canceled before the batcher shuts down
	stopCheckpoints context.CancelFunc
	checkpointing   sync.WaitGroup
	checkpoints     atomic.Int64
	stopProgress    chan struct{}
	progressing     sync.WaitGroup
	alerts          *alertWatch // nil without -prometheus
}

// start sets up telemetry, the metrics endpoint and the batcher, then starts
// the producers, the checkpoint loop and the progress line.
func start(ctx context.Context, cfg config, stdout, stderr io.Writer) (d *demo, err error) {
	d = &demo{
		cfg: cfg, stdout: stdout, stderr: stderr,
		tally:         newTally(),
		stopProducers: make(chan struct{}),
		stopProgress:  make(chan struct{}),
	}
	d.checkpointCtx, d.stopCheckpoints = context.WithCancel(context.Background())
	cleanup := []func(){d.stopCheckpoints}
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	// Telemetry: Prometheus always; OTLP when the environment asks for it;
	// spans to a file (or stderr) unless OTLP takes them.
	otlp := otlpFromEnv(os.Getenv)
	traces := cfg.traces
	if otlp.traces != "" && !cfg.tracesSet {
		traces = ""
	}
	var descs []string
	opts := []telemetry.Option{telemetry.WithServiceName(serviceName)}
	switch traces {
	case "":
	case "-":
		d.traceSink = newSpanWriter(stderr, cfg.traceFormat)
		d.traceClose = func() error { return nil }
		descs = append(descs, fmt.Sprintf("stderr (%s)", cfg.traceFormat))
	default:
		f, err := os.Create(traces)
		if err != nil {
			return nil, fmt.Errorf("traces: %w", err)
		}
		cleanup = append(cleanup, func() { f.Close() })
		d.traceSink = newSpanWriter(f, cfg.traceFormat)
		d.traceClose = f.Close
		descs = append(descs, fmt.Sprintf("%s (%s, one span per line)", traces, cfg.traceFormat))
		d.traceFile = traces
	}
	if d.traceSink != nil {
		opts = append(opts, telemetry.WithTraceWriter(d.traceSink), telemetry.WithCompactOutput())
	}
	if otlp.traces != "" {
		descs = append(descs, "OTLP "+otlp.traces)
	}
	if len(descs) == 0 {
		descs = append(descs, "nowhere (spans are still made, for links and exemplars)")
	}
	d.tracesDesc = joinComma(descs)

	p, err := telemetry.Setup(ctx, opts...)
	if err != nil {
		return nil, err
	}
	d.providers = p
	cleanup = append(cleanup, func() { p.Shutdown(context.Background()) })

	// The metrics endpoint, bound before anything runs so that a busy port
	// fails the start.
	var mdescs []string
	if cfg.metricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.metricsAddr)
		if err != nil {
			return nil, fmt.Errorf("metrics endpoint: %w", err)
		}
		d.metricsURL = "http://" + ln.Addr().String() + "/metrics"
		mux := http.NewServeMux()
		mux.Handle("/metrics", p.MetricsHandler())
		mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "muster %s: metrics at /metrics\n", serviceName)
		})
		d.server = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := d.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				fmt.Fprintf(stderr, "otel-demo: metrics endpoint: %v\n", err)
			}
		}()
		cleanup = append(cleanup, func() { d.server.Close() })
		mdescs = append(mdescs, "Prometheus at "+d.metricsURL)
	}
	if otlp.metrics != "" {
		mdescs = append(mdescs, "OTLP "+otlp.metrics)
	}
	if len(mdescs) == 0 {
		mdescs = append(mdescs, "nowhere (-metrics-addr is empty)")
	}
	d.metricsDsc = joinComma(mdescs)

	// The batcher: a muster.Keyed, one batch per region (orders-db has a
	// bulk endpoint per region), with otelmuster's tracing and metrics and
	// the tally that feeds the progress line; retry outside, the rate limit
	// inside, as middleware/doc.go recommends. The regions share the
	// in-flight limit and the rate limit.
	otelHooks, err := otelmuster.NewHooks(
		otelmuster.WithTracerProvider(p.TracerProvider()),
		otelmuster.WithMeterProvider(p.MeterProvider()),
	)
	if err != nil {
		return nil, err
	}
	d.began = time.Now()
	d.profile = profile{start: d.began, cycle: cfg.cycle, outage: cfg.outage}
	tracer := p.TracerProvider().Tracer(scopeName)
	ds := &downstream{
		tracer:      tracer,
		profile:     d.profile,
		latency:     cfg.latency,
		failureRate: cfg.failureRate,
		batchSize:   cfg.batchSize,
	}
	var waiter ratelimit.Waiter
	var limit func() float64
	if cfg.redisAddr != "" {
		waiter, limit, d.limitMode, d.closeLimiter, err = newSharedLimiter(cfg, p.MeterProvider())
	} else {
		waiter, limit, err = newLimiter(cfg)
	}
	if err != nil {
		return nil, err
	}
	d.limit = limit
	if limit != nil {
		_, err := p.MeterProvider().Meter(scopeName).Float64ObservableGauge("orders_db.rate_limit",
			metric.WithUnit("{order}/s"),
			metric.WithDescription("Orders per second the demo's rate limiter lets through to orders-db now (adaptive: it drops on overload)."),
			metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
				o.Observe(limit())
				return nil
			}))
		if err != nil {
			return nil, err
		}
	}
	if cfg.ledger != "" {
		if d.ledger, err = openLedger(cfg.ledger, stderr); err != nil {
			return nil, err
		}
		cleanup = append(cleanup, func() { d.ledger.close() })
		ds.ledger = d.ledger
	}
	kp := keyedParams{cfg: cfg, hooks: muster.Compose(otelHooks, d.tally), ledger: d.ledger}
	if cfg.journal != "" {
		// The journaled batcher: the same Keyed, of journal items, whose
		// Fire writes each order under its journal ID.
		j, err := newJournaled(ctx, kp, fireChain(waiter, ds.insertItems), p.MeterProvider(), stderr)
		if err != nil {
			return nil, err
		}
		d.journal, d.batcher = j, j
	} else {
		// The insert (a child span) runs in the batch span's context.
		k := newKeyed(kp, func(o Order) string { return o.Region }, fireChain(waiter, ds.insert))
		if d.ledger != nil {
			k.DeadLetter = func(_ context.Context, orders []Order, _ error) {
				for _, o := range orders {
					d.ledger.record("dead", o.ID)
				}
			}
		}
		if err := k.Start(); err != nil {
			return nil, err
		}
		d.batcher = k
	}
	d.banner()
	var ids atomic.Uint64
	if d.ledger != nil {
		// Runs that share a ledger never reuse an order ID: this run's
		// start at the clock's milliseconds x 1e6.
		ids.Store(uint64(d.began.UnixMilli()) * 1_000_000)
	}
	for i := range cfg.producers {
		pr := &producer{
			id: i + 1, cfg: cfg, profile: d.profile, tracer: tracer, batcher: d.batcher, ids: &ids, tally: d.tally, late: &d.lateAcks, ledger: d.ledger,
			rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(i))),
		}
		d.producers.Go(func() { pr.run(d.stopProducers) })
	}
	if cfg.checkpoint > 0 {
		d.checkpointing.Go(d.checkpointLoop)
	}
	if cfg.progress > 0 {
		if cfg.prometheus != "" {
			d.alerts = newAlertWatch(cfg.prometheus)
			d.progressing.Go(func() { d.alerts.run(d.stopProgress, cfg.progress) })
		}
		d.progressing.Go(d.progressLoop)
	}
	return d, nil
}

// fireChain is the middleware around orders-db's insert: retry outside, the
// rate limit inside, as middleware/doc.go recommends.
func fireChain[T any](waiter ratelimit.Waiter, insert muster.FireFunc[T]) muster.FireFunc[T] {
	return muster.Chain(
		retry.New[T](
			retry.WithMaxAttempts(3),
			retry.WithBackoff(retry.Backoff{Initial: 50 * time.Millisecond, Max: 2 * time.Second}),
			retry.WithMaxElapsedTime(10*time.Second),
		),
		throttle.New[T](waiter, throttle.WithPerItem()),
	)(insert)
}

// newLimiter makes the per-order rate limiter: adaptive (AIMD on overload
// errors) or fixed. It returns a nil Waiter for no limit.
func newLimiter(cfg config) (ratelimit.Waiter, func() float64, error) {
	if cfg.rateLimit == 0 {
		return nil, nil, nil
	}
	// A burst of one full batch: an idle limiter lets a full batch through
	// at once (a larger batch is served on credit).
	burst := cfg.batchSize
	if burst == 0 {
		burst = max(1, int(cfg.rateLimit/10))
	}
	if !cfg.adaptive {
		l := ratelimit.NewLimiter(rate.Limit(cfg.rateLimit), burst)
		return l, func() float64 { return float64(l.Limit()) }, nil
	}
	a, err := ratelimit.NewAdaptive(ratelimit.AdaptiveConfig{
		Max:        rate.Limit(cfg.rateLimit),
		Min:        rate.Limit(cfg.rateLimit / 10),
		Burst:      burst,
		Increase:   rate.Limit(cfg.rateLimit / 40),
		Decrease:   0.5,
		CoolDown:   max(500*time.Millisecond, 4*cfg.latency),
		IsOverload: func(err error) bool { return errors.Is(err, ratelimit.ErrOverloaded) },
	})
	if err != nil {
		return nil, nil, fmt.Errorf("rate limit: %w", err)
	}
	return a, func() float64 { return float64(a.Limit()) }, nil
}

func (d *demo) banner() {
	c := d.cfg
	w := d.stdout
	size, timeout, inflight := "no size trigger", "no timeout", "no in-flight limit"
	if c.batchSize > 0 {
		size = fmt.Sprintf("size %d", c.batchSize)
	}
	if c.batchTimeout > 0 {
		timeout = fmt.Sprintf("timeout %v", c.batchTimeout)
	}
	if c.maxInflight > 0 {
		inflight = fmt.Sprintf("%d in flight", c.maxInflight)
	}
	fmt.Fprintf(w, "muster %s: %d producers x %g orders/s (1-%d per request, %g%% awaiting an acknowledgement) -> keyed batcher %q\n",
		serviceName, c.producers, c.rate, c.itemsPerRequest, 100*c.ackShare, batcherName)
	fmt.Fprintf(w, "  per region (%s): %s, %s; shared: queue %d, %s\n",
		strings.Join(regions, ", "), size, timeout, c.capacity, inflight)
	limit := "no rate limit"
	if c.rateLimit > 0 {
		limit = fmt.Sprintf("rate limit %g orders/s", c.rateLimit)
		if c.adaptive {
			limit += " (adaptive)"
		}
		if c.redisAddr != "" {
			limit += " shared through Redis at " + c.redisAddr
		}
	}
	poison := ""
	if c.poisonEvery > 0 {
		poison = fmt.Sprintf(", every %dth order malformed (its request answered 400)", c.poisonEvery)
	}
	fmt.Fprintf(w, "  -> retry -> %s -> orders-db (latency ~%v, %g%% failures%s)\n", limit, c.latency, 100*c.failureRate, poison)
	if c.cycle > 0 {
		fmt.Fprintf(w, "  load cycle %v: surge x3 %s, downstream brownout %s, quiet x0.3 %s, steady otherwise\n",
			c.cycle, phaseSpan(c.cycle, "surge"), phaseSpan(c.cycle, "brownout"), phaseSpan(c.cycle, "quiet"))
	} else {
		fmt.Fprintf(w, "  steady load, healthy downstream (-cycle 0)\n")
	}
	if o := c.outage; o.length > 0 {
		fmt.Fprintf(w, "  downstream outage at %v for %v: every write fails (-outage)\n", o.start, o.length)
	}
	if c.checkpoint > 0 {
		fmt.Fprintf(w, "  checkpoint (Flush) every %v\n", c.checkpoint)
	}
	if d.journal != nil {
		fmt.Fprintf(w, "  journal: %s\n", d.journal.where)
	}
	if c.ledger != "" {
		fmt.Fprintf(w, "  ledger:  %s (accepted, written, dead: one line per order)\n", c.ledger)
	}
	fmt.Fprintf(w, "  metrics: %s\n  traces:  %s\n", d.metricsDsc, d.tracesDesc)
	if c.prometheus != "" {
		fmt.Fprintf(w, "  alerts:  as the Prometheus at %s reports them (/api/v1/alerts)\n", c.prometheus)
	}
	if d.traceFile != "" {
		fmt.Fprintf(w, "           (tail -f %s, or grep it for a trace id)\n", d.traceFile)
	}
	if c.duration > 0 {
		fmt.Fprintf(w, "running for %v (Ctrl-C to stop sooner)\n", c.duration)
	} else {
		fmt.Fprintf(w, "running until Ctrl-C\n")
	}
}

// phaseSpan says when the first phase of that name begins and ends in a
// cycle: "3m0s-10m30s".
func phaseSpan(cycle time.Duration, name string) string {
	from := 0.0
	for _, ph := range cyclePhases {
		if ph.name == name {
			at := func(f float64) time.Duration { return time.Duration(f * float64(cycle)).Round(time.Millisecond) }
			return at(from).String() + "-" + at(ph.until).String()
		}
		from = ph.until
	}
	return "none"
}

// checkpointLoop calls Flush every -checkpoint, as a consumer committing
// its offsets would: everything accepted before the call is written (or has
// failed) when it returns.
func (d *demo) checkpointLoop() {
	t := time.NewTicker(d.cfg.checkpoint)
	defer t.Stop()
	for {
		select {
		case <-d.checkpointCtx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(d.checkpointCtx, d.cfg.checkpoint)
		if err := d.batcher.Flush(ctx); err == nil {
			d.checkpoints.Add(1)
		}
		cancel()
	}
}

func (d *demo) progressLoop() {
	t := time.NewTicker(d.cfg.progress)
	defer t.Stop()
	last := d.began
	for {
		select {
		case <-d.stopProgress:
			return
		case now := <-t.C:
			d.printProgress(now, now.Sub(last))
			last = now
		}
	}
}

func (d *demo) printProgress(now time.Time, interval time.Duration) {
	g := gauges{
		stats:     d.batcher.Stats(),
		batchSize: d.cfg.batchSize,
		maxIn:     d.cfg.maxInflight,
		capacity:  d.cfg.capacity, // PendingWorkCapacity: shared by the regions
		phase:     d.profile.at(now).name,
	}
	if d.limit != nil {
		g.limit = d.limit()
	}
	if d.limitMode != nil {
		g.limitMode = d.limitMode()
	}
	if d.alerts != nil {
		g.alerts = d.alerts.field()
	}
	fmt.Fprintln(d.stdout, progressLine(now.Sub(d.began), interval, d.tally.take(), g))
}

// wait runs until ctx ends or -duration passes, then shuts down: producers
// first (each finishes its request), then checkpoints, then the batcher
// within -shutdown-timeout (progress lines go on meanwhile), then telemetry. It prints the summary and returns the
// exit status.
func (d *demo) wait(ctx context.Context) int {
	var timeout <-chan time.Time
	if d.cfg.duration > 0 {
		t := time.NewTimer(d.cfg.duration)
		defer t.Stop()
		timeout = t.C
	}
	reason := "-duration reached"
	select {
	case <-ctx.Done():
		reason = "interrupted"
	case <-timeout:
	}
	ran := time.Since(d.began)
	fmt.Fprintf(d.stdout, "%s: stopping producers, then shutting down (deadline %v)\n", reason, d.cfg.shutdownTimeout)
	close(d.stopProducers)
	d.producers.Wait()
	d.stopCheckpoints()
	d.checkpointing.Wait()

	r := report{ran: ran, reason: reason, spans: -1}
	sctx, cancel := context.WithTimeout(context.Background(), d.cfg.shutdownTimeout)
	err := d.batcher.Shutdown(sctx)
	cancel()
	status := 0
	if err != nil {
		status = 1
		if !errors.As(err, &r.shutdownErr) {
			fmt.Fprintf(d.stderr, "otel-demo: shutdown: %v\n", err)
		}
		// The deadline canceled the batches in flight; the downstream and
		// the middleware honour that at once, so give them a moment to
		// report their failure, for the account to add up.
		gctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = d.batcher.Shutdown(gctx)
		cancel()
	}
	close(d.stopProgress)
	d.progressing.Wait()
	if d.closeLimiter != nil {
		d.closeLimiter()
	}

	// Every Result is done once Shutdown returned, but for a batch still in
	// flight after a deadline: wait for those a moment at most.
	lateDone := make(chan struct{})
	go func() { d.lateAcks.Wait(); close(lateDone) }()
	select {
	case <-lateDone:
	case <-time.After(2 * time.Second):
	}
	if d.journal != nil {
		r.journal = d.journal.summary()
		d.journal.closeAll()
	}
	if err := d.ledger.close(); err != nil {
		fmt.Fprintf(d.stderr, "otel-demo: ledger: %v\n", err)
	}
	r.stats = d.batcher.Stats()
	r.inFlight = r.stats.InFlight
	r.tot = d.tally.totals()
	r.checkpoints = int(d.checkpoints.Load())
	r.metrics = d.metricsDsc
	r.traces = d.tracesDesc

	if d.server != nil {
		_ = d.server.Close()
	}
	tctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	if err := d.providers.Shutdown(tctx); err != nil {
		fmt.Fprintf(d.stderr, "otel-demo: flushing telemetry: %v\n", err)
	}
	cancel()
	if d.traceSink != nil {
		r.spans = d.traceSink.Spans()
		if err := d.traceClose(); err != nil {
			fmt.Fprintf(d.stderr, "otel-demo: traces: %v\n", err)
		}
	}
	writeSummary(d.stdout, r)
	return status
}

// otlpEnv says where OTLP sends each signal ("" when it does not), read from
// the environment as package telemetry reads it: on when OTEL_*_EXPORTER
// names otlp, or, with that variable unset, when an endpoint or a protocol
// is set for the signal or for all.
type otlpEnv struct{ traces, metrics string }

func otlpFromEnv(getenv func(string) string) otlpEnv {
	where := func(signal string) string {
		explicit := false
		if exp := strings.ToLower(getenv("OTEL_" + signal + "_EXPORTER")); exp != "" {
			if !slices.Contains(strings.Split(strings.ReplaceAll(exp, " ", ""), ","), "otlp") {
				return "" // the operator chose other exporters
			}
			explicit = true
		}
		endpoint := getenv("OTEL_EXPORTER_OTLP_" + signal + "_ENDPOINT")
		if endpoint == "" {
			endpoint = getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
		}
		protocol := getenv("OTEL_EXPORTER_OTLP_" + signal + "_PROTOCOL")
		if protocol == "" {
			protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
		}
		if endpoint == "" && protocol == "" && !explicit {
			return ""
		}
		if protocol == "" {
			protocol = string(telemetry.ProtocolHTTPProtobuf)
		}
		if endpoint == "" {
			endpoint = "localhost:4318"
			if protocol == string(telemetry.ProtocolGRPC) {
				endpoint = "localhost:4317"
			}
		}
		return fmt.Sprintf("push (%s) to %s", protocol, endpoint)
	}
	return otlpEnv{traces: where("TRACES"), metrics: where("METRICS")}
}

func joinComma(s []string) string {
	out := ""
	for i, x := range s {
		if i > 0 {
			out += ", "
		}
		out += x
	}
	return out
}
