package muster_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// kitem is an item with its key.
type kitem struct {
	key string
	v   int
}

func kitemKey(it kitem) string { return it.key }

// keyedLog records the batches a Keyed client fired, with their times.
type keyedLog struct {
	mu      sync.Mutex
	batches []keyedBatch
	errs    []string
}

type keyedBatch struct {
	key   string
	items []int
	at    time.Duration // fake time since the test's start
}

func (l *keyedLog) fire(start time.Time) func(ctx context.Context, key string, items []kitem) error {
	return func(ctx context.Context, key string, items []kitem) error {
		l.mu.Lock()
		defer l.mu.Unlock()
		b := keyedBatch{key: key, at: time.Since(start)}
		for _, it := range items {
			if it.key != key {
				l.errs = append(l.errs, fmt.Sprintf("item %v in a batch of key %q", it, key))
			}
			b.items = append(b.items, it.v)
		}
		l.batches = append(l.batches, b)
		return nil
	}
}

func (l *keyedLog) get(t *testing.T) []keyedBatch {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		t.Error(e)
	}
	return slices.Clone(l.batches)
}

func startKeyed[T any](t *testing.T, k *muster.Keyed[string, T]) {
	t.Helper()
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
}

func TestKeyedConfig(t *testing.T) {
	fire := func(context.Context, string, []int) error { return nil }
	for _, tc := range []struct {
		k    *muster.Keyed[string, int]
		want error
	}{
		{&muster.Keyed[string, int]{Fire: fire}, muster.ErrZeroBoth},
		{&muster.Keyed[string, int]{MaxBatchSize: 1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{MaxBatchSize: 1, Fire: fire, MaxKeys: -1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{MaxBatchSize: 1, Fire: fire, KeyIdleTimeout: -1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{MaxBatchSize: 1, Fire: fire, MaxBatchBytes: 3}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{MaxBatchSize: 1, Fire: fire, Overflow: 9}, muster.ErrInvalidConfig},
	} {
		if err := tc.k.Start(); !errors.Is(err, tc.want) {
			t.Errorf("%+v: Start = %v, want %v", tc.k, err, tc.want)
		}
	}
	var k muster.Keyed[string, int]
	if err := k.Add(context.Background(), 1); !errors.Is(err, muster.ErrNotStarted) {
		t.Errorf("Add before Start: %v", err)
	}
	if err := k.Stop(); !errors.Is(err, muster.ErrNotStarted) {
		t.Errorf("Stop before Start: %v", err)
	}
	k = muster.Keyed[string, int]{MaxBatchSize: 1, Fire: fire} // nil Key: one key, ""
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	if err := k.Start(); !errors.Is(err, muster.ErrAlreadyStarted) {
		t.Errorf("second Start: %v", err)
	}
	if err := k.Add(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := k.Add(context.Background(), 2); !errors.Is(err, muster.ErrStopped) {
		t.Errorf("Add after Stop: %v", err)
	}
	if s := k.Stats(); s.Added != 1 || s.Fired != 1 || s.Refused != 1 || s.Keys != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Items of different keys never share a batch, and each key's size and time
// triggers work on their own, at exact (fake) times.
func TestKeyedTriggersPerKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var log keyedLog
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 3, BatchTimeout: 10 * time.Second, Fire: log.fire(start)}
		startKeyed(t, k)
		ctx := context.Background()
		add := func(key string, v int) {
			t.Helper()
			if err := k.Add(ctx, kitem{key, v}); err != nil {
				t.Fatal(err)
			}
		}
		add("a", 1)
		add("b", 2)
		time.Sleep(2 * time.Second)
		add("c", 3)
		add("a", 4)
		add("b", 5)
		add("a", 6) // a is full: fires now, at 2s
		synctest.Wait()
		time.Sleep(10 * time.Second) // 12s: b fired at 10s, c at 12s
		synctest.Wait()
		add("b", 7)
		time.Sleep(time.Hour) // c fired at 12s, b again at 22s
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		got := log.get(t)
		want := []keyedBatch{
			{"a", []int{1, 4, 6}, 2 * time.Second},
			{"b", []int{2, 5}, 10 * time.Second},
			{"c", []int{3}, 12 * time.Second},
			{"b", []int{7}, 22 * time.Second},
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("batches\n got %v\nwant %v", got, want)
		}
		if s := k.Stats(); s.Added != 7 || s.Fired != 4 || s.Done != 4 || s.Keys != 0 { // idle for an hour: evicted
			t.Errorf("stats %+v", s)
		}
	})
}

// The shared in-flight limit holds across keys, while other keys keep
// batching; a batch that waits for a shared slot reports the wait.
func TestKeyedSharedLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 2
		release := make(chan struct{})
		var mu sync.Mutex
		inflight, maxInflight, fired := 0, 0, 0
		var waits []string
		hooks := &muster.Hooks{Waited: func(ctx context.Context, info muster.WaitInfo) {
			mu.Lock()
			waits = append(waits, fmt.Sprintf("%s %v %v", info.Reason, info.Duration, info.Err))
			mu.Unlock()
		}}
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: limit, PendingWorkCapacity: 4, Hooks: hooks,
			Fire: func(ctx context.Context, key string, items []kitem) error {
				mu.Lock()
				inflight++
				fired++
				maxInflight = max(maxInflight, inflight)
				mu.Unlock()
				<-release
				mu.Lock()
				inflight--
				mu.Unlock()
				return nil
			}}
		startKeyed(t, k)
		ctx := context.Background()
		for i := range 8 { // 4 keys, one full batch each
			if err := k.Add(ctx, kitem{fmt.Sprint("k", i%4), i}); err != nil {
				t.Fatal(err)
			}
		}
		synctest.Wait()
		mu.Lock()
		if inflight != limit {
			t.Errorf("%d batches running, want %d", inflight, limit)
		}
		mu.Unlock()
		s := k.Stats()
		if s.InFlight != limit || s.Fired-s.Done != 4 || s.Keys != 4 || s.Pending != 0 {
			t.Errorf("stats %+v: want %d batches holding a shared slot, 4 fired and not done", s, limit)
		}
		// Other keys keep batching meanwhile: Add does not block.
		for i := range 6 {
			if err := k.Add(ctx, kitem{fmt.Sprint("k", 4+i%3), 100 + i}); err != nil {
				t.Fatal(err)
			}
		}
		if s := k.Stats(); s.Fired != 7 || s.Keys != 7 {
			t.Errorf("stats %+v", s)
		}
		time.Sleep(time.Second)
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if maxInflight != limit || fired != 7 {
			t.Errorf("max in flight %d (want %d), fired %d", maxInflight, limit, fired)
		}
		if len(waits) != 5 || waits[0] != "slot 1s <nil>" {
			t.Errorf("waits %q: want 5 slot waits, the first 1s", waits)
		}
	})
}

