package throttle_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

var errDown = errors.New("downstream overloaded")

// recorder is a downstream that records when it was called and with how
// many items.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	at    []time.Duration
	sizes []int
	err   error
}

func newRecorder() *recorder { return &recorder{start: time.Now()} }

func (r *recorder) fire(ctx context.Context, items []int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.at = append(r.at, time.Since(r.start))
	r.sizes = append(r.sizes, len(items))
	return r.err
}

func (r *recorder) times() []time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.at)
}

func secs(s ...float64) []time.Duration {
	out := make([]time.Duration, len(s))
	for i, v := range s {
		out[i] = time.Duration(v * float64(time.Second))
	}
	return out
}

func TestPerBatch(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    func() ratelimit.Waiter
	}{
		{"x/time/rate", func() ratelimit.Waiter { return rate.NewLimiter(2, 1) }},
		{"ratelimit", func() ratelimit.Waiter { return ratelimit.NewLimiter(2, 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRecorder()
				fire := throttle.New[int](tc.w())(r.fire)
				for range 5 {
					if err := fire(context.Background(), make([]int, 100)); err != nil {
						t.Fatal(err)
					}
				}
				if got, want := r.times(), secs(0, 0.5, 1, 1.5, 2); !slices.Equal(got, want) {
					t.Errorf("batches at %v, want %v (2 batches/s, whatever their size)", got, want)
				}
			})
		})
	}
}

// TestPerItemBatcher: 10 items/s, 3 batches of 10 through a real Batcher.
func TestPerItemBatcher(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    func() ratelimit.Waiter
		want []time.Duration
	}{
		// The bucket starts full (10): the first batch goes at once.
		{"x/time/rate burst 10", func() ratelimit.Waiter { return rate.NewLimiter(10, 10) }, secs(0, 1, 2)},
		{"ratelimit burst 10", func() ratelimit.Waiter { return ratelimit.NewLimiter(10, 10) }, secs(0, 1, 2)},
		// A burst below the batch size: served on credit, (10-5)/10 s for the first.
		{"ratelimit burst 5", func() ratelimit.Waiter { return ratelimit.NewLimiter(10, 5) }, secs(0.5, 1.5, 2.5)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRecorder()
				var waits []muster.WaitInfo
				b := &muster.Batcher[int]{
					Name:                 "rows",
					MaxBatchSize:         10,
					MaxConcurrentBatches: 1,
					PendingWorkCapacity:  100,
					Hooks: &muster.Hooks{Waited: func(ctx context.Context, info muster.WaitInfo) {
						waits = append(waits, info)
					}},
					Fire: throttle.New[int](tc.w(), throttle.WithPerItem())(r.fire),
				}
				if err := b.Start(); err != nil {
					t.Fatal(err)
				}
				for i := range 30 {
					if err := b.Add(context.Background(), i); err != nil {
						t.Fatal(err)
					}
				}
				if err := b.Stop(); err != nil {
					t.Fatal(err)
				}
				if got := r.times(); !slices.Equal(got, tc.want) {
					t.Errorf("batches at %v, want %v", got, tc.want)
				}
				if took := time.Since(r.start); took != tc.want[2] {
					t.Errorf("30 items took %v, want %v", took, tc.want[2])
				}
				// Every wait that took time is reported, with its tokens;
				// a batch that found its tokens ready is not.
				var want []muster.WaitInfo
				prev := time.Duration(0)
				for i, at := range tc.want {
					if d := at - prev; d > 0 {
						want = append(want, muster.WaitInfo{BatchID: uint64(i + 1), Reason: muster.WaitRateLimit, Tokens: 10, Duration: d})
					}
					prev = at
				}
				if !slices.Equal(waits, want) {
					t.Errorf("Waited saw\n%+v\nwant\n%+v", waits, want)
				}
			})
		})
	}
}

// TestBothLimits chains a per-batch and a per-item limit.
func TestBothLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		requests := ratelimit.NewLimiter(1, 1) // 1 batch/s
		rows := ratelimit.NewLimiter(20, 20)   // 20 items/s
		fire := muster.Chain(
			throttle.New[int](requests),
			throttle.New[int](rows, throttle.WithPerItem()),
		)(r.fire)
		for _, n := range []int{2, 2, 40, 2} {
			if err := fire(context.Background(), make([]int, n)); err != nil {
				t.Fatal(err)
			}
		}
		// Batch 1 at 0; 2 at 1 s (request limit); 3 needs 40 rows: the row
		// bucket is full again (20) at 2 s, the other 20 take 1 s more; 4
		// at 4 s: a request token is ready at 3 s, rows at 3 + 2/20.
		if got, want := r.times(), secs(0, 1, 3, 3.1); !slices.Equal(got, want) {
			t.Errorf("batches at %v, want %v", got, want)
		}
	})
}

