package retry_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
	"unsafe"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

// bulk is a downstream that takes or rejects items one by one: reject says
// what the n-th call (1-based) does with an item, nil to take it. A call
// that rejects some items returns a *muster.ItemErrors aligned with them.
type bulk struct {
	mu     sync.Mutex
	sent   [][]int // a copy of each call's items
	arrays []*int  // each call's backing array
	at     []time.Time
	reject func(n, item int) error
}

func (b *bulk) fire(ctx context.Context, items []int) error {
	b.mu.Lock()
	b.sent = append(b.sent, slices.Clone(items))
	b.arrays = append(b.arrays, unsafe.SliceData(items))
	b.at = append(b.at, time.Now())
	n := len(b.sent)
	b.mu.Unlock()
	var errs []error
	for j, it := range items {
		if err := b.reject(n, it); err != nil {
			if errs == nil {
				errs = make([]error, len(items))
			}
			errs[j] = err
		}
	}
	if errs == nil {
		return nil
	}
	return &muster.ItemErrors{Errs: errs}
}

func (b *bulk) calls() [][]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.sent)
}

func (b *bulk) gaps() []time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []time.Duration
	for i := 1; i < len(b.at); i++ {
		out = append(out, b.at[i].Sub(b.at[i-1]))
	}
	return out
}

// itemErr is an item's own error from the downstream.
func itemErr(item int) error { return fmt.Errorf("item %d: %w", item, errDown) }

// rejectAt rejects, at the n-th call, the items listed for it.
func rejectAt(byCall map[int][]int) func(n, item int) error {
	return func(n, item int) error {
		if slices.Contains(byCall[n], item) {
			return itemErr(item)
		}
		return nil
	}
}

func equalCalls(got, want [][]int) bool {
	return slices.EqualFunc(got, want, func(a, b []int) bool { return slices.Equal(a, b) })
}

// guard sits above retry, where the Batcher's array is: it checks that
// retry leaves the caller's items as they were.
func guard(t *testing.T, arrays *[]*int) muster.Middleware[int] {
	return func(next muster.FireFunc[int]) muster.FireFunc[int] {
		return func(ctx context.Context, items []int) error {
			before := slices.Clone(items)
			*arrays = append(*arrays, unsafe.SliceData(items))
			err := next(ctx, items)
			if !slices.Equal(items, before) {
				t.Errorf("retry changed the caller's items: %v, were %v", items, before)
			}
			return err
		}
	}
}

