package retry_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

var errDown = errors.New("downstream unavailable")

// attempts records the fake time of each call of a FireFunc that returns
// what fail says for that attempt (1-based).
type attempts struct {
	mu    sync.Mutex
	times []time.Time
	fail  func(n int) error
}

func (a *attempts) fire(ctx context.Context, items []int) error {
	a.mu.Lock()
	a.times = append(a.times, time.Now())
	n := len(a.times)
	a.mu.Unlock()
	return a.fail(n)
}

// gaps returns the waits between consecutive attempts.
func (a *attempts) gaps() []time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(a.times); i++ {
		out = append(out, a.times[i].Sub(a.times[i-1]))
	}
	return out
}

func (a *attempts) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.times)
}

func alwaysFail(int) error { return errDown }

func TestBackoffScheduleBounds(t *testing.T) {
	ceilings := []time.Duration{100, 200, 400, 800, 1000, 1000, 1000} // ms, Initial 100ms ×2 capped at 1s
	for _, tc := range []struct {
		name     string
		jitter   retry.Jitter
		min, max func(c time.Duration) time.Duration // inclusive min, exclusive max (or exact when equal)
	}{
		{"full", retry.FullJitter, func(time.Duration) time.Duration { return 0 }, func(c time.Duration) time.Duration { return c }},
		{"equal", retry.EqualJitter, func(c time.Duration) time.Duration { return c / 2 }, func(c time.Duration) time.Duration { return c }},
		{"none", retry.NoJitter, func(c time.Duration) time.Duration { return c }, func(c time.Duration) time.Duration { return c }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			schedule := func(seed uint64) []time.Duration {
				var gaps []time.Duration
				synctest.Test(t, func(t *testing.T) {
					a := &attempts{fail: alwaysFail}
					rnd := rand.New(rand.NewPCG(seed, seed))
					fire := retry.New[int](
						retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 2, Jitter: tc.jitter}),
						retry.WithMaxAttempts(len(ceilings)+1),
						retry.WithMaxElapsedTime(0),
						retry.WithBudget(nil),
						retry.WithRand(rnd.Float64),
					)(a.fire)
					err := fire(context.Background(), []int{1})
					if !errors.Is(err, retry.ErrExhausted) {
						t.Fatalf("err = %v, want ErrExhausted", err)
					}
					gaps = a.gaps()
				})
				return gaps
			}
			gaps := schedule(1)
			if len(gaps) != len(ceilings) {
				t.Fatalf("%d waits, want %d", len(gaps), len(ceilings))
			}
			for i, g := range gaps {
				c := ceilings[i] * time.Millisecond
				lo, hi := tc.min(c), tc.max(c)
				if lo == hi && g != lo || lo != hi && (g < lo || g >= hi) {
					t.Errorf("wait %d = %v, want in [%v, %v)", i+1, g, lo, hi)
				}
			}
			if tc.jitter != retry.NoJitter {
				if slices.Equal(gaps, schedule(2)) {
					t.Errorf("seeds 1 and 2 gave the same schedule %v", gaps)
				}
			}
			if again := schedule(1); !slices.Equal(gaps, again) {
				t.Errorf("seed 1 gave %v, then %v", gaps, again)
			}
		})
	}
}

