package muster_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

func TestKeyedConfig(t *testing.T) {
	fire := func(context.Context, []int) error { return nil }
	key := func(v int) string { return fmt.Sprint(v % 2) }
	for _, tc := range []struct {
		k    *muster.Keyed[string, int]
		want error
	}{
		{&muster.Keyed[string, int]{Key: key, Fire: fire}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{Key: key, MaxBatchSize: 1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{MaxBatchSize: 1, Fire: fire}, muster.ErrInvalidConfig}, // Key is required
		{&muster.Keyed[string, int]{Key: key, MaxBatchSize: 1, Fire: fire, MaxKeys: -1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{Key: key, MaxBatchSize: 1, Fire: fire, KeyIdleTimeout: -1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{Key: key, MaxBatchSize: 1, Fire: fire, BatchTimeout: -1}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{Key: key, MaxBatchSize: 1, Fire: fire, MaxBatchBytes: 3}, muster.ErrInvalidConfig},
		{&muster.Keyed[string, int]{Key: key, MaxBatchSize: 1, Fire: fire, Overflow: 9}, muster.ErrInvalidConfig},
	} {
		if err := tc.k.Start(); !errors.Is(err, tc.want) {
			t.Errorf("%+v: Start = %v, want %v", tc.k, err, tc.want)
		}
	}
	var k muster.Keyed[string, int]
	if err := k.Start(); !isZeroBoth(err) { // as a zero Batcher's and Client's
		t.Errorf("zero Keyed: Start = %v, want the no-trigger error", err)
	}
	if err := k.Add(context.Background(), 1); !errors.Is(err, muster.ErrNotStarted) {
		t.Errorf("Add before Start: %v", err)
	}
	if err := k.Stop(); !errors.Is(err, muster.ErrNotStarted) {
		t.Errorf("Stop before Start: %v", err)
	}
	k = muster.Keyed[string, int]{Key: key, MaxBatchSize: 1, Fire: fire}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	if err := k.Start(); !isAlreadyStarted(err) {
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

// The in-flight limit holds across keys, and so does PendingWorkCapacity:
// a batch of any key waits for a shared slot (with no goroutine, and not in
// flight: Fired runs once it has one), items of other keys keep joining
// their open batches until the shared capacity is used up, and then any key
// blocks.
func TestKeyedSharedLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 2
		release := make(chan struct{})
		var mu sync.Mutex
		inflight, maxInflight, fired := 0, 0, 0
		var slotWaits []time.Duration
		var blocked []time.Duration
		hooks := &muster.Hooks{
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				mu.Lock()
				defer mu.Unlock()
				if info.InFlight > limit {
					t.Errorf("Fired with %d in flight", info.InFlight)
				}
				slotWaits = append(slotWaits, info.SlotWait)
				return nil
			},
			Waited: func(ctx context.Context, info muster.WaitInfo) {
				mu.Lock()
				defer mu.Unlock()
				blocked = append(blocked, info.Duration)
			},
		}
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: limit, PendingWorkCapacity: 4, Hooks: hooks,
			Fire: func(ctx context.Context, items []kitem) error {
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
		if inflight != limit || fired != limit {
			t.Errorf("%d batches running, %d fired, want %d", inflight, fired, limit)
		}
		mu.Unlock()
		s := k.Stats()
		if s.InFlight != limit || s.Fired != limit || s.Waiting != 2 || s.Keys != 4 || s.Pending != 8 || s.Queued != 2 {
			t.Errorf("stats %+v: want %d batches holding a shared slot, 2 waiting, 2 items queued behind the oldest", s, limit)
		}
		// Other keys keep batching meanwhile, up to the shared capacity.
		for i := range 2 {
			if err := k.Add(ctx, kitem{fmt.Sprint("k", 4+i), 100 + i}); err != nil {
				t.Fatal(err)
			}
		}
		if s := k.Stats(); s.Fired != limit || s.Keys != 6 || s.Queued != 4 || s.Pending != 10 {
			t.Errorf("stats %+v", s)
		}
		// The capacity is used up: a new key blocks as an old one would.
		for _, key := range []string{"k0", "k9"} {
			tctx, cancel := context.WithTimeout(ctx, time.Second)
			if err := k.Add(tctx, kitem{key, 200}); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("key %s at capacity: %v, want DeadlineExceeded", key, err)
			}
			cancel()
		}
		close(release) // at 2s
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if maxInflight != limit || fired != 6 {
			t.Errorf("max in flight %d (want %d), fired %d (want 6)", maxInflight, limit, fired)
		}
		slices.Sort(slotWaits) // batches fire on goroutines of their own
		want := []time.Duration{0, 0, 0, 0, 2 * time.Second, 2 * time.Second}
		if !slices.Equal(slotWaits, want) {
			t.Errorf("slot waits %v, want %v", slotWaits, want)
		}
		if !slices.Equal(blocked, []time.Duration{time.Second, time.Second}) {
			t.Errorf("Refused saw blocked %v", blocked)
		}
		if s := k.Stats(); s.Added != 10 || s.Refused != 2 || s.Keys != 6 {
			t.Errorf("final stats %+v", s)
		}
	})
}

// The key reaches the Fired and Done hooks; Observe and Stopped run once for
// the client, not per key; batch ids are per client.
func TestKeyedHooks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var events []string
		rec := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
		hooks := &muster.Hooks{
			Stopped: func(ctx context.Context, info muster.ClientInfo) {
				rec(fmt.Sprintf("stopped keys=%d fired=%d", info.Stats().Keys, info.Stats().Fired))
			},
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				rec(fmt.Sprintf("fired %v id=%d size=%d %v", info.Key, info.BatchID, info.Size, info.Trigger))
				return ctx
			},
			Done: func(ctx context.Context, info muster.DoneInfo) { rec(fmt.Sprintf("done %v %v", info.Key, info.Err)) },
		}
		observer := observerFunc(func(info muster.ClientInfo) *muster.Hooks {
			rec(fmt.Sprintf("started %s maxkeys=%d", info.Name, info.MaxKeys))
			return hooks
		})
		k := &muster.Keyed[int, int]{Name: "kv", Key: func(v int) int { return v % 2 }, MaxBatchSize: 2, Hooks: observer,
			Fire: func(ctx context.Context, items []int) error { return nil }}
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
		want := []string{"started kv maxkeys=1024", "fired 1 id=1 size=2 size", "done 1 <nil>", "fired 0 id=2 size=1 shutdown", "done 0 <nil>", "stopped keys=2 fired=2"}
		if !slices.Equal(events, want) {
			t.Errorf("events\n got %q\nwant %q", events, want)
		}
	})
}

