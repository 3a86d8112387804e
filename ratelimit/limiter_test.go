package ratelimit_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

// wait calls ratelimit.Wait and fails the test on error.
func wait(t *testing.T, w ratelimit.Waiter, n int) time.Duration {
	t.Helper()
	d, err := ratelimit.Wait(t.Context(), w, n)
	if err != nil {
		t.Fatalf("Wait(n=%d): %v", n, err)
	}
	return d
}

func equal[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// A per-batch limit of 10/s with a burst of 10: 30 batches take (30-10)/10 = 2s,
// the first 10 immediately and then one every 100ms.
func TestLimiterBatchLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 10)
		start := time.Now()
		for i := range 30 {
			want := time.Duration(0)
			if i >= 10 {
				want = 100 * time.Millisecond
			}
			equal(t, "waited", wait(t, lim, 1), want)
		}
		equal(t, "elapsed", time.Since(start), 2*time.Second)
	})
}

// A per-item limit of 10 items/s with a burst of 10: 30 items in batches of 5
// take (30-10)/10 = 2s, the first two batches immediately, then one every 500ms.
func TestLimiterItemLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 10)
		start := time.Now()
		for i := range 6 {
			want := time.Duration(0)
			if i >= 2 {
				want = 500 * time.Millisecond
			}
			equal(t, "waited", wait(t, lim, 5), want)
		}
		equal(t, "elapsed", time.Since(start), 2*time.Second)
	})
}

// After an idle period the bucket is full again, but never fuller than the burst.
func TestLimiterRefillCapsAtBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 5)
		wait(t, lim, 5)
		time.Sleep(time.Hour)
		equal(t, "waited for 5 after idle", wait(t, lim, 5), 0)
		equal(t, "waited for 1 more", wait(t, lim, 1), 100*time.Millisecond)
	})
}

// n larger than the burst is served on credit: it takes (n-burst)/rate from a
// full bucket, while a bare *rate.Limiter refuses it.
func TestLimiterNAboveBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		if err := rate.NewLimiter(10, 5).WaitN(t.Context(), 25); err == nil {
			t.Fatal("rate.Limiter.WaitN(25) with burst 5 succeeded; the premise of this package changed")
		}

		lim := ratelimit.NewLimiter(10, 5)
		equal(t, "waited for 25 (burst 5)", wait(t, lim, 25), 2*time.Second)
		equal(t, "waited for 5 next", wait(t, lim, 5), 500*time.Millisecond)

		// Burst 1, a per-item batch of 1000 at 1000 items/s.
		lim = ratelimit.NewLimiter(1000, 1)
		equal(t, "waited for 1000 (burst 1)", wait(t, lim, 1000), 999*time.Millisecond)
	})
}

func TestLimiterNonPositiveN(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var closed ratelimit.Limiter // would block any positive n
		for _, n := range []int{0, -1} {
			if err := closed.WaitN(t.Context(), n); err != nil {
				t.Errorf("WaitN(%d) = %v, want nil", n, err)
			}
		}
	})
}

// Two users of one limiter share its quota: 10 batches/s, burst 1, 10 batches
// each. Waiters are served in order, so the users alternate and the 20 grants
// land on the 20 ticks 0, 100ms, ..., 1.9s.
func TestLimiterSharedQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 1)
		start := time.Now()
		var (
			mu     sync.Mutex
			grants = map[time.Duration]int{}
			last   [2]time.Duration
			wg     sync.WaitGroup
		)
		for user := range 2 {
			wg.Go(func() {
				for range 10 {
					if err := lim.WaitN(t.Context(), 1); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					grants[time.Since(start)]++
					last[user] = time.Since(start)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		for i := range 20 {
			at := time.Duration(i) * 100 * time.Millisecond
			if grants[at] != 1 {
				t.Errorf("%d grants at %v, want 1 (all: %v)", grants[at], at, grants)
			}
		}
		// Fair: the users alternate, so each finishes within the last three
		// ticks (one may have had two grants in a row at the start), not
		// one after the other.
		for user, d := range last {
			if d < 1700*time.Millisecond {
				t.Errorf("user %d finished at %v, want 1.7s or later", user, d)
			}
		}
	})
}

// A large request first in line is not starved by smaller ones arriving later.
func TestLimiterFirstComeFirstServed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 10)
		wait(t, lim, 10) // empty the bucket
		start := time.Now()
		var big time.Duration
		done := make(chan struct{})
		go func() {
			big = wait(t, lim, 10)
			close(done)
		}()
		synctest.Wait() // the big request is first in line
		small := wait(t, lim, 1)
		<-done
		equal(t, "big request waited", big, time.Second)
		equal(t, "small request, queued behind it, finished at", time.Since(start), 1100*time.Millisecond)
		equal(t, "small request waited", small, 1100*time.Millisecond)
	})
}