// The key reaches the Fired and Done hooks; Started and Stopped run once for
// the client, not per key.
func TestKeyedHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []string
		rec := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
		hooks := &muster.Hooks{
			Started: func(info muster.ClientInfo) { rec("started " + info.Name) },
			Stopped: func(info muster.ClientInfo) {
				rec(fmt.Sprintf("stopped keys=%d fired=%d", info.Stats().Keys, info.Stats().Fired))
			},
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				rec(fmt.Sprintf("fired %v id=%d size=%d %v", info.Key, info.BatchID, info.Size, info.Trigger))
				return ctx
			},
			Done: func(ctx context.Context, info muster.DoneInfo) { rec(fmt.Sprintf("done %v %v", info.Key, info.Err)) },
		}
		k := &muster.Keyed[int, int]{Name: "kv", Key: func(v int) int { return v % 2 }, MaxBatchSize: 2, Hooks: hooks,
			Fire: func(ctx context.Context, key int, items []int) error { return nil }}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		for _, v := range []int{1, 3, 2} {
			if err := k.Add(context.Background(), v); err != nil {
				t.Fatal(err)
			}
			synctest.Wait()
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		want := []string{"started kv", "fired 1 id=1 size=2 size", "done 1 <nil>", "fired 0 id=1 size=1 shutdown", "done 0 <nil>", "stopped keys=2 fired=2"}
		if !slices.Equal(events, want) {
			t.Errorf("events\n got %q\nwant %q", events, want)
		}
	})
}

