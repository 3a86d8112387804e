package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

// A per-item limit: 1000 items per second, with a burst of one full batch so
// that an idle limiter lets a batch through at once.
func ExampleLimiter() {
	const maxBatchSize = 100
	lim := ratelimit.NewLimiter(1000, maxBatchSize)

	items := make([]string, maxBatchSize)
	waited, err := ratelimit.Wait(context.Background(), lim, len(items))
	fmt.Println(waited, err)
	// Output: 0s <nil>
}

// SetLimit(0) pauses the callers, SetLimit(rate.Inf) lifts the limit and
// releases them.
func ExampleLimiter_SetLimit() {
	lim := ratelimit.NewLimiter(0, 1) // one token, never refilled
	ctx := context.Background()
	fmt.Println("first:", lim.WaitN(ctx, 1))

	released := make(chan error)
	go func() { released <- lim.WaitN(ctx, 1) }() // paused
	lim.SetLimit(rate.Inf)
	fmt.Println("second:", <-released)
	// Output:
	// first: <nil>
	// second: <nil>
}

// The rate of an Adaptive limiter halves on each overload, down to Min, and
// climbs back by Increase on each success, up to Max.
func ExampleAdaptive() {
	a, err := ratelimit.NewAdaptive(ratelimit.AdaptiveConfig{
		Min:      10,  // batches per second
		Max:      100, // batches per second
		Increase: 30,
		// Decrease: 0.5 by default
		// CoolDown: with several batches in flight, about one attempt's latency
		IsOverload: func(err error) bool { return errors.Is(err, ratelimit.ErrOverloaded) },
	})
	if err != nil {
		panic(err)
	}
	outcomes := []error{
		fmt.Errorf("HTTP 429: %w", ratelimit.ErrOverloaded),
		fmt.Errorf("HTTP 503: %w", ratelimit.ErrOverloaded),
		errors.New("HTTP 400"), // not overload: no change
		fmt.Errorf("HTTP 503: %w", ratelimit.ErrOverloaded),
		fmt.Errorf("HTTP 503: %w", ratelimit.ErrOverloaded),
		nil, nil, nil, nil,
	}
	for _, err := range outcomes {
		a.Observe(ratelimit.Outcome{N: 1, Err: err})
		fmt.Printf("%-16v -> %v/s\n", err, a.Limit())
	}
	// Output:
	// HTTP 429: ratelimit: downstream overloaded -> 50/s
	// HTTP 503: ratelimit: downstream overloaded -> 25/s
	// HTTP 400         -> 25/s
	// HTTP 503: ratelimit: downstream overloaded -> 12.5/s
	// HTTP 503: ratelimit: downstream overloaded -> 10/s
	// <nil>            -> 40/s
	// <nil>            -> 70/s
	// <nil>            -> 100/s
	// <nil>            -> 100/s
}

// How a middleware uses a Waiter: wait for tokens before the attempt, then
// report its outcome if the Waiter is an Observer.
func ExampleWait() {
	limited := func(w ratelimit.Waiter, perItem bool, fire func(ctx context.Context, items []string) error) func(context.Context, []string) error {
		return func(ctx context.Context, items []string) error {
			n := 1
			if perItem {
				n = len(items)
			}
			waited, err := ratelimit.Wait(ctx, w, n)
			if err != nil {
				return err // ctx ended while waiting: the batch never started
			}
			_ = waited // record in the muster.ratelimit.wait.duration histogram
			err = fire(ctx, items)
			if o, ok := w.(ratelimit.Observer); ok {
				o.Observe(ratelimit.Outcome{N: n, Err: err})
			}
			return err
		}
	}

	a, _ := ratelimit.NewAdaptive(ratelimit.AdaptiveConfig{Max: 1000, Burst: 100})
	fire := limited(a, true, func(ctx context.Context, items []string) error {
		return fmt.Errorf("bulk insert of %d items: %w", len(items), ratelimit.ErrOverloaded)
	})
	fmt.Println(fire(context.Background(), []string{"a", "b", "c"}))
	fmt.Println("rate now", a.Limit())
	// Output:
	// bulk insert of 3 items: ratelimit: downstream overloaded
	// rate now 500
}

// A Waiter backed by a quota that several replicas share. The store here is a
// map; a real one would be, say, a Redis script taking n tokens atomically.
func ExampleWaiterFunc() {
	store := &quotaStore{tokens: map[string]int{"orders-api": 250}}
	shared := ratelimit.WaiterFunc(func(ctx context.Context, n int) error {
		// A real implementation retries after the delay the store returns
		// (see the package documentation); this one refuses.
		return store.take(ctx, "orders-api", n)
	})

	ctx := context.Background()
	for _, batch := range []int{100, 100, 100} {
		fmt.Println(batch, shared.WaitN(ctx, batch))
	}
	// Output:
	// 100 <nil>
	// 100 <nil>
	// 100 quota exhausted
}

type quotaStore struct {
	mu     sync.Mutex
	tokens map[string]int
}

func (s *quotaStore) take(_ context.Context, key string, n int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tokens[key] < n {
		return errors.New("quota exhausted")
	}
	s.tokens[key] -= n
	return nil
}
