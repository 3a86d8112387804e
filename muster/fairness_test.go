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

// Issue 17 (Tenants): one key adding 100 times faster than nine others,
// against a downstream that cannot keep up with it. Without
// MaxPendingPerKey the loud key fills the shared PendingWorkCapacity and the
// quiet keys' Adds block behind it (the "shared" case shows the test sees
// that); with it, the loud key is held at its bound, every quiet Add
// returns at once (no fake time passes in it), and no quiet item is lost.
func TestFairLoudKeyDoesNotStarveQuiet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		perKey uint
	}{{"shared", 0}, {"fair", 20}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const (
					quietKeys  = 9
					quietEvery = 10 * time.Millisecond  // 100 items/s a quiet key
					loudEvery  = 100 * time.Microsecond // 10,000 items/s: 100x
					run        = 300 * time.Millisecond
					fireTakes  = 2 * time.Millisecond // 2 slots: 1,000 batches/s, 10,000 items/s at best
				)
				var mu sync.Mutex
				fired := map[string]int{}
				maxLoudPending := 0
				k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 10, BatchTimeout: 20 * time.Millisecond,
					MaxConcurrentBatches: 2, PendingWorkCapacity: 100, MaxPendingPerKey: tc.perKey,
					Fire: func(ctx context.Context, items []kitem) error {
						time.Sleep(fireTakes)
						mu.Lock()
						fired[items[0].key] += len(items)
						mu.Unlock()
						return nil
					}}
				startKeyed(t, k)
				ctx := context.Background()
				var quietBlocked, loudBlocked []time.Duration
				var wg sync.WaitGroup
				quietAdded := 0
				for q := range quietKeys {
					wg.Go(func() {
						key := fmt.Sprint("quiet", q)
						for i := 0; time.Duration(i)*quietEvery < run; i++ {
							start := time.Now()
							if err := k.Add(ctx, kitem{key, i}); err != nil {
								t.Errorf("quiet add: %v", err)
							}
							mu.Lock()
							quietAdded++
							if d := time.Since(start); d > 0 {
								quietBlocked = append(quietBlocked, d)
							}
							mu.Unlock()
							time.Sleep(quietEvery)
						}
					})
				}
				wg.Go(func() {
					for i := 0; time.Duration(i)*loudEvery < run; i++ {
						start := time.Now()
						if err := k.Add(ctx, kitem{"loud", i}); err != nil {
							t.Errorf("loud add: %v", err)
						}
						s, _ := keyStats(k, "loud")
						mu.Lock()
						maxLoudPending = max(maxLoudPending, s.Pending)
						if d := time.Since(start); d > 0 {
							loudBlocked = append(loudBlocked, d)
						}
						mu.Unlock()
						time.Sleep(loudEvery)
					}
				})
				wg.Wait()
				if err := k.Stop(); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				defer mu.Unlock()
				quietFired := 0
				for key, n := range fired {
					if key != "loud" {
						quietFired += n
					}
				}
				if quietFired != quietAdded || quietAdded != quietKeys*int(run/quietEvery) {
					t.Errorf("quiet keys: %d added, %d fired", quietAdded, quietFired)
				}
				if len(loudBlocked) == 0 {
					t.Errorf("the loud key was never held back")
				}
				t.Logf("%d quiet Adds of %d blocked (longest %v); loud: %d blocked, at most %d pending",
					len(quietBlocked), quietAdded, slices.Max(append(quietBlocked, 0)), len(loudBlocked), maxLoudPending)
				if tc.perKey == 0 {
					if len(quietBlocked) == 0 {
						t.Errorf("without MaxPendingPerKey the quiet keys were never blocked: the test shows nothing")
					}
					return
				}
				if len(quietBlocked) != 0 {
					t.Errorf("%d quiet Adds blocked, up to %v", len(quietBlocked), slices.Max(quietBlocked))
				}
				if maxLoudPending != int(tc.perKey) {
					t.Errorf("the loud key held up to %d items, want exactly its bound %d", maxLoudPending, tc.perKey)
				}
			})
		})
	}
}

// MaxPendingPerKey must be below PendingWorkCapacity: at or above it one
// key could still fill the capacity, and the setting would do nothing.
func TestMaxPendingPerKeyConfig(t *testing.T) {
	fire := func(context.Context, []int) error { return nil }
	key := func(v int) int { return v }
	for _, tc := range []struct {
		capacity, perKey uint
		ok               bool
	}{{0, 0, true}, {100, 0, true}, {100, 99, true}, {100, 100, false}, {100, 101, false}, {0, 1, false}} {
		k := &muster.Keyed[int, int]{Key: key, MaxBatchSize: 1, Fire: fire, PendingWorkCapacity: tc.capacity, MaxPendingPerKey: tc.perKey}
		err := k.Start()
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, muster.ErrInvalidConfig) {
			t.Errorf("capacity %d, MaxPendingPerKey %d: Start = %v", tc.capacity, tc.perKey, err)
		}
		if err == nil {
			_ = k.Stop()
		}
	}
}

