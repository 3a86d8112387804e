package throttle_test

import (
	"context"
	"fmt"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

// A downstream that takes 10 rows a second, in bulk inserts of up to 2 rows.
// The first batch finds its tokens ready; the others wait (200 ms: long
// enough that a busy machine's scheduling delay never refills them first,
// which made the output flaky at 50 rows a second), and the Waited
// hook (where tracing and metrics listen) hears of each wait (and of the
// producer's, held by backpressure meanwhile).
func ExampleNew() {
	rows := ratelimit.NewLimiter(10, 2) // 10 rows/s, bursts of one batch
	b := &muster.Batcher[string]{
		MaxBatchSize:         2,
		MaxConcurrentBatches: 1,
		Hooks: &muster.Hooks{Waited: func(ctx context.Context, info muster.WaitInfo) {
			if info.Reason != muster.WaitRateLimit {
				return // a producer held by backpressure, as the limit slows batches down
			}
			fmt.Printf("batch %d waited for %d %s tokens: %v\n", info.BatchID, info.Tokens, info.Reason, info.Duration > 0)
		}},
		Fire: throttle.New[string](rows, throttle.WithPerItem())(
			func(ctx context.Context, items []string) error {
				fmt.Println("insert", items)
				return nil
			}),
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range []string{"a", "b", "c", "d", "e", "f"} {
		_ = b.Add(context.Background(), s)
	}
	_ = b.Stop()
	// Output:
	// insert [a b]
	// batch 2 waited for 2 ratelimit tokens: true
	// insert [c d]
	// batch 3 waited for 2 ratelimit tokens: true
	// insert [e f]
}