// Idle keys are evicted KeyIdleTimeout after they last held something,
// exactly; a later Add re-creates them, and the counters of evicted keys are
// kept.
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
		time.Sleep(31*time.Second - 1) // a's batch is done since 1s: a is live for 1ns more
		synctest.Wait()
		if s := k.Stats(); s.Keys != 2 {
			t.Fatalf("at 61s-1ns: stats %+v, want 2 keys", s)
		}
		time.Sleep(1) // 61s: a is gone (idle since 1s), b is not (since 31s)
		synctest.Wait()
		if s := k.Stats(); s.Keys != 1 {
			t.Fatalf("at 61s: stats %+v, want 1 key", s)
		}
		time.Sleep(30*time.Second - 1)
		synctest.Wait()
		if s := k.Stats(); s.Keys != 1 {
			t.Fatalf("at 91s-1ns: stats %+v, want 1 key", s)
		}
		time.Sleep(1) // 91s: b is gone too
		synctest.Wait()
		if s := k.Stats(); s.Keys != 0 || s.Added != 3 || s.Fired != 3 {
			t.Fatalf("at 91s: stats %+v, want no key, the counters kept", s)
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
		want := []keyedBatch{{"a", []int{1}, time.Second}, {"b", []int{2}, time.Second}, {"b", []int{3}, 31 * time.Second}, {"a", []int{4}, 91 * time.Second}}
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
			Fire: func(ctx context.Context, items []int) error {
				mu.Lock()
				defer mu.Unlock()
				for _, v := range items {
					if v%3 != items[0]%3 {
						t.Errorf("item %d in a batch of key %d", v, items[0]%3)
					}
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
		var refused refusals
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 10, BatchTimeout: time.Hour, KeyIdleTimeout: 2 * time.Hour,
			MaxKeys: 2, Hooks: &muster.Hooks{Refused: refused.hook}, Fire: log.fire(start)}
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
		if r, err := k.AddResult(ctx, kitem{"c", 5}); r != (muster.Result{}) || !errors.Is(err, muster.ErrTooManyKeys) {
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
		if got := refused.get(); len(got) != 3 || refused.count(muster.ErrTooManyKeys) != 3 {
			t.Errorf("Refused hook saw %v, want 3 ErrTooManyKeys", got)
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
			Fire: func(ctx context.Context, items []kitem) error {
				time.Sleep(time.Second)
				return fire(ctx, items)
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
// batches waiting for a shared slot never fire: they are abandoned with
// ErrIncomplete.
func TestKeyedShutdownDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var mu sync.Mutex
		var stopped []string
		var firedKeys []string
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 3,
			Hooks: &muster.Hooks{Stopped: func(ctx context.Context, info muster.ClientInfo) {
				mu.Lock()
				defer mu.Unlock()
				stopped = append(stopped, fmt.Sprint(info.Stats().Done))
			}},
			Fire: func(ctx context.Context, items []kitem) error {
				mu.Lock()
				firedKeys = append(firedKeys, items[0].key)
				mu.Unlock()
				<-release // ignores ctx
				return nil
			}}
		startKeyed(t, k)
		ctx := context.Background()
		var results []muster.Result
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
		// a's batch in flight, b's and c's full batches waiting for the slot,
		// c's last item closed at Shutdown and waiting too.
		if se.Batches != 4 || se.Items != 7 {
			t.Errorf("ShutdownError %+v, want 4 batches, 7 items", se)
		}
		synctest.Wait()
		for i := 2; i < 7; i++ {
			if err := results[i].Err(); !errors.Is(err, muster.ErrIncomplete) {
				t.Errorf("item %d: %v, want ErrIncomplete", i, err)
			}
		}
		mu.Lock()
		if stopped != nil {
			t.Errorf("Stopped ran before every batch was done: %v", stopped)
		}
		mu.Unlock()
		close(release)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := results[0].Err(); err != nil {
			t.Errorf("item 0: %v", err)
		}
		if s := k.Stats(); s.Fired != 1 || s.Done != 1 || s.Failed != 0 || s.Abandoned != 5 || s.InFlight != 0 || s.Waiting != 0 || s.Pending != 0 {
			t.Errorf("stats %+v", s)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(stopped, []string{"1"}) || !slices.Equal(firedKeys, []string{"a"}) {
			t.Errorf("Stopped calls: %v; fired keys %v (only a's batch had a slot)", stopped, firedKeys)
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
		// Between Fired and Done, counted by the hooks: never above the limit.
		hookFlight := 0
		hooks := &muster.Hooks{
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				mu.Lock()
				defer mu.Unlock()
				if hookFlight++; r.limit > 0 && hookFlight > int(r.limit) || info.InFlight > int(r.limit) && r.limit > 0 {
					problems = append(problems, fmt.Sprintf("%d between Fired and Done (InFlight %d), above %d", hookFlight, info.InFlight, r.limit))
				}
				return nil
			},
			Done: func(ctx context.Context, info muster.DoneInfo) {
				if info.InFlight == 0 {
					if !errors.Is(info.Err, muster.ErrIncomplete) {
						mu.Lock()
						problems = append(problems, fmt.Sprintf("batch %d done without a slot: %v", info.BatchID, info.Err))
						mu.Unlock()
					}
					return // abandoned at the deadline: never fired
				}
				mu.Lock()
				defer mu.Unlock()
				hookFlight--
			},
		}
		var k *muster.Keyed[int, int]
		k = &muster.Keyed[int, int]{Key: keyOf, MaxBatchSize: r.max, BatchTimeout: r.timeout, MaxConcurrentBatches: r.limit,
			PendingWorkCapacity: r.capacity, Overflow: r.policy, MaxKeys: r.maxKeys, KeyIdleTimeout: r.idle, Hooks: hooks,
			Fire: func(ctx context.Context, items []int) error {
				mu.Lock()
				if s := k.Stats(); r.limit > 0 && s.InFlight > int(r.limit) {
					problems = append(problems, fmt.Sprintf("Stats.InFlight %d, above %d", s.InFlight, r.limit))
				}
				key := -1
				if len(items) > 0 {
					key = keyOf(items[0])
				}
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
			res muster.Result
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
					if o.res != (muster.Result{}) || !errors.Is(o.err, muster.ErrTooManyKeys) && !errors.Is(o.err, muster.ErrFull) {
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

// Issue 9 (a): MaxConcurrentBatches is one cap across all keys. A batch is in
// flight (Fired has run) only once it holds a slot, and a batch waiting for
// one has no goroutine: with 1,000 keys, never more than 2 batches are
// between Fired and Done, Stats.InFlight never passes 2, and the goroutines
// are bounded by the cap, not by the batches waiting.
func TestKeyedInFlightCapAcrossKeys(t *testing.T) {
	for _, tc := range []struct {
		capacity uint
		taken    int // of 1,000 items, one key each
	}{
		{0, 3},       // 2 in flight, 1 waiting: then ErrFull
		{1000, 1000}, // 2 in flight, 998 waiting
	} {
		t.Run(fmt.Sprint("capacity=", tc.capacity), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const limit, keys = 2, 1000
				release := make(chan struct{})
				var mu sync.Mutex
				between, maxBetween, fired := 0, 0, 0
				hooks := &muster.Hooks{
					Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
						mu.Lock()
						defer mu.Unlock()
						between++
						maxBetween = max(maxBetween, between)
						if info.InFlight > limit {
							t.Errorf("FireInfo.InFlight %d", info.InFlight)
						}
						return nil
					},
					Done: func(ctx context.Context, info muster.DoneInfo) {
						mu.Lock()
						defer mu.Unlock()
						between--
					},
				}
				k := &muster.Keyed[int, int]{Key: func(v int) int { return v }, MaxBatchSize: 1, MaxConcurrentBatches: limit,
					PendingWorkCapacity: tc.capacity, Overflow: muster.OverflowFail, Hooks: hooks,
					Fire: func(ctx context.Context, items []int) error {
						mu.Lock()
						fired++
						mu.Unlock()
						<-release
						return nil
					}}
				base := runtime.NumGoroutine()
				if err := k.Start(); err != nil {
					t.Fatal(err)
				}
				checkBounds := func(when string) {
					t.Helper()
					s := k.Stats()
					if s.InFlight > limit || s.InFlight < 0 {
						t.Fatalf("%s: Stats.InFlight %d", when, s.InFlight)
					}
					if n := runtime.NumGoroutine() - base; n > limit {
						t.Fatalf("%s: %d goroutines for %d batches in flight and %d waiting", when, n, s.InFlight, s.Waiting)
					}
					mu.Lock()
					defer mu.Unlock()
					if maxBetween > limit {
						t.Fatalf("%s: %d batches between Fired and Done", when, maxBetween)
					}
				}
				taken := 0
				for i := range keys {
					switch err := k.Add(context.Background(), i); {
					case err == nil:
						taken++
					case !errors.Is(err, muster.ErrFull):
						t.Fatalf("add %d: %v", i, err)
					}
					if i%100 == 0 {
						synctest.Wait()
						checkBounds(fmt.Sprint("adding ", i))
					}
				}
				synctest.Wait()
				checkBounds("added")
				if s := k.Stats(); taken != tc.taken || s.InFlight != limit || s.Waiting != taken-limit || s.Fired != limit ||
					s.Refused != uint64(keys-taken) || s.Pending != taken {
					t.Fatalf("taken %d (want %d), stats %+v", taken, tc.taken, s)
				}
				// One batch done at a time: the next waiting one takes its slot
				// and runs on the goroutine of the one that finished.
				for done := 0; done < taken; done++ {
					release <- struct{}{}
					synctest.Wait()
					checkBounds(fmt.Sprint("released ", done+1))
				}
				if err := k.Stop(); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				if s := k.Stats(); fired != taken || s.Fired != uint64(taken) || s.Done != s.Fired || between != 0 || maxBetween != limit {
					t.Fatalf("fired %d of %d, %d between Fired and Done (max %d), stats %+v", fired, taken, between, maxBetween, s)
				}
			})
		})
	}
}

// Issue 9 (b): a new key beyond MaxKeys evicts exactly the least recently
// used key that holds nothing, and the janitor evicts a key exactly
// KeyIdleTimeout after it last held something. Keys are used at different
// (fake) times: a at 1s, b at 2s, c at 3s, a again at 4s. d, at 5s, must
// evict b, the least recently used. Which keys remain shows in when the
// janitor evicts them: c at 3s+1h, a at 4s+1h, and nothing at 2s+1h (had a
// or c been evicted instead, b would go then).
func TestKeyedMaxKeysEvictsLRU(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hold := make(chan struct{})
		start := time.Now()
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 1, MaxKeys: 3, KeyIdleTimeout: time.Hour,
			Fire: func(ctx context.Context, items []kitem) error {
				if items[0].key == "d" {
					<-hold // d holds a batch: it is never evicted
				}
				return nil
			}}
		startKeyed(t, k)
		ctx := context.Background()
		for i, key := range []string{"a", "b", "c", "a", "d"} {
			time.Sleep(time.Second)
			if err := k.Add(ctx, kitem{key, i}); err != nil {
				t.Fatal(err)
			}
			synctest.Wait() // the batch fired and, but for d's, is done: its key is empty
		}
		keysAt := func(at time.Duration, want int) {
			t.Helper()
			time.Sleep(at - time.Since(start))
			synctest.Wait()
			if s := k.Stats(); s.Keys != want {
				t.Errorf("at %v: %d live keys, want %d", at, s.Keys, want)
			}
		}
		keysAt(5*time.Second, 3)
		keysAt(time.Hour+2*time.Second, 3) // b would go now, were it live
		keysAt(time.Hour+3*time.Second-1, 3)
		keysAt(time.Hour+3*time.Second, 2) // c
		keysAt(time.Hour+4*time.Second-1, 2)
		keysAt(time.Hour+4*time.Second, 1) // a
		keysAt(3*time.Hour, 1)             // d, busy
		close(hold)
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if s := k.Stats(); s.Added != 5 || s.Refused != 0 || s.Done != 5 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// Issue 9 (e): a key not equal to itself (a NaN, a struct holding one) or
// an uncomparable value in an interface can never be found again in a map:
// it is refused with ErrInvalidKey, creates no key, and Stats.Keys stays
// right.
func TestKeyedInvalidKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var refused refusals
		var mu sync.Mutex
		var fired []float64
		k := &muster.Keyed[float64, float64]{Key: func(v float64) float64 { return v }, MaxBatchSize: 1, MaxKeys: 2,
			Hooks: &muster.Hooks{Refused: refused.hook},
			Fire: func(ctx context.Context, items []float64) error {
				mu.Lock()
				defer mu.Unlock()
				fired = append(fired, items...)
				return nil
			}}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		nan := math.NaN()
		for i := range 100 {
			if err := k.Add(ctx, nan); !errors.Is(err, muster.ErrInvalidKey) {
				t.Fatalf("NaN key: %v, want ErrInvalidKey", err)
			}
			if _, err := k.AddResult(ctx, nan); !errors.Is(err, muster.ErrInvalidKey) {
				t.Fatalf("NaN key (AddResult): %v, want ErrInvalidKey", err)
			}
			if err := k.Add(ctx, float64(i%5)); err != nil { // valid keys, evicting one another
				t.Fatal(err)
			}
			synctest.Wait()
			if s := k.Stats(); s.Keys < 0 || s.Keys > 2 {
				t.Fatalf("after %d NaNs: stats %+v", i+1, s)
			}
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		if s := k.Stats(); s.Refused != 200 || s.Added != 100 || s.Fired != 100 || s.Keys > 2 || s.Keys < 1 {
			t.Fatalf("stats %+v", s)
		}
		if n := refused.count(muster.ErrInvalidKey); n != 200 || len(fired) != 100 {
			t.Fatalf("Refused saw %d ErrInvalidKey (want 200); fired %d items", n, len(fired))
		}
		for _, v := range fired {
			if v != v {
				t.Fatal("a NaN item fired")
			}
		}

		// A struct holding a NaN; an uncomparable value in an interface.
		type pair struct{ a, b float64 }
		ks := &muster.Keyed[pair, pair]{Key: func(p pair) pair { return p }, MaxBatchSize: 1, Fire: func(context.Context, []pair) error { return nil }}
		ka := &muster.Keyed[any, any]{Key: func(v any) any { return v }, MaxBatchSize: 1, Fire: func(context.Context, []any) error { return nil }}
		if err := ks.Start(); err != nil {
			t.Fatal(err)
		}
		if err := ka.Start(); err != nil {
			t.Fatal(err)
		}
		if err := ks.Add(ctx, pair{1, nan}); !errors.Is(err, muster.ErrInvalidKey) {
			t.Errorf("struct with a NaN: %v", err)
		}
		if err := ka.Add(ctx, []int{1}); !errors.Is(err, muster.ErrInvalidKey) {
			t.Errorf("uncomparable key: %v", err)
		}
		if err := ka.Add(ctx, "fine"); err != nil {
			t.Errorf("comparable key after an uncomparable one: %v", err)
		}
		_ = ks.Stop()
		_ = ka.Stop()
		if s1, s2 := ks.Stats(), ka.Stats(); s1.Keys != 0 || s1.Refused != 1 || s2.Keys != 1 || s2.Refused != 1 || s2.Fired != 1 {
			t.Errorf("stats %+v, %+v", s1, s2)
		}
	})
}

// A Key function that panics refuses its item with a *PanicError (with the
// stack), whatever the panic: a runtime error in the user's code is not an
// invalid key.
func TestKeyedKeyPanic(t *testing.T) {
	k := &muster.Keyed[int, []int]{Key: func(v []int) int { return v[3] }, MaxBatchSize: 1,
		Fire: func(context.Context, [][]int) error { return nil }}
	if err := k.Start(); err != nil {
		t.Fatal(err)
	}
	var pe *muster.PanicError
	if err := k.Add(context.Background(), []int{1}); !errors.As(err, &pe) || errors.Is(err, muster.ErrInvalidKey) || len(pe.Stack) == 0 {
		t.Errorf("a Key that panics (index out of range): %v, want a *PanicError", err)
	}
	if err := k.Add(context.Background(), []int{1, 2, 3, 4}); err != nil {
		t.Errorf("next Add: %v", err)
	}
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if s := k.Stats(); s.Refused != 1 || s.Fired != 1 || s.Keys != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A Batcher is a Keyed[struct{}, T] with a nil Key: one key, no per-key
// state. A Keyed[struct{}, T] literal with a nil Key is that Batcher; any
// other key type still requires a Key.
func TestBatcherIsOneKeyKeyed(t *testing.T) {
	var mu sync.Mutex
	var fired [][]int
	k := &muster.Keyed[struct{}, int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, Fire: func(_ context.Context, items []int) error {
		mu.Lock()
		defer mu.Unlock()
		fired = append(fired, slices.Clone(items))
		return nil
	}}
	var b *muster.Batcher[int] = k // the same type
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := b.Add(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok := keyStats(b, struct{}{}); ok {
		t.Error("KeyStats of a Batcher found a key")
	}
	if top := b.TopKeys(3); len(top) != 0 {
		t.Errorf("TopKeys of a Batcher: %v", top)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.EqualFunc(fired, [][]int{{0, 1}, {2}}, slices.Equal) || b.Stats().Keys != 0 {
		t.Fatalf("fired %v, stats %+v", fired, b.Stats())
	}
	noKey := &muster.Keyed[string, int]{MaxBatchSize: 2, Fire: func(context.Context, []int) error { return nil }}
	if err := noKey.Start(); !errors.Is(err, muster.ErrInvalidConfig) {
		t.Fatalf("Keyed[string, int] without Key: %v, want ErrInvalidConfig", err)
	}
}

// The key the last Add found (add's common case tries it first) forgets a
// key the janitor evicted: the key's next item makes a new live key, which
// counts in Stats.Keys and TopKeys and is evicted in its turn, instead of
// joining the evicted key's state.
func TestKeyedLastKeyEvicted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var log keyedLog
		start := time.Now()
		k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 10, BatchTimeout: time.Second, KeyIdleTimeout: time.Minute,
			Fire: log.fire(start)}
		startKeyed(t, k)
		ctx := context.Background()
		if err := k.Add(ctx, kitem{"a", 1}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Minute) // fired at 1s, evicted at 61s
		synctest.Wait()
		if s := k.Stats(); s.Keys != 0 {
			t.Fatalf("stats %+v, want a evicted", s)
		}
		for _, v := range []int{2, 3} {
			if err := k.Add(ctx, kitem{"a", v}); err != nil {
				t.Fatal(err)
			}
		}
		if s, ok := keyStats(k, "a"); !ok || s.Pending != 2 || k.Stats().Keys != 1 {
			t.Fatalf("a again: %+v (found %v), stats %+v", s, ok, k.Stats())
		}
		time.Sleep(2 * time.Minute) // fired, then evicted again
		synctest.Wait()
		if s := k.Stats(); s.Keys != 0 || s.Fired != 2 {
			t.Fatalf("stats %+v, want a evicted again after 2 batches", s)
		}
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		want := []keyedBatch{{"a", []int{1}, time.Second}, {"a", []int{2, 3}, 2*time.Minute + time.Second}}
		if got := log.get(t); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("batches\n got %v\nwant %v", got, want)
		}
	})
}