// Admission order with one slot: the loud key "l" has four batches closed
// (the first in flight, three waiting), then "q" closes two and "r" one.
// Oldest first, the quiet keys wait for the loud key's whole backlog; with
// MaxPendingPerKey, free slots go round-robin: each key with a batch waiting
// gets one in turn (a key not yet served first), and each key's batches
// keep their order.
func TestFairAdmissionRoundRobin(t *testing.T) {
	for _, tc := range []struct {
		perKey uint
		want   []string
	}{
		{0, []string{"l0", "l1", "l2", "l3", "q0", "q1", "r0"}},
		{50, []string{"l0", "q0", "r0", "l1", "q1", "l2", "l3"}},
	} {
		t.Run(fmt.Sprint("perKey=", tc.perKey), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var mu sync.Mutex
				var order []string
				release := make(chan struct{})
				k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1,
					PendingWorkCapacity: 100, MaxPendingPerKey: tc.perKey,
					Fire: func(ctx context.Context, items []kitem) error {
						mu.Lock()
						order = append(order, fmt.Sprint(items[0].key, items[0].v/2))
						mu.Unlock()
						<-release
						return nil
					}}
				startKeyed(t, k)
				add := func(key string, batches int) {
					for i := range 2 * batches {
						if err := k.Add(context.Background(), kitem{key, i}); err != nil {
							t.Fatal(err)
						}
					}
				}
				add("l", 4)
				add("q", 2)
				add("r", 1)
				synctest.Wait()
				if s := k.Stats(); s.InFlight != 1 || s.Waiting != 6 {
					t.Fatalf("stats %+v", s)
				}
				for range 7 {
					release <- struct{}{}
				}
				if err := k.Stop(); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(order, tc.want) {
					t.Errorf("fired %v, want %v", order, tc.want)
				}
			})
		})
	}
}

