package redisrate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

// ErrUnavailable is matched by the error WaitN returns under [FailClosed]
// while Redis cannot be reached: the batch must not proceed. Compare with
// [errors.Is].
var ErrUnavailable = errors.New("redisrate: shared quota unavailable")

// Policy says what WaitN does while Redis fails.
type Policy uint8

const (
	// FailOpen (the default) serves callers from a local
	// [ratelimit.Limiter] at this replica's share of the quota.
	FailOpen Policy = iota
	// FailClosed refuses callers with an error matching [ErrUnavailable]
	// until Redis answers again.
	FailClosed
)

// Mode is where a [Limiter] takes its tokens from.
type Mode uint8

const (
	// ModeShared: from the quota in Redis, shared by every replica.
	ModeShared Mode = iota
	// ModeLocal: Redis failed and the policy is [FailOpen]; from a local
	// limiter at this replica's share of the quota.
	ModeLocal
	// ModeClosed: Redis failed and the policy is [FailClosed]; callers are
	// refused.
	ModeClosed
)

// String returns "shared", "local" or "closed", the values of the
// muster.ratelimit.mode attribute.
func (m Mode) String() string {
	switch m {
	case ModeShared:
		return "shared"
	case ModeLocal:
		return "local"
	case ModeClosed:
		return "closed"
	default:
		return "unknown"
	}
}

// Config configures a [Limiter]. Client, Key and Limit are required; every
// other zero field takes the default its comment gives.
type Config struct {
	// Client is the Redis client (a *redis.Client, a failover or cluster
	// client). It is not closed by [Limiter.Close]. Make it with
	// [NewClient], which sets the options the limiter needs, or give it
	// those yourself: ContextTimeoutEnabled (so that an abandoned round
	// trip ends at its deadline too), MaxRetries -1 and DialerRetries 1
	// (the limiter decides what a failure means; retries only delay the
	// fallback and multiply go-redis's "failed to dial" log lines). WaitN
	// never waits for it past Timeout or the caller's context, whatever its
	// options.
	Client redis.UniversalClient

	// Key names the quota in Redis: every replica using the same Key (on
	// the same Redis) shares one quota. The GCRA state is stored under
	// "rate:"+Key (redis_rate's prefix), the replicas' heartbeats under
	// Key+":replicas".
	Key string

	// Limit is the quota in events per second for all replicas together,
	// in the unit the limiter is used with (batches or items). It must be
	// positive and finite.
	Limit rate.Limit

	// Burst is the bucket size: how many events may happen at one instant
	// after an idle period, across all replicas. Zero means 1. A request
	// for more than Burst is served on credit, as [ratelimit.Limiter]
	// serves it.
	Burst int

	// Lease, when positive, takes tokens from Redis in blocks of Lease
	// and serves callers from them locally, so that a round trip is made
	// once per Lease tokens instead of once per WaitN (see "Leasing" in
	// the package documentation). Zero: one round trip per WaitN.
	Lease int

	// LeaseTTL is how long leased tokens stay usable. Zero means the time
	// the quota takes to produce two leases (2*Lease/Limit), at least 100
	// ms.
	LeaseTTL time.Duration

	// Timeout bounds one round trip to Redis; past it Redis counts as
	// failed for this call and the [Policy] applies. Zero means 100 ms.
	Timeout time.Duration

	// Policy is what happens while Redis fails: [FailOpen] (the default)
	// or [FailClosed].
	Policy Policy

	// Replicas, when positive, is the number of replicas sharing the
	// quota: under [FailOpen] each falls back to Limit/Replicas. Zero
	// derives it from the replicas that sent Redis a heartbeat in the last
	// three HeartbeatIntervals; until this replica's first heartbeat
	// succeeds (Redis down when it starts) it assumes InitialReplicas.
	Replicas int

	// InitialReplicas is the number of replicas assumed, when Replicas is
	// zero, until a heartbeat has counted them: a replica that starts
	// while Redis is down cannot know it is alone, so it falls back to
	// Limit/InitialReplicas rather than to the whole quota. Zero means
	// DefaultInitialReplicas. Set it to the deployment's replica count (or
	// Replicas, if the count is fixed) for an exact share.
	InitialReplicas int

	// HeartbeatInterval is how often a replica records itself in Redis
	// (when Replicas is zero) and, while Redis fails, how often it probes
	// Redis to return to the shared quota. Zero means 500 ms.
	HeartbeatInterval time.Duration

	// RecoveryGrace is how long, after Redis answers again, this replica
	// keeps holding to its fallback share as well as taking its tokens
	// from Redis: the other replicas may still be on their fallbacks for
	// that long, unseen by Redis, so a replica that returned early must
	// not take the whole quota yet. Zero means two HeartbeatIntervals
	// plus one second (go-redis's dial circuit breaker retries once a
	// second, so a client may see Redis back a second late). Only under
	// [FailOpen].
	RecoveryGrace time.Duration

	// ID names this replica among the heartbeats. Zero means the host
	// name, process id and a counter.
	ID string

	// Name is the muster.ratelimit.name attribute of the limiter's metrics
	// and span events. Zero means Key.
	Name string

	// MeterProvider receives the limiter's metrics (the
	// muster.ratelimit.store.*, muster.ratelimit.state and
	// muster.ratelimit.switches instruments of musterconv). Nil means
	// OpenTelemetry's global provider.
	MeterProvider metric.MeterProvider
}

