package redisrate

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

// AdaptiveConfig configures an [Adaptive] limiter.
type AdaptiveConfig struct {
	// Config is the shared limiter the rate applies to. Its Limit is
	// ignored: the rate is the AIMD rate kept in Redis.
	Config

	// AIMD is the additive-increase, multiplicative-decrease policy, with
	// the meaning and defaults of [ratelimit.AdaptiveConfig]: Max is
	// required; Min, Initial, Increase, Decrease, CoolDown and IsOverload
	// default as documented there. Its Burst is ignored (Config.Burst
	// applies). The rates are for all replicas together.
	AIMD ratelimit.AdaptiveConfig

	// SyncInterval is how often a replica sends the outcomes it observed
	// to Redis and reads the shared rate back (one round trip, made only
	// by the background goroutine). An overload is sent at once. Zero
	// means 100 ms.
	SyncInterval time.Duration
}

// An Adaptive is a [Limiter] whose rate is found by AIMD, as
// [ratelimit.Adaptive] finds it, with the AIMD state kept in Redis so that
// every replica applies the same rate: one replica that sees the downstream
// overloaded slows all of them. It implements [ratelimit.Waiter] and
// [ratelimit.Observer], so middleware/throttle reports every attempt to it.
//
// Observe never blocks and makes no round trip: it counts outcomes, which a
// background goroutine sends to Redis every SyncInterval (an overload at
// once) in one Lua script that applies them atomically and returns the
// shared rate. The cut for an overload is applied at most once per CoolDown
// across all replicas: the time of the last cut is kept in Redis (by Redis's
// clock) beside the rate, so when the replicas' batches fail together in one
// incident, the first report halves the rate and the others, arriving within
// the cool-down, leave it alone. Successes from every replica raise the rate,
// as they would for one [ratelimit.Adaptive] shared by all the clients.
//
// While Redis fails, the limiter follows its [Policy] at its share of the last
// shared rate, and outcomes are not counted.
type Adaptive struct {
	*Limiter
	aimd     ratelimit.AdaptiveConfig
	key      string
	interval time.Duration

	successes atomic.Int64
	overload  atomic.Bool
	kick      chan struct{}
	syncs     atomic.Int64 // completed syncs, for tests

	closeOnce sync.Once
	stop      chan struct{}
	wg        sync.WaitGroup
}

// NewAdaptive returns an Adaptive starting at the rate in Redis, or
// cfg.AIMD.Initial when Redis has none yet, and starts its background
// goroutines. It returns an error if cfg is invalid.
func NewAdaptive(cfg AdaptiveConfig) (*Adaptive, error) {
	a := cfg.AIMD
	if err := a.Normalize(); err != nil {
		return nil, fmt.Errorf("redisrate: AIMD: %w", err)
	}
	if cfg.SyncInterval < 0 {
		return nil, fmt.Errorf("redisrate: AdaptiveConfig.SyncInterval must not be negative, got %v", cfg.SyncInterval)
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = 100 * time.Millisecond
	}
	lc := cfg.Config
	lc.Limit = a.Initial
	l, err := New(lc)
	if err != nil {
		return nil, err
	}
	ad := &Adaptive{
		Limiter:  l,
		aimd:     a,
		key:      cfg.Key + ":aimd",
		interval: cfg.SyncInterval,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	ad.wg.Add(1)
	go ad.syncLoop()
	return ad, nil
}

// Observe counts the outcome of one attempt: a nil Err is a success, an
// error that AIMD.IsOverload accepts an overload (sent to Redis at once),
// any other error is ignored. It never blocks.
func (a *Adaptive) Observe(o ratelimit.Outcome) {
	if o.Err == nil {
		a.successes.Add(1)
		return
	}
	if !a.aimd.IsOverload(o.Err) {
		return
	}
	a.overload.Store(true)
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// aimdScript applies a replica's outcomes to the shared AIMD state
// atomically and returns the rate. KEYS[1] is a hash {rate, cut_at};
// ARGV: successes, overload (0/1), increase, decrease, min, max, initial,
// cool-down (ms), ttl (ms). A cut happens only if the last one (by Redis's
// clock) is at least the cool-down old, so one incident seen by every
// replica cuts once.
var aimdScript = redis.NewScript(`
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local r = tonumber(redis.call("HGET", KEYS[1], "rate") or ARGV[7])
local inc, dec = tonumber(ARGV[3]), tonumber(ARGV[4])
local mn, mx = tonumber(ARGV[5]), tonumber(ARGV[6])
r = math.min(r + tonumber(ARGV[1]) * inc, mx)
local cut = 0
if tonumber(ARGV[2]) > 0 then
  local last = tonumber(redis.call("HGET", KEYS[1], "cut_at"))
  if not last or now - last >= tonumber(ARGV[8]) then
    r = math.max(r * dec, mn)
    redis.call("HSET", KEYS[1], "cut_at", now)
    cut = 1
  end
end
redis.call("HSET", KEYS[1], "rate", string.format("%.17g", r))
redis.call("PEXPIRE", KEYS[1], ARGV[9])
return {string.format("%.17g", r), cut}
`)

// syncLoop sends the counted outcomes every interval, and at once after an
// overload.
func (a *Adaptive) syncLoop() {
	defer a.wg.Done()
	t := time.NewTicker(a.interval)
	defer t.Stop()
	a.sync()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		case <-a.kick:
		}
		a.sync()
	}
}

// sync makes one round trip: the outcomes counted since the last one go to
// Redis, the shared rate comes back and applies to this replica.
func (a *Adaptive) sync() {
	if a.Mode() != ModeShared {
		a.successes.Store(0)
		a.overload.Store(false)
		return
	}
	succ := a.successes.Swap(0)
	over := 0
	if a.overload.Swap(false) {
		over = 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.Timeout)
	defer cancel()
	ttl := max(time.Hour, 10*a.aimd.CoolDown)
	start := time.Now()
	v, err := aimdScript.Run(ctx, a.cfg.Client, []string{a.key},
		succ, over, float64(a.aimd.Increase), a.aimd.Decrease, float64(a.aimd.Min), float64(a.aimd.Max),
		float64(a.aimd.Initial), a.aimd.CoolDown.Milliseconds(), ttl.Milliseconds()).Slice()
	a.metrics.roundTrip(time.Since(start), err)
	if err != nil {
		return // the shared limiter's own round trips switch the mode
	}
	if len(v) != 2 {
		return
	}
	s, _ := v[0].(string)
	r, err := strconv.ParseFloat(s, 64)
	if err != nil || checkLimit(rate.Limit(r)) != nil {
		return
	}
	a.setLimit(rate.Limit(r))
	a.syncs.Add(1)
}

// Close stops the background goroutines; see [Limiter.Close].
func (a *Adaptive) Close() error {
	a.closeOnce.Do(func() { close(a.stop) })
	a.wg.Wait()
	return a.Limiter.Close()
}

var (
	_ ratelimit.Waiter   = (*Adaptive)(nil)
	_ ratelimit.Observer = (*Adaptive)(nil)
)
