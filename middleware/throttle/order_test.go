package throttle_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

// script records, in order, the waits for tokens, the attempts, the retries
// reported to hooks and what an adaptive limiter is told.
type script struct {
	mu      sync.Mutex
	seq     []string
	attempt int
	failN   int // attempts that fail
}

func (s *script) log(format string, args ...any) {
	s.mu.Lock()
	s.seq = append(s.seq, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func (s *script) WaitN(ctx context.Context, n int) error {
	s.log("wait %d", n)
	return nil
}

func (s *script) Observe(o ratelimit.Outcome) { s.log("observe err=%v", o.Err) }

func (s *script) fire(ctx context.Context, items []int) error {
	s.mu.Lock()
	s.attempt++
	a := s.attempt
	s.mu.Unlock()
	if a <= s.failN {
		s.log("attempt %d %v: fail", a, items)
		return errDown
	}
	s.log("attempt %d %v: ok", a, items)
	return nil
}

// run fires one batch of 3 items through a Batcher whose Fire is chain
// around s.fire, and returns the sequence of events.
func (s *script) run(t *testing.T, chain func(muster.FireFunc[int]) muster.FireFunc[int]) []string {
	b := &muster.Batcher[int]{
		MaxBatchSize: 3,
		Hooks: &muster.Hooks{
			Retried: func(ctx context.Context, info muster.RetryInfo) {
				s.log("retry after attempt %d in %v", info.Attempt, info.Backoff)
			},
			Waited: func(ctx context.Context, info muster.WaitInfo) { s.log("waited %v", info.Duration) },
			Done:   func(ctx context.Context, info muster.DoneInfo) { s.log("done err=%v", info.Err) },
		},
		Fire: chain(s.fire),
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = b.Add(context.Background(), i)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	return s.seq
}

var fastRetry = retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter})

// TestRecommendedOrder: retry outside, throttle inside. Every attempt pays
// for its tokens, and the adaptive limiter hears of every attempt.
func TestRecommendedOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{failN: 2}
		got := s.run(t, muster.Chain(retry.New[int](fastRetry), throttle.New[int](s, throttle.WithPerItem())))
		want := []string{
			"wait 3", "attempt 1 [0 1 2]: fail", "observe err=downstream overloaded",
			"retry after attempt 1 in 100ms",
			"wait 3", "attempt 2 [0 1 2]: fail", "observe err=downstream overloaded",
			"retry after attempt 2 in 200ms",
			"wait 3", "attempt 3 [0 1 2]: ok", "observe err=<nil>",
			"done err=<nil>",
		}
		if !slices.Equal(got, want) {
			t.Errorf("sequence\n%q\nwant\n%q", got, want)
		}
	})
}

// TestOtherOrder: throttle outside, retry inside. The batch waits once;
// retries go out without tokens, and the limiter hears only the outcome.
func TestOtherOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{failN: 2}
		got := s.run(t, muster.Chain(throttle.New[int](s, throttle.WithPerItem()), retry.New[int](fastRetry)))
		want := []string{
			"wait 3", "attempt 1 [0 1 2]: fail",
			"retry after attempt 1 in 100ms",
			"attempt 2 [0 1 2]: fail",
			"retry after attempt 2 in 200ms",
			"attempt 3 [0 1 2]: ok", "observe err=<nil>",
			"done err=<nil>",
		}
		if !slices.Equal(got, want) {
			t.Errorf("sequence\n%q\nwant\n%q", got, want)
		}
	})
}

// TestOrderTiming with a real limiter at 1 batch/s: in the recommended order
// the retry waits for a token (and so goes at 1 s, not at 100 ms).
func TestOrderTiming(t *testing.T) {
	for _, tc := range []struct {
		name  string
		chain func(w ratelimit.Waiter) muster.Middleware[int]
		want  []time.Duration
	}{
		{"retry-then-throttle", func(w ratelimit.Waiter) muster.Middleware[int] {
			return muster.Chain(retry.New[int](fastRetry), throttle.New[int](w))
		}, secs(0, 1)},
		{"throttle-then-retry", func(w ratelimit.Waiter) muster.Middleware[int] {
			return muster.Chain(throttle.New[int](w), retry.New[int](fastRetry))
		}, secs(0, 0.1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRecorder()
				calls := 0
				fire := tc.chain(ratelimit.NewLimiter(1, 1))(func(ctx context.Context, items []int) error {
					_ = r.fire(ctx, items)
					if calls++; calls == 1 {
						return errDown
					}
					return nil
				})
				if err := fire(context.Background(), []int{1}); err != nil {
					t.Fatal(err)
				}
				if got := r.times(); !slices.Equal(got, tc.want) {
					t.Errorf("attempts at %v, want %v", got, tc.want)
				}
			})
		})
	}
}

// TestRecommendedOrderShutdown: a retry waiting for tokens at a Shutdown
// deadline ends the batch with both packages' view of it.
func TestRecommendedOrderShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var doneErr error
		calls := 0
		b := &muster.Batcher[int]{
			MaxBatchSize: 1,
			Hooks:        &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) { doneErr = info.Err }},
			Fire: muster.Chain(retry.New[int](fastRetry), throttle.New[int](ratelimit.NewLimiter(0.01, 1)))(
				func(context.Context, []int) error { calls++; return errDown }),
		}
		_ = b.Start()
		_ = b.Add(context.Background(), 1) // attempt 1 fails, attempt 2 waits 100 s for a token
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, muster.ErrIncomplete) {
			t.Errorf("Shutdown: %v", err)
		}
		synctest.Wait()
		var re *retry.Error
		if calls != 1 || !errors.As(doneErr, &re) || re.Attempts != 2 ||
			!errors.Is(doneErr, throttle.ErrWaitAborted) || !errors.Is(doneErr, muster.ErrIncomplete) {
			t.Errorf("%d calls, batch done with %v; want 1 call, 2 attempts, ErrWaitAborted, ErrIncomplete", calls, doneErr)
		}
	})
}