// DefaultInitialReplicas is the replica count a limiter assumes, when
// Config.Replicas and Config.InitialReplicas are zero, until its first
// heartbeat reaches Redis: a conservative guess, so that replicas started
// during an outage together take at most the quota while they number no
// more than this.
const DefaultInitialReplicas = 8

// NewClient returns a Redis client for opt with the options a [Limiter]
// needs set: ContextTimeoutEnabled, MaxRetries -1 (no retries) and
// DialerRetries 1 (one dial per round trip); opt itself is not changed.
// Give the limiter a client of its own: those options suit a rate limit
// whose round trips are bounded by Config.Timeout, not every use.
func NewClient(opt *redis.Options) *redis.Client {
	o := *opt
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1
	o.DialerRetries = 1
	return redis.NewClient(&o)
}

// maxBurst is the burst passed to redis_rate's GCRA script so that it always
// grants (a reservation): the limiter computes the wait itself from the
// result, with the configured burst. 2^40 tokens is more debt than any quota
// reaches.
const maxBurst = 1 << 40

// A Limiter is a quota shared by every replica through Redis. It implements
// [ratelimit.Waiter], so middleware/throttle takes it as is; see the package
// documentation for how it works, leases tokens and fails.
//
// A Limiter is safe for concurrent use. Call [Limiter.Close] when done: it
// stops the background goroutine (heartbeats and probes).
type Limiter struct {
	cfg     Config
	rl      *redis_rate.Limiter
	hbKey   string
	id      string
	metrics *instruments

	limitBits atomic.Uint64 // float64 bits of the current limit (Adaptive changes it)

	// outstanding counts the tokens reserved in Redis whose callers still
	// wait for them to be due: they will be spent after a switch to the
	// fallback, which therefore starts that much in debt.
	outstanding atomic.Int64

	mu       sync.Mutex
	mode     Mode
	local    *ratelimit.Limiter // the fallback, made when the mode leaves shared, kept during the grace
	grace    time.Time          // end of the recovery grace
	replicas int                // last known number of replicas (Config.InitialReplicas until counted)
	changed  chan struct{}      // closed and replaced on every mode change

	// Leasing; guarded by mu.
	tokens   int
	expires  time.Time
	fetching chan struct{} // non-nil while a lease is on its way

	closeOnce sync.Once
	stop      chan struct{}
	stopCtx   context.Context // done at Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

var idSeq atomic.Int64

// New returns a Limiter for cfg and starts its background goroutine. It
// makes no round trip: the first WaitN does. It returns an error if cfg is
// invalid.
func New(cfg Config) (*Limiter, error) {
	if cfg.Client == nil {
		return nil, errors.New("redisrate: Config.Client is nil")
	}
	if cfg.Key == "" {
		return nil, errors.New("redisrate: Config.Key is empty")
	}
	if err := checkLimit(cfg.Limit); err != nil {
		return nil, err
	}
	switch {
	case cfg.Burst < 0:
		return nil, fmt.Errorf("redisrate: Config.Burst must not be negative, got %d", cfg.Burst)
	case cfg.Lease < 0:
		return nil, fmt.Errorf("redisrate: Config.Lease must not be negative, got %d", cfg.Lease)
	case cfg.LeaseTTL < 0, cfg.Timeout < 0, cfg.HeartbeatInterval < 0, cfg.RecoveryGrace < 0:
		return nil, errors.New("redisrate: Config.LeaseTTL, Timeout, HeartbeatInterval and RecoveryGrace must not be negative")
	case cfg.Replicas < 0:
		return nil, fmt.Errorf("redisrate: Config.Replicas must not be negative, got %d", cfg.Replicas)
	case cfg.InitialReplicas < 0:
		return nil, fmt.Errorf("redisrate: Config.InitialReplicas must not be negative, got %d", cfg.InitialReplicas)
	case cfg.Policy > FailClosed:
		return nil, fmt.Errorf("redisrate: unknown Config.Policy %d", cfg.Policy)
	}
	if cfg.Burst == 0 {
		cfg.Burst = 1
	}
	if cfg.InitialReplicas == 0 {
		cfg.InitialReplicas = DefaultInitialReplicas
	}
	if cfg.Replicas > 0 {
		cfg.InitialReplicas = cfg.Replicas
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 100 * time.Millisecond
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 500 * time.Millisecond
	}
	if cfg.RecoveryGrace == 0 {
		cfg.RecoveryGrace = 2*cfg.HeartbeatInterval + time.Second
	}
	if cfg.Lease > 0 && cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = time.Second
	}
	if cfg.Name == "" {
		cfg.Name = cfg.Key
	}
	l := &Limiter{
		cfg:      cfg,
		rl:       redis_rate.NewLimiter(cfg.Client),
		hbKey:    cfg.Key + ":replicas",
		id:       cfg.ID,
		replicas: cfg.InitialReplicas,
		changed:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	l.stopCtx, l.cancel = context.WithCancel(context.Background())
	if l.id == "" {
		host, _ := os.Hostname()
		l.id = host + "/" + strconv.Itoa(os.Getpid()) + "/" + strconv.FormatInt(idSeq.Add(1), 10)
	}
	l.limitBits.Store(math.Float64bits(float64(cfg.Limit)))
	m, err := newInstruments(cfg.MeterProvider, cfg.Name, l)
	if err != nil {
		return nil, err
	}
	l.metrics = m
	l.wg.Add(1)
	go l.background()
	return l, nil
}

func checkLimit(r rate.Limit) error {
	if !(r >= 1e-6) || math.IsInf(float64(r), 0) || r == rate.Inf || r > 1e9 {
		return fmt.Errorf("redisrate: the limit must be positive and finite (1e-6 to 1e9 per second), got %v", r)
	}
	return nil
}

// Limit returns the current quota in events per second.
func (l *Limiter) Limit() rate.Limit {
	return rate.Limit(math.Float64frombits(l.limitBits.Load()))
}

// setLimit changes the quota this replica applies (the Adaptive's shared
// rate); the fallback follows.
func (l *Limiter) setLimit(r rate.Limit) {
	if math.Float64bits(float64(r)) == l.limitBits.Swap(math.Float64bits(float64(r))) {
		return
	}
	l.mu.Lock()
	if l.local != nil {
		l.local.SetLimit(l.shareLocked())
	}
	l.mu.Unlock()
}

// Burst returns the bucket size.
func (l *Limiter) Burst() int { return l.cfg.Burst }

// Mode returns where the limiter takes its tokens from now.
func (l *Limiter) Mode() Mode {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mode
}

// Replicas returns the number of replicas this replica's fallback share is
// computed for: Config.Replicas, or the replicas seen by the last heartbeat
// (Config.InitialReplicas before the first one succeeded).
func (l *Limiter) Replicas() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.replicas
}

