package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// config is everything the flags set. Spans go to a file in the temporary
// directory by default, not the working directory: `make demo` runs in the
// repository, which should stay clean, and the terminal stays readable. The
// defaults tell the alert story of deploy/prometheus truthfully at its real
// scale: steady operation meets the rules' objective (no alert), and the
// load cycle's incidents (cyclePhases) last long enough to raise the alerts
// that fit them, which resolve before the next. Within the cycle every
// instrument of the catalogue gets data: batches fire on size and on
// timeout (and on the periodic checkpoint flush), the rate limit binds
// during the surge, producers are held by backpressure and some give up,
// the downstream fails, and failed attempts are retried. A short -cycle
// (20s) shows all of it within seconds.
type config struct {
	duration        time.Duration
	metricsAddr     string
	traces          string
	tracesSet       bool // -traces given explicitly
	traceFormat     string
	producers       int
	rate            float64
	itemsPerRequest int
	ackShare        float64
	requestTimeout  time.Duration
	latency         time.Duration
	failureRate     float64
	poisonEvery     int
	rateLimit       float64
	adaptive        bool
	redisAddr       string // share the rate limit through this Redis ("": in process)
	redisKey        string
	batchSize       int
	batchTimeout    time.Duration
	maxInflight     int
	capacity        int
	cycle           time.Duration
	checkpoint      time.Duration
	progress        time.Duration
	shutdownTimeout time.Duration
	outage          outage
	prometheus      string // a Prometheus to ask for the alerts firing ("": none)
	journal         string // a directory for the embedded journal, or "redis" ("": none)
	ledger          string // a file to append accepted, written and dead order IDs to ("": none)
}

// outage is a scheduled downstream outage: from start (after the demo
// began) for length, every write fails. The flag spells it START+LENGTH,
// such as 20s+30s.
type outage struct{ start, length time.Duration }

// covers reports whether the outage covers a moment elapsed after the start.
func (o outage) covers(elapsed time.Duration) bool {
	return o.length > 0 && elapsed >= o.start && elapsed < o.start+o.length
}

func (o *outage) String() string {
	if o == nil || o.length == 0 {
		return ""
	}
	return o.start.String() + "+" + o.length.String()
}

func (o *outage) Set(s string) error {
	if s == "" {
		*o = outage{}
		return nil
	}
	start, length, ok := strings.Cut(s, "+")
	if !ok {
		return fmt.Errorf("want START+LENGTH, such as 20s+30s (got %q)", s)
	}
	st, err := time.ParseDuration(start)
	if err != nil {
		return fmt.Errorf("start %q: %v", start, err)
	}
	ln, err := time.ParseDuration(length)
	if err != nil {
		return fmt.Errorf("length %q: %v", length, err)
	}
	if st < 0 || ln <= 0 {
		return fmt.Errorf("want a start >= 0 and a length > 0 (got %q)", s)
	}
	*o = outage{st, ln}
	return nil
}

func defaultConfig() config {
	return config{
		metricsAddr:     "127.0.0.1:9464",
		traces:          filepath.Join(os.TempDir(), "otel-demo-traces.log"),
		traceFormat:     "text",
		producers:       8,
		rate:            60,
		itemsPerRequest: 8,
		ackShare:        0.2,
		requestTimeout:  250 * time.Millisecond,
		latency:         20 * time.Millisecond,
		failureRate:     0.05,
		poisonEvery:     2000,
		rateLimit:       1000,
		adaptive:        true,
		redisKey:        "otel-demo:orders-db",
		batchSize:       50,
		batchTimeout:    50 * time.Millisecond,
		maxInflight:     4,
		capacity:        200,
		cycle:           time.Hour,
		checkpoint:      2 * time.Second,
		progress:        time.Second,
		shutdownTimeout: 5 * time.Second,
	}
}

// errUsage marks an error in the command line: the program exits with 2.
var errUsage = errors.New("usage")