func TestJitterExtremes(t *testing.T) {
	for _, tc := range []struct {
		jitter retry.Jitter
		r      float64
		want   time.Duration
	}{
		{retry.FullJitter, 0, 0},
		{retry.FullJitter, 0.5, 50 * time.Millisecond},
		{retry.EqualJitter, 0, 50 * time.Millisecond},
		{retry.EqualJitter, 0.5, 75 * time.Millisecond},
		{retry.NoJitter, 0.3, 100 * time.Millisecond},
	} {
		synctest.Test(t, func(t *testing.T) {
			a := &attempts{fail: func(n int) error {
				if n == 1 {
					return errDown
				}
				return nil
			}}
			fire := retry.New[int](
				retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: tc.jitter}),
				retry.WithRand(func() float64 { return tc.r }),
			)(a.fire)
			if err := fire(context.Background(), nil); err != nil {
				t.Fatal(err)
			}
			if g := a.gaps(); len(g) != 1 || g[0] != tc.want {
				t.Errorf("jitter %d, r=%v: waits %v, want [%v]", tc.jitter, tc.r, g, tc.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &attempts{fail: alwaysFail}
		fire := retry.New[int](retry.WithRand(func() float64 { return 0.999999 }))(a.fire)
		err := fire(context.Background(), nil)
		var re *retry.Error
		if !errors.As(err, &re) || re.Reason != retry.ErrExhausted || re.Attempts != 5 {
			t.Fatalf("err = %#v, want 5 attempts exhausted", err)
		}
		// Full jitter just below the ceilings 100, 200, 400, 800 ms.
		for i, g := range a.gaps() {
			c := 100 * time.Millisecond << i
			if g >= c || g < c*99/100 {
				t.Errorf("wait %d = %v, want just below %v", i+1, g, c)
			}
		}
	})
}

func TestMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &attempts{fail: alwaysFail}
		fire := retry.New[int](retry.WithMaxAttempts(3), retry.WithBudget(nil))(a.fire)
		err := fire(context.Background(), []int{1, 2})
		if a.count() != 3 {
			t.Errorf("%d attempts, want 3", a.count())
		}
		if !errors.Is(err, retry.ErrExhausted) || !errors.Is(err, errDown) {
			t.Errorf("err = %v, want ErrExhausted and errDown", err)
		}
		if errors.Is(err, retry.ErrBudgetExhausted) {
			t.Errorf("err = %v matches ErrBudgetExhausted", err)
		}
		var re *retry.Error
		if !errors.As(err, &re) || re.Attempts != 3 || re.Last != errDown {
			t.Errorf("err = %#v, want *retry.Error{Attempts: 3, Last: errDown}", err)
		}
		want := "retry: attempts exhausted after 3 attempts: downstream unavailable"
		if err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	})
	t.Run("one", func(t *testing.T) {
		a := &attempts{fail: alwaysFail}
		err := retry.New[int](retry.WithMaxAttempts(1))(a.fire)(context.Background(), nil)
		if a.count() != 1 || !errors.Is(err, retry.ErrExhausted) {
			t.Errorf("%d attempts, err %v; want 1 and ErrExhausted", a.count(), err)
		}
		if want := "retry: attempts exhausted after 1 attempt: downstream unavailable"; err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	})
}

func TestMaxElapsedTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &attempts{fail: alwaysFail}
		fire := retry.New[int](
			retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Hour, Jitter: retry.NoJitter}),
			retry.WithMaxAttempts(retry.Unlimited),
			retry.WithMaxElapsedTime(time.Second),
			retry.WithBudget(nil),
		)(a.fire)
		start := time.Now()
		err := fire(context.Background(), nil)
		// Attempts at 0, 100, 300, 700 ms; the next wait (800 ms) would end
		// at 1.5 s, past the limit, so it gives up at 700 ms without waiting.
		if took := time.Since(start); took != 700*time.Millisecond {
			t.Errorf("gave up after %v, want 700ms", took)
		}
		var re *retry.Error
		if !errors.As(err, &re) || re.Reason != retry.ErrElapsedLimit || re.Attempts != 4 || re.Elapsed != 700*time.Millisecond {
			t.Errorf("err = %#v, want the elapsed-time limit after 4 attempts in 700ms", err)
		}
		// The time limit stopped it, not the attempts: the error says so,
		// and still matches ErrExhausted (either cap) and the last error.
		if want := "retry: elapsed-time limit reached after 4 attempts in 700ms: downstream unavailable"; err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
		if !errors.Is(err, retry.ErrExhausted) || !errors.Is(err, retry.ErrElapsedLimit) || re.ErrorType() != retry.ErrorTypeExhausted {
			t.Errorf("%v: want ErrExhausted, ErrElapsedLimit and %s", err, retry.ErrorTypeExhausted)
		}
	})
}