// ModeChanged returns a channel that is closed at the next change of mode,
// for tests and for a program that wants to log the change.
func (l *Limiter) ModeChanged() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}

// limit converts the current rate to redis_rate's integer rate per period,
// with a burst that makes the script a reservation.
func (l *Limiter) gcra() redis_rate.Limit {
	r := float64(l.Limit())
	return redis_rate.Limit{Rate: 1000, Period: time.Duration(1000 / r * float64(time.Second)), Burst: maxBurst}
}

// WaitN blocks until n events may happen under the shared quota or ctx is
// done, and returns nil, or context.Cause(ctx) when ctx ended first. It
// returns nil at once for n <= 0. Under [FailClosed], while Redis fails, it
// returns an error matching [ErrUnavailable]. It never blocks past ctx: a
// round trip that outlasts ctx is abandoned.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	if n <= 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return context.Cause(ctx)
	}
	for {
		l.mu.Lock()
		mode, local := l.mode, l.local
		if mode == ModeShared && local != nil && !time.Now().Before(l.grace) {
			l.local, local = nil, nil // the grace is over
		}
		l.mu.Unlock()
		switch mode {
		case ModeLocal:
			return l.waitLocal(ctx, n, nil)
		case ModeClosed:
			event(ctx, l, "muster.ratelimit.refused", ModeClosed, nil)
			return fmt.Errorf("%w: %s", ErrUnavailable, l.cfg.Key)
		}
		if local != nil {
			// Recovering: this replica's share still binds, and Redis
			// learns what it takes (see Config.RecoveryGrace).
			if err := local.WaitN(ctx, n); err != nil {
				return err
			}
		}
		var err error
		if l.cfg.Lease > 0 {
			err = l.waitLeased(ctx, n)
		} else {
			err = l.waitShared(ctx, n)
		}
		if err == errSwitched {
			continue // the mode changed while this call waited for a lease
		}
		var se *storeError
		if !errors.As(err, &se) {
			return err
		}
		// Redis failed: switch (unless another caller already did) and
		// serve this call by the policy.
		l.fail(ctx, se.err)
	}
}