// addAll adds the items with AddResult and returns their Results.
func addAll(t *testing.T, b *muster.Batcher[int], items ...int) []muster.Result {
	t.Helper()
	var rs []muster.Result
	for _, it := range items {
		r, err := b.AddResult(context.Background(), it)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

func TestPartialRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := &bulk{reject: rejectAt(map[int][]int{1: {1, 3}, 2: {3}})}
		var (
			callerArrays []*int
			retried      []muster.RetryInfo
			doneErr      []error
		)
		b := &muster.Batcher[int]{
			Name:         "rows",
			MaxBatchSize: 5,
			Hooks: &muster.Hooks{
				Retried: func(ctx context.Context, info muster.RetryInfo) { retried = append(retried, info) },
				Done:    func(ctx context.Context, info muster.DoneInfo) { doneErr = append(doneErr, info.Err) },
			},
			Fire: muster.Chain(
				guard(t, &callerArrays),
				retry.New[int](retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter})),
			)(down.fire),
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		results := addAll(t, b, 0, 1, 2, 3, 4)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		want := [][]int{{0, 1, 2, 3, 4}, {1, 3}, {3}}
		if got := down.calls(); !equalCalls(got, want) {
			t.Fatalf("attempts saw %v, want %v", got, want)
		}
		for i, r := range results {
			if err := r.Wait(context.Background()); err != nil {
				t.Errorf("item %d: Result %v, want nil", i, err)
			}
		}
		if len(doneErr) != 1 || doneErr[0] != nil {
			t.Errorf("Done saw %v, want [<nil>]", doneErr)
		}
		if st := b.Stats(); st.Failed != 0 || st.Done != 1 {
			t.Errorf("stats %+v, want 1 batch done, none failed", st)
		}
		if g := down.gaps(); !slices.Equal(g, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}) {
			t.Errorf("waits %v, want [100ms 200ms]", g)
		}

		// The first attempt has the caller's items; the retries a slice of
		// the middleware's own, the same one for both.
		if len(callerArrays) != 1 || down.arrays[0] != callerArrays[0] {
			t.Errorf("the first attempt did not get the caller's items")
		}
		if down.arrays[1] == callerArrays[0] || down.arrays[2] == callerArrays[0] {
			t.Errorf("a partial attempt was given the caller's array")
		}
		if down.arrays[1] != down.arrays[2] {
			t.Errorf("the partial attempts got different arrays: one per batch expected")
		}

		// ReportRetry saw each failed attempt with its own *ItemErrors,
		// aligned with the items of that attempt.
		if len(retried) != 2 {
			t.Fatalf("Retried called %d times, want 2: %+v", len(retried), retried)
		}
		for i, wantLen := range []int{5, 2} {
			info := retried[i]
			var ie *muster.ItemErrors
			if !errors.As(info.Err, &ie) || len(ie.Errs) != wantLen {
				t.Errorf("retry %d: Err %v, want an *ItemErrors over %d items", i+1, info.Err, wantLen)
			}
			if info.Attempt != i+1 || info.Backoff != 100*time.Millisecond<<i || info.BatchID != 1 {
				t.Errorf("retry %d: %+v", i+1, info)
			}
		}
		if ie := retried[0].Err.(*muster.ItemErrors); len(ie.Unwrap()) != 2 || ie.Errs[1] == nil || ie.Errs[3] == nil {
			t.Errorf("retry 1: %v, want items 1 and 3 failed", ie.Errs)
		}
		if ie := retried[1].Err.(*muster.ItemErrors); ie.Errs[0] != nil || !errors.Is(ie.Errs[1], errDown) {
			t.Errorf("retry 2: %v, want [nil, item 3's error]", ie.Errs)
		}
	})
}

// TestPartialFromWholeAndBack: per-item errors may come after failures of
// the whole batch, and an attempt over some items may fail as a whole (any
// error that is not an *ItemErrors of its length); it then counts for each
// of its items.
func TestPartialFromWholeAndBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sent [][]int
		fire := retry.New[int](retry.WithMaxAttempts(retry.Unlimited), retry.WithBudget(nil))(
			func(ctx context.Context, items []int) error {
				sent = append(sent, slices.Clone(items))
				switch len(sent) {
				case 1:
					return errDown
				case 2:
					return &muster.ItemErrors{Errs: []error{nil, nil, errDown, nil, errDown}}
				case 3:
					return fmt.Errorf("bulk: %w", errDown)
				case 4:
					return &muster.ItemErrors{Errs: []error{errDown}} // wrong length: the whole attempt
				case 5:
					return &muster.ItemErrors{Errs: []error{errDown, nil}}
				}
				return nil
			})
		if err := fire(context.Background(), []int{0, 1, 2, 3, 4}); err != nil {
			t.Fatalf("err = %v, want nil", err)
		}
		want := [][]int{{0, 1, 2, 3, 4}, {0, 1, 2, 3, 4}, {2, 4}, {2, 4}, {2, 4}, {2}}
		if !equalCalls(sent, want) {
			t.Errorf("attempts saw %v, want %v", sent, want)
		}
	})
}