// What each Overflow policy does to a key at MaxPendingPerKey, with exact
// KeyStats and TopKeys: one slot, batches of 2, a bound of 4. Key "a" has
// [a0 a1] in flight, [a2 a3] waiting (the oldest of all), then "b" closes
// [b0 b1] and "a" [a4 a5]: a holds 4 items that have not fired, its bound.
// a6 meets the policy; b's items are still taken, and never dropped for a.
func TestMaxPendingPerKeyPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy muster.Overflow
		err    error                   // Add of a6
		fired  [][]int                 // a's batches, in order
		a      muster.KeyStats[string] // after a6
	}{
		{muster.OverflowFail, muster.ErrFull, [][]int{{0, 1}, {2, 3}, {4, 5}}, muster.KeyStats[string]{Key: "a", Pending: 4, Waiting: 2, InFlight: 1}},
		{muster.OverflowDropNewest, nil, [][]int{{0, 1}, {2, 3}, {4, 5}}, muster.KeyStats[string]{Key: "a", Pending: 4, Waiting: 2, InFlight: 1}},
		// a's oldest item behind the oldest waiting batch is a4: it goes, a6
		// joins a new open batch.
		{muster.OverflowDropOldest, nil, [][]int{{0, 1}, {2, 3}, {5}, {6}}, muster.KeyStats[string]{Key: "a", Pending: 4, Waiting: 2, InFlight: 1}},
		{muster.OverflowBlock, context.DeadlineExceeded, [][]int{{0, 1}, {2, 3}, {4, 5}}, muster.KeyStats[string]{Key: "a", Pending: 4, Waiting: 2, InFlight: 1}},
	} {
		t.Run(fmt.Sprint("policy", tc.policy), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				var mu sync.Mutex
				fired := map[string][][]int{}
				var rf refusals
				k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 100,
					MaxPendingPerKey: 4, Overflow: tc.policy, Hooks: &muster.Hooks{Refused: rf.hook},
					Fire: func(ctx context.Context, items []kitem) error {
						<-release
						mu.Lock()
						defer mu.Unlock()
						var vs []int
						for _, it := range items {
							vs = append(vs, it.v)
						}
						fired[items[0].key] = append(fired[items[0].key], vs)
						return nil
					}}
				if s, ok := keyStats(k, "a"); ok || s != (muster.KeyStats[string]{}) || k.TopKeys(3) != nil {
					t.Fatal("KeyStats or TopKeys before Start")
				}
				startKeyed(t, k)
				ctx := context.Background()
				add := func(key string, v int) error {
					tctx, cancel := context.WithTimeout(ctx, time.Second)
					defer cancel()
					return k.Add(tctx, kitem{key, v})
				}
				for _, it := range []kitem{{"a", 0}, {"a", 1}, {"a", 2}, {"a", 3}, {"b", 0}, {"b", 1}, {"a", 4}, {"a", 5}} {
					if err := add(it.key, it.v); err != nil {
						t.Fatalf("add %v: %v", it, err)
					}
				}
				if got := k.TopKeys(5); !slices.Equal(got, []muster.KeyStats[string]{
					{Key: "a", Pending: 4, Waiting: 2, InFlight: 1}, {Key: "b", Pending: 2, Waiting: 1},
				}) {
					t.Fatalf("TopKeys %+v", got)
				}
				start := time.Now()
				if err := add("a", 6); !errors.Is(err, tc.err) || err == nil && tc.err != nil {
					t.Fatalf("add a6: %v, want %v", err, tc.err)
				}
				if blocked := time.Since(start); (tc.policy == muster.OverflowBlock) != (blocked == time.Second) {
					t.Fatalf("add a6 returned after %v", blocked)
				}
				// Other keys are still taken, at once.
				start = time.Now()
				for i := range 2 {
					if err := add("b", 2+i); err != nil || time.Since(start) != 0 {
						t.Fatalf("add b%d: %v after %v", 2+i, err, time.Since(start))
					}
				}
				if err := add("c", 0); err != nil || time.Since(start) != 0 {
					t.Fatalf("add c0: %v after %v", err, time.Since(start))
				}
				if s, ok := keyStats(k, "a"); !ok || s != tc.a {
					t.Fatalf("KeyStats(a) = %+v, %v; want %+v", s, ok, tc.a)
				}
				if s, ok := keyStats(k, "b"); !ok || s != (muster.KeyStats[string]{Key: "b", Pending: 4, Waiting: 2}) {
					t.Fatalf("KeyStats(b) = %+v, %v", s, ok)
				}
				if _, ok := keyStats(k, "z"); ok {
					t.Fatal("KeyStats of a key never added")
				}
				if got := k.TopKeys(2); len(got) != 2 || got[0] != tc.a || got[1].Key != "b" || k.TopKeys(0) != nil {
					t.Fatalf("TopKeys(2) %+v", got)
				}
				close(release)
				if err := k.Stop(); err != nil {
					t.Fatal(err)
				}
				if !slices.EqualFunc(fired["a"], tc.fired, slices.Equal) {
					t.Errorf("a fired %v, want %v", fired["a"], tc.fired)
				}
				if !slices.EqualFunc(fired["b"], [][]int{{0, 1}, {2, 3}}, slices.Equal) {
					t.Errorf("b fired %v", fired["b"])
				}
				if got := rf.get(); len(got) != 1 || tc.err != nil && !errors.Is(got[0], tc.err) || tc.err == nil && !errors.Is(got[0], muster.ErrDropped) {
					t.Errorf("refusals %v", got)
				}
				if got := k.TopKeys(5); len(got) != 0 {
					t.Errorf("TopKeys after Stop: %+v", got)
				}
			})
		})
	}
}

// The bound holds exactly under many producers (run with -race): 16
// producers on one key and 4 on others, against a slow downstream. After
// every Add, and as every batch fires, the loud key holds at most
// MaxPendingPerKey items that have not fired, and it does reach that many;
// every item taken fires exactly once.
func TestMaxPendingPerKeyManyProducers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const bound, perProducer = 25, 200
		var mu sync.Mutex
		seen := map[kitem]int{}
		maxPending := 0
		var k *muster.Keyed[string, kitem]
		sample := func() {
			s, _ := keyStats(k, "loud")
			mu.Lock()
			maxPending = max(maxPending, s.Pending)
			mu.Unlock()
		}
		k = &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 10, BatchTimeout: time.Millisecond, MaxConcurrentBatches: 2,
			PendingWorkCapacity: 1000, MaxPendingPerKey: bound,
			Fire: func(ctx context.Context, items []kitem) error {
				sample()
				time.Sleep(time.Millisecond)
				mu.Lock()
				defer mu.Unlock()
				for _, it := range items {
					seen[it]++
				}
				return nil
			}}
		startKeyed(t, k)
		var wg sync.WaitGroup
		for p := range 20 {
			key := "loud"
			if p >= 16 {
				key = fmt.Sprint("quiet", p)
			}
			wg.Go(func() {
				for i := range perProducer {
					if err := k.Add(context.Background(), kitem{key, p*perProducer + i}); err != nil {
						t.Errorf("add: %v", err)
					}
					sample()
				}
			})
		}
		wg.Wait()
		if err := k.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if maxPending != bound {
			t.Errorf("the loud key held up to %d items, want exactly %d", maxPending, bound)
		}
		if len(seen) != 20*perProducer {
			t.Errorf("%d items fired, want %d", len(seen), 20*perProducer)
		}
		for it, n := range seen {
			if n != 1 {
				t.Errorf("%v fired %d times", it, n)
			}
		}
	})
}

