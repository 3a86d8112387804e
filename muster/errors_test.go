package muster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// A nil context is refused with ErrNilContext by every entry point that
// takes one, on every client kind, and the client is left as it was: the
// item is not taken, nothing stops.
func TestNilContext(t *testing.T) {
	var nilCtx context.Context
	fire := func(context.Context, []int) error { return nil }
	b := &muster.Batcher[int]{MaxBatchSize: 10, Fire: fire}
	k := &muster.Keyed[int, int]{MaxBatchSize: 10, Key: func(v int) int { return v }, Fire: fire}
	c := &muster.Client{MaxBatchSize: 10, BatchMaker: func() muster.Batch { return &listBatch{} }}
	for _, start := range []func() error{b.Start, k.Start, c.Start} {
		if err := start(); err != nil {
			t.Fatal(err)
		}
	}
	calls := map[string]error{
		"Batcher.Add":      b.Add(nilCtx, 1),
		"Batcher.Flush":    b.Flush(nilCtx),
		"Batcher.Shutdown": b.Shutdown(nilCtx),
		"Keyed.Add":        k.Add(nilCtx, 1),
		"Keyed.Flush":      k.Flush(nilCtx),
		"Keyed.Shutdown":   k.Shutdown(nilCtx),
		"Client.Add":       c.Add(nilCtx, 1),
		"Client.Flush":     c.Flush(nilCtx),
		"Client.Shutdown":  c.Shutdown(nilCtx),
	}
	_, calls["Batcher.AddResult"] = b.AddResult(nilCtx, 1)
	_, calls["Keyed.AddResult"] = k.AddResult(nilCtx, 1)
	_, calls["Client.AddResult"] = c.AddResult(nilCtx, 1)
	calls["Result.Wait"] = muster.Result{}.Wait(nilCtx)
	for name, err := range calls {
		if !errors.Is(err, muster.ErrNilContext) {
			t.Errorf("%s(nil): %v, want ErrNilContext", name, err)
		}
	}
	for name, s := range map[string]muster.Stats{"Batcher": b.Stats(), "Keyed": k.Stats(), "Client": c.Stats()} {
		if s.Added != 0 || s.Pending != 0 {
			t.Errorf("%s took an item with a nil context: %+v", name, s)
		}
	}
	// Still running: a real context works, and Stop stops.
	ctx := context.Background()
	if err := b.Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := k.Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Add(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, stop := range []func() error{b.Stop, k.Stop, c.Stop} {
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
}

// Result.Wait whose own context ends says so (ErrWaitCanceled, and the
// context's error), which no batch outcome matches; the item is still in its
// batch, and its outcome arrives later.
func TestResultWaitCanceled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errDown := errors.New("downstream failed")
		b := &muster.Batcher[int]{MaxBatchSize: 2, BatchTimeout: time.Second,
			Fire: func(ctx context.Context, items []int) error { return errDown }}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		r, err := b.AddResult(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		err = r.Wait(wctx)
		if !errors.Is(err, muster.ErrWaitCanceled) || !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errDown) {
			t.Fatalf("Wait past its deadline: %v", err)
		}
		if !strings.Contains(err.Error(), "still in its batch") {
			t.Errorf("message does not say the item is still in its batch: %q", err)
		}
		// The batch fires at its timeout and fails: that is the outcome.
		if err := r.Wait(ctx); !errors.Is(err, errDown) || errors.Is(err, muster.ErrWaitCanceled) {
			t.Fatalf("outcome: %v", err)
		}
		// Once done, a canceled context still gets the outcome.
		cctx, cancel2 := context.WithCancel(ctx)
		cancel2()
		if err := r.Wait(cctx); !errors.Is(err, errDown) {
			t.Fatalf("done Result, canceled ctx: %v", err)
		}
		_ = b.Stop()
	})
}

// An *ItemErrors whose length is not the batch's fails the whole batch with
// an error that says so, for every item (their Results and the Done hook),
// and still matches the errors it held.
func TestItemErrorsMisaligned(t *testing.T) {
	errRow := errors.New("row rejected")
	var doneErr error
	b := &muster.Batcher[int]{MaxBatchSize: 2,
		Hooks: &muster.Hooks{Done: func(ctx context.Context, info muster.DoneInfo) { doneErr = info.Err }},
		Fire: func(ctx context.Context, items []int) error {
			return &muster.ItemErrors{Errs: []error{errRow}} // one error for two items: a bug
		}}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r1, _ := b.AddResult(ctx, 1)
	r2, _ := b.AddResult(ctx, 2)
	_ = b.Stop()
	const want = "muster: all 2 items of the batch failed: Fire returned an *ItemErrors of 1 error, not one per item: muster: 1 of 1 item failed: row rejected"
	for i, err := range []error{r1.Err(), r2.Err(), doneErr} {
		if err == nil || err.Error() != want {
			t.Errorf("%d: %v\nwant %s", i, err, want)
		}
		if !errors.Is(err, errRow) {
			t.Errorf("%d: does not match the item error: %v", i, err)
		}
		if _, ok := errors.AsType[*muster.ItemErrors](err); ok {
			t.Errorf("%d: still an *ItemErrors, as if items had errors of their own", i)
		}
		if et, ok := err.(interface{ ErrorType() string }); !ok || et.ErrorType() != "item_errors_misaligned" {
			t.Errorf("%d: no error.type of its own", i)
		}
	}
}

// Counts in messages are singular when they are one.
func TestErrorMessagesPlural(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&muster.ShutdownError{Batches: 1, Items: 1, Cause: context.DeadlineExceeded},
			"muster: shutdown incomplete: 1 batch (1 item) not done: context deadline exceeded"},
		{&muster.ShutdownError{Batches: 2, Items: 10, Cause: context.DeadlineExceeded},
			"muster: shutdown incomplete: 2 batches (10 items) not done: context deadline exceeded"},
		{&muster.ItemErrors{Errs: []error{errors.New("x")}}, "muster: 1 of 1 item failed: x"},
		{&muster.ItemErrors{Errs: []error{nil, errors.New("x")}}, "muster: 1 of 2 items failed: x"},
	} {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}