func TestPartialPermanentItem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errBad := errors.New("malformed row")
		errAuth := errors.New("row not allowed")
		down := &bulk{reject: func(n, item int) error {
			switch {
			case item == 2:
				return retry.Permanent(fmt.Errorf("row 2: %w", errBad))
			case item == 4 && n == 1:
				return errAuth // refused by WithRetryIf
			case item == 1 && n == 1:
				return itemErr(1)
			}
			return nil
		}}
		var doneErr error
		b := &muster.Batcher[int]{
			MaxBatchSize: 5,
			Hooks:        &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) { doneErr = info.Err }},
			Fire: retry.New[int](
				retry.WithRetryIf(func(err error) bool { return !errors.Is(err, errAuth) }),
			)(down.fire),
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		results := addAll(t, b, 0, 1, 2, 3, 4)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if want := [][]int{{0, 1, 2, 3, 4}, {1}}; !equalCalls(down.calls(), want) {
			t.Errorf("attempts saw %v, want %v", down.calls(), want)
		}
		for i, r := range results {
			err := r.Err()
			switch i {
			case 2:
				if !errors.Is(err, errBad) || !retry.IsPermanent(err) || errors.Is(err, retry.ErrExhausted) {
					t.Errorf("item 2: Result %v, want the permanent errBad unchanged", err)
				}
			case 4:
				if err != errAuth {
					t.Errorf("item 4: Result %v, want errAuth unchanged", err)
				}
			default:
				if err != nil {
					t.Errorf("item %d: Result %v, want nil", i, err)
				}
			}
		}
		var ie *muster.ItemErrors
		if !errors.As(doneErr, &ie) || len(ie.Errs) != 5 || len(ie.Unwrap()) != 2 {
			t.Errorf("Done saw %v, want an *ItemErrors with 2 of 5 failed", doneErr)
		}
	})
}

// TestPermanentItemErrors: an *ItemErrors marked Permanent as a whole
// resends none of its items.
func TestPermanentItemErrors(t *testing.T) {
	errs := []error{nil, errDown, nil}
	for _, wrap := range []func(error) error{
		retry.Permanent,
		func(err error) error { return fmt.Errorf("bulk: %w", retry.Permanent(err)) },
		func(err error) error { return retry.Permanent(fmt.Errorf("bulk: %w", err)) },
	} {
		calls := 0
		returned := wrap(&muster.ItemErrors{Errs: errs})
		err := retry.New[int]()(func(context.Context, []int) error { calls++; return returned })(context.Background(), []int{1, 2, 3})
		if calls != 1 || err != returned {
			t.Errorf("%v: %d attempts, err %v; want 1, returned unchanged", returned, calls, err)
		}
	}
	// At a later attempt: the items of that attempt keep their errors.
	synctest.Test(t, func(t *testing.T) {
		errBad := errors.New("bad")
		var sent [][]int
		fire := retry.New[int]()(func(ctx context.Context, items []int) error {
			sent = append(sent, slices.Clone(items))
			if len(sent) == 1 {
				return &muster.ItemErrors{Errs: []error{nil, errDown, nil, errDown}}
			}
			return retry.Permanent(&muster.ItemErrors{Errs: []error{errBad, nil}})
		})
		err := fire(context.Background(), []int{0, 1, 2, 3})
		var ie *muster.ItemErrors
		if !errors.As(err, &ie) || !slices.Equal(ie.Errs, []error{nil, errBad, nil, nil}) {
			t.Errorf("err = %v, want [nil errBad nil nil]", err)
		}
		if len(sent) != 2 {
			t.Errorf("attempts saw %v, want 2", sent)
		}
	})
}

// TestItemErrorsWrongLength: an *ItemErrors that is not aligned with the
// items is an error of the whole batch.
func TestItemErrorsWrongLength(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var sent [][]int
		ie := &muster.ItemErrors{Errs: []error{errDown, nil}}
		fire := retry.New[int](retry.WithMaxAttempts(3))(func(ctx context.Context, items []int) error {
			sent = append(sent, slices.Clone(items))
			return ie
		})
		err := fire(context.Background(), []int{0, 1, 2})
		var re *retry.Error
		if !errors.As(err, &re) || re.Reason != retry.ErrExhausted || re.Last != ie {
			t.Errorf("err = %#v, want *retry.Error exhausted with the *ItemErrors as Last", err)
		}
		if want := [][]int{{0, 1, 2}, {0, 1, 2}, {0, 1, 2}}; !equalCalls(sent, want) {
			t.Errorf("attempts saw %v, want %v", sent, want)
		}
	})
}