// WithMaxAttempts(0) (or below) is one attempt, no retry; only Unlimited
// removes the cap.
func TestMaxAttemptsZeroIsOneAttempt(t *testing.T) {
	for _, n := range []int{0, -1} {
		a := &attempts{fail: alwaysFail}
		err := retry.New[int](retry.WithMaxAttempts(n), retry.WithBudget(nil))(a.fire)(context.Background(), nil)
		if a.count() != 1 || !errors.Is(err, retry.ErrExhausted) {
			t.Errorf("WithMaxAttempts(%d): %d attempts, err %v; want 1 and ErrExhausted", n, a.count(), err)
		}
	}
	synctest.Test(t, func(t *testing.T) {
		a := &attempts{fail: func(n int) error {
			if n < 50 {
				return errDown
			}
			return nil
		}}
		fire := retry.New[int](retry.WithMaxAttempts(retry.Unlimited), retry.WithMaxElapsedTime(0), retry.WithBudget(nil),
			retry.WithBackoff(retry.Backoff{Initial: time.Millisecond, Max: time.Millisecond}))(a.fire)
		if err := fire(context.Background(), nil); err != nil || a.count() != 50 {
			t.Errorf("Unlimited: %d attempts, err %v; want 50 and nil", a.count(), err)
		}
	})
}

func TestPermanentNotRetried(t *testing.T) {
	errBad := errors.New("malformed row")
	for _, failAt := range []int{1, 2} {
		synctest.Test(t, func(t *testing.T) {
			a := &attempts{fail: func(n int) error {
				if n == failAt {
					return retry.Permanent(fmt.Errorf("insert: %w", errBad))
				}
				return errDown
			}}
			err := retry.New[int]()(a.fire)(context.Background(), nil)
			if a.count() != failAt {
				t.Errorf("%d attempts, want %d", a.count(), failAt)
			}
			if !errors.Is(err, errBad) || !retry.IsPermanent(err) {
				t.Errorf("err = %v, want errBad marked permanent", err)
			}
			var pe *retry.PermanentError
			if !errors.As(err, &pe) || pe.Error() != "insert: malformed row" {
				t.Errorf("errors.As(*PermanentError) failed on %v", err)
			}
			if errors.Is(err, retry.ErrExhausted) {
				t.Errorf("a permanent error matches ErrExhausted: %v", err)
			}
		})
	}
	if retry.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if retry.IsPermanent(errDown) || retry.IsPermanent(nil) {
		t.Error("IsPermanent of an unmarked error")
	}
	// Wrapped again, it is still permanent.
	if !retry.IsPermanent(fmt.Errorf("batch 3: %w", retry.Permanent(errBad))) {
		t.Error("IsPermanent does not see through wrapping")
	}
}

func TestRetryIf(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errAuth := errors.New("unauthorized")
		a := &attempts{fail: func(n int) error {
			if n < 3 {
				return errDown
			}
			return errAuth
		}}
		fire := retry.New[int](
			retry.WithRetryIf(func(err error) bool { return !errors.Is(err, errAuth) }),
		)(a.fire)
		err := fire(context.Background(), nil)
		if err != errAuth || a.count() != 3 {
			t.Errorf("err %v after %d attempts, want errAuth unchanged after 3", err, a.count())
		}
	})
}

// hinted is an error carrying a server's delay hint.
type hinted struct{ after time.Duration }

func (h hinted) Error() string             { return "429 too many requests" }
func (h hinted) RetryAfter() time.Duration { return h.after }

func TestRetryAfterHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := &attempts{fail: func(n int) error {
			switch n {
			case 1:
				return fmt.Errorf("bulk insert: %w", hinted{3 * time.Second}) // found through wrapping
			case 2:
				return hinted{0} // no hint: the backoff applies
			}
			return nil
		}}
		fire := retry.New[int](retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: retry.NoJitter}))(a.fire)
		if err := fire(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{3 * time.Second, 200 * time.Millisecond}
		if g := a.gaps(); !slices.Equal(g, want) {
			t.Errorf("waits %v, want %v (hint above Backoff.Max honoured)", g, want)
		}
	})
	t.Run("past max elapsed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := &attempts{fail: func(int) error { return hinted{time.Hour} }}
			start := time.Now()
			err := retry.New[int](retry.WithMaxElapsedTime(time.Minute))(a.fire)(context.Background(), nil)
			if a.count() != 1 || !errors.Is(err, retry.ErrExhausted) || time.Since(start) != 0 {
				t.Errorf("%d attempts, err %v, %v; want 1, ErrExhausted at once", a.count(), err, time.Since(start))
			}
			var h hinted
			if !errors.As(err, &h) {
				t.Errorf("the hinted error is not reachable through %v", err)
			}
		})
	})
}

func TestAttemptTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var ctxErrs []error
		fire := retry.New[int](
			retry.WithAttemptTimeout(time.Second),
			retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter}),
		)(func(ctx context.Context, items []int) error {
			if len(ctxErrs) == 0 {
				<-ctx.Done() // the first attempt hangs until its own deadline
				ctxErrs = append(ctxErrs, ctx.Err())
				return ctx.Err()
			}
			ctxErrs = append(ctxErrs, ctx.Err())
			return nil
		})
		start := time.Now()
		if err := fire(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took != 1100*time.Millisecond {
			t.Errorf("took %v, want 1.1s (1s timeout + 100ms backoff)", took)
		}
		if len(ctxErrs) != 2 || ctxErrs[0] != context.DeadlineExceeded || ctxErrs[1] != nil {
			t.Errorf("attempt contexts ended with %v, want [DeadlineExceeded <nil>]", ctxErrs)
		}
	})
}

func TestContextEndsDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errCause := errors.New("caller gave up")
		ctx, cancel := context.WithCancelCause(context.Background())
		a := &attempts{fail: alwaysFail}
		fire := retry.New[int](retry.WithBackoff(retry.Backoff{Initial: time.Hour, Max: time.Hour, Jitter: retry.NoJitter}), retry.WithMaxElapsedTime(0))(a.fire)
		done := make(chan error)
		go func() { done <- fire(ctx, nil) }()
		time.Sleep(time.Minute)
		cancel(errCause)
		err := <-done
		if !errors.Is(err, errCause) || !errors.Is(err, errDown) || a.count() != 1 {
			t.Errorf("err %v after %d attempts; want cause and last error after 1", err, a.count())
		}
		if want := "retry: interrupted after 1 attempt: caller gave up: downstream unavailable"; err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	})
}

func TestBudgetExhaustionAndRefill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Half a retry per batch, plus a reserve of 0.1/s × 10 s = 1.
		budget := retry.NewBudget(0.5, 0.1)
		a := &attempts{fail: alwaysFail}
		opts := []retry.Option{
			retry.WithBudget(budget),
			retry.WithMaxAttempts(10),
			retry.WithBackoff(retry.Backoff{Initial: time.Millisecond, Jitter: retry.NoJitter}),
		}
		fire := retry.New[int](opts...)(a.fire)
		if b := budget.Balance(); b != 1 {
			t.Fatalf("fresh balance %d, want 1", b)
		}
		// Batch 1: floor(1 + 0.5) = 1 retry, then refused.
		err := fire(context.Background(), nil)
		var re *retry.Error
		if !errors.As(err, &re) || re.Reason != retry.ErrBudgetExhausted || re.Attempts != 2 || !errors.Is(err, errDown) {
			t.Fatalf("batch 1: %v, want budget exhausted after 2 attempts", err)
		}
		if errors.Is(err, retry.ErrExhausted) {
			t.Errorf("ErrBudgetExhausted also matches ErrExhausted: %v", err)
		}
		// Batch 2, through another middleware sharing the budget:
		// floor(1 + 1) - 1 = 1 retry.
		a2 := &attempts{fail: alwaysFail}
		err = retry.New[int](opts...)(a2.fire)(context.Background(), nil)
		if !errors.Is(err, retry.ErrBudgetExhausted) || a2.count() != 2 {
			t.Fatalf("batch 2: %v after %d attempts, want budget exhausted after 2", err, a2.count())
		}
		if b := budget.Balance(); b != 0 {
			t.Errorf("balance %d, want 0", b)
		}
		// Batch 3 deposits 0.5: still nothing to retry with.
		a3 := &attempts{fail: alwaysFail}
		err = retry.New[int](opts...)(a3.fire)(context.Background(), nil)
		if !errors.Is(err, retry.ErrBudgetExhausted) || a3.count() != 1 {
			t.Fatalf("batch 3: %v after %d attempts, want budget exhausted after 1", err, a3.count())
		}
		if want := "retry: budget exhausted after 1 attempt: downstream unavailable"; err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
		// The window slides: after 10 s the spent retries are forgotten
		// and the reserve is back.
		time.Sleep(10 * time.Second)
		if b := budget.Balance(); b != 1 {
			t.Errorf("balance after the window %d, want 1", b)
		}
		// Successful first attempts refill it.
		ok := retry.New[int](opts...)(func(context.Context, []int) error { return nil })
		for range 10 {
			_ = ok(context.Background(), nil)
		}
		if b := budget.Balance(); b != 6 {
			t.Errorf("balance after 10 batches %d, want floor(1 + 10×0.5) = 6", b)
		}
	})
}

func TestBudgetSlidingWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := retry.NewBudget(0.2, 0)
		ok := retry.New[int](retry.WithBudget(b))(func(context.Context, []int) error { return nil })
		for range 50 { // 10 retries' worth
			_ = ok(context.Background(), nil)
		}
		time.Sleep(5 * time.Second)
		for range 50 {
			_ = ok(context.Background(), nil)
		}
		if got := b.Balance(); got != 20 {
			t.Errorf("balance %d, want 20", got)
		}
		time.Sleep(5 * time.Second) // the first 50 drop out of the window
		if got := b.Balance(); got != 10 {
			t.Errorf("balance %d, want 10", got)
		}
		time.Sleep(5 * time.Second)
		if got := b.Balance(); got != 0 {
			t.Errorf("balance %d, want 0", got)
		}
		if got := (&retry.Budget{}).Balance(); got != 0 {
			t.Errorf("zero Budget balance %d, want 0", got)
		}
		if got := retry.NewBudget(-1, -1).Balance(); got != 0 {
			t.Errorf("negative Budget balance %d, want 0", got)
		}
	})
}

// TestDefaultBudgetStopsARetryStorm: with the default budget, a downstream
// that fails everything sees at most 20% more attempts than batches, plus
// the reserve, instead of 5× the load.
func TestDefaultBudgetStopsARetryStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls, batches int
		rnd := rand.New(rand.NewPCG(7, 7))
		fire := retry.New[int](retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}), retry.WithRand(rnd.Float64))(
			func(context.Context, []int) error { calls++; return errDown })
		for range 1000 {
			batches++
			_ = fire(context.Background(), nil)
			time.Sleep(5 * time.Millisecond) // 200 batches a second
		}
		// Per 10 s window: at most 0.2 × 2000 batches + 100 retries, and
		// 1000 batches take 5 s of this clock plus their backoffs.
		if retries := calls - batches; retries > 200+100 || retries < 100 {
			t.Errorf("%d retries for %d batches, want about 0.2 × batches + reserve", retries, batches)
		}
	})
}

func TestShutdownDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var (
			mu      sync.Mutex
			doneErr []error
			doneAt  time.Time
			retried []muster.RetryInfo
		)
		b := &muster.Batcher[int]{
			Name:         "orders",
			MaxBatchSize: 10,
			BatchTimeout: 100 * time.Millisecond,
			Hooks: &muster.Hooks{
				Retried: func(ctx context.Context, info muster.RetryInfo) {
					mu.Lock()
					retried = append(retried, info)
					mu.Unlock()
				},
				Done: func(ctx context.Context, info muster.DoneInfo) {
					mu.Lock()
					doneErr = append(doneErr, info.Err)
					doneAt = time.Now()
					mu.Unlock()
				},
			},
			Fire: retry.New[int](
				retry.WithBackoff(retry.Backoff{Initial: 10 * time.Second, Max: time.Minute, Jitter: retry.NoJitter}),
				retry.WithMaxAttempts(retry.Unlimited), retry.WithMaxElapsedTime(0),
			)(func(context.Context, []int) error { return errDown }),
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := b.Add(context.Background(), i); err != nil {
				t.Fatal(err)
			}
		}
		start := time.Now()
		time.Sleep(150 * time.Millisecond) // fired at 100ms, failed, now in a 10 s backoff
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := b.Shutdown(ctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 1 || se.Items != 3 {
			t.Errorf("Shutdown: %v, want 1 batch of 3 items not done", err)
		}
		synctest.Wait() // the batch's goroutine finishes
		mu.Lock()
		defer mu.Unlock()
		if len(doneErr) != 1 {
			t.Fatalf("%d Done calls, want 1", len(doneErr))
		}
		derr := doneErr[0]
		var re *retry.Error
		if !errors.Is(derr, muster.ErrIncomplete) || !errors.Is(derr, errDown) || !errors.As(derr, &re) || re.Attempts != 1 {
			t.Errorf("Done saw %v, want ErrIncomplete and errDown after 1 attempt", derr)
		}
		if at := doneAt.Sub(start); at != 1150*time.Millisecond {
			t.Errorf("batch done at %v, want at the deadline (1.15s), not after its 10 s backoff", at)
		}
		if len(retried) != 1 || retried[0].Attempt != 1 || retried[0].Backoff != 10*time.Second {
			t.Errorf("Retried saw %+v, want attempt 1 with a 10s backoff", retried)
		}
	})
}