// errSwitched tells WaitN that the mode changed under a waiting caller, who
// must start again in the new mode (rather than try Redis again).
var errSwitched = errors.New("redisrate: mode changed")

// storeError marks a failed round trip, as opposed to the caller's ctx.
type storeError struct{ err error }

func (e *storeError) Error() string { return "redisrate: " + e.err.Error() }

// waitShared takes n tokens from Redis: one round trip reserves them, then
// the wait the reservation asks for happens here.
func (l *Limiter) waitShared(ctx context.Context, n int) error {
	delay, err := l.reserve(ctx, n)
	if err != nil {
		return err
	}
	if delay <= 0 {
		return nil
	}
	l.outstanding.Add(int64(n))
	defer l.outstanding.Add(-int64(n))
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		l.giveBack(n)
		return context.Cause(ctx)
	}
}

// reserve makes one round trip that takes n tokens from the shared bucket
// (GCRA, redis_rate's script) and returns how long the caller must wait
// before using them: none when the bucket held n tokens, otherwise until it
// has produced them (n beyond Burst on credit). The round trip runs on its own
// goroutine, so neither ctx nor Config.Timeout is outlasted even with a client
// that does not honour context deadlines; a reservation that arrives too late
// is given back.
func (l *Limiter) reserve(ctx context.Context, n int) (time.Duration, error) {
	res, err := l.roundTrip(ctx, func(rctx context.Context) (*redis_rate.Result, error) {
		return l.rl.AllowN(rctx, l.cfg.Key, l.gcra(), n)
	}, n)
	if err != nil {
		return 0, err
	}
	// ResetAfter is the time until the bucket is full again: with b tokens
	// of room, the tokens just taken are ours once it is at most b/r.
	burstTime := time.Duration(float64(l.cfg.Burst) / float64(l.Limit()) * float64(time.Second))
	return res.ResetAfter - burstTime, nil
}

// roundTrip runs call with Config.Timeout on a goroutine and waits for it
// or ctx. When ctx wins and call later reserved tokens, they are given back.
func (l *Limiter) roundTrip(ctx context.Context, call func(context.Context) (*redis_rate.Result, error), n int) (*redis_rate.Result, error) {
	done := make(chan rtResult, 1)
	rctx, cancel := context.WithTimeoutCause(context.WithoutCancel(ctx), l.cfg.Timeout, errTimeout)
	defer cancel()
	start := time.Now()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		res, err := call(rctx)
		l.metrics.roundTrip(time.Since(start), err)
		done <- rtResult{res, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, &storeError{r.err}
		}
		return r.res, nil
	case <-rctx.Done():
		l.abandon(done, n)
		return nil, &storeError{context.Cause(rctx)}
	case <-ctx.Done():
		l.abandon(done, n)
		return nil, context.Cause(ctx)
	}
}

var errTimeout = errors.New("round trip timed out")

// rtResult is the outcome of one round trip.
type rtResult struct {
	res *redis_rate.Result
	err error
}