func TestPartialExhausted(t *testing.T) {
	t.Run("attempts", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			// Item 1 is taken at the second attempt, item 3 never.
			down := &bulk{reject: func(n, item int) error {
				if item == 3 || item == 1 && n == 1 {
					return itemErr(item)
				}
				return nil
			}}
			fire := retry.New[int](retry.WithMaxAttempts(3), retry.WithBudget(nil))(down.fire)
			err := fire(context.Background(), []int{0, 1, 2, 3, 4})
			if want := [][]int{{0, 1, 2, 3, 4}, {1, 3}, {3}}; !equalCalls(down.calls(), want) {
				t.Errorf("attempts saw %v, want %v", down.calls(), want)
			}
			var ie *muster.ItemErrors
			if !errors.As(err, &ie) || len(ie.Errs) != 5 {
				t.Fatalf("err = %v, want an *ItemErrors over 5 items", err)
			}
			for i, e := range ie.Errs {
				if i != 3 {
					if e != nil {
						t.Errorf("item %d: %v, want nil", i, e)
					}
					continue
				}
				var re *retry.Error
				if !errors.As(e, &re) || re.Reason != retry.ErrExhausted || re.Attempts != 3 {
					t.Errorf("item 3: %#v, want *retry.Error exhausted after 3 attempts", e)
					continue
				}
				if !errors.Is(e, retry.ErrExhausted) || !errors.Is(e, errDown) || re.Last.Error() != "item 3: downstream unavailable" {
					t.Errorf("item 3: %v, want ErrExhausted and its own error", e)
				}
				if want := "retry: attempts exhausted after 3 attempts: item 3: downstream unavailable"; e.Error() != want {
					t.Errorf("item 3: message %q, want %q", e, want)
				}
			}
			if !errors.Is(err, retry.ErrExhausted) {
				t.Errorf("the *ItemErrors %v does not match ErrExhausted", err)
			}
		})
	})
	t.Run("each item its own", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			down := &bulk{reject: rejectAt(map[int][]int{1: {1, 3}, 2: {1, 3}})}
			err := retry.New[int](retry.WithMaxAttempts(2))(down.fire)(context.Background(), []int{0, 1, 2, 3, 4})
			var ie *muster.ItemErrors
			if !errors.As(err, &ie) || len(ie.Errs) != 5 {
				t.Fatalf("err = %v, want an *ItemErrors over 5 items", err)
			}
			for _, i := range []int{1, 3} {
				var re *retry.Error
				if !errors.As(ie.Errs[i], &re) || re.Last.Error() != itemErr(i).Error() || re.Attempts != 2 {
					t.Errorf("item %d: %v, want its own error after 2 attempts", i, ie.Errs[i])
				}
			}
			if ie.Errs[1] == ie.Errs[3] {
				t.Error("items 1 and 3 share one *retry.Error")
			}
		})
	})
	t.Run("elapsed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			down := &bulk{reject: func(n, item int) error {
				if item == 2 {
					return itemErr(item)
				}
				return nil
			}}
			fire := retry.New[int](
				retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter}),
				retry.WithMaxAttempts(retry.Unlimited), retry.WithMaxElapsedTime(250*time.Millisecond),
			)(down.fire)
			start := time.Now()
			err := fire(context.Background(), []int{0, 1, 2})
			// Attempts at 0 and 100 ms; the next wait (200 ms) would end past
			// 250 ms.
			if took := time.Since(start); took != 100*time.Millisecond {
				t.Errorf("gave up after %v, want 100ms", took)
			}
			var ie *muster.ItemErrors
			var re *retry.Error
			if !errors.As(err, &ie) || len(ie.Errs) != 3 || ie.Errs[0] != nil || ie.Errs[1] != nil ||
				!errors.As(ie.Errs[2], &re) || re.Reason != retry.ErrElapsedLimit || re.Attempts != 2 || re.Elapsed != 100*time.Millisecond {
				t.Errorf("err = %v, want item 2 at the elapsed-time limit after 2 attempts in 100ms", err)
			}
		})
	})
}