// Idle keys are evicted after KeyIdleTimeout; a later Add re-creates them,
// and the counters of evicted keys are kept.
func TestKeyedIdleEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var log keyedLog
		k := &muster.Keyed[string, kitem]{Key: kitemKey, BatchTimeout: time.Second, KeyIdleTimeout: time.Minute, Fire: log.fire(start)}
		startKeyed(t, k)
		ctx := context.Background()
		if err := k.Add(ctx, kitem{"a", 1}); err != nil {
			t.Fatal(err)
		}
		if err := k.Add(ctx, kitem{"b", 2}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(30 * time.Second)
		if err := k.Add(ctx, kitem{"b", 3}); err != nil { // b stays busy longer
			t.Fatal(err)
		}
		time.Sleep(31 * time.Second) // 61s: a's batch is done since 1s, and a is still live
		synctest.Wait()
		if s := k.Stats(); s.Keys != 2 {
			t.Fatalf("at 61s: stats %+v, want 2 keys", s)
		}
		time.Sleep(30 * time.Second) // 91s: a is gone (idle since 1s), b is not (31s)
		synctest.Wait()
		if s := k.Stats(); s.Keys != 1 {
			t.Fatalf("at 91s: stats %+v, want 1 key", s)
		}
		time.Sleep(30 * time.Second) // 121s: b is gone too
		synctest.Wait()
		if s := k.Stats(); s.Keys != 0 || s.Added != 3 || s.Fired != 3 {
			t.Fatalf("at 121s: stats %+v, want no key, the counters kept", s)
		}
		if err := k.Add(ctx, kitem{"a", 4}); err != nil {
			t.Fatal(err)
		}
		if s := k.Stats(); s.Keys != 1 || s.Added != 4 || s.Pending != 1 {
			t.Fatalf("re-created: stats %+v", s)
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		want := []keyedBatch{{"a", []int{1}, time.Second}, {"b", []int{2}, time.Second}, {"b", []int{3}, 31 * time.Second}, {"a", []int{4}, 121 * time.Second}}
		got := log.get(t)
		slices.SortFunc(got, func(x, y keyedBatch) int { return x.items[0] - y.items[0] })
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("batches\n got %v\nwant %v", got, want)
		}
	})
}

// An Add racing with the eviction of its key never loses its item.
func TestKeyedEvictionRace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		seen := map[int]int{}
		k := &muster.Keyed[int, int]{Key: func(v int) int { return v % 3 }, MaxBatchSize: 2, BatchTimeout: time.Millisecond,
			KeyIdleTimeout: 2 * time.Millisecond,
			Fire: func(ctx context.Context, key int, items []int) error {
				mu.Lock()
				defer mu.Unlock()
				for _, v := range items {
					seen[v]++
				}
				return nil
			}}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for p := range 4 {
			wg.Go(func() {
				for i := range 200 {
					if err := k.Add(context.Background(), p*1000+i); err != nil {
						t.Error(err)
					}
					time.Sleep(time.Duration(i*p%7) * time.Millisecond)
				}
			})
		}
		wg.Wait()
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if len(seen) != 800 {
			t.Errorf("%d items delivered, want 800", len(seen))
		}
		for v, n := range seen {
			if n != 1 {
				t.Errorf("item %d delivered %d times", v, n)
			}
		}
		if s := k.Stats(); s.Added != 800 || s.Fired != s.Done || s.Refused != 0 {
			t.Errorf("stats %+v", s)
		}
	})
}

