package middleware_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

// The recommended order: retry outside, throttle inside, so that the retry
// of a failed attempt waits for tokens too. Hooks see every wait and retry.
func Example() {
	// A limiter that says when it is asked for tokens (a real one would be
	// ratelimit.NewLimiter(rows per second, MaxBatchSize)).
	limiter := ratelimit.WaiterFunc(func(ctx context.Context, n int) error {
		fmt.Printf("wait for %d tokens\n", n)
		return nil
	})
	attempt := 0
	insert := func(ctx context.Context, rows []string) error {
		attempt++
		if attempt == 1 {
			fmt.Println("insert", rows, "-> overloaded")
			return errors.New("overloaded")
		}
		fmt.Println("insert", rows, "-> ok")
		return nil
	}
	b := &muster.Batcher[string]{
		MaxBatchSize: 3,
		Hooks: &muster.Hooks{
			Retried: func(ctx context.Context, info muster.RetryInfo) {
				fmt.Printf("attempt %d failed (%v), retry in %v\n", info.Attempt, info.Err, info.Backoff)
			},
			Done: func(ctx context.Context, info muster.DoneInfo) {
				fmt.Printf("batch %d done: err=%v\n", info.BatchID, info.Err)
			},
		},
		Fire: muster.Chain(
			retry.New[string](retry.WithBackoff(retry.Backoff{Initial: time.Millisecond, Jitter: retry.NoJitter})),
			throttle.New[string](limiter, throttle.WithPerItem()),
		)(insert),
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	for _, row := range []string{"a", "b", "c"} {
		_ = b.Add(context.Background(), row)
	}
	_ = b.Stop()
	// Output:
	// wait for 3 tokens
	// insert [a b c] -> overloaded
	// attempt 1 failed (overloaded), retry in 1ms
	// wait for 3 tokens
	// insert [a b c] -> ok
	// batch 1 done: err=<nil>
}