// TestPartialBudget: a retry of some items draws one retry from the budget,
// whatever their number.
func TestPartialBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		budget := retry.NewBudget(0, 0.2) // a reserve of 2 retries
		down := &bulk{reject: func(n, item int) error {
			if item == 1 || item == 3 {
				return itemErr(item)
			}
			return nil
		}}
		fire := retry.New[int](retry.WithBudget(budget), retry.WithMaxAttempts(10),
			retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}))(down.fire)
		err := fire(context.Background(), []int{0, 1, 2, 3, 4})
		if want := [][]int{{0, 1, 2, 3, 4}, {1, 3}, {1, 3}}; !equalCalls(down.calls(), want) {
			t.Errorf("attempts saw %v, want %v", down.calls(), want)
		}
		var ie *muster.ItemErrors
		if !errors.As(err, &ie) || len(ie.Errs) != 5 {
			t.Fatalf("err = %v, want an *ItemErrors over 5 items", err)
		}
		for i, e := range ie.Errs {
			failing := i == 1 || i == 3
			var re *retry.Error
			if failing != (e != nil) || failing && (!errors.Is(e, retry.ErrBudgetExhausted) || !errors.Is(e, errDown) ||
				errors.Is(e, retry.ErrExhausted) || !errors.As(e, &re) || re.Attempts != 3) {
				t.Errorf("item %d: %v", i, e)
			}
		}
		if b := budget.Balance(); b != 0 {
			t.Errorf("balance %d, want 0", b)
		}
	})
}

// TestPartialRetryAfterHint: the wait before a partial retry is the largest
// hint among the errors of the items it resends; a permanent item's hint
// does not count.
func TestPartialRetryAfterHint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := &bulk{reject: func(n, item int) error {
			switch {
			case n == 1 && item == 1:
				return hinted{2 * time.Second}
			case n == 1 && item == 3:
				return fmt.Errorf("shard 3: %w", hinted{5 * time.Second})
			case item == 2:
				return retry.Permanent(hinted{time.Hour})
			case n <= 2 && item == 4:
				return errDown
			}
			return nil
		}}
		fire := retry.New[int](retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter}))(down.fire)
		err := fire(context.Background(), []int{0, 1, 2, 3, 4})
		if want := [][]int{{0, 1, 2, 3, 4}, {1, 3, 4}, {4}}; !equalCalls(down.calls(), want) {
			t.Errorf("attempts saw %v, want %v", down.calls(), want)
		}
		if g, want := down.gaps(), []time.Duration{5 * time.Second, 200 * time.Millisecond}; !slices.Equal(g, want) {
			t.Errorf("waits %v, want %v", g, want)
		}
		var ie *muster.ItemErrors
		if !errors.As(err, &ie) || len(ie.Unwrap()) != 1 || !retry.IsPermanent(ie.Errs[2]) {
			t.Errorf("err = %v, want item 2's permanent error only", err)
		}
	})
}

