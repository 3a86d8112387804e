package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

func newAdaptive(t *testing.T, cfg ratelimit.AdaptiveConfig) *ratelimit.Adaptive {
	t.Helper()
	a, err := ratelimit.NewAdaptive(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// approx fails unless got is within a microsecond of want: waits computed from
// fractional rates are truncated to whole nanoseconds.
func approx(t *testing.T, what string, got, want time.Duration) {
	t.Helper()
	if d := got - want; d < -time.Microsecond || d > time.Microsecond {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// A scripted downstream fails 5 times, then succeeds. The rate halves down to
// the floor, then climbs by the step up to the ceiling, and every wait follows
// the rate in force.
func TestAdaptiveDecreaseAndRecover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdaptive(t, ratelimit.AdaptiveConfig{
			Min: 10, Max: 100, Increase: 10, Decrease: 0.5, Burst: 1,
		})
		failures := 5
		downstream := func() error {
			if failures > 0 {
				failures--
				return errors.New("503 service unavailable")
			}
			return nil
		}
		want := []rate.Limit{
			50, 25, 12.5, 10, 10, // failures: halved, never below Min
			20, 30, 40, 50, 60, 70, 80, 90, 100, 100, 100, // successes: +10, never above Max
		}
		for i, w := range want {
			before := a.Limit()
			waited := wait(t, a, 1)
			if i > 0 { // the first one used the full bucket
				approx(t, fmt.Sprintf("attempt %d waited", i), waited, time.Duration(float64(time.Second)/float64(before)))
			}
			a.Observe(ratelimit.Outcome{N: 1, Err: downstream()})
			equal(t, fmt.Sprintf("Limit() after attempt %d", i), a.Limit(), w)
		}
	})
}

// One wave of concurrent failures lowers the rate once per CoolDown.
func TestAdaptiveCoolDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdaptive(t, ratelimit.AdaptiveConfig{Min: 1, Max: 100, Increase: 1, CoolDown: time.Second})
		overloaded := ratelimit.Outcome{N: 1, Err: ratelimit.ErrOverloaded}
		var wg sync.WaitGroup
		for range 8 { // a wave of 8 batches failing together
			wg.Go(func() { a.Observe(overloaded) })
		}
		wg.Wait()
		equal(t, "after a wave of 8 failures", a.Limit(), 50)

		time.Sleep(500 * time.Millisecond)
		a.Observe(overloaded)
		equal(t, "overload within the cool-down", a.Limit(), 50)
		a.Observe(ratelimit.Outcome{N: 1})
		equal(t, "success within the cool-down", a.Limit(), 51)

		time.Sleep(500 * time.Millisecond)
		a.Observe(overloaded)
		equal(t, "overload after the cool-down", a.Limit(), 25.5)
	})
}

// Without a cool-down the same wave throws the rate to the floor: the reason
// for CoolDown.
func TestAdaptiveNoCoolDown(t *testing.T) {
	a := newAdaptive(t, ratelimit.AdaptiveConfig{Min: 1, Max: 100})
	for range 8 {
		a.Observe(ratelimit.Outcome{N: 1, Err: ratelimit.ErrOverloaded})
	}
	equal(t, "after 8 failures", a.Limit(), 1)
}

func TestAdaptiveIsOverload(t *testing.T) {
	plain := errors.New("bad request")
	tests := []struct {
		name       string
		isOverload func(error) bool
		err        error
		want       rate.Limit
	}{
		{"default, plain error", nil, plain, 50},
		{"default, deadline", nil, fmt.Errorf("insert: %w", context.DeadlineExceeded), 50},
		{"default, canceled", nil, fmt.Errorf("insert: %w", context.Canceled), 100},
		{"default, ErrOverloaded", nil, ratelimit.ErrOverloaded, 50},
		{"custom, plain error", overloadedOnly, plain, 100},
		{"custom, wrapped ErrOverloaded", overloadedOnly, fmt.Errorf("429: %w", ratelimit.ErrOverloaded), 50},
		{"custom, joined ErrOverloaded", overloadedOnly, errors.Join(plain, ratelimit.ErrOverloaded), 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAdaptive(t, ratelimit.AdaptiveConfig{Max: 100, IsOverload: tt.isOverload})
			a.Observe(ratelimit.Outcome{N: 1, Err: tt.err})
			equal(t, "Limit()", a.Limit(), tt.want)
		})
	}
}

