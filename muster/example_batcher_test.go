package muster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/musterhq/muster/muster"
)

// A typed batcher needs no Batch type: a function over a slice does.
func ExampleBatcher() {
	b := &muster.Batcher[string]{
		MaxBatchSize:         3,
		MaxConcurrentBatches: 1, // one batch at a time: the output is ordered
		Fire: func(ctx context.Context, items []string) error {
			fmt.Println("insert", strings.Join(items, ","))
			return nil
		},
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, s := range []string{"a", "b", "c", "d"} {
		if err := b.Add(ctx, s); err != nil {
			fmt.Println(err)
		}
	}
	if err := b.Stop(); err != nil { // fires [d]
		fmt.Println(err)
	}
	err := b.Add(ctx, "e")
	fmt.Println(errors.Is(err, muster.ErrStopped))
	// Output:
	// insert a,b,c
	// insert d
	// true
}

// Middlewares run in the order they are declared, the first outermost.
func ExampleChain() {
	step := func(name string) muster.Middleware[int] {
		return func(next muster.FireFunc[int]) muster.FireFunc[int] {
			return func(ctx context.Context, items []int) error {
				fmt.Println(name, "pre")
				defer fmt.Println(name, "post")
				return next(ctx, items)
			}
		}
	}
	fire := muster.Chain(step("first"), step("second"), step("third"))(
		func(ctx context.Context, items []int) error {
			fmt.Println("fire", items)
			return nil
		})
	_ = fire(context.Background(), []int{1, 2})
	// Output:
	// first pre
	// second pre
	// third pre
	// fire [1 2]
	// third post
	// second post
	// first post
}

// Hooks observe batches; Fired can hand Fire a context of its own.
func ExampleHooks() {
	type key struct{}
	hooks := &muster.Hooks{
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			fmt.Printf("fire #%d: %d items (%s)\n", info.BatchID, info.Size, info.Trigger)
			return context.WithValue(ctx, key{}, "from the hook")
		},
		Done: func(ctx context.Context, info muster.DoneInfo) {
			fmt.Printf("done #%d: err=%v\n", info.BatchID, info.Err)
		},
	}
	b := &muster.Batcher[int]{
		MaxBatchSize: 2,
		Hooks:        hooks,
		Fire: func(ctx context.Context, items []int) error {
			fmt.Println("fire sees:", ctx.Value(key{}))
			if len(items) < 2 {
				return errors.New("short batch")
			}
			return nil
		},
	}
	_ = b.Start()
	for i := range 3 {
		_ = b.Add(context.Background(), i)
		if i == 1 {
			_ = b.Flush(context.Background()) // wait for batch #1, to keep the output ordered
		}
	}
	_ = b.Stop()
	// Output:
	// fire #1: 2 items (size)
	// fire sees: from the hook
	// done #1: err=<nil>
	// fire #2: 1 items (shutdown)
	// fire sees: from the hook
	// done #2: err=short batch
}
