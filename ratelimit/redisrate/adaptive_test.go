package redisrate_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/ratelimit"
	"github.com/musterhq/muster/ratelimit/redisrate"
)

// waitLimit waits, up to 5 s, until a's limit is want.
func waitLimit(t *testing.T, a *redisrate.Adaptive, want rate.Limit) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for a.Limit() != want {
		if time.Now().After(deadline) {
			t.Fatalf("limit %v, want %v", a.Limit(), want)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

func TestAdaptiveSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	newA := func() *redisrate.Adaptive {
		a, err := redisrate.NewAdaptive(redisrate.AdaptiveConfig{
			Config:       redisrate.Config{Client: s.Client(t), Key: "aimd", Burst: 10, Replicas: 2},
			AIMD:         ratelimit.AdaptiveConfig{Max: 1000, Increase: 10, CoolDown: time.Minute},
			SyncInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a, b := newA(), newA()
	if a.Limit() != 1000 || b.Limit() != 1000 {
		t.Fatalf("initial limits %v, %v", a.Limit(), b.Limit())
	}
	// One incident seen by both replicas cuts the shared rate once.
	overload := errors.New("503")
	a.Observe(ratelimit.Outcome{N: 1, Err: overload})
	b.Observe(ratelimit.Outcome{N: 1, Err: overload})
	waitLimit(t, a, 500)
	waitLimit(t, b, 500)
	// Successes on one replica raise the rate of both; the other's
	// overload, within the cool-down, did not cut it again.
	for range 5 {
		a.Observe(ratelimit.Outcome{N: 1})
	}
	waitLimit(t, b, 550)
	waitLimit(t, a, 550)
	// A cancelled attempt says nothing about the downstream.
	b.Observe(ratelimit.Outcome{N: 1, Err: context.Canceled})
	a.Observe(ratelimit.Outcome{N: 1})
	waitLimit(t, b, 560)

	if err := a.WaitN(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if a.Mode() != redisrate.ModeShared {
		t.Errorf("mode %v", a.Mode())
	}
}

func TestAdaptiveConfigErrors(t *testing.T) {
	s := startRedis(t)
	for _, aimd := range []ratelimit.AdaptiveConfig{
		{},
		{Max: rate.Inf},
		{Max: 10, Min: 20},
		{Max: 10, Initial: 20},
		{Max: 10, Decrease: 1},
		{Max: 10, CoolDown: -1},
		{Max: 10, Increase: -1},
	} {
		a, err := redisrate.NewAdaptive(redisrate.AdaptiveConfig{Config: redisrate.Config{Client: s.Client(t), Key: "k"}, AIMD: aimd})
		if err == nil {
			a.Close()
			t.Errorf("NewAdaptive(%+v): no error", aimd)
		}
	}
}

// Through middleware/throttle, which finds the Observer on its Waiter: a
// batch that fails with an overload on one replica slows the other.
func TestAdaptiveThroughThrottle(t *testing.T) {
	t.Parallel()
	s := startRedis(t)
	newA := func() *redisrate.Adaptive {
		a, err := redisrate.NewAdaptive(redisrate.AdaptiveConfig{
			Config:       redisrate.Config{Client: s.Client(t), Key: "aimd-throttle", Burst: 100, Replicas: 2},
			AIMD:         ratelimit.AdaptiveConfig{Max: 1000, CoolDown: time.Minute, IsOverload: func(err error) bool { return errors.Is(err, ratelimit.ErrOverloaded) }},
			SyncInterval: 10 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}
	a, b := newA(), newA()
	fire := throttle.New[int](a, throttle.WithPerItem())(func(context.Context, []int) error {
		return fmt.Errorf("bulk insert: %w", ratelimit.ErrOverloaded)
	})
	if err := fire(context.Background(), []int{1, 2, 3}); !errors.Is(err, ratelimit.ErrOverloaded) {
		t.Fatalf("fire = %v", err)
	}
	waitLimit(t, b, 500)
}