// TestShutdownDuringWait: a batch waiting for tokens at a Shutdown deadline
// fails with ErrWaitAborted and muster.ErrIncomplete; its items never reach
// the downstream, and nothing is dropped silently.
func TestShutdownDuringWait(t *testing.T) {
	for _, tc := range []struct {
		name string
		w    func() ratelimit.Waiter
	}{
		{"x/time/rate", func() ratelimit.Waiter { return rate.NewLimiter(rate.Every(10*time.Second), 1) }},
		{"ratelimit", func() ratelimit.Waiter { return ratelimit.NewLimiter(rate.Every(10*time.Second), 1) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := newRecorder()
				var (
					mu    sync.Mutex
					done  = map[uint64]error{}
					waits []muster.WaitInfo
				)
				b := &muster.Batcher[int]{
					MaxBatchSize:         2,
					MaxConcurrentBatches: 1, // batch 1 first
					Hooks: &muster.Hooks{
						Waited: func(ctx context.Context, info muster.WaitInfo) {
							mu.Lock()
							waits = append(waits, info)
							mu.Unlock()
						},
						Done: func(ctx context.Context, info muster.DoneInfo) {
							mu.Lock()
							done[info.BatchID] = info.Err
							mu.Unlock()
						},
					},
					Fire: throttle.New[int](tc.w())(r.fire),
				}
				if err := b.Start(); err != nil {
					t.Fatal(err)
				}
				for i := range 4 { // batch 1 takes the token, batch 2 waits 10 s
					if err := b.Add(context.Background(), i); err != nil {
						t.Fatal(err)
					}
				}
				synctest.Wait()
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				err := b.Shutdown(ctx)
				var se *muster.ShutdownError
				if !errors.As(err, &se) || se.Batches != 1 || se.Items != 2 {
					t.Errorf("Shutdown: %v, want 1 batch of 2 items not done", err)
				}
				synctest.Wait()
				mu.Lock()
				defer mu.Unlock()
				if done[1] != nil {
					t.Errorf("batch 1: %v", done[1])
				}
				if e := done[2]; !errors.Is(e, throttle.ErrWaitAborted) || !errors.Is(e, muster.ErrIncomplete) {
					t.Errorf("batch 2 done with %v, want ErrWaitAborted and ErrIncomplete", e)
				}
				if got := r.times(); len(got) != 1 {
					t.Errorf("downstream called at %v, want once (batch 1)", got)
				}
				if len(waits) != 1 || waits[0].BatchID != 2 || waits[0].Tokens != 1 || waits[0].Duration != time.Second ||
					!errors.Is(waits[0].Err, throttle.ErrWaitAborted) {
					t.Errorf("Waited saw %+v, want batch 2's aborted wait of 1s", waits)
				}
				if st := b.Stats(); st.Done != 2 || st.Failed != 1 {
					t.Errorf("stats %+v: want 2 done, 1 failed", st)
				}
			})
		})
	}
}

// TestBackpressure: while a batch waits for tokens it keeps its in-flight
// slot, so producers block.
func TestBackpressure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		var blocked []time.Duration
		b := &muster.Batcher[int]{
			MaxBatchSize:         5,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  5,
			Hooks: &muster.Hooks{Waited: func(_ context.Context, info muster.WaitInfo) {
				if info.Reason == muster.WaitBackpressure {
					blocked = append(blocked, info.Duration)
				}
			}},
			Fire: throttle.New[int](ratelimit.NewLimiter(1, 1))(r.fire), // 1 batch/s
		}
		_ = b.Start()
		start := time.Now()
		for i := range 25 {
			if err := b.Add(context.Background(), i); err != nil {
				t.Fatal(err)
			}
		}
		// 5 batches at 0..4 s. Batch 1 takes the token and is done at once;
		// batch 2 waits for its token until 1 s, holding the only slot;
		// batch 3 waits for the slot and items 15-19 queue behind it, so
		// the 21st Add blocks until batch 2 is done at 1 s.
		if took := time.Since(start); took != time.Second {
			t.Errorf("25 Adds took %v, want 1s (held back by the rate limit)", took)
		}
		if len(blocked) == 0 {
			t.Error("no producer was blocked")
		}
		_ = b.Stop()
		if got, want := r.times(), secs(0, 1, 2, 3, 4); !slices.Equal(got, want) {
			t.Errorf("batches at %v, want %v", got, want)
		}
	})
}

// observed is a Waiter that records what it is told.
type observed struct {
	mu       sync.Mutex
	outcomes []ratelimit.Outcome
	waitErr  error
}

func (o *observed) WaitN(ctx context.Context, n int) error { return o.waitErr }