func TestRetriedHook(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var retried []muster.RetryInfo
		attempt := 0
		b := &muster.Batcher[int]{
			Name:         "events",
			MaxBatchSize: 2,
			Hooks: &muster.Hooks{Retried: func(ctx context.Context, info muster.RetryInfo) {
				retried = append(retried, info)
			}},
			Fire: retry.New[int](retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter}))(
				func(context.Context, []int) error {
					attempt++
					if attempt <= 2 {
						return fmt.Errorf("attempt %d: %w", attempt, errDown)
					}
					return nil
				}),
		}
		_ = b.Start()
		_ = b.Add(context.Background(), 1)
		_ = b.Add(context.Background(), 2)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if len(retried) != 2 {
			t.Fatalf("Retried called %d times, want 2: %+v", len(retried), retried)
		}
		for i, info := range retried {
			want := muster.RetryInfo{BatchID: 1, Attempt: i + 1, Backoff: 100 * time.Millisecond << i}
			if info.Err == nil || !strings.HasPrefix(info.Err.Error(), fmt.Sprintf("attempt %d:", i+1)) {
				t.Errorf("retry %d: Err %v", i, info.Err)
			}
			info.Err = nil
			if info != want {
				t.Errorf("retry %d: %+v, want %+v", i, info, want)
			}
		}
	})
}

// TestEveryItemExactlyOnce runs a real Batcher over a downstream that fails
// each batch's first two attempts and then takes it, except batches holding
// a poisoned item, which fail until the attempts run out: every item ends in
// exactly one delivery or exactly one reported failure.
func TestEveryItemExactlyOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const items, poisoned = 200, 137
		var (
			mu         sync.Mutex
			delivered  = map[int]int{} // item -> deliveries accepted by the downstream
			failed     = map[int]int{} // item -> final failures seen above retry
			attemptsOf = map[int]int{} // first item of a batch -> attempts
			doneErrs   int
			doneOK     int
			retries    int
		)
		downstream := func(ctx context.Context, batch []int) error {
			mu.Lock()
			defer mu.Unlock()
			attemptsOf[batch[0]]++
			if slices.Contains(batch, poisoned) || attemptsOf[batch[0]] <= 2 {
				return errDown
			}
			for _, it := range batch {
				delivered[it]++
			}
			return nil
		}
		// outcome sits above retry and sees each batch's final result.
		outcome := func(next muster.FireFunc[int]) muster.FireFunc[int] {
			return func(ctx context.Context, batch []int) error {
				err := next(ctx, batch)
				if err != nil {
					mu.Lock()
					for _, it := range batch {
						failed[it]++
					}
					mu.Unlock()
				}
				return err
			}
		}
		b := &muster.Batcher[int]{
			MaxBatchSize:         10,
			BatchTimeout:         50 * time.Millisecond,
			MaxConcurrentBatches: 3,
			Hooks: &muster.Hooks{
				Retried: func(context.Context, muster.RetryInfo) { mu.Lock(); retries++; mu.Unlock() },
				Done: func(ctx context.Context, info muster.DoneInfo) {
					mu.Lock()
					defer mu.Unlock()
					if info.Err != nil {
						doneErrs++
						if !errors.Is(info.Err, retry.ErrExhausted) || !errors.Is(info.Err, errDown) {
							t.Errorf("batch %d failed with %v", info.BatchID, info.Err)
						}
					} else {
						doneOK++
					}
				},
			},
			Fire: muster.Chain(outcome, retry.New[int](retry.WithMaxAttempts(4)))(downstream),
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range items {
			if err := b.Add(context.Background(), i); err != nil {
				t.Fatal(err)
			}
			if i%7 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		for i := range items {
			if n := delivered[i] + failed[i]; n != 1 {
				t.Errorf("item %d: delivered %d times, failed %d times", i, delivered[i], failed[i])
			}
		}
		if failed[poisoned] != 1 || doneErrs != 1 {
			t.Errorf("poisoned item failed %d times, %d batches failed; want 1 and 1", failed[poisoned], doneErrs)
		}
		batches := doneOK + doneErrs
		if batches != len(attemptsOf) || retries != 2*doneOK+3 {
			t.Errorf("%d batches, %d retries; want %d and %d", batches, retries, len(attemptsOf), 2*doneOK+3)
		}
		st := b.Stats()
		if st.Added != items || st.Done != uint64(batches) || st.Failed != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}

// TestConcurrentSafe hammers one middleware and one budget from many
// batches at once (run with -race).
func TestConcurrentSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := retry.NewBudget(0.5, 1)
		var mu sync.Mutex
		calls := map[int]int{}
		fire := retry.New[int](retry.WithBudget(budget), retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}))(
			func(ctx context.Context, items []int) error {
				mu.Lock()
				defer mu.Unlock()
				calls[items[0]]++
				if calls[items[0]] == 1 {
					return errDown
				}
				return nil
			})
		var wg sync.WaitGroup
		errs := make([]error, 100)
		for i := range 100 {
			wg.Go(func() { errs[i] = fire(context.Background(), []int{i}) })
		}
		wg.Wait()
		ok, refused := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, retry.ErrBudgetExhausted):
				refused++
			default:
				t.Errorf("unexpected %v", err)
			}
		}
		if ok+refused != 100 || ok > 60 || ok < 10 {
			t.Errorf("%d succeeded, %d refused by the budget", ok, refused)
		}
	})
}