// abandon gives back the tokens of a round trip whose caller left, if it
// succeeds after all.
func (l *Limiter) abandon(done <-chan rtResult, n int) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if r := <-done; r.err == nil {
			l.giveBack(n)
		}
	}()
}

// giveBack returns n reserved tokens to the shared bucket (redis_rate's
// script with a negative cost moves the bucket's theoretical arrival time
// back), in the background and best effort: tokens already due are not
// returned.
func (l *Limiter) giveBack(n int) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
		defer cancel()
		start := time.Now()
		_, err := l.rl.AllowN(ctx, l.cfg.Key, l.gcra(), -n)
		l.metrics.roundTrip(time.Since(start), err)
	}()
}

// waitLeased serves n tokens from the local lease, fetching a new one (one
// round trip for Lease tokens, or for n when n is larger) when it runs out.
// Callers wait in turn for a lease on its way.
func (l *Limiter) waitLeased(ctx context.Context, n int) error {
	for {
		l.mu.Lock()
		if l.mode != ModeShared {
			l.mu.Unlock()
			return errSwitched
		}
		now := time.Now()
		if !now.Before(l.expires) {
			l.tokens = 0
		}
		if l.tokens >= n {
			l.tokens -= n
			l.mu.Unlock()
			return nil
		}
		if ch := l.fetching; ch != nil {
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return context.Cause(ctx)
			}
		}
		amount := max(l.cfg.Lease, n-l.tokens)
		ch := make(chan struct{})
		l.fetching = ch
		l.mu.Unlock()

		delay, err := l.reserve(ctx, amount)
		if err != nil {
			l.mu.Lock()
			l.fetching = nil
			l.mu.Unlock()
			close(ch)
			return err
		}
		// The lease is ours from now+delay, whoever waits for it then:
		// this caller may leave before.
		arrive := func() {
			l.mu.Lock()
			now := time.Now()
			if !now.Before(l.expires) {
				l.tokens = 0
			}
			l.tokens += amount
			l.expires = now.Add(l.cfg.LeaseTTL)
			l.fetching = nil
			l.mu.Unlock()
			close(ch)
		}
		if delay <= 0 {
			arrive()
			continue
		}
		l.outstanding.Add(int64(amount))
		time.AfterFunc(delay, func() {
			l.outstanding.Add(-int64(amount))
			arrive()
		})
		select {
		case <-ch:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// shareLocked is this replica's share of the quota.
func (l *Limiter) shareLocked() rate.Limit {
	return l.Limit() / rate.Limit(l.replicas)
}

// fail switches to the policy's mode after a failed round trip.
func (l *Limiter) fail(ctx context.Context, err error) {
	l.mu.Lock()
	if l.mode != ModeShared {
		l.mu.Unlock()
		return
	}
	next := ModeLocal
	if l.cfg.Policy == FailClosed {
		next = ModeClosed
	} else {
		// An empty bucket filling at this replica's share: tokens already
		// taken from the shared quota are not taken again.
		l.local = &ratelimit.Limiter{}
		l.local.SetLimit(l.shareLocked())
		l.local.SetBurst(max(1, l.cfg.Burst/l.replicas))
		// Tokens reserved in Redis and not yet due will still be spent:
		// the fallback starts in debt by as many, queued first.
		if debt := int(l.outstanding.Load()); debt > 0 {
			local := l.local
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				_ = local.WaitN(l.stopCtx, debt)
			}()
		}
	}
	l.tokens, l.expires = 0, time.Time{} // a lease is not trusted across an outage
	l.setModeLocked(next)
	l.mu.Unlock()
	event(ctx, l, "muster.ratelimit.mode_switch", next, err)
}

// setModeLocked records a change of mode.
func (l *Limiter) setModeLocked(m Mode) {
	l.mode = m
	close(l.changed)
	l.changed = make(chan struct{})
	l.metrics.switched(m)
}

// waitLocal serves n tokens from the fallback limiter.
func (l *Limiter) waitLocal(ctx context.Context, n int, cause error) error {
	l.mu.Lock()
	local := l.local
	l.mu.Unlock()
	event(ctx, l, "muster.ratelimit.fallback", ModeLocal, cause)
	if local == nil { // cannot happen: ModeLocal always has one
		return fmt.Errorf("%w: %s", ErrUnavailable, l.cfg.Key)
	}
	return local.WaitN(ctx, n)
}

// event adds a span event to the batch span in ctx, if it records.
func event(ctx context.Context, l *Limiter, name string, m Mode, err error) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := []attribute.KeyValue{
		attribute.String("muster.ratelimit.name", l.cfg.Name),
		attribute.String("muster.ratelimit.mode", m.String()),
	}
	if err != nil {
		attrs = append(attrs, attribute.String("error.type", errorType(err)))
	}
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// background records heartbeats and, while Redis fails, probes it to return
// to the shared quota.
func (l *Limiter) background() {
	defer l.wg.Done()
	t := time.NewTicker(l.cfg.HeartbeatInterval)
	defer t.Stop()
	l.heartbeat()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if l.Mode() != ModeShared {
			l.probe()
		} else {
			l.heartbeat()
		}
	}
}