// A new key beyond MaxKeys evicts a key holding nothing, or is refused with
// ErrTooManyKeys while every key holds something; a key evicted for being
// idle makes room too.
func TestKeyedMaxKeys(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var log keyedLog
		var refused []error
		hooks := &muster.Hooks{Added: func(info muster.AddInfo) {
			if info.Err != nil {
				refused = append(refused, info.Err)
			}
		}}
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 10, BatchTimeout: time.Hour, KeyIdleTimeout: 2 * time.Hour,
			MaxKeys: 2, Hooks: hooks, Fire: log.fire(start)}
		startKeyed(t, k)
		ctx := context.Background()
		for _, it := range []kitem{{"a", 1}, {"b", 2}, {"a", 3}} {
			if err := k.Add(ctx, it); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Add(ctx, kitem{"c", 4}); !errors.Is(err, muster.ErrTooManyKeys) {
			t.Fatalf("a third key: %v, want ErrTooManyKeys", err)
		}
		if r, err := k.AddResult(ctx, kitem{"c", 5}); r != nil || !errors.Is(err, muster.ErrTooManyKeys) {
			t.Fatalf("a third key: %v, %v", r, err)
		}
		if s := k.Stats(); s.Keys != 2 || s.Refused != 2 || s.Added != 3 {
			t.Errorf("stats %+v", s)
		}
		if err := k.Add(ctx, kitem{"b", 6}); err != nil { // a live key is still welcome
			t.Fatal(err)
		}
		time.Sleep(time.Hour) // both fire; a and b hold nothing now
		synctest.Wait()
		if err := k.Add(ctx, kitem{"c", 7}); err != nil {
			t.Fatalf("c once a and b are empty: %v", err)
		}
		if s := k.Stats(); s.Keys != 2 {
			t.Errorf("stats %+v, want 2 live keys", s)
		}
		if err := k.Add(ctx, kitem{"d", 8}); err != nil { // evicts the other empty key
			t.Fatal(err)
		}
		if err := k.Add(ctx, kitem{"e", 9}); !errors.Is(err, muster.ErrTooManyKeys) {
			t.Fatalf("e while c and d hold items: %v", err)
		}
		// c and d fire at 2h and are evicted as idle by 5h: room for e.
		time.Sleep(4*time.Hour + time.Second)
		synctest.Wait()
		if s := k.Stats(); s.Keys != 0 {
			t.Errorf("stats %+v, want c and d evicted", s)
		}
		if err := k.Add(ctx, kitem{"e", 10}); err != nil {
			t.Fatal(err)
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		got := log.get(t)
		want := []keyedBatch{{"a", []int{1, 3}, time.Hour}, {"b", []int{2, 6}, time.Hour}, {"c", []int{7}, 2 * time.Hour}, {"d", []int{8}, 2 * time.Hour}, {"e", []int{10}, 5*time.Hour + time.Second}}
		slices.SortFunc(got, func(x, y keyedBatch) int { return x.items[0] - y.items[0] })
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("batches\n got %v\nwant %v", got, want)
		}
		if len(refused) != 3 {
			t.Errorf("Added hook saw %v, want 3 refusals", refused)
		}
		if s := k.Stats(); s.Added != 7 || s.Refused != 3 || s.Fired != 5 {
			t.Errorf("stats %+v", s)
		}
	})
}

// Flush covers every key; Stop fires every key's partial batch.
func TestKeyedFlushStop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var log keyedLog
		fire := log.fire(start)
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 10, BatchTimeout: time.Hour,
			Fire: func(ctx context.Context, key string, items []kitem) error {
				time.Sleep(time.Second)
				return fire(ctx, key, items)
			}}
		startKeyed(t, k)
		ctx := context.Background()
		for i, key := range []string{"a", "b", "c", "a"} {
			if err := k.Add(ctx, kitem{key, i}); err != nil {
				t.Fatal(err)
			}
		}
		if err := k.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != time.Second || len(log.get(t)) != 3 {
			t.Errorf("Flush returned after %v with %v", time.Since(start), log.get(t))
		}
		if err := k.Add(ctx, kitem{"b", 4}); err != nil {
			t.Fatal(err)
		}
		if err := k.Add(ctx, kitem{"d", 5}); err != nil {
			t.Fatal(err)
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 2*time.Second || len(log.get(t)) != 5 {
			t.Errorf("Stop returned after %v with %v", time.Since(start), log.get(t))
		}
		if err := k.Flush(ctx); !errors.Is(err, muster.ErrStopped) {
			t.Errorf("Flush after Stop: %v", err)
		}
		if err := k.Stop(); err != nil {
			t.Errorf("second Stop: %v", err)
		}
	})
}

// At a Shutdown deadline the counts of what is left are summed over keys;
// batches waiting for a shared slot fail with ErrIncomplete.
func TestKeyedShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var stopped []string
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1,
			Hooks: &muster.Hooks{Stopped: func(info muster.ClientInfo) { stopped = append(stopped, fmt.Sprint(info.Stats().Done)) }},
			Fire: func(ctx context.Context, key string, items []kitem) error {
				<-release // ignores ctx
				return nil
			}}
		startKeyed(t, k)
		ctx := context.Background()
		var results []*muster.Result
		for i, key := range []string{"a", "a", "b", "b", "c", "c", "c"} {
			r, err := k.AddResult(ctx, kitem{key, i})
			if err != nil {
				t.Fatal(err)
			}
			results = append(results, r)
			if i == 1 {
				synctest.Wait() // a runs; b and c will wait for the shared slot
			}
		}
		synctest.Wait()
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		err := k.Shutdown(sctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || !errors.Is(err, muster.ErrIncomplete) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Shutdown: %v", err)
		}
		// a, b and c's full batches in flight (two waiting for the slot), c's
		// last item fired at Stop and waiting too.
		if se.Batches != 4 || se.Items != 7 {
			t.Errorf("ShutdownError %+v, want 4 batches, 7 items", se)
		}
		synctest.Wait()
		for i := 2; i < 7; i++ {
			if err := results[i].Err(); !errors.Is(err, muster.ErrIncomplete) {
				t.Errorf("item %d: %v, want ErrIncomplete", i, err)
			}
		}
		if stopped != nil {
			t.Errorf("Stopped ran before every batch was done: %v", stopped)
		}
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := results[0].Err(); err != nil {
			t.Errorf("item 0: %v", err)
		}
		if s := k.Stats(); s.Fired != 3 || s.Done != 3 || s.Failed != 2 || s.Abandoned != 1 || s.InFlight != 0 {
			t.Errorf("stats %+v", s)
		}
		if !slices.Equal(stopped, []string{"3"}) {
			t.Errorf("Stopped calls: %v", stopped)
		}
	})
}

