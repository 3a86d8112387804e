package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

// A downstream that times out twice, then takes the batch. The Retried hook
// (where tracing and metrics listen) sees each failed attempt and its wait.
func ExampleNew() {
	errTimeout := errors.New("timeout")
	attempt := 0
	insert := func(ctx context.Context, rows []string) error {
		attempt++
		if attempt < 3 {
			fmt.Printf("attempt %d %v: %v\n", attempt, rows, errTimeout)
			return errTimeout
		}
		fmt.Printf("attempt %d %v: ok\n", attempt, rows)
		return nil
	}
	b := &muster.Batcher[string]{
		MaxBatchSize: 2,
		Hooks: &muster.Hooks{
			Retried: func(ctx context.Context, info muster.RetryInfo) {
				fmt.Printf("batch %d: retry in %v\n", info.BatchID, info.Backoff)
			},
			Done: func(ctx context.Context, info muster.DoneInfo) {
				fmt.Printf("batch %d: done, err=%v\n", info.BatchID, info.Err)
			},
		},
		Fire: retry.New[string](
			retry.WithMaxAttempts(4),
			retry.WithBackoff(retry.Backoff{Initial: time.Millisecond, Jitter: retry.NoJitter}),
		)(insert),
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	_ = b.Add(context.Background(), "a")
	_ = b.Add(context.Background(), "b")
	_ = b.Stop()
	// Output:
	// attempt 1 [a b]: timeout
	// batch 1: retry in 1ms
	// attempt 2 [a b]: timeout
	// batch 1: retry in 2ms
	// attempt 3 [a b]: ok
	// batch 1: done, err=<nil>
}

// When the attempts run out, the error says so and still matches the
// downstream's own error.
func ExampleError() {
	errDown := errors.New("connection refused")
	fire := retry.New[int](
		retry.WithMaxAttempts(3),
		retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}),
	)(func(ctx context.Context, items []int) error { return errDown })

	err := fire(context.Background(), []int{1, 2, 3})
	fmt.Println(err)
	fmt.Println(errors.Is(err, retry.ErrExhausted), errors.Is(err, errDown))
	var re *retry.Error
	if errors.As(err, &re) {
		fmt.Println("attempts:", re.Attempts)
	}
	// Output:
	// retry: attempts exhausted after 3 attempts: connection refused
	// true true
	// attempts: 3
}

// A failure that no retry can fix is marked Permanent and returned at once.
func ExamplePermanent() {
	errInvalid := errors.New("invalid row")
	calls := 0
	fire := retry.New[int]()(func(ctx context.Context, items []int) error {
		calls++
		return retry.Permanent(fmt.Errorf("row %d: %w", items[0], errInvalid))
	})
	err := fire(context.Background(), []int{7})
	fmt.Println(calls, err)
	fmt.Println(errors.Is(err, errInvalid), retry.IsPermanent(err))
	// Output:
	// 1 row 7: invalid row
	// true true
}

// Batchers writing to one downstream share one budget, so that together
// their retries add at most 10% to the load (plus 1 retry a second).
func ExampleNewBudget() {
	budget := retry.NewBudget(0.1, 1)
	orders := retry.New[string](retry.WithBudget(budget))
	payments := retry.New[int](retry.WithBudget(budget))
	_, _ = orders, payments
	fmt.Println("retries available:", budget.Balance())
	// Output:
	// retries available: 10
}

// A bulk insert that rejects some rows of a batch says which with a
// *muster.ItemErrors: only those rows are sent again, a row marked Permanent
// is not, and each row's Result tells its own outcome.
func ExampleNew_partial() {
	errBusy := errors.New("shard busy")
	errInvalid := errors.New("invalid row")
	attempt := 0
	insert := func(ctx context.Context, rows []string) error {
		attempt++
		errs := make([]error, len(rows))
		var rejected []string
		for i, row := range rows {
			switch {
			case row == "bad":
				errs[i] = retry.Permanent(errInvalid)
			case attempt == 1 && (row == "b" || row == "d"), attempt == 2 && row == "d":
				errs[i] = errBusy
			default:
				continue
			}
			rejected = append(rejected, row)
		}
		fmt.Printf("attempt %d %v: rejected %v\n", attempt, rows, rejected)
		if rejected == nil {
			return nil
		}
		return &muster.ItemErrors{Errs: errs} // aligned with rows
	}
	b := &muster.Batcher[string]{
		MaxBatchSize: 5,
		Hooks: &muster.Hooks{
			Retried: func(ctx context.Context, info muster.RetryInfo) {
				fmt.Printf("retry in %v: %v\n", info.Backoff, info.Err)
			},
		},
		Fire: retry.New[string](
			retry.WithBackoff(retry.Backoff{Initial: time.Millisecond, Jitter: retry.NoJitter}),
		)(insert),
	}
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	rows := []string{"a", "b", "bad", "c", "d"}
	results := make([]muster.Result, len(rows))
	for i, row := range rows {
		results[i], _ = b.AddResult(context.Background(), row)
	}
	_ = b.Stop()
	for i, r := range results {
		fmt.Printf("%s: %v\n", rows[i], r.Err())
	}
	// Output:
	// attempt 1 [a b bad c d]: rejected [b bad d]
	// retry in 1ms: muster: 3 of 5 items failed: shard busy
	// attempt 2 [b d]: rejected [d]
	// retry in 2ms: muster: 1 of 2 items failed: shard busy
	// attempt 3 [d]: rejected []
	// a: <nil>
	// b: <nil>
	// bad: invalid row
	// c: <nil>
	// d: <nil>
}

// Order is an example item type.
type Order struct{ ID int }

// orderRows is the seed-style Batch of a Client: rows for a bulk insert.
type orderRows struct{ rows []any }

func (b *orderRows) Add(item any) { b.rows = append(b.rows, item) }
func (b *orderRows) Fire(n muster.Notifier) {
	fmt.Println("client wrote", b.rows)
	muster.DoneWith(n, nil)
}

// A service with a Client (untyped, the seed's API) and a Batcher[Order]
// that call one downstream builds one Policy and gives it to New for each
// item type: one schedule and caps, and one Budget for both, so that
// together their retries add at most 10% to the load (plus 1 a second).
func ExampleNewPolicy() {
	policy := retry.NewPolicy(
		retry.WithMaxAttempts(4),
		retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}),
		retry.WithBudget(retry.NewBudget(0.1, 1)),
	)
	client := &muster.Client{
		MaxBatchSize: 2,
		BatchMaker:   func() muster.Batch { return &orderRows{} },
		Middleware:   retry.New[any](policy),
	}
	failed := false
	orders := &muster.Batcher[Order]{
		MaxBatchSize: 2,
		Fire: retry.New[Order](policy)(func(ctx context.Context, batch []Order) error {
			if !failed {
				failed = true
				return errors.New("timeout") // retried once, drawing on the shared budget
			}
			fmt.Println("batcher wrote", batch)
			return nil
		}),
	}
	_ = client.Start()
	_ = orders.Start()
	ctx := context.Background()
	fmt.Println("retries available:", policy.Budget().Balance())
	_ = client.Add(ctx, "row-1")
	_ = client.Add(ctx, "row-2")
	_ = client.Stop() // waits for the client's batch: the output's order
	_ = orders.Add(ctx, Order{ID: 1})
	_ = orders.Add(ctx, Order{ID: 2})
	_ = orders.Stop()
	fmt.Println("retries available:", policy.Budget().Balance())
	// Output:
	// retries available: 10
	// client wrote [row-1 row-2]
	// batcher wrote [{1} {2}]
	// retries available: 9
}