func overloadedOnly(err error) bool { return errors.Is(err, ratelimit.ErrOverloaded) }

func TestAdaptiveDefaults(t *testing.T) {
	a := newAdaptive(t, ratelimit.AdaptiveConfig{Max: 200})
	equal(t, "initial (Max)", a.Limit(), 200)
	a.Observe(ratelimit.Outcome{N: 1, Err: ratelimit.ErrOverloaded})
	equal(t, "after an overload (×0.5)", a.Limit(), 100)
	a.Observe(ratelimit.Outcome{N: 1})
	equal(t, "after a success (+Max/100)", a.Limit(), 102)
	for range 20 {
		a.Observe(ratelimit.Outcome{N: 1, Err: ratelimit.ErrOverloaded})
	}
	equal(t, "floor (Max/100)", a.Limit(), 2)
}

func TestAdaptiveConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  ratelimit.AdaptiveConfig
	}{
		{"no Max", ratelimit.AdaptiveConfig{}},
		{"negative Max", ratelimit.AdaptiveConfig{Max: -1}},
		{"infinite Max", ratelimit.AdaptiveConfig{Max: rate.Inf}},
		{"Min above Max", ratelimit.AdaptiveConfig{Max: 10, Min: 20}},
		{"negative Min", ratelimit.AdaptiveConfig{Max: 10, Min: -1}},
		{"Initial below Min", ratelimit.AdaptiveConfig{Max: 10, Min: 5, Initial: 1}},
		{"Initial above Max", ratelimit.AdaptiveConfig{Max: 10, Initial: 11}},
		{"negative Burst", ratelimit.AdaptiveConfig{Max: 10, Burst: -1}},
		{"negative Increase", ratelimit.AdaptiveConfig{Max: 10, Increase: -1}},
		{"Decrease 1", ratelimit.AdaptiveConfig{Max: 10, Decrease: 1}},
		{"Decrease above 1", ratelimit.AdaptiveConfig{Max: 10, Decrease: 2}},
		{"negative Decrease", ratelimit.AdaptiveConfig{Max: 10, Decrease: -0.5}},
		{"negative CoolDown", ratelimit.AdaptiveConfig{Max: 10, CoolDown: -time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ratelimit.NewAdaptive(tt.cfg)
			if err == nil {
				t.Fatalf("NewAdaptive(%+v) = %v, want an error", tt.cfg, a)
			}
			if !strings.HasPrefix(err.Error(), "ratelimit: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// An overload observed while a batch waits slows that batch too.
func TestAdaptiveSlowsWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdaptive(t, ratelimit.AdaptiveConfig{Min: 1, Max: 10})
		wait(t, a, 1) // empty the bucket
		got := make(chan time.Duration)
		go func() { got <- wait(t, a, 1) }() // due at 100ms
		time.Sleep(50 * time.Millisecond)    // half a token accumulated
		a.Observe(ratelimit.Outcome{N: 1, Err: ratelimit.ErrOverloaded})
		// Rate 5/s: the missing half token takes 100ms more.
		equal(t, "waited", <-got, 150*time.Millisecond)
	})
}

// Many clients share one Adaptive: waits, successes and failures race; the
// rate stays within its bounds and nobody is left waiting.
func TestAdaptiveConcurrentSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAdaptive(t, ratelimit.AdaptiveConfig{Min: 5, Max: 500, Burst: 10, CoolDown: 10 * time.Millisecond})
		var wg sync.WaitGroup
		for c := range 8 {
			wg.Go(func() {
				for i := range 200 {
					n := 1 + (c+i)%20
					if err := a.WaitN(t.Context(), n); err != nil {
						t.Error(err)
						return
					}
					var err error
					if (c*7+i)%5 == 0 {
						err = ratelimit.ErrOverloaded
					}
					a.Observe(ratelimit.Outcome{N: n, Err: err})
					if r := a.Limit(); r < 5 || r > 500 {
						t.Errorf("Limit() = %v, outside [5, 500]", r)
					}
				}
			})
		}
		wg.Wait()
	})
}