// keyedRun is one randomised accounting scenario for Keyed, in the spirit of
// invariantRun: producers add items with random keys, batches fire after
// random delays and some fail; every item offered must be delivered exactly
// once (its Result nil), failed with its batch (its Result the batch's
// error), or refused at Add.
type keyedRun struct {
	seed      uint64
	keys      int
	maxKeys   int
	max       uint
	timeout   time.Duration
	limit     uint
	capacity  uint
	policy    muster.Overflow
	idle      time.Duration
	producers int
	items     int
	delay     time.Duration
	failEvery int // a batch whose first item is a multiple of this fails
	flushAt   int
	deadline  time.Duration // 0: Stop
}

func (r keyedRun) check(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		errFail := errors.New("downstream failed")
		var mu sync.Mutex
		delivered := map[int]int{}
		failedItems := map[int]bool{}
		inflight, maxInflight := 0, 0
		var problems []string
		rng := rand.New(rand.NewPCG(r.seed, 1))
		var rngMu sync.Mutex
		randDelay := func() time.Duration {
			rngMu.Lock()
			defer rngMu.Unlock()
			if r.delay == 0 {
				return 0
			}
			return time.Duration(rng.Int64N(int64(r.delay)))
		}
		keyOf := func(v int) int { return v % 1000 }
		k := &muster.Keyed[int, int]{Key: keyOf, MaxBatchSize: r.max, BatchTimeout: r.timeout, MaxConcurrentBatches: r.limit,
			PendingWorkCapacity: r.capacity, Overflow: r.policy, MaxKeys: r.maxKeys, KeyIdleTimeout: r.idle,
			Fire: func(ctx context.Context, key int, items []int) error {
				mu.Lock()
				inflight++
				maxInflight = max(maxInflight, inflight)
				if r.limit > 0 && inflight > int(r.limit) {
					problems = append(problems, fmt.Sprintf("%d in flight, above %d", inflight, r.limit))
				}
				if len(items) == 0 || r.max > 0 && len(items) > int(r.max) {
					problems = append(problems, fmt.Sprintf("a batch of %d", len(items)))
				}
				fail := len(items) > 0 && (items[0]/1000)%r.failEvery == 0
				for _, v := range items {
					if keyOf(v) != key {
						problems = append(problems, fmt.Sprintf("item %d in a batch of key %d", v, key))
					}
					if fail {
						failedItems[v] = true
					} else {
						delivered[v]++
					}
				}
				mu.Unlock()
				time.Sleep(randDelay())
				mu.Lock()
				inflight--
				mu.Unlock()
				if fail {
					return errFail
				}
				return nil
			}}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		type offered struct {
			v   int
			res *muster.Result
			err error
		}
		out := make([][]offered, r.producers)
		ctx := context.Background()
		var wg sync.WaitGroup
		for p := range r.producers {
			wg.Go(func() {
				prng := rand.New(rand.NewPCG(r.seed, uint64(p)+2))
				for i := range r.items / r.producers {
					v := (p*100000+i)*1000 + prng.IntN(r.keys) // item number, then its key
					res, err := k.AddResult(ctx, v)
					out[p] = append(out[p], offered{v, res, err})
					if prng.IntN(4) == 0 {
						time.Sleep(time.Duration(prng.IntN(3)) * time.Millisecond)
					}
					if p == 0 && r.flushAt > 0 && i%r.flushAt == 0 {
						if err := k.Flush(ctx); err != nil {
							t.Errorf("Flush: %v", err)
						}
					}
				}
			})
		}
		wg.Wait()
		if r.deadline == 0 {
			if err := k.Stop(); err != nil {
				t.Fatal(err)
			}
		} else {
			sctx, cancel := context.WithTimeout(ctx, r.deadline)
			err := k.Shutdown(sctx)
			cancel()
			var se *muster.ShutdownError
			if err != nil && !errors.As(err, &se) {
				t.Fatalf("Shutdown: %v", err)
			}
			if err := k.Stop(); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Error(p)
		}
		var nRefused, nOK, nFailed, nAbandoned int
		for _, offs := range out {
			for _, o := range offs {
				switch {
				case o.err != nil:
					nRefused++
					if o.res != nil || !errors.Is(o.err, muster.ErrTooManyKeys) && !errors.Is(o.err, muster.ErrFull) {
						t.Errorf("item %d refused with %v", o.v, o.err)
					}
					if delivered[o.v] != 0 || failedItems[o.v] {
						t.Errorf("item %d refused, and fired", o.v)
					}
				default:
					select {
					case <-o.res.Done():
					default:
						t.Errorf("item %d: Result not done after Stop", o.v)
						continue
					}
					err := o.res.Err()
					switch {
					case err == nil:
						nOK++
						if delivered[o.v] != 1 || failedItems[o.v] {
							t.Errorf("item %d: Result nil, delivered %d times", o.v, delivered[o.v])
						}
					case errors.Is(err, errFail):
						nFailed++
						if !failedItems[o.v] || delivered[o.v] != 0 {
							t.Errorf("item %d: Result %v, but not in a failed batch", o.v, err)
						}
					case errors.Is(err, muster.ErrDropped) || errors.Is(err, muster.ErrIncomplete):
						nAbandoned++
						if r.deadline == 0 && errors.Is(err, muster.ErrIncomplete) {
							t.Errorf("item %d: %v under Stop", o.v, err)
						}
						if delivered[o.v] != 0 {
							t.Errorf("item %d: Result %v, and delivered", o.v, err)
						}
					default:
						t.Errorf("item %d: Result %v", o.v, err)
					}
				}
			}
		}
		total := r.items / r.producers * r.producers
		s := k.Stats()
		if nRefused+nOK+nFailed+nAbandoned != total || s.Added+s.Refused != uint64(total) || int(s.Refused) != nRefused ||
			s.InFlight != 0 || s.Pending != 0 || s.Fired != s.Done {
			t.Errorf("offered %d: refused %d, ok %d, failed %d, dropped or abandoned %d; stats %+v", total, nRefused, nOK, nFailed, nAbandoned, s)
		}
		if r.maxKeys > 0 && s.Keys > r.maxKeys {
			t.Errorf("%d live keys, above %d", s.Keys, r.maxKeys)
		}
		t.Logf("refused %d, ok %d, failed %d, dropped or abandoned %d, max in flight %d; stats %+v", nRefused, nOK, nFailed, nAbandoned, maxInflight, s)
	})
}