// SetLimit applies to a caller already waiting, keeping what it accumulated.
func TestLimiterSetLimitWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 10)
		wait(t, lim, 10) // empty the bucket
		got := make(chan time.Duration)
		go func() { got <- wait(t, lim, 10) }() // 10s at 1/s

		time.Sleep(time.Second) // 1 token accumulated, 9 missing
		lim.SetLimit(10)        // 9 tokens at 10/s: 0.9s more
		equal(t, "waited", <-got, 1900*time.Millisecond)
		equal(t, "Limit()", lim.Limit(), 10)
	})
}

// A request larger than the burst keeps its credit across SetLimit.
func TestLimiterSetLimitWhileWaitingAboveBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 5)
		got := make(chan time.Duration)
		go func() { got <- wait(t, lim, 25) }() // 5 in the bucket, 20 at 10/s: 2s

		time.Sleep(1500 * time.Millisecond) // 5+15 = 20 accumulated, 5 missing
		lim.SetLimit(20)                    // 5 at 20/s: 0.25s more
		equal(t, "waited", <-got, 1750*time.Millisecond)
	})
}

// The queued callers behind the first follow the new rate too.
func TestLimiterSetLimitReschedulesQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 1)
		wait(t, lim, 1)
		start := time.Now()
		var wg sync.WaitGroup
		done := make([]time.Duration, 3)
		for i := range done {
			wg.Go(func() {
				wait(t, lim, 1)
				done[i] = time.Since(start)
			})
			synctest.Wait() // queue them in order
		}
		time.Sleep(500 * time.Millisecond)
		lim.SetLimit(2) // 0.5 token accumulated: next at 0.75s, then every 0.5s
		wg.Wait()
		equal(t, "first", done[0], 750*time.Millisecond)
		equal(t, "second", done[1], 1250*time.Millisecond)
		equal(t, "third", done[2], 1750*time.Millisecond)
	})
}

// SetLimit(rate.Inf) releases every waiter at once.
func TestLimiterSetLimitInfReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 1)
		wait(t, lim, 1)
		start := time.Now()
		var wg sync.WaitGroup
		for range 5 {
			wg.Go(func() { wait(t, lim, 100) })
		}
		time.Sleep(time.Second)
		lim.SetLimit(rate.Inf)
		wg.Wait()
		equal(t, "released after", time.Since(start), time.Second)
		equal(t, "waited with Inf", wait(t, lim, 1_000_000), 0)
	})
}

// SetLimit(0) pauses the flow and a later SetLimit resumes it, crediting what
// accumulated before the pause.
func TestLimiterPauseResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 1)
		wait(t, lim, 1)
		got := make(chan time.Duration)
		go func() { got <- wait(t, lim, 1) }() // due at 100ms

		time.Sleep(50 * time.Millisecond) // half a token accumulated
		lim.SetLimit(0)
		time.Sleep(time.Hour) // paused: nothing accumulates
		select {
		case d := <-got:
			t.Fatalf("paused limiter let a caller through after %v", d)
		default:
		}
		lim.SetLimit(10) // half a token missing: 50ms
		equal(t, "waited", <-got, time.Hour+100*time.Millisecond)
	})
}