// parseFlags parses args into a config. The error is flag.ErrHelp for -h
// (the usage has been printed), or wraps errUsage (a message and a hint have
// been printed to stderr).
func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := defaultConfig()
	fs := flag.NewFlagSet("otel-demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // the full usage for -h only; a hint after errors

	fs.DurationVar(&c.duration, "duration", c.duration, "run this long, then shut down cleanly (0: until interrupted)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", c.metricsAddr, "serve Prometheus metrics at http://`addr`/metrics (port 0: any free port; empty: off)")
	fs.StringVar(&c.traces, "traces", c.traces, "write finished spans to this `file` (\"-\": stderr, empty: nowhere); default off when OTLP is configured")
	fs.StringVar(&c.traceFormat, "trace-format", c.traceFormat, "format of -traces: text (one readable line per span) or json (one JSON object per span)")
	fs.IntVar(&c.producers, "producers", c.producers, "concurrent request loops adding orders")
	fs.Float64Var(&c.rate, "rate", c.rate, "mean orders per second per producer (before the load cycle's surge and quiet phases)")
	fs.IntVar(&c.itemsPerRequest, "items-per-request", c.itemsPerRequest, "each request adds 1 to `n` orders")
	fs.Float64Var(&c.ackShare, "ack-share", c.ackShare, "share of requests, in [0,1], that need an acknowledgement: their orders are added with AddResult and the request waits for each order's outcome until its deadline")
	fs.DurationVar(&c.requestTimeout, "request-timeout", c.requestTimeout, "a request gives up (its Add is refused) when backpressure holds it this long")
	fs.DurationVar(&c.latency, "latency", c.latency, "median latency of the simulated bulk insert (lognormal)")
	fs.Float64Var(&c.failureRate, "failure-rate", c.failureRate, "share of bulk inserts that fail and may be retried, in [0,1] (twice as many during a brownout)")
	fs.IntVar(&c.poisonEvery, "poison-every", c.poisonEvery, "every `n`th order is malformed: the request that carries it is answered 400 and adds none of its orders (0: never)")
	fs.Float64Var(&c.rateLimit, "rate-limit", c.rateLimit, "orders per second the downstream accepts (0: no limit)")
	fs.BoolVar(&c.adaptive, "adaptive", c.adaptive, "adapt the rate limit to overload errors (AIMD, between rate-limit/10 and rate-limit)")
	fs.StringVar(&c.redisAddr, "redis-addr", c.redisAddr, "share the rate limit with every replica of the demo through the Redis at `host:port` (ratelimit/redisrate; empty: a limiter in this process)")
	fs.StringVar(&c.redisKey, "redis-key", c.redisKey, "the shared quota's `key` in Redis (with -redis-addr)")
	fs.IntVar(&c.batchSize, "batch-size", c.batchSize, "MaxBatchSize: fire a batch at this many orders (0: no size trigger)")
	fs.DurationVar(&c.batchTimeout, "batch-timeout", c.batchTimeout, "BatchTimeout: fire a batch this long after its first order (0: no timeout trigger)")
	fs.IntVar(&c.maxInflight, "max-inflight", c.maxInflight, "MaxConcurrentBatches: batches in flight at once (0: no limit)")
	fs.IntVar(&c.capacity, "capacity", c.capacity, "PendingWorkCapacity: orders queued behind a waiting batch before Add blocks")
	fs.DurationVar(&c.cycle, "cycle", c.cycle, "length of the load cycle (steady, surge, steady, brownout, steady, quiet), long enough at 1h for the alert rules to fire in each incident and resolve after it; 0: steady load, healthy downstream")
	fs.DurationVar(&c.checkpoint, "checkpoint", c.checkpoint, "call Flush this often, as a service committing a checkpoint would (0: never)")
	fs.DurationVar(&c.progress, "progress", c.progress, "print a progress line this often (0: none)")
	fs.DurationVar(&c.shutdownTimeout, "shutdown-timeout", c.shutdownTimeout, "how long Shutdown may take before it gives up on what is left")
	fs.StringVar(&c.prometheus, "prometheus", c.prometheus, "name the alerts firing on each progress line, as the Prometheus at this `URL` (such as http://localhost:9090) reports them from /api/v1/alerts (empty: none)")
	fs.StringVar(&c.journal, "journal", c.journal, "journal the orders (package journal) in the directory `dir` (the embedded log, synced), or in Redis with -redis-addr (-journal redis): Add returns once the order is kept, and a restart replays what a crash left (empty: orders live in memory)")
	fs.StringVar(&c.ledger, "ledger", c.ledger, "append a line per order to this `file`: \"accepted ID\" once Add returned nil, \"written ID\" once orders-db stored it, \"dead ID\" once it failed for good; unbuffered, to check after a kill -9 that every accepted order was written")
	fs.Var(&c.outage, "outage", "schedule a downstream outage, `START+LENGTH` after the start (such as 20s+30s): every write fails with a 503 meanwhile")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(fs)
			return c, err
		}
		// The flag package has printed the error.
		fmt.Fprintln(stderr, "Run 'otel-demo -h' for the flags.")
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "traces" {
			c.tracesSet = true
		}
	})
	fail := func(err error) (config, error) {
		fmt.Fprintf(stderr, "otel-demo: %v\nRun 'otel-demo -h' for the flags.\n", err)
		return c, fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q: otel-demo takes flags only", fs.Arg(0)))
	}
	if err := c.validate(); err != nil {
		return fail(err)
	}
	return c, nil
}