func TestKeyedAccountingTable(t *testing.T) {
	for i, r := range []keyedRun{
		{keys: 5, max: 4, timeout: 3 * time.Millisecond, limit: 2, capacity: 8, delay: 5 * time.Millisecond, failEvery: 7},
		{keys: 20, maxKeys: 6, max: 5, timeout: 2 * time.Millisecond, limit: 3, capacity: 4, idle: 5 * time.Millisecond, delay: 8 * time.Millisecond, failEvery: 5, flushAt: 17},
		{keys: 8, maxKeys: 3, max: 3, timeout: time.Millisecond, limit: 1, capacity: 2, policy: muster.OverflowFail, idle: 2 * time.Millisecond, delay: 4 * time.Millisecond, failEvery: 3},
		{keys: 4, max: 6, timeout: 5 * time.Millisecond, limit: 1, capacity: 1, policy: muster.OverflowDropOldest, delay: 6 * time.Millisecond, failEvery: 11},
		{keys: 10, maxKeys: 10, max: 8, limit: 2, capacity: 3, delay: 20 * time.Millisecond, failEvery: 4, deadline: 15 * time.Millisecond},
		{keys: 3, timeout: 4 * time.Millisecond, producers: 8, delay: 2 * time.Millisecond, failEvery: 9, idle: time.Millisecond},
	} {
		r.seed = uint64(i) + 1
		if r.producers == 0 {
			r.producers = 8
		}
		r.items = 800
		t.Run(fmt.Sprint(i), func(t *testing.T) { r.check(t) })
	}
}