// BenchmarkKeyedTopKeys measures TopKeys(10) over the default 1,024 live keys,
// each holding an item: the cost of a top-k scrape, during which producers
// wait for the client's locks.
func BenchmarkKeyedTopKeys(b *testing.B) {
	k := &muster.Keyed[int, int]{Key: func(v int) int { return v }, MaxBatchSize: 10, BatchTimeout: time.Hour,
		Fire: func(context.Context, []int) error { return nil }}
	if err := k.Start(); err != nil {
		b.Fatal(err)
	}
	defer k.Stop()
	for i := range 1024 {
		if err := k.Add(context.Background(), i); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := k.TopKeys(10); len(got) != 10 {
			b.Fatalf("%d keys", len(got))
		}
	}
}

// An observer, which does not know a Keyed's key type, reads the top keys
// through ClientInfo.TopKeys (a dashboard's top-k, at scrape time), and
// learns MaxPendingPerKey; a Batcher has neither.
func TestClientInfoTopKeys(t *testing.T) {
	var infos []muster.ClientInfo
	obs := observerFunc(func(c muster.ClientInfo) *muster.Hooks { infos = append(infos, c); return nil })
	release := make(chan struct{})
	k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
		MaxPendingPerKey: 5, Hooks: obs, Fire: func(context.Context, []kitem) error { <-release; return nil }}
	startKeyed(t, k)
	b := &muster.Batcher[int]{MaxBatchSize: 2, Hooks: obs, Fire: func(context.Context, []int) error { return nil }}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	for i, key := range []string{"x", "x", "y", "x", "x", "x"} {
		if err := k.Add(context.Background(), kitem{key, i}); err != nil {
			t.Fatal(err)
		}
	}
	ki, bi := infos[0], infos[1]
	want := []muster.KeyStats[any]{{Key: "x", Pending: 3, Waiting: 1, InFlight: 1}, {Key: "y", Pending: 1}}
	if got := ki.TopKeys(5); !slices.Equal(got, want) || ki.MaxPendingPerKey != 5 {
		t.Errorf("ClientInfo.TopKeys(5) = %+v, MaxPendingPerKey %d; want %+v, 5", got, ki.MaxPendingPerKey, want)
	}
	if got := ki.TopKeys(1); !slices.Equal(got, want[:1]) {
		t.Errorf("ClientInfo.TopKeys(1) = %+v", got)
	}
	if bi.TopKeys != nil || bi.MaxPendingPerKey != 0 {
		t.Error("a Batcher's ClientInfo has TopKeys or MaxPendingPerKey")
	}
	close(release)
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
}

// A key's batch that begins to wait already holds all its items: with
// MaxBatchSize above MaxPendingPerKey the key holds that one full batch, and
// only its further Adds meet the Overflow policy (as MaxPendingPerKey's doc
// says: at most that many items, or one full batch if that is more).
func TestMaxPendingPerKeyBelowBatchSize(t *testing.T) {
	release := make(chan struct{})
	k := &muster.Keyed[string, kitem]{Key: kitemKey, MaxBatchSize: 5, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
		MaxPendingPerKey: 2, Overflow: muster.OverflowFail,
		Fire: func(context.Context, []kitem) error { <-release; return nil }}
	startKeyed(t, k)
	ctx := context.Background()
	for i := range 10 { // [0..4] in flight, [5..9] waiting for the slot
		if err := k.Add(ctx, kitem{"a", i}); err != nil {
			t.Fatalf("add a%d: %v", i, err)
		}
	}
	if err := k.Add(ctx, kitem{"a", 10}); !errors.Is(err, muster.ErrFull) {
		t.Fatalf("add a10: %v, want ErrFull", err)
	}
	if err := k.Add(ctx, kitem{"b", 0}); err != nil {
		t.Fatalf("add b0: %v", err)
	}
	if s, _ := keyStats(k, "a"); s != (muster.KeyStats[string]{Key: "a", Pending: 5, Waiting: 1, InFlight: 1}) {
		t.Fatalf("KeyStats(a) = %+v, want 5 pending (one full batch, above MaxPendingPerKey 2)", s)
	}
	close(release)
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
}
