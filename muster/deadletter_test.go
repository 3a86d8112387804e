package muster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// letters records DeadLetter calls as "items: error" lines, with the
// context value "who" each call saw.
type letters struct {
	mu   sync.Mutex
	got  []string
	errs []error
	who  []any
}

func (l *letters) deadLetter(ctx context.Context, items []int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, fmt.Sprint(items, ": ", err))
	l.errs = append(l.errs, err)
	l.who = append(l.who, ctx.Value("who"))
}

func (l *letters) snapshot() ([]string, []error, []any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.got), slices.Clone(l.errs), slices.Clone(l.who)
}

var errDown = errors.New("downstream down")

// A failed batch's items reach DeadLetter once, with the final error (after
// a middleware's second attempt), on the batch's context, before its Result
// is done and its Done hook runs; a delivered batch's never do.
func TestDeadLetterFailedBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l letters
		var order eventLog
		note := order.note
		attempts := 0
		twice := func(next muster.FireFunc[int]) muster.FireFunc[int] {
			return func(ctx context.Context, items []int) error {
				if err := next(ctx, items); err == nil {
					return nil
				}
				return next(ctx, items)
			}
		}
		b := &muster.Batcher[int]{MaxBatchSize: 2,
			BaseContext: func() context.Context { return context.WithValue(context.Background(), "who", "batch") },
			Fire: twice(func(ctx context.Context, items []int) error {
				attempts++
				if items[0] == 0 {
					return fmt.Errorf("attempt %d: %w", attempts, errDown)
				}
				return nil
			}),
			DeadLetter: func(ctx context.Context, items []int, err error) {
				note("dead-letter")
				l.deadLetter(ctx, items, err)
			},
			Hooks: &muster.Hooks{Done: func(context.Context, muster.DoneInfo) { note("done") }},
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		r0, _ := b.AddResult(context.Background(), 0)
		_, _ = b.AddResult(context.Background(), 1)
		synctest.Wait()
		// The Result is done only after DeadLetter returned.
		if got := order.get(); !slices.Equal(got, []string{"dead-letter", "done"}) {
			t.Fatalf("order %v", got)
		}
		if err := r0.Err(); !errors.Is(err, errDown) {
			t.Fatalf("result %v", err)
		}
		_ = b.Add(context.Background(), 2)
		_ = b.Add(context.Background(), 3) // delivered: no dead letter
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		got, errs, who := l.snapshot()
		if !slices.Equal(got, []string{"[0 1]: attempt 2: downstream down"}) || !errors.Is(errs[0], errDown) {
			t.Fatalf("dead letters %q", got)
		}
		if who[0] != "batch" {
			t.Fatalf("DeadLetter's context is not the batch's: %v", who[0])
		}
	})
}

// For an *ItemErrors, only the failed items reach DeadLetter, with an
// *ItemErrors aligned with them; for a Keyed too.
func TestDeadLetterItemErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l letters
		errOdd := errors.New("odd")
		k := &muster.Keyed[int, int]{MaxBatchSize: 4, Key: func(i int) int { return i / 100 },
			Fire: func(ctx context.Context, items []int) error {
				errs := make([]error, len(items))
				for i, it := range items {
					if it%2 == 1 {
						errs[i] = fmt.Errorf("%d: %w", it, errOdd)
					}
				}
				return &muster.ItemErrors{Errs: errs}
			},
			DeadLetter: l.deadLetter,
		}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{0, 1, 2, 3, 100, 102, 104, 106} {
			_ = k.Add(context.Background(), i)
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		got, errs, _ := l.snapshot()
		// The key-1 batch failed nothing: no call.
		if !slices.Equal(got, []string{"[1 3]: muster: 2 of 2 items failed: 1: odd"}) {
			t.Fatalf("dead letters %q", got)
		}
		ie, ok := errors.AsType[*muster.ItemErrors](errs[0])
		if !ok || len(ie.Errs) != 2 || ie.Errs[1].Error() != "3: odd" {
			t.Fatalf("error %#v", errs[0])
		}
	})
}

