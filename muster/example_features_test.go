package muster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/musterhq/muster/muster"
)

// A producer that must know its item was written waits on its Result. A bulk
// API that rejects some items of a batch returns *ItemErrors: only those
// items see an error.
func ExampleBatcher_AddResult() {
	errRejected := errors.New("rejected")
	b := &muster.Batcher[string]{
		MaxBatchSize: 3,
		Fire: func(ctx context.Context, rows []string) error {
			errs := make([]error, len(rows))
			failed := false
			for i, r := range rows {
				if strings.HasPrefix(r, "bad") {
					errs[i], failed = errRejected, true
				}
			}
			if failed {
				return &muster.ItemErrors{Errs: errs}
			}
			return nil
		},
	}
	_ = b.Start()
	ctx := context.Background()
	var results []muster.Result
	for _, row := range []string{"ok-1", "bad-2", "ok-3"} {
		r, err := b.AddResult(ctx, row)
		if err != nil {
			fmt.Println(err)
			return
		}
		results = append(results, r)
	}
	for i, r := range results {
		fmt.Println(i, r.Wait(ctx))
	}
	_ = b.Stop()
	// Output:
	// 0 <nil>
	// 1 rejected
	// 2 <nil>
}

// Under OverflowFail a producer learns at once that the pending capacity is
// used up, instead of blocking.
func ExampleOverflow() {
	release := make(chan struct{})
	b := &muster.Batcher[int]{
		MaxBatchSize:         1,
		MaxConcurrentBatches: 1,
		PendingWorkCapacity:  1,
		Overflow:             muster.OverflowFail,
		Fire: func(ctx context.Context, items []int) error {
			<-release // a slow downstream
			return nil
		},
	}
	_ = b.Start()
	ctx := context.Background()
	for i := range 4 { // 0 in flight, 1 waits for the slot, 2 queued behind it
		err := b.Add(ctx, i)
		fmt.Println(i, err, errors.Is(err, muster.ErrFull))
	}
	close(release)
	_ = b.Stop()
	fmt.Printf("%+v\n", b.Stats().Refused)
	// Output:
	// 0 <nil> false
	// 1 <nil> false
	// 2 <nil> false
	// 3 muster: pending work capacity full true
	// 1
}

// MaxBatchBytes fires a batch before the next item would pass the limit, or
// when it reaches it; an item larger than the limit on its own is refused.
func ExampleBatcher_maxBatchBytes() {
	b := &muster.Batcher[string]{
		MaxBatchBytes:        8,
		Sizer:                func(s string) int { return len(s) },
		MaxConcurrentBatches: 1, // one at a time: ordered output
		Hooks: &muster.Hooks{Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			fmt.Print(info.Trigger, ": ")
			return nil
		}},
		Fire: func(ctx context.Context, items []string) error {
			fmt.Println(items)
			return nil
		},
	}
	_ = b.Start()
	for _, s := range []string{"abc", "def", "ghij", "kl", "mn", "o"} {
		_ = b.Add(context.Background(), s)
	}
	err := b.Add(context.Background(), "far too long for one batch")
	_ = b.Stop()
	fmt.Println(err)
	// Output:
	// bytes: [abc def]
	// bytes: [ghij kl mn]
	// shutdown: [o]
	// muster: item larger than MaxBatchBytes
}

// A producer bounds its wait for the outcome. When the wait ends first, the
// error matches ErrWaitCanceled (and the context's error), never a batch
// failure: the item is still in its batch and may yet be written, so a
// request handler answers "accepted, not yet confirmed" rather than
// "failed".
func ExampleResult_Wait() {
	b := &muster.Batcher[string]{
		MaxBatchSize: 2, // one item never fills a batch: it waits for Flush
		Fire: func(ctx context.Context, rows []string) error {
			fmt.Println("written:", rows)
			return nil
		},
	}
	_ = b.Start()
	ctx := context.Background()
	r, err := b.AddResult(ctx, "order-1")
	if err != nil {
		fmt.Println(err)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	err = r.Wait(wctx)
	switch {
	case errors.Is(err, muster.ErrWaitCanceled):
		fmt.Println("not confirmed yet:", errors.Is(err, context.DeadlineExceeded))
	case err != nil:
		fmt.Println("failed:", err)
	}
	_ = b.Flush(ctx)
	fmt.Println("outcome:", r.Wait(ctx))
	_ = b.Stop()
	// Output:
	// not confirmed yet: true
	// written: [order-1]
	// outcome: <nil>
}