func (o *observed) Observe(out ratelimit.Outcome) {
	o.mu.Lock()
	o.outcomes = append(o.outcomes, out)
	o.mu.Unlock()
}

func TestAdaptiveFeedback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := &observed{}
		calls := 0
		fire := throttle.New[int](o, throttle.WithPerItem())(func(ctx context.Context, items []int) error {
			calls++
			time.Sleep(30 * time.Millisecond)
			if calls == 2 {
				return errDown
			}
			return nil
		})
		_ = fire(context.Background(), make([]int, 3))
		if err := fire(context.Background(), make([]int, 4)); err != errDown {
			t.Errorf("err %v, want the downstream's error unchanged", err)
		}
		want := []ratelimit.Outcome{
			{N: 3, Duration: 30 * time.Millisecond},
			{N: 4, Err: errDown, Duration: 30 * time.Millisecond},
		}
		if !slices.Equal(o.outcomes, want) {
			t.Errorf("observed %+v, want %+v", o.outcomes, want)
		}
		// A batch whose wait failed never reached the downstream: not observed.
		o.waitErr = errors.New("quota store unreachable")
		err := fire(context.Background(), make([]int, 1))
		if !errors.Is(err, throttle.ErrWaitAborted) || !errors.Is(err, o.waitErr) || calls != 2 || len(o.outcomes) != 2 {
			t.Errorf("err %v, %d calls, %d outcomes; want ErrWaitAborted, 2, 2", err, calls, len(o.outcomes))
		}
	})
	t.Run("ratelimit.Adaptive", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a, err := ratelimit.NewAdaptive(ratelimit.AdaptiveConfig{Max: 100, Initial: 100, Decrease: 0.5, Increase: 10})
			if err != nil {
				t.Fatal(err)
			}
			fail := true
			fire := throttle.New[int](a)(func(context.Context, []int) error {
				if fail {
					return errDown
				}
				return nil
			})
			_ = fire(context.Background(), nil)
			if got := a.Limit(); got != 50 {
				t.Errorf("limit after an overload %v, want 50", got)
			}
			fail = false
			_ = fire(context.Background(), nil)
			if got := a.Limit(); got != 60 {
				t.Errorf("limit after a success %v, want 60", got)
			}
		})
	})
}

// TestWaiterRefuses: *rate.Limiter refuses more tokens than its burst; the
// batch fails with ErrWaitAborted and the limiter's error.
func TestWaiterRefuses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRecorder()
		var waits []muster.WaitInfo
		var doneErr error
		b := &muster.Batcher[int]{
			MaxBatchSize: 10,
			Hooks: &muster.Hooks{
				Waited: func(ctx context.Context, info muster.WaitInfo) { waits = append(waits, info) },
				Done:   func(ctx context.Context, info muster.DoneInfo) { doneErr = info.Err },
			},
			Fire: throttle.New[int](rate.NewLimiter(100, 5), throttle.WithPerItem())(r.fire),
		}
		_ = b.Start()
		for i := range 10 {
			_ = b.Add(context.Background(), i)
		}
		_ = b.Stop()
		if !errors.Is(doneErr, throttle.ErrWaitAborted) || len(r.times()) != 0 {
			t.Errorf("batch done with %v, downstream called %d times; want ErrWaitAborted, 0", doneErr, len(r.times()))
		}
		if len(waits) != 1 || waits[0].Tokens != 10 || waits[0].Err == nil {
			t.Errorf("Waited saw %+v, want one failed wait for 10 tokens", waits)
		}
	})
}

func TestNilWaiter(t *testing.T) {
	r := newRecorder()
	fire := throttle.New[int](nil)(r.fire)
	if err := fire(context.Background(), []int{1}); err != nil || len(r.times()) != 1 {
		t.Errorf("err %v, %d calls", err, len(r.times()))
	}
}

func TestContextCauseWrapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cause := errors.New("caller gave up")
		ctx, cancel := context.WithCancelCause(context.Background())
		// x/time/rate returns ctx.Err(), not the cause: the middleware adds it.
		lim := rate.NewLimiter(rate.Every(time.Hour), 1)
		lim.Allow() // empty the bucket
		fire := throttle.New[int](lim)(func(context.Context, []int) error {
			t.Error("downstream called")
			return nil
		})
		go func() {
			time.Sleep(time.Second)
			cancel(cause)
		}()
		err := fire(ctx, nil)
		if !errors.Is(err, throttle.ErrWaitAborted) || !errors.Is(err, cause) || !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want ErrWaitAborted, the cause and context.Canceled", err)
		}
		want := "throttle: rate-limit wait aborted: context canceled: caller gave up"
		if err.Error() != want {
			t.Errorf("message %q, want %q", err, want)
		}
	})
}
