package muster_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/musterhq/muster/muster"
)

func TestStartValidates(t *testing.T) {
	r := &recorder{}
	if err := (&muster.Client{BatchMaker: r.maker}).Start(); !isZeroBoth(err) {
		t.Fatalf("both zero: %v, want the no-trigger error", err)
	}
	if err := (&muster.Client{MaxBatchSize: 1}).Start(); !errors.Is(err, muster.ErrInvalidConfig) {
		t.Fatalf("nil BatchMaker: %v, want ErrInvalidConfig", err)
	}
	if err := (&muster.Batcher[int]{MaxBatchSize: 1}).Start(); !errors.Is(err, muster.ErrInvalidConfig) {
		t.Fatalf("nil Fire: %v, want ErrInvalidConfig", err)
	}
	if err := (&muster.Batcher[int]{Fire: func(context.Context, []int) error { return nil }}).Start(); !isZeroBoth(err) {
		t.Fatalf("Batcher both zero: %v, want the no-trigger error", err)
	}
	for _, capacity := range []uint{0, 7} {
		c := &muster.Client{MaxBatchSize: 2, PendingWorkCapacity: capacity, BatchMaker: r.maker}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		if cap(c.Work) != int(capacity) {
			t.Fatalf("cap(Work) = %d, want %d", cap(c.Work), capacity)
		}
		if err := c.Start(); !isAlreadyStarted(err) {
			t.Fatalf("second Start: %v", err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestNotStarted(t *testing.T) {
	var c muster.Client
	ctx := context.Background()
	for name, err := range map[string]error{
		"Add": c.Add(ctx, 1), "Flush": c.Flush(ctx), "Stop": c.Stop(), "Shutdown": c.Shutdown(ctx),
	} {
		if !errors.Is(err, muster.ErrNotStarted) {
			t.Errorf("%s before Start: %v, want ErrNotStarted", name, err)
		}
	}
	var b muster.Batcher[int]
	if err := b.Add(ctx, 1); !errors.Is(err, muster.ErrNotStarted) {
		t.Errorf("Batcher.Add before Start: %v", err)
	}
}

// Issue 9 (i): a negative BatchTimeout is a configuration error, not a
// timer that fires at once.
func TestNegativeBatchTimeout(t *testing.T) {
	fire := func(context.Context, []int) error { return nil }
	for name, start := range map[string]func() error{
		"Client":         (&muster.Client{MaxBatchSize: 1, BatchTimeout: -time.Second, BatchMaker: (&recorder{}).maker}).Start,
		"Client no size": (&muster.Client{BatchTimeout: -1, BatchMaker: (&recorder{}).maker}).Start,
		"Batcher":        (&muster.Batcher[int]{MaxBatchSize: 1, BatchTimeout: -time.Second, Fire: fire}).Start,
		"Batcher bytes":  (&muster.Batcher[int]{MaxBatchBytes: 1, Sizer: func(int) int { return 1 }, BatchTimeout: -1, Fire: fire}).Start,
		"Keyed":          (&muster.Keyed[int, int]{Key: func(v int) int { return v }, MaxBatchSize: 1, BatchTimeout: -time.Second, Fire: fire}).Start,
	} {
		if err := start(); !errors.Is(err, muster.ErrInvalidConfig) {
			t.Errorf("%s with a negative BatchTimeout: Start = %v, want ErrInvalidConfig", name, err)
		}
	}
}

// A second Start while producers Add returns the already-started error and leaves
// the running Batcher alone. (It once rewrote the Batcher's state before
// its already-started check: a data race with Add under -race.)
func TestBatcherSecondStartDuringAdd(t *testing.T) {
	b := &muster.Batcher[int]{MaxBatchSize: 10, Fire: func(context.Context, []int) error { return nil }}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	const n = 2000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			if err := b.Add(context.Background(), i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		if err := b.Start(); !isAlreadyStarted(err) {
			t.Fatalf("second Start: %v, want the already-started error", err)
		}
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if s := b.Stats(); s.Added != n || s.Done != n/10 {
		t.Fatalf("stats %+v", s)
	}
}
