package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"
	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
	"github.com/musterhq/muster/ratelimit/redisrate"
)

// quietRedis drops go-redis's log lines: while Redis is down it logs every
// failed dial, and the limiter already reports failures as metrics
// (muster.ratelimit.store.requests by error.type) and span events.
type quietRedis struct{}

func (quietRedis) Printf(context.Context, string, ...any) {}

// newSharedLimiter makes the per-order rate limiter shared by every replica
// of the demo through Redis (-redis-addr): adaptive or fixed, as newLimiter,
// failing open to this replica's share of the quota while Redis fails. It
// returns the Waiter, the current limit, its mode when not shared ("" when
// shared), and a function that stops the limiter and closes the client.
func newSharedLimiter(cfg config, mp metric.MeterProvider) (w ratelimit.Waiter, limit func() float64, mode func() string, stop func(), err error) {
	redis.SetLogger(quietRedis{})
	rdb := redis.NewClient(&redis.Options{
		Addr:        cfg.redisAddr,
		DialTimeout: 250 * time.Millisecond,
		MaxRetries:  -1, // the limiter decides what a failure means
	})
	burst := cfg.batchSize
	if burst == 0 {
		burst = max(1, int(cfg.rateLimit/10))
	}
	lc := redisrate.Config{
		Client:        rdb,
		Key:           cfg.redisKey,
		Limit:         rate.Limit(cfg.rateLimit),
		Burst:         burst,
		Timeout:       100 * time.Millisecond,
		MeterProvider: mp,
	}
	if !cfg.adaptive {
		l, err := redisrate.New(lc)
		if err != nil {
			rdb.Close()
			return nil, nil, nil, nil, fmt.Errorf("rate limit: %w", err)
		}
		return l, func() float64 { return float64(l.Limit()) }, modeOf(l), func() { l.Close(); rdb.Close() }, nil
	}
	a, err := redisrate.NewAdaptive(redisrate.AdaptiveConfig{
		Config: lc,
		AIMD: ratelimit.AdaptiveConfig{
			Max:        rate.Limit(cfg.rateLimit),
			Min:        rate.Limit(cfg.rateLimit / 10),
			Increase:   rate.Limit(cfg.rateLimit / 40),
			Decrease:   0.5,
			CoolDown:   max(500*time.Millisecond, 4*cfg.latency),
			IsOverload: func(err error) bool { return errors.Is(err, ratelimit.ErrOverloaded) },
		},
	})
	if err != nil {
		rdb.Close()
		return nil, nil, nil, nil, fmt.Errorf("rate limit: %w", err)
	}
	return a, func() float64 { return float64(a.Limit()) }, modeOf(a.Limiter), func() { a.Close(); rdb.Close() }, nil
}

// modeOf returns l's mode for the progress line: "" while shared.
func modeOf(l *redisrate.Limiter) func() string {
	return func() string {
		if m := l.Mode(); m != redisrate.ModeShared {
			return m.String()
		}
		return ""
	}
}