// TestPartialShutdownDuringBackoff: a Shutdown deadline during the wait
// before a partial retry fails the items still to send with
// muster.ErrIncomplete; the others have succeeded.
func TestPartialShutdownDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		down := &bulk{reject: func(n, item int) error {
			switch {
			case n == 1 && (item == 1 || item == 3):
				return itemErr(item)
			case n == 2 && item == 3:
				return hinted{time.Hour} // the server asks for an hour
			}
			return nil
		}}
		var (
			doneErr error
			doneAt  time.Time
		)
		b := &muster.Batcher[int]{
			MaxBatchSize: 5,
			Hooks: &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) {
				doneErr, doneAt = info.Err, time.Now()
			}},
			Fire: retry.New[int](
				retry.WithBackoff(retry.Backoff{Initial: 100 * time.Millisecond, Jitter: retry.NoJitter}),
				retry.WithMaxElapsedTime(0),
			)(down.fire),
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		results := addAll(t, b, 0, 1, 2, 3, 4)
		time.Sleep(time.Second) // attempts at 0 and 100 ms, then the hour
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := b.Shutdown(ctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 1 || se.Items != 5 {
			t.Errorf("Shutdown: %v, want 1 batch of 5 items not done", err)
		}
		synctest.Wait()
		if want := [][]int{{0, 1, 2, 3, 4}, {1, 3}}; !equalCalls(down.calls(), want) {
			t.Errorf("attempts saw %v, want %v", down.calls(), want)
		}
		for i, r := range results {
			select {
			case <-r.Done():
			default:
				t.Fatalf("item %d: Result not done", i)
			}
			err := r.Err()
			if i != 3 {
				if err != nil {
					t.Errorf("item %d: Result %v, want nil", i, err)
				}
				continue
			}
			var re *retry.Error
			var h hinted
			if !errors.Is(err, muster.ErrIncomplete) || !errors.As(err, &h) || !errors.As(err, &re) || re.Attempts != 2 {
				t.Errorf("item 3: Result %v, want ErrIncomplete and its own error after 2 attempts", err)
			}
		}
		var ie *muster.ItemErrors
		if !errors.As(doneErr, &ie) || len(ie.Unwrap()) != 1 {
			t.Errorf("Done saw %v, want an *ItemErrors with 1 failed", doneErr)
		}
		if at := doneAt.Sub(start); at != 2*time.Second {
			t.Errorf("batch done at %v, want at the deadline (2s)", at)
		}
		if et := otelmuster.ErrorType(ie.Errs[3]); et != otelmuster.ErrorTypeShutdownIncomplete {
			t.Errorf("error.type of item 3: %q", et)
		}
	})
}

// TestPartialAllocations: a partial retry allocates once per batch, not
// per attempt.
func TestPartialAllocations(t *testing.T) {
	items := []int{0, 1, 2, 3, 4, 5, 6, 7}
	allocs := func(attempts int) float64 {
		full := &muster.ItemErrors{Errs: []error{nil, errDown, nil, errDown, nil, errDown, nil, nil}}
		sub := &muster.ItemErrors{Errs: []error{nil, nil, errDown}} // of items 1, 3, 5
		last := &muster.ItemErrors{Errs: []error{errDown}}          // of item 5
		n := 0
		fire := retry.New[int](retry.WithBudget(nil), retry.WithMaxAttempts(retry.Unlimited), retry.WithRand(func() float64 { return 0 }))(
			func(ctx context.Context, got []int) error {
				n++
				switch {
				case n == 1:
					return full
				case n == 2:
					return sub
				case n < attempts:
					return last
				}
				return nil
			})
		return testing.AllocsPerRun(20, func() {
			n = 0
			if err := fire(context.Background(), items); err != nil {
				t.Fatal(err)
			}
		})
	}
	three, six := allocs(3), allocs(6)
	if three != six {
		t.Errorf("%v allocations with 3 attempts, %v with 6: want the same", three, six)
	}
	if three > 4 {
		t.Errorf("%v allocations per partially retried batch, want at most 4", three)
	}
}

