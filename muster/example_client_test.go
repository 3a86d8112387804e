package muster_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/musterhq/muster/muster"
)

// flakyBatch is a seed-style Batch whose downstream refuses the first
// attempts: its Fire reports the failure with DoneWith.
type flakyBatch struct {
	items    []string
	attempts *int // shared by the batches of one client
}

func (b *flakyBatch) Add(item any) { b.items = append(b.items, item.(string)) }

func (b *flakyBatch) Fire(n muster.Notifier) {
	if *b.attempts++; *b.attempts < 3 {
		muster.DoneWith(n, errors.New("downstream busy"))
		return
	}
	fmt.Println("delivered", b.items)
	n.Done()
}

// A Client's Middleware wraps each batch's fire with behaviour, here a
// small retry loop (middleware/retry is the real one). The first attempt
// fires the Batch that received the items; each retry fires a fresh Batch
// from BatchMaker, holding the same items. Results are done after the
// retries.
func ExampleClient_middleware() {
	retry := func(next muster.FireFunc[any]) muster.FireFunc[any] {
		return func(ctx context.Context, items []any) error {
			var err error
			for attempt := 1; attempt <= 5; attempt++ {
				if err = next(ctx, items); err == nil {
					return nil
				}
				fmt.Printf("attempt %d of %v: %v\n", attempt, items, err)
			}
			return err
		}
	}
	attempts, made := 0, 0
	c := &muster.Client{
		MaxBatchSize: 3,
		BatchMaker: func() muster.Batch {
			made++
			fmt.Println("BatchMaker: Batch", made)
			return &flakyBatch{attempts: &attempts}
		},
		Middleware: retry,
	}
	if err := c.Start(); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	var results []muster.Result
	for _, s := range []string{"a", "b", "c"} {
		r, err := c.AddResult(ctx, s)
		if err != nil {
			fmt.Println(err)
			return
		}
		results = append(results, r)
	}
	for _, r := range results {
		fmt.Println("result:", r.Wait(ctx))
	}
	_ = c.Stop()
	fmt.Printf("fired %d, failed %d\n", c.Stats().Fired, c.Stats().Failed)
	// Output:
	// BatchMaker: Batch 1
	// attempt 1 of [a b c]: downstream busy
	// BatchMaker: Batch 2
	// attempt 2 of [a b c]: downstream busy
	// BatchMaker: Batch 3
	// delivered [a b c]
	// result: <nil>
	// result: <nil>
	// result: <nil>
	// fired 1, failed 0
}