// Items dropped by an Overflow policy reach DeadLetter with ErrDropped, on
// the goroutine and with the context of the Add that dropped them (the
// oldest: with the context the Added hook kept for it).
func TestDeadLetterDropped(t *testing.T) {
	for _, tc := range []struct {
		policy muster.Overflow
		want   string
		who    any
	}{
		{muster.OverflowDropNewest, "[6]: " + muster.ErrDropped.Error(), "add 6"},
		{muster.OverflowDropOldest, "[4]: " + muster.ErrDropped.Error(), "add 4"},
	} {
		t.Run(fmt.Sprint("policy", tc.policy), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var l letters
				hooks := &muster.Hooks{Added: func(ctx context.Context, _ muster.AddInfo) context.Context { return ctx }}
				release := make(chan struct{})
				var onAdd6 bool
				var adding6 bool
				b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 2, Overflow: tc.policy,
					Hooks: hooks,
					Fire:  func(context.Context, []int) error { <-release; return nil },
					DeadLetter: func(ctx context.Context, items []int, err error) {
						onAdd6 = adding6 // called from within Add(6): same goroutine
						l.deadLetter(ctx, items, err)
					},
				}
				if err := b.Start(); err != nil {
					t.Fatal(err)
				}
				for i := range 6 { // [0 1] in flight, [2 3] waiting, [4 5] queued
					_ = b.Add(context.WithValue(context.Background(), "who", fmt.Sprint("add ", i)), i)
				}
				adding6 = true
				if err := b.Add(context.WithValue(context.Background(), "who", "add 6"), 6); err != nil {
					t.Fatal(err)
				}
				adding6 = false
				got, errs, who := l.snapshot()
				if !slices.Equal(got, []string{tc.want}) || !errors.Is(errs[0], muster.ErrDropped) || who[0] != tc.who || !onAdd6 {
					t.Fatalf("dead letters %q (%v), context %v, in Add: %v", got, errs, who, onAdd6)
				}
				close(release)
				_ = b.Stop()
			})
		})
	}
}

// The items of batches abandoned at a Shutdown deadline reach DeadLetter
// with ErrIncomplete before Shutdown returns; the in-flight batch's do not
// (its Fire is still running).
func TestDeadLetterAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l letters
		release := make(chan struct{})
		b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 4,
			Fire:       func(context.Context, []int) error { <-release; return nil },
			DeadLetter: l.deadLetter,
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 { // [0 1] in flight, [2 3] waiting, [4] open
			_ = b.Add(context.Background(), i)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := b.Shutdown(ctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Kept != 0 {
			t.Fatalf("Shutdown: %v", err)
		}
		got, errs, _ := l.snapshot()
		slices.Sort(got)
		if !slices.Equal(got, []string{"[2 3]: " + muster.ErrIncomplete.Error(), "[4]: " + muster.ErrIncomplete.Error()}) ||
			!errors.Is(errs[0], muster.ErrIncomplete) {
			t.Fatalf("dead letters %q", got)
		}
		close(release)
		_ = b.Stop()
		if got, _, _ := l.snapshot(); len(got) != 2 {
			t.Fatalf("the in-flight batch, delivered, was dead-lettered: %q", got)
		}
	})
}

// A panicking DeadLetter is recovered and ignored: the batch is done, its
// slot released, the next batch fires.
func TestDeadLetterPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		b := &muster.Batcher[int]{MaxBatchSize: 1, MaxConcurrentBatches: 1,
			Fire:       func(context.Context, []int) error { return errDown },
			DeadLetter: func(context.Context, []int, error) { calls++; panic("dead letter") },
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := b.Add(context.Background(), i); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if s := b.Stats(); calls != 3 || s.Done != 3 || s.Failed != 3 {
			t.Fatalf("%d calls, stats %+v", calls, s)
		}
	})
}

// ShutdownError mentions Kept only when a journal kept items.
func TestShutdownErrorKept(t *testing.T) {
	e := &muster.ShutdownError{Batches: 2, Items: 10, Cause: context.DeadlineExceeded}
	if got := e.Error(); got != "muster: shutdown incomplete: 2 batches (10 items) not done: context deadline exceeded" {
		t.Fatal(got)
	}
	e.Kept = 12
	if got := e.Error(); got != "muster: shutdown incomplete: 2 batches (10 items) not done, 12 items kept in the journal: context deadline exceeded" {
		t.Fatal(got)
	}
}