// TestPartialEveryItemOnce runs a real Batcher over a downstream that
// rejects items at random (the same way for each item every run), some for
// good: every item is delivered at most once, and its Result says whether
// it was.
func TestPartialEveryItemOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const items, maxAttempts = 300, 4
		rejected := func(item, send int) bool { // about 40% of sends
			h := uint64(item)*0x9E3779B97F4A7C15 + uint64(send)*0xBF58476D1CE4E5B9
			h ^= h >> 31
			return h%10 < 4
		}
		var (
			mu        sync.Mutex
			sends     = map[int]int{}
			delivered = map[int]int{}
		)
		down := func(ctx context.Context, batch []int) error {
			mu.Lock()
			defer mu.Unlock()
			var errs []error
			for j, it := range batch {
				sends[it]++
				switch {
				case it%50 == 7:
					if errs == nil {
						errs = make([]error, len(batch))
					}
					errs[j] = retry.Permanent(itemErr(it))
				case rejected(it, sends[it]):
					if errs == nil {
						errs = make([]error, len(batch))
					}
					errs[j] = itemErr(it)
				default:
					delivered[it]++
				}
			}
			if errs == nil {
				return nil
			}
			return &muster.ItemErrors{Errs: errs}
		}
		b := &muster.Batcher[int]{
			MaxBatchSize:         10,
			BatchTimeout:         50 * time.Millisecond,
			MaxConcurrentBatches: 3,
			Fire:                 retry.New[int](retry.WithMaxAttempts(maxAttempts), retry.WithBudget(nil))(down),
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		results := make([]muster.Result, items)
		for i := range items {
			r, err := b.AddResult(context.Background(), i)
			if err != nil {
				t.Fatal(err)
			}
			results[i] = r
			if i%7 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		exhausted := 0
		for i, r := range results {
			err := r.Err()
			wantSends := 1
			if i%50 != 7 {
				for wantSends < maxAttempts && rejected(i, wantSends) {
					wantSends++
				}
			}
			switch {
			case delivered[i] > 1:
				t.Errorf("item %d delivered %d times", i, delivered[i])
			case sends[i] != wantSends:
				t.Errorf("item %d sent %d times, want %d", i, sends[i], wantSends)
			case (delivered[i] == 1) != (err == nil):
				t.Errorf("item %d: delivered %d times, Result %v", i, delivered[i], err)
			case i%50 == 7 && (!retry.IsPermanent(err) || errors.Is(err, retry.ErrExhausted)):
				t.Errorf("item %d: Result %v, want its permanent error", i, err)
			case err != nil && i%50 != 7:
				exhausted++
				if !errors.Is(err, retry.ErrExhausted) || err.(*retry.Error).Last.Error() != itemErr(i).Error() {
					t.Errorf("item %d: Result %v, want ErrExhausted and its own error", i, err)
				}
			}
		}
		if exhausted == 0 || len(delivered) < items/2 {
			t.Errorf("%d exhausted, %d delivered: the test does not exercise both", exhausted, len(delivered))
		}
	})
}

// typed names itself for error.type.
type typed struct{ kind string }

func (e typed) Error() string     { return "typed " + e.kind }
func (e typed) ErrorType() string { return e.kind }

func TestErrorType(t *testing.T) {
	errCause := errors.New("caller gave up")
	for _, tc := range []struct {
		err  *retry.Error
		want string
	}{
		{&retry.Error{Reason: retry.ErrExhausted, Last: errDown}, "retries_exhausted"},
		{&retry.Error{Reason: retry.ErrBudgetExhausted, Last: errDown}, "budget_exhausted"},
		{&retry.Error{Reason: errCause, Last: errDown}, "retries_interrupted"},
		{&retry.Error{Reason: retry.ErrExhausted}, "retries_exhausted"},
		{&retry.Error{Reason: retry.ErrExhausted, Last: fmt.Errorf("bulk: %w", typed{"unavailable"})}, "unavailable"},
		{&retry.Error{Reason: retry.ErrBudgetExhausted, Last: typed{""}}, "budget_exhausted"},
		{&retry.Error{Reason: retry.ErrExhausted, Last: &retry.Error{Reason: retry.ErrBudgetExhausted, Last: errDown}}, "budget_exhausted"},
	} {
		if got := tc.err.ErrorType(); got != tc.want {
			t.Errorf("%v: ErrorType %q, want %q", tc.err, got, tc.want)
		}
		if got := otelmuster.ErrorType(tc.err); got != tc.want {
			t.Errorf("%v: otelmuster.ErrorType %q, want %q", tc.err, got, tc.want)
		}
	}
	if retry.ErrorTypeExhausted != "retries_exhausted" || retry.ErrorTypeBudgetExhausted != "budget_exhausted" ||
		retry.ErrorTypeInterrupted != "retries_interrupted" {
		t.Error("the error.type values changed: dashboards match on them")
	}
}
