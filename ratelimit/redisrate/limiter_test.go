package redisrate_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/musterhq/muster/ratelimit/redisrate"
)

// newLimiter makes a limiter for cfg (Client and Key filled in when unset)
// and closes it at cleanup.
func newLimiter(t testing.TB, s *redisServer, cfg redisrate.Config) *redisrate.Limiter {
	t.Helper()
	if cfg.Client == nil {
		cfg.Client = s.Client(t)
	}
	if cfg.Key == "" {
		cfg.Key = t.Name()
	}
	l, err := redisrate.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// waitMode waits, up to d, for l to be in mode m.
func waitMode(t testing.TB, l *redisrate.Limiter, m redisrate.Mode, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		ch := l.ModeChanged()
		if l.Mode() == m {
			return time.Since(start)
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("mode %v after %v, want %v", l.Mode(), d, m)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	for _, tc := range []struct {
		cfg  redisrate.Config
		want string
	}{
		{redisrate.Config{Key: "k", Limit: 1}, "Client"},
		{redisrate.Config{Client: c, Limit: 1}, "Key"},
		{redisrate.Config{Client: c, Key: "k"}, "limit"},
		{redisrate.Config{Client: c, Key: "k", Limit: -1}, "limit"},
		{redisrate.Config{Client: c, Key: "k", Limit: 1e300}, "limit"},
		{redisrate.Config{Client: c, Key: "k", Limit: 1, Burst: -1}, "Burst"},
		{redisrate.Config{Client: c, Key: "k", Limit: 1, Lease: -1}, "Lease"},
		{redisrate.Config{Client: c, Key: "k", Limit: 1, Timeout: -1}, "Timeout"},
		{redisrate.Config{Client: c, Key: "k", Limit: 1, Replicas: -1}, "Replicas"},
		{redisrate.Config{Client: c, Key: "k", Limit: 1, Policy: 7}, "Policy"},
	} {
		l, err := redisrate.New(tc.cfg)
		if err == nil {
			l.Close()
			t.Errorf("New(%+v): no error", tc.cfg)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want it to mention %s", tc.cfg, err, tc.want)
		}
	}
	if _, err := redisrate.NewAdaptive(redisrate.AdaptiveConfig{Config: redisrate.Config{Client: c, Key: "k"}}); err == nil {
		t.Error("NewAdaptive without AIMD.Max: no error")
	}
}

// countHook counts the commands and pipelines a client sends.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		// A script's first EVALSHA fails with NOSCRIPT and is sent again
		// as EVAL: count the round trip that did the work.
		if (cmd.Name() == "evalsha" || cmd.Name() == "eval") && (err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT")) {
			h.n.Add(1)
		}
		return err
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func TestSharedQuotaInProcess(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	// Two replicas in one process, 4 callers each, per-item batches of 5
	// against 200 items/s: 1.5 s must fire 200 (burst) + 1.5*200 items.
	const limit, burst, n = 200, 20, 5
	var fired atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	for range 2 {
		l := newLimiter(t, s, redisrate.Config{Key: "shared", Limit: limit, Burst: burst, Replicas: 2})
		for range 4 {
			wg.Go(func() {
				for l.WaitN(ctx, n) == nil {
					fired.Add(n)
				}
			})
		}
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	want := burst + limit*el
	if got := float64(fired.Load()); got > want*1.05+n || got < want*0.9 {
		t.Errorf("fired %v items in %.2fs, want about %.0f", got, el, want)
	}
}

func TestLargerThanBurstOnCredit(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	l := newLimiter(t, s, redisrate.Config{Limit: 100, Burst: 10, Replicas: 1})
	start := time.Now()
	if err := l.WaitN(context.Background(), 50); err != nil {
		t.Fatal(err)
	}
	// From a full bucket of 10 at 100/s, 50 tokens take (50-10)/100 = 400 ms.
	if el := time.Since(start); el < 350*time.Millisecond || el > 700*time.Millisecond {
		t.Errorf("WaitN(50) took %v, want about 400ms", el)
	}
	// The bucket is empty now: one more token takes 10 ms.
	start = time.Now()
	if err := l.WaitN(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 200*time.Millisecond {
		t.Errorf("WaitN(1) after took %v", el)
	}
}

func TestOneRoundTripPerWait(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	c := s.Client(t)
	h := &countHook{}
	c.AddHook(h)
	l := newLimiter(t, s, redisrate.Config{Client: c, Limit: 1000, Burst: 10, Replicas: 1})
	const calls = 100
	for range calls { // binding after the first 10: still one round trip each
		if err := l.WaitN(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.n.Load(); got != calls {
		t.Errorf("%d round trips for %d WaitN, want one each", got, calls)
	}

	// Leasing: one round trip per 50 tokens.
	h2 := &countHook{}
	c2 := s.Client(t)
	c2.AddHook(h2)
	ll := newLimiter(t, s, redisrate.Config{Client: c2, Key: "leased", Limit: 10000, Burst: 100, Lease: 50, Replicas: 1})
	for range calls {
		if err := ll.WaitN(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
	}
	if got := h2.n.Load(); got != calls/50 {
		t.Errorf("leased: %d round trips for %d tokens, want %d", got, calls, calls/50)
	}
}

func TestContextEndsWhileWaiting(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	l := newLimiter(t, s, redisrate.Config{Limit: 2, Burst: 1, Replicas: 1})
	if err := l.WaitN(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	cause := errors.New("gave up")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	err := l.WaitN(ctx, 1) // due in 500 ms
	if !errors.Is(err, cause) {
		t.Fatalf("WaitN = %v, want the context's cause", err)
	}
	if el := time.Since(start); el > 300*time.Millisecond {
		t.Errorf("WaitN returned %v after the context ended", el)
	}
	// The tokens the cancelled call had reserved go back to the bucket:
	// its theoretical arrival time moves back (redis_rate keeps it under
	// "rate:"+Key).
	c := s.Client(t)
	l2 := newLimiter(t, s, redisrate.Config{Key: "giveback", Limit: 2, Burst: 1, Replicas: 1})
	key := "rate:giveback"
	tat := func() float64 {
		v, err := c.Get(context.Background(), key).Float64()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
			time.Sleep(2 * time.Millisecond) // polling a condition with a deadline
		}
	}
	if err := l2.WaitN(context.Background(), 1); err != nil { // the bucket's one token
		t.Fatal(err)
	}
	before := tat()
	ctx2, cancel2 := context.WithCancelCause(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l2.WaitN(ctx2, 1) }()
	waitFor("no reservation", func() bool { return tat() > before })
	cancel2(cause)
	if err := <-errc; !errors.Is(err, cause) {
		t.Fatalf("WaitN = %v", err)
	}
	waitFor("the cancelled reservation was not given back", func() bool { return tat() <= before+0.001 })
	// Already done: at once.
	if err := l.WaitN(ctx, 1); !errors.Is(err, cause) {
		t.Errorf("WaitN on a done context = %v", err)
	}
	if err := l.WaitN(ctx, 0); err != nil {
		t.Errorf("WaitN(0) = %v", err)
	}
}

func TestRedisDownFailOpenAndBack(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	mr := metric.NewManualReader()
	mp := metric.NewMeterProvider(metric.WithReader(mr))
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	l := newLimiter(t, s, redisrate.Config{Limit: 1000, Burst: 10, Replicas: 2,
		HeartbeatInterval: 100 * time.Millisecond, MeterProvider: mp, Name: "orders"})
	ctx := context.Background()
	if err := l.WaitN(ctx, 1); err != nil || l.Mode() != redisrate.ModeShared {
		t.Fatalf("WaitN = %v in mode %v", err, l.Mode())
	}
	s.Stop()
	// The next WaitN switches and is served by the fallback.
	sctx, span := tp.Tracer("t").Start(ctx, "fire")
	start := time.Now()
	if err := l.WaitN(sctx, 1); err != nil {
		t.Fatalf("fail open: WaitN = %v", err)
	}
	span.End()
	if el := time.Since(start); el > time.Second {
		t.Errorf("the failing WaitN took %v", el)
	}
	if l.Mode() != redisrate.ModeLocal {
		t.Fatalf("mode %v, want local", l.Mode())
	}
	events := map[string]bool{}
	for _, e := range rec.Ended()[0].Events() {
		events[e.Name] = true
	}
	if !events["muster.ratelimit.mode_switch"] || !events["muster.ratelimit.fallback"] {
		t.Errorf("span events %v, want mode_switch and fallback", events)
	}
	// The fallback runs at half the quota (two replicas).
	for range 20 {
		if err := l.WaitN(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Restart()
	waitMode(t, l, redisrate.ModeShared, 3*time.Second)
	if err := l.WaitN(ctx, 1); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := mr.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			got[m.Name] = true
			if m.Name == "muster.ratelimit.switches" {
				sum := m.Data.(metricdata.Sum[int64])
				if len(sum.DataPoints) != 2 { // to local, back to shared
					t.Errorf("switches: %+v", sum.DataPoints)
				}
			}
		}
	}
	for _, name := range []string{"muster.ratelimit.store.requests", "muster.ratelimit.store.duration", "muster.ratelimit.state", "muster.ratelimit.switches"} {
		if !got[name] {
			t.Errorf("metric %s not recorded (have %v)", name, got)
		}
	}
}

func TestSlowRedis(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	open := newLimiter(t, s, redisrate.Config{Key: "open", Limit: 1000, Burst: 10, Replicas: 1, Timeout: 100 * time.Millisecond})
	closed := newLimiter(t, s, redisrate.Config{Key: "closed", Limit: 1000, Burst: 10, Replicas: 1, Timeout: 100 * time.Millisecond, Policy: redisrate.FailClosed})
	ctx := context.Background()
	for _, l := range []*redisrate.Limiter{open, closed} {
		if err := l.WaitN(ctx, 1); err != nil {
			t.Fatal(err)
		}
	}
	s.Pause()
	t.Cleanup(s.Resume)

	// A context shorter than the timeout ends the call at its deadline.
	short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := open.WaitN(short, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitN with a 30ms context on a paused Redis = %v", err)
	}
	if el := time.Since(start); el > 90*time.Millisecond {
		t.Errorf("WaitN returned %v after its 30ms context", el)
	}

	start = time.Now()
	if err := open.WaitN(ctx, 1); err != nil {
		t.Errorf("fail open: %v", err)
	}
	if el := time.Since(start); el < 100*time.Millisecond || el > 500*time.Millisecond {
		t.Errorf("fail open after %v, want the 100ms timeout", el)
	}
	start = time.Now()
	if err := closed.WaitN(ctx, 1); !errors.Is(err, redisrate.ErrUnavailable) {
		t.Errorf("fail closed: %v, want ErrUnavailable", err)
	}
	if el := time.Since(start); el > 500*time.Millisecond {
		t.Errorf("fail closed after %v", el)
	}
	if open.Mode() != redisrate.ModeLocal || closed.Mode() != redisrate.ModeClosed {
		t.Errorf("modes %v, %v", open.Mode(), closed.Mode())
	}
	// Refused at once while closed.
	start = time.Now()
	if err := closed.WaitN(ctx, 1); !errors.Is(err, redisrate.ErrUnavailable) || time.Since(start) > 50*time.Millisecond {
		t.Errorf("closed: %v after %v", err, time.Since(start))
	}
	s.Resume()
	waitMode(t, open, redisrate.ModeShared, 5*time.Second)
	waitMode(t, closed, redisrate.ModeShared, 5*time.Second)
	if err := closed.WaitN(ctx, 1); err != nil {
		t.Errorf("after recovery: %v", err)
	}
}

func TestReplicasFromHeartbeats(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	var ls []*redisrate.Limiter
	for range 3 {
		ls = append(ls, newLimiter(t, s, redisrate.Config{Key: "hb", Limit: 100, HeartbeatInterval: 50 * time.Millisecond}))
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, l := range ls {
		for l.Replicas() != 3 {
			if time.Now().After(deadline) {
				t.Fatalf("Replicas() = %d, want 3", l.Replicas())
			}
			time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
		}
	}
}

func TestSlowRedisLeased(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	// Every WaitN(5) needs a lease of its own: when Redis stops answering,
	// the callers queued behind the lease on its way must go to the
	// fallback together, not try Redis one after the other.
	l := newLimiter(t, s, redisrate.Config{Limit: 1000, Burst: 100, Lease: 5, Replicas: 1, Timeout: 100 * time.Millisecond})
	ctx := context.Background()
	if err := l.WaitN(ctx, 5); err != nil {
		t.Fatal(err)
	}
	s.Pause()
	t.Cleanup(s.Resume)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- l.WaitN(ctx, 5) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("fail open: %v", err)
		}
	}
	if el := time.Since(start); el > 400*time.Millisecond {
		t.Errorf("8 callers took %v on a paused Redis with a 100ms timeout: they tried it in turn", el)
	}
	s.Resume()
	waitMode(t, l, redisrate.ModeShared, 5*time.Second)
}