// heartbeat records this replica in the heartbeat sorted set and counts the
// replicas seen in the last three intervals, in one round trip. A failure
// switches the mode, as a failed WaitN would.
func (l *Limiter) heartbeat() {
	if l.cfg.Replicas > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	now := time.Now()
	window := 3 * l.cfg.HeartbeatInterval
	var count *redis.IntCmd
	start := time.Now()
	_, err := l.cfg.Client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, l.hbKey, redis.Z{Score: float64(now.UnixMilli()), Member: l.id})
		p.ZRemRangeByScore(ctx, l.hbKey, "-inf", strconv.FormatInt(now.Add(-window).UnixMilli(), 10))
		count = p.ZCard(ctx, l.hbKey)
		p.PExpire(ctx, l.hbKey, 2*window)
		return nil
	})
	l.metrics.roundTrip(time.Since(start), err)
	if err != nil {
		l.fail(context.Background(), err)
		return
	}
	l.mu.Lock()
	l.replicas = max(1, int(count.Val()))
	l.mu.Unlock()
}

// probe tries Redis while the limiter is on its fallback. The probe is a
// reservation of this replica's share of the burst: the tokens its fallback
// may have spent in the last burst window are charged to the shared quota,
// so that returning replicas do not find a full bucket on top of what they
// spent locally (no burst above the quota). On success the mode returns to
// shared.
func (l *Limiter) probe() {
	l.mu.Lock()
	charge := max(1, l.cfg.Burst/l.replicas)
	l.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
	defer cancel()
	start := time.Now()
	if err := l.dial(ctx); err != nil {
		l.metrics.roundTrip(time.Since(start), err)
		return
	}
	_, err := l.rl.AllowN(ctx, l.cfg.Key, l.gcra(), charge)
	l.metrics.roundTrip(time.Since(start), err)
	if err != nil {
		return
	}
	l.heartbeat()
	l.mu.Lock()
	if l.mode != ModeShared {
		l.grace = time.Now().Add(l.cfg.RecoveryGrace) // l.local, if any, serves the grace
		l.setModeLocked(ModeShared)
	}
	l.mu.Unlock()
}

// dial checks, before a probe, that Redis accepts a connection, with the
// client's own Dialer but outside its pool: go-redis logs every dial its
// pool fails (on its global logger), which would be a line per probe for as
// long as Redis is down. The metrics count the failed probes instead. For a
// client that does not expose its *redis.Options (a cluster client), it
// returns nil and the probe goes through the client.
func (l *Limiter) dial(ctx context.Context) error {
	c, ok := l.cfg.Client.(interface{ Options() *redis.Options })
	if !ok {
		return nil
	}
	opt := c.Options()
	if opt == nil || opt.Dialer == nil {
		return nil
	}
	conn, err := opt.Dialer(ctx, opt.Network, opt.Addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Close stops the background goroutine and waits for round trips still in
// progress (each bounded by Config.Timeout). It does not close the Redis
// client. WaitN calls after Close still work. Close is idempotent.
func (l *Limiter) Close() error {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.cancel()
		l.metrics.unregister()
	})
	l.wg.Wait()
	return nil
}

// errorType is the error.type of a failed round trip.
func errorType(err error) string {
	switch {
	case errors.Is(err, errTimeout), errors.Is(err, context.DeadlineExceeded), isTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, redis.ErrClosed):
		return "closed"
	default:
		var re redis.Error
		if errors.As(err, &re) {
			return "redis"
		}
		return "unavailable"
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

var (
	_ ratelimit.Waiter = (*Limiter)(nil)
)