// SetBurst keeps a waiting caller's schedule (raising the burst adds no
// tokens, lowering it does not cancel a reservation); burst 0 pauses it.
func TestLimiterSetBurstWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(10, 10)
		wait(t, lim, 10)
		got := make(chan time.Duration)
		go func() { got <- wait(t, lim, 10) }() // due at 1s

		time.Sleep(200 * time.Millisecond)
		lim.SetBurst(2)
		time.Sleep(200 * time.Millisecond)
		lim.SetBurst(100)
		equal(t, "waited", <-got, time.Second)
		equal(t, "Burst()", lim.Burst(), 100)

		// Burst 0 empties the bucket and pauses; restoring it resumes.
		go func() { got <- wait(t, lim, 10) }() // due at 1s
		time.Sleep(500 * time.Millisecond)
		lim.SetBurst(0)
		time.Sleep(time.Minute)
		lim.SetBurst(10) // the bucket holds nothing: 10 tokens, 1s
		equal(t, "waited across burst 0", <-got, time.Minute+1500*time.Millisecond)
	})
}

// The zero Limiter blocks until it is configured, then fills from empty.
func TestLimiterZeroValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var lim ratelimit.Limiter
		equal(t, "Limit()", lim.Limit(), 0)
		equal(t, "Burst()", lim.Burst(), 0)
		got := make(chan time.Duration)
		go func() { got <- wait(t, &lim, 1) }()
		time.Sleep(time.Minute)
		lim.SetLimit(10)
		time.Sleep(time.Minute) // burst 0: nothing accumulates yet
		lim.SetBurst(1)         // an empty bucket: 1 token at 10/s
		equal(t, "waited", <-got, 2*time.Minute+100*time.Millisecond)
	})
}

// Cancellation returns at once with ctx's cause and gives the tokens back to
// the next caller.
func TestLimiterCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 5)
		wait(t, lim, 5)
		start := time.Now()

		cause := errors.New("shutting down")
		ctx, cancel := context.WithCancelCause(t.Context())
		errc := make(chan error)
		go func() { errc <- lim.WaitN(ctx, 5) }() // first in line, due at 5s
		synctest.Wait()
		next := make(chan time.Duration)
		go func() { next <- wait(t, lim, 3) }() // queued behind it
		synctest.Wait()

		time.Sleep(2 * time.Second)
		cancel(cause)
		err := <-errc
		equal(t, "returned after", time.Since(start), 2*time.Second)
		if !errors.Is(err, cause) {
			t.Errorf("err = %v, want the cause %v", err, cause)
		}
		// Two tokens accumulated, the cancelled reservation returned: the
		// next caller needs 1 more, at 3s.
		equal(t, "next waited", <-next, 3*time.Second)
	})
}

func TestLimiterDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 1)
		wait(t, lim, 1)
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		waited, err := ratelimit.Wait(ctx, lim, 1)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("err = %v, want context.DeadlineExceeded", err)
		}
		equal(t, "returned after", time.Since(start), 300*time.Millisecond)
		equal(t, "waited", waited, 300*time.Millisecond)
		// The token was given back: the next one is due at 1s as before.
		equal(t, "next waited", wait(t, lim, 1), 700*time.Millisecond)
	})
}

// A caller whose ctx is already done takes no tokens.
func TestLimiterDoneContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 1)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := lim.WaitN(ctx, 1); !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		equal(t, "waited", wait(t, lim, 1), 0) // the token is still there
	})
}

// Cancelling a caller in the middle of the queue leaves the others' schedule
// alone.
func TestLimiterCancelQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(1, 1)
		wait(t, lim, 1)
		start := time.Now()
		var wg sync.WaitGroup
		done := make([]time.Duration, 2)
		wg.Go(func() { wait(t, lim, 1); done[0] = time.Since(start) })
		synctest.Wait()
		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error)
		go func() { errc <- lim.WaitN(ctx, 5) }()
		synctest.Wait()
		wg.Go(func() { wait(t, lim, 1); done[1] = time.Since(start) })
		synctest.Wait()
		time.Sleep(500 * time.Millisecond)
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want context.Canceled", err)
		}
		wg.Wait()
		equal(t, "first", done[0], time.Second)
		equal(t, "third, after the cancelled second", done[1], 2*time.Second)
	})
}