func (c config) validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	nonNegative := func(name string, d time.Duration) {
		if d < 0 {
			bad("-%s must not be negative (got %v)", name, d)
		}
	}
	positive := func(name string, d time.Duration) {
		if d <= 0 {
			bad("-%s must be positive (got %v)", name, d)
		}
	}
	nonNegative("duration", c.duration)
	if c.producers < 1 {
		bad("-producers must be at least 1 (got %d)", c.producers)
	}
	if !(c.rate > 0) || c.rate > 1e6 {
		bad("-rate must be in (0, 1e6] orders/s per producer (got %g)", c.rate)
	}
	if c.itemsPerRequest < 1 {
		bad("-items-per-request must be at least 1 (got %d)", c.itemsPerRequest)
	}
	if !(c.ackShare >= 0 && c.ackShare <= 1) {
		bad("-ack-share must be in [0,1] (got %g)", c.ackShare)
	}
	positive("request-timeout", c.requestTimeout)
	nonNegative("latency", c.latency)
	if !(c.failureRate >= 0 && c.failureRate <= 1) {
		bad("-failure-rate must be in [0,1] (got %g)", c.failureRate)
	}
	if !(c.rateLimit >= 0) || c.rateLimit > 1e9 {
		bad("-rate-limit must be 0 (no limit) or a positive number of orders/s (got %g)", c.rateLimit)
	}
	if c.redisAddr != "" && c.rateLimit == 0 {
		bad("-redis-addr shares the rate limit: it needs -rate-limit above 0")
	}
	if c.redisAddr != "" && c.redisKey == "" {
		bad("-redis-key must not be empty with -redis-addr")
	}
	if c.journal == "redis" && c.redisAddr == "" {
		bad("%v", errNoJournalRedis)
	}
	if c.poisonEvery < 0 {
		bad("-poison-every must not be negative (got %d)", c.poisonEvery)
	}
	if c.batchSize < 0 {
		bad("-batch-size must not be negative (got %d)", c.batchSize)
	}
	nonNegative("batch-timeout", c.batchTimeout)
	if c.batchSize == 0 && c.batchTimeout == 0 {
		bad("-batch-size and -batch-timeout cannot both be 0: no batch would ever fire")
	}
	if c.maxInflight < 0 {
		bad("-max-inflight must not be negative (got %d)", c.maxInflight)
	}
	if c.capacity < 0 {
		bad("-capacity must not be negative (got %d)", c.capacity)
	}
	nonNegative("cycle", c.cycle)
	nonNegative("checkpoint", c.checkpoint)
	nonNegative("progress", c.progress)
	positive("shutdown-timeout", c.shutdownTimeout)
	if c.prometheus != "" {
		if u, err := url.Parse(c.prometheus); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("-prometheus must be an http(s) URL such as http://localhost:9090 (got %q)", c.prometheus)
		}
	}
	switch c.traceFormat {
	case "text", "json":
	default:
		bad("-trace-format must be text or json (got %q)", c.traceFormat)
	}
	return errors.Join(errs...)
}

func usage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprint(w, strings.TrimLeft(`
otel-demo: a small order service that batches its writes with muster, and shows
everything: spans per request and per batch, Prometheus metrics, a progress line.

Producers handle "requests", each adding 1..n orders of one region (eu, us, ap)
to a muster.Keyed named "orders", which batches each region apart; the batches
go to a simulated bulk-insert downstream through retry and a rate limit shared
by the regions. Some requests need an acknowledgement: they add their orders
with AddResult and wait for the outcome until their deadline. The load follows an
hour's cycle: steady, a surge (x3), steady, a downstream brownout (slow, failing,
shedding load), steady, quiet (x0.3); -prometheus names the alerts firing.

Usage: otel-demo [flags]

Flags:
`, "\n"))
	fs.PrintDefaults()
	fmt.Fprint(w, `
With OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_PROTOCOL, or their
_TRACES_/_METRICS_ forms) set, traces and metrics are also pushed over OTLP,
and -traces defaults to off. OTEL_TRACES_EXPORTER and OTEL_METRICS_EXPORTER
choose the exporters (otlp, console, prometheus, none): for a traces-only
backend such as Jaeger, set OTEL_METRICS_EXPORTER=prometheus. Exit status: 0 after a clean shutdown, 1 when the
shutdown deadline left work undone (or the demo could not start), 2 for bad flags.
`)
}