// One Policy given to New for two item types: both follow its caps, and
// draw on its one Budget. Options after the Policy change only that New.
func TestPolicySharedAcrossTypes(t *testing.T) {
	policy := retry.NewPolicy(retry.WithMaxAttempts(3), retry.WithBudget(retry.NewBudget(0, 0.3)), // 3 retries in all
		retry.WithBackoff(retry.Backoff{Initial: time.Nanosecond}))
	if policy.Budget() == nil || policy.Budget().Balance() != 3 {
		t.Fatalf("policy budget: %v", policy.Budget())
	}
	ints := &attempts{fail: alwaysFail}
	strs := 0
	fireInts := retry.New[int](policy)(ints.fire)
	fireStrs := retry.New[string](policy)(func(context.Context, []string) error { strs++; return errDown })
	// The int batcher takes 2 retries (3 attempts, the cap), leaving 1.
	if err := fireInts(context.Background(), []int{1}); !errors.Is(err, retry.ErrExhausted) || ints.count() != 3 {
		t.Fatalf("ints: %d attempts, %v", ints.count(), err)
	}
	// The string batcher gets the one retry left, then the shared budget refuses.
	if err := fireStrs(context.Background(), []string{"a"}); !errors.Is(err, retry.ErrBudgetExhausted) || strs != 2 {
		t.Fatalf("strings: %d attempts, %v; want 2 and ErrBudgetExhausted", strs, err)
	}
	// An option after the policy is that New's own: no retries, and the
	// policy is unchanged for the others.
	once := &attempts{fail: alwaysFail}
	_ = retry.New[int](policy, retry.WithMaxAttempts(1))(once.fire)(context.Background(), nil)
	if once.count() != 1 {
		t.Errorf("override: %d attempts, want 1", once.count())
	}
	// A nil Policy changes nothing: the defaults apply (5 attempts).
	var none *retry.Policy
	def := &attempts{fail: alwaysFail}
	_ = retry.New[int](none, retry.WithBackoff(retry.Backoff{Initial: time.Nanosecond}))(def.fire)(context.Background(), nil)
	if def.count() != 5 {
		t.Errorf("nil policy: %d attempts, want the default 5", def.count())
	}
}
