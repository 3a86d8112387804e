package ratelimit_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

func TestWaitNilWaiter(t *testing.T) {
	waited, err := ratelimit.Wait(t.Context(), nil, 100)
	if waited != 0 || err != nil {
		t.Errorf("Wait(nil) = %v, %v, want 0, nil", waited, err)
	}
}

// For any other Waiter, Wait measures the time around WaitN and passes its
// error through.
func TestWaitOtherWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errQuota := errors.New("quota store unavailable")
		var got []int
		w := ratelimit.WaiterFunc(func(ctx context.Context, n int) error {
			got = append(got, n)
			time.Sleep(300 * time.Millisecond)
			if n > 10 {
				return errQuota
			}
			return nil
		})
		waited, err := ratelimit.Wait(t.Context(), w, 5)
		if waited != 300*time.Millisecond || err != nil {
			t.Errorf("Wait = %v, %v, want 300ms, nil", waited, err)
		}
		if _, err := ratelimit.Wait(t.Context(), w, 50); !errors.Is(err, errQuota) {
			t.Errorf("err = %v, want %v", err, errQuota)
		}
		equal(t, "WaiterFunc got", slices.Equal(got, []int{5, 50}), true)

		// *rate.Limiter is a Waiter as it is.
		rl := rate.NewLimiter(10, 1)
		wait(t, rl, 1)
		equal(t, "rate.Limiter waited", wait(t, rl, 1), 100*time.Millisecond)
	})
}

// Property: under concurrent callers asking for 1..2×burst tokens, some of
// them giving up at random, no interval sees more grants than the token bucket
// allows (burst + rate × length), every caller that did not give up is served,
// and the limiter ends with an empty queue and its own burst.
func TestLimiterConcurrentEnvelope(t *testing.T) {
	const (
		limit   = 50.0
		burst   = 10
		callers = 6
		calls   = 60
	)
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(limit, burst)
		start := time.Now()
		type grant struct {
			at time.Duration
			n  int
		}
		var (
			mu       sync.Mutex
			grants   []grant
			canceled int
			wg       sync.WaitGroup
		)
		for c := range callers {
			rnd := rand.New(rand.NewPCG(1, uint64(c)))
			wg.Go(func() {
				for range calls {
					n := 1 + rnd.IntN(2*burst)
					ctx, cancel := context.WithCancel(t.Context())
					if rnd.IntN(4) == 0 {
						ctx, cancel = context.WithTimeout(t.Context(), time.Duration(rnd.IntN(200))*time.Millisecond)
					}
					err := lim.WaitN(ctx, n)
					cancel()
					mu.Lock()
					if err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Errorf("WaitN: %v", err)
						}
						canceled++
					} else {
						grants = append(grants, grant{time.Since(start), n})
					}
					mu.Unlock()
					time.Sleep(time.Duration(rnd.IntN(50)) * time.Millisecond)
				}
			})
		}
		wg.Wait()
		equal(t, "served + gave up", len(grants)+canceled, callers*calls)
		if canceled == 0 || canceled == callers*calls {
			t.Errorf("%d of %d calls gave up: the test does not exercise both paths", canceled, callers*calls)
		}
		// Grants in (grants[i].at, grants[j].at] and [0, grants[j].at].
		slices.SortStableFunc(grants, func(a, b grant) int { return int(a.at - b.at) })
		const eps = 1e-6
		for j := range grants {
			sum := 0
			for i := j; i >= 0; i-- {
				sum += grants[i].n
				if i == 0 || grants[i-1].at < grants[i].at {
					var from time.Duration
					extra := burst
					if i > 0 {
						from = grants[i-1].at
					}
					if allowed := float64(extra) + limit*(grants[j].at-from).Seconds(); float64(sum) > allowed+eps {
						t.Fatalf("%d tokens granted in (%v, %v], the bucket allows %.3f", sum, from, grants[j].at, allowed)
					}
				}
			}
		}
		equal(t, "queue length", ratelimit.QueueLen(lim), 0)
		equal(t, "underlying burst", ratelimit.LimBurst(lim), burst)
	})
}

// Callers, cancellations and configuration changes racing (run with -race).
func TestLimiterConcurrentSafe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		lim := ratelimit.NewLimiter(100, 5)
		stop := make(chan struct{})
		var changes sync.WaitGroup
		changes.Go(func() {
			rnd := rand.New(rand.NewPCG(2, 2))
			limits := []rate.Limit{0, 1, 50, 100, 1000, rate.Inf}
			for {
				select {
				case <-stop:
					lim.SetLimit(100)
					lim.SetBurst(5)
					return
				case <-time.After(time.Duration(1+rnd.IntN(20)) * time.Millisecond):
				}
				if rnd.IntN(2) == 0 {
					lim.SetLimit(limits[rnd.IntN(len(limits))])
				} else {
					lim.SetBurst(rnd.IntN(12))
				}
			}
		})
		var callers sync.WaitGroup
		for c := range 8 {
			callers.Go(func() {
				rnd := rand.New(rand.NewPCG(3, uint64(c)))
				for range 100 {
					ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rnd.IntN(100))*time.Millisecond)
					_, err := ratelimit.Wait(ctx, lim, rnd.IntN(15))
					cancel()
					if err != nil && !errors.Is(err, context.DeadlineExceeded) {
						t.Errorf("Wait: %v", err)
					}
				}
			})
		}
		callers.Wait()
		close(stop)
		changes.Wait()
		equal(t, "queue length", ratelimit.QueueLen(lim), 0)
		equal(t, "underlying burst", ratelimit.LimBurst(lim), 5)
	})
}

// Real time, no bubble: the lock-free unlimited path racing with SetLimit.
// Asserts nothing about timing.
func TestLimiterConcurrentSafeRealTime(t *testing.T) {
	lim := ratelimit.NewLimiter(rate.Inf, 1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := range 1000 {
			if i%2 == 0 {
				lim.SetLimit(1e6)
			} else {
				lim.SetLimit(rate.Inf)
			}
		}
		lim.SetLimit(rate.Inf)
	})
	for range 4 {
		wg.Go(func() {
			for range 2000 {
				if err := lim.WaitN(ctx, 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
