package journal_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

type item = journal.Item[int]

// sink records the batches Fire received.
type sink struct {
	mu      sync.Mutex
	batches [][]item
}

func (s *sink) record(items []item) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches = append(s.batches, slices.Clone(items))
}

func (s *sink) fire(_ context.Context, items []item) error { s.record(items); return nil }

func (s *sink) items() []item {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []item
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

// deadLetters records DeadLetter calls.
type deadLetters struct {
	mu    sync.Mutex
	items [][]item
	errs  []error
}

func (d *deadLetters) deadLetter(_ context.Context, items []item, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.items = append(d.items, slices.Clone(items))
	d.errs = append(d.errs, err)
}

func (d *deadLetters) snapshot() ([][]item, []error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.items), slices.Clone(d.errs)
}

func values(items []item) []int {
	out := make([]int, len(items))
	for i, it := range items {
		out[i] = it.Value
	}
	return out
}

func ids(items []item) []journal.ID {
	out := make([]journal.ID, len(items))
	for i, it := range items {
		out[i] = it.ID
	}
	return out
}

// testLog is the embedded Log in a test's directory.
type testLog struct {
	*journal.Log
	t    *testing.T
	dir  string
	opts journal.LogOptions
}

// newLog opens a Log in a new directory. Inside a synctest bubble, Close
// it before the bubble ends (its committer goroutine belongs to the
// bubble).
func newLog(t *testing.T, opts journal.LogOptions) *testLog {
	t.Helper()
	return openLog(t, t.TempDir(), opts)
}

func openLog(t *testing.T, dir string, opts journal.LogOptions) *testLog {
	t.Helper()
	l, err := journal.Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{Log: l, t: t, dir: dir, opts: opts}
}

// restart closes the log and opens its directory again, as the next
// process would after this one ended, however it ended.
func (l *testLog) restart() *testLog {
	l.t.Helper()
	_ = l.Close()
	return openLog(l.t, l.dir, l.opts)
}

// short returns the run and number of a Log's ID ("1-3": the third item of
// the first run), without the log's random identity.
func short(id journal.ID) string {
	parts := strings.Split(string(id), "-")
	if len(parts) < 2 {
		return string(id)
	}
	return strings.Join(parts[len(parts)-2:], "-")
}

func shorts(items []item) []string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = short(it.ID)
	}
	return out
}

func start(t *testing.T, j *journal.Batcher[int]) {
	t.Helper()
	if err := j.Start(); err != nil {
		t.Fatal(err)
	}
}

func addAll(t *testing.T, j *journal.Batcher[int], vs ...int) {
	t.Helper()
	for _, v := range vs {
		if err := j.Add(context.Background(), v); err != nil {
			t.Fatalf("Add(%d): %v", v, err)
		}
	}
}

// Fire receives each item with the ID the Store gave it; delivered items
// are finished, and the hooks see every append.
func TestLayerDeliversAndFinishes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var s sink
		appended := 0
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 3, MaxConcurrentBatches: 1, Fire: s.fire},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](),
				Hooks: &journal.Hooks{Appended: func(_ time.Duration, err error) {
					if err == nil {
						appended++
					}
				}}})
		start(t, j)
		addAll(t, j, 0, 1, 2, 3, 4, 5, 6)
		if got := store.Stats().Items; got == 0 {
			t.Fatal("nothing journaled before Fire")
		}
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		got := s.items()
		if !slices.Equal(values(got), []int{0, 1, 2, 3, 4, 5, 6}) {
			t.Fatalf("fired %v", values(got))
		}
		for i, it := range got {
			if want := fmt.Sprintf("1-%d", i); short(it.ID) != want || it.Replayed || it.Accepted.IsZero() {
				t.Fatalf("item %d: %+v, want ID ...-%s", i, it, want)
			}
		}
		st := j.Stats()
		if st.Store.Items != 0 || st.Store.Finished != 7 || st.Unfinished != 0 || st.Added != 7 || appended != 7 {
			t.Fatalf("stats %+v, %d appended", st, appended)
		}
	})
}

var errDown = errors.New("downstream down")

// A batch that fails for good, after the retry middleware's attempts,
// reaches DeadLetter with its IDs, and is finished.
func TestLayerFailedForGood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var dl deadLetters
		attempts := 0
		calls := 0
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 2,
			Fire: retry.New[item](retry.WithMaxAttempts(3))(func(context.Context, []item) error {
				attempts++
				return errDown
			})},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter,
				Hooks: &journal.Hooks{DeadLettered: func(n int, err error) { calls += n }}})
		start(t, j)
		addAll(t, j, 10, 11)
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		items, errs := dl.snapshot()
		if len(items) != 1 || !slices.Equal(values(items[0]), []int{10, 11}) || !errors.Is(errs[0], errDown) ||
			!errors.Is(errs[0], retry.ErrExhausted) || attempts != 3 {
			t.Fatalf("dead letters %v %v after %d attempts", items, errs, attempts)
		}
		if !slices.Equal(shorts(items[0]), []string{"1-0", "1-1"}) {
			t.Fatalf("ids %v", ids(items[0]))
		}
		if st := j.Stats(); st.Store.Items != 0 || st.DeadLettered != 2 || calls != 2 || st.Unfinished != 0 {
			t.Fatalf("stats %+v, hook saw %d", st, calls)
		}
	})
}

// The retry middleware resends only the failed items of an
// *muster.ItemErrors: each attempt's items keep their IDs; the delivered
// ones are finished, the one that fails for good is dead-lettered alone.
func TestLayerRetryKeepsIDsAligned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var dl deadLetters
		var attempts [][]item
		errBad := errors.New("bad row")
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 5,
			Fire: retry.New[item](retry.WithMaxAttempts(3))(func(_ context.Context, items []item) error {
				attempts = append(attempts, slices.Clone(items))
				errs := make([]error, len(items))
				failed := false
				for i, it := range items {
					// 1 fails once, 3 always.
					if it.Value == 3 || it.Value == 1 && len(attempts) == 1 {
						errs[i], failed = fmt.Errorf("%d: %w", it.Value, errBad), true
					}
				}
				if failed {
					return &muster.ItemErrors{Errs: errs}
				}
				return nil
			})},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter})
		start(t, j)
		addAll(t, j, 0, 1, 2, 3, 4)
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		idOf := map[int]journal.ID{}
		for n, a := range attempts {
			for _, it := range a {
				if id, ok := idOf[it.Value]; ok && id != it.ID {
					t.Fatalf("attempt %d: item %d has ID %s, had %s", n+1, it.Value, it.ID, id)
				}
				idOf[it.Value] = it.ID
			}
		}
		if len(attempts) != 3 || !slices.Equal(values(attempts[1]), []int{1, 3}) || !slices.Equal(values(attempts[2]), []int{3}) {
			t.Fatalf("attempts %v", attempts)
		}
		items, errs := dl.snapshot()
		if len(items) != 1 || len(items[0]) != 1 || items[0][0].Value != 3 || items[0][0].ID != idOf[3] || !errors.Is(errs[0], errBad) {
			t.Fatalf("dead letters %v %v", items, errs)
		}
		if store.Stats().Items != 0 {
			t.Fatalf("left in the store: %+v", store.Stats())
		}
	})
}

// Items older than MaxItemAge when their batch fires are dead-lettered with
// ErrExpired, not delivered; the others of their batch are.
func TestLayerMaxItemAge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var s sink
		var dl deadLetters
		release := make(chan struct{})
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
			Fire: func(ctx context.Context, items []item) error {
				if items[0].Value == 0 {
					<-release
				}
				return s.fire(ctx, items)
			}},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter, MaxItemAge: time.Second})
		start(t, j)
		addAll(t, j, 0, 1) // in flight until released
		addAll(t, j, 2, 3) // waits: both expire
		addAll(t, j, 4)
		time.Sleep(1500 * time.Millisecond)
		r5, err := j.AddResult(context.Background(), 5) // closes [4 5]: 4 expires, 5 does not
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		close(release)
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		if got := values(s.items()); !slices.Equal(got, []int{0, 1, 5}) {
			t.Fatalf("delivered %v", got)
		}
		if err := r5.Err(); err != nil {
			t.Fatalf("item 5: %v", err)
		}
		items, errs := dl.snapshot()
		if len(items) != 2 || !slices.Equal(values(items[0]), []int{2, 3}) || !slices.Equal(values(items[1]), []int{4}) ||
			!errors.Is(errs[0], journal.ErrExpired) || !errors.Is(errs[1], journal.ErrExpired) {
			t.Fatalf("dead letters %v %v", items, errs)
		}
		if st := j.Stats(); st.Expired != 3 || st.Store.Items != 0 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// Items the batcher drops (its Overflow policy) reach DeadLetter with
// muster.ErrDropped and are finished.
func TestLayerDroppedByBatcher(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var dl deadLetters
		release := make(chan struct{})
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Overflow: muster.OverflowDropNewest,
			Fire: func(context.Context, []item) error { <-release; return nil }},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter})
		start(t, j)
		addAll(t, j, 0, 1, 2) // 0 in flight, 1 waits, 2 dropped
		items, errs := dl.snapshot()
		if len(items) != 1 || items[0][0].Value != 2 || short(items[0][0].ID) != "1-2" || !errors.Is(errs[0], muster.ErrDropped) {
			t.Fatalf("dead letters %v %v", items, errs)
		}
		if st := store.Stats(); st.Items != 2 || st.Finished != 1 {
			t.Fatalf("journaled %+v", st)
		}
		close(release)
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A full Store applies the batcher's Overflow: Fail refuses with an error
// matching muster.ErrFull and ErrFull, a drop policy dead-letters the
// incoming item, Block waits for room.
func TestLayerStoreFull(t *testing.T) {
	for _, policy := range []muster.Overflow{muster.OverflowFail, muster.OverflowDropNewest, muster.OverflowBlock} {
		t.Run(fmt.Sprint("policy", policy), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newLog(t, journal.LogOptions{MaxBytes: 16 << 10, Durability: journal.Process})
				defer func() { _ = store.Close() }()
				// Fill the log with records of the items' size (one
				// digit), appended outside the batcher.
				var fillers []journal.ID
				for {
					id, err := store.Append(context.Background(), []byte("0"), time.Now(), false)
					if errors.Is(err, journal.ErrFull) {
						break
					} else if err != nil {
						t.Fatal(err)
					}
					fillers = append(fillers, id)
				}
				var s sink
				var dl deadLetters
				j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Overflow: policy, Fire: s.fire},
					journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter})
				start(t, j)
				var err error
				added := make(chan struct{})
				go func() { err = j.Add(context.Background(), 3); close(added) }()
				synctest.Wait()
				switch policy {
				case muster.OverflowFail:
					<-added
					if !errors.Is(err, muster.ErrFull) || !errors.Is(err, journal.ErrFull) {
						t.Fatalf("Add: %v", err)
					}
				case muster.OverflowDropNewest:
					<-added
					items, errs := dl.snapshot()
					if err != nil || len(items) != 1 || items[0][0].Value != 3 || items[0][0].ID != "" || !errors.Is(errs[0], muster.ErrDropped) {
						t.Fatalf("Add: %v; dead letters %v %v", err, items, errs)
					}
					// AddResult has no Result to give: it says so.
					if _, err := j.AddResult(context.Background(), 4); !errors.Is(err, muster.ErrDropped) {
						t.Fatalf("AddResult: %v", err)
					}
				case muster.OverflowBlock:
					select {
					case <-added:
						t.Fatalf("Add returned %v with the store full", err)
					default:
					}
					if err := store.Finish(fillers...); err != nil { // segments deleted: room
						t.Fatal(err)
					}
					<-added
					if err != nil {
						t.Fatal(err)
					}
				}
				if err := j.Stop(); err != nil {
					t.Fatal(err)
				}
				var want []int
				if policy == muster.OverflowBlock {
					want = []int{3}
				}
				if got := values(s.items()); !slices.Equal(got, want) {
					t.Fatalf("delivered %v", got)
				}
			})
		})
	}
}

// An item the batcher refuses after it was journaled is finished, and Add
// returns the batcher's error.
func TestLayerRefusedItemFinished(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var s sink
		j := journal.WrapKeyed(&muster.Keyed[float64, item]{MaxBatchSize: 2, Fire: s.fire,
			Key: func(it item) float64 {
				if it.Value < 0 {
					return math.NaN()
				}
				return 1
			}},
			journal.Config[int]{Store: store, Codec: journal.JSON[int]()})
		start(t, j)
		if err := j.Add(context.Background(), -1); !errors.Is(err, muster.ErrInvalidKey) {
			t.Fatalf("Add: %v", err)
		}
		if st := j.Stats(); st.Store.Items != 0 || st.Store.Appended != 1 || st.Unfinished != 0 {
			t.Fatalf("stats %+v", st)
		}
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := j.Add(context.Background(), 1); !errors.Is(err, muster.ErrStopped) || store.Stats().Appended != 1 {
			t.Fatalf("Add after Stop: %v (journaled: %d)", err, store.Stats().Appended)
		}
	})
}

// At a Shutdown deadline the items of abandoned batches and of in-flight
// batches whose context the deadline canceled stay journaled (Kept counts
// them exactly; DeadLetter sees none), and the next start replays them with
// the same IDs, oldest first.
func TestLayerShutdownKeepsAndReplays(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var dl deadLetters
		var first sink
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
			// The downstream call fails when the deadline cancels it.
			Fire: func(ctx context.Context, items []item) error { first.record(items); <-ctx.Done(); return errDown }},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter})
		start(t, j)
		addAll(t, j, 0, 1, 2, 3, 4) // [0 1] in flight, [2 3] waiting, [4] open
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := j.Shutdown(ctx)
		se, ok := errors.AsType[*muster.ShutdownError](err)
		if !ok || se.Kept != 5 || se.Items != 5 {
			t.Fatalf("Shutdown: %v", err)
		}
		synctest.Wait() // the in-flight batch has returned its error
		if items, _ := dl.snapshot(); len(items) != 0 {
			t.Fatalf("dead-lettered %v", items)
		}
		if n := store.Stats().Items; n != 5 {
			t.Fatalf("journaled after the deadline: %d", n)
		}

		// The next run.
		inFlight := first.items()
		store2 := store.restart()
		defer func() { _ = store2.Close() }()
		var s sink
		recovered := 0
		j2 := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 2, MaxConcurrentBatches: 1, Fire: s.fire},
			journal.Config[int]{Store: store2, Codec: journal.JSON[int](), Hooks: &journal.Hooks{Recovered: func() { recovered++ }}})
		start(t, j2)
		<-j2.ReplayDone()
		addAll(t, j2, 5)
		if err := j2.Stop(); err != nil {
			t.Fatal(err)
		}
		got := s.items()
		if !slices.Equal(values(got), []int{0, 1, 2, 3, 4, 5}) ||
			!slices.Equal(shorts(got), []string{"1-0", "1-1", "1-2", "1-3", "1-4", "2-0"}) ||
			!slices.Equal(ids(got[:2]), ids(inFlight)) {
			t.Fatalf("replayed %v %v, want the first run's IDs (%v in flight)", values(got), ids(got), ids(inFlight))
		}
		for i, it := range got {
			if it.Replayed != (i < 5) {
				t.Fatalf("item %d: Replayed %v", i, it.Replayed)
			}
		}
		if st := j2.Stats(); st.Replayed != 5 || recovered != 5 || st.Store.Items != 0 || !st.ReplayDone || st.ReplayErr != nil {
			t.Fatalf("stats %+v", st)
		}
	})
}

// A Keyed replays each key's items in the order they were accepted.
func TestLayerReplayKeyedOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		codec := journal.JSON[int]()
		for v := range 10 {
			data, _ := codec.Encode(nil, v)
			if _, err := store.Append(context.Background(), data, time.Now(), true); err != nil {
				t.Fatal(err)
			}
		}
		store = store.restart() // the previous run crashed
		var s sink
		j := journal.WrapKeyed(&muster.Keyed[int, item]{MaxBatchSize: 2, BatchTimeout: time.Second, MaxConcurrentBatches: 1, Fire: s.fire,
			Key: func(it item) int { return it.Value % 3 }},
			journal.Config[int]{Store: store, Codec: codec})
		start(t, j)
		<-j.ReplayDone()
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		perKey := map[int][]int{}
		for _, b := range s.batches {
			for _, it := range b {
				perKey[it.Value%3] = append(perKey[it.Value%3], it.Value)
			}
		}
		for k, vs := range perKey {
			if !slices.IsSorted(vs) {
				t.Fatalf("key %d replayed %v", k, vs)
			}
		}
		if len(perKey[0])+len(perKey[1])+len(perKey[2]) != 10 || store.Stats().Items != 0 {
			t.Fatalf("replayed %v", perKey)
		}
	})
}

// ReplayLimiter paces the replay; Stop cuts a replay short, and what it had
// not reached stays journaled.
func TestLayerReplayLimiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		for v := range 20 {
			if _, err := store.Append(context.Background(), fmt.Append(nil, v), time.Now(), true); err != nil {
				t.Fatal(err)
			}
		}
		store = store.restart()
		var s sink
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Fire: s.fire},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), ReplayLimiter: rate.NewLimiter(10, 1)})
		t0 := time.Now()
		start(t, j)
		<-j.ReplayDone()
		if d := time.Since(t0); d != 1900*time.Millisecond { // the burst, then 19 at 10/s
			t.Fatalf("replay took %v", d)
		}

		// Cut short.
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		_ = store.Close()
		store = newLog(t, journal.LogOptions{})
		for v := range 20 {
			_, _ = store.Append(context.Background(), fmt.Append(nil, v), time.Now(), true)
		}
		store = store.restart()
		j = journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Fire: s.fire},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), ReplayLimiter: rate.NewLimiter(10, 1)})
		start(t, j)
		time.Sleep(450 * time.Millisecond) // 5 replayed
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		if st := j.Stats(); st.Replayed != 5 || st.Store.Items != 15 || !st.ReplayDone || st.ReplayErr != nil {
			t.Fatalf("stats %+v", st)
		}
	})
}

// A record the Codec cannot decode, or whose item the batcher refuses for
// good, is dead-lettered with an error naming why, and finished; the
// replay goes on.
func TestLayerReplayUndeliverable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		for _, data := range []string{"not json", "-1", "7"} {
			_, _ = store.Append(context.Background(), []byte(data), time.Now(), true)
		}
		store = store.restart()
		var s sink
		var dl deadLetters
		j := journal.WrapKeyed(&muster.Keyed[float64, item]{MaxBatchSize: 1, Fire: s.fire,
			Key: func(it item) float64 {
				if it.Value < 0 {
					return math.NaN()
				}
				return 1
			}},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), DeadLetter: dl.deadLetter})
		start(t, j)
		<-j.ReplayDone()
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		items, errs := dl.snapshot()
		if len(items) != 2 || short(items[0][0].ID) != "1-0" || !items[0][0].Replayed ||
			errs[0].Error() != "journal: decoding record "+string(items[0][0].ID)+": invalid character 'o' in literal null (expecting 'u')" ||
			short(items[1][0].ID) != "1-1" || !errors.Is(errs[1], muster.ErrInvalidKey) {
			t.Fatalf("dead letters %v %v", items, errs)
		}
		if got := values(s.items()); !slices.Equal(got, []int{7}) || store.Stats().Items != 0 || j.Stats().ReplayErr != nil {
			t.Fatalf("delivered %v", got)
		}
	})
}

// Under OverflowFail the replay waits for room instead of failing.
func TestLayerReplayWaitsUnderOverflowFail(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		for v := range 5 {
			_, _ = store.Append(context.Background(), fmt.Append(nil, v), time.Now(), true)
		}
		store = store.restart()
		var s sink
		release := make(chan struct{})
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Overflow: muster.OverflowFail,
			Fire: func(ctx context.Context, items []item) error { <-release; return s.fire(ctx, items) }},
			journal.Config[int]{Store: store, Codec: journal.JSON[int]()})
		start(t, j)
		time.Sleep(time.Second)
		if st := j.Stats(); st.Replayed != 2 || st.ReplayDone { // one in flight, one waiting
			t.Fatalf("stats %+v", st)
		}
		close(release)
		<-j.ReplayDone()
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		if got := values(s.items()); !slices.Equal(got, []int{0, 1, 2, 3, 4}) || j.Stats().ReplayErr != nil {
			t.Fatalf("delivered %v, %+v", got, j.Stats())
		}
	})
}

// waitCounter is a replay Limiter that lets every item through at once and
// sends on its channel each time the replay asks.
type waitCounter chan struct{}

func (w waitCounter) WaitN(context.Context, int) error { w <- struct{}{}; return nil }

// Stop ends at once a replay that waits for room under OverflowFail, with
// the batcher still full: the item it was waiting to add stays journaled.
func TestLayerStopEndsReplayWaitingForRoom(t *testing.T) {
	store := newLog(t, journal.LogOptions{})
	defer func() { _ = store.Close() }()
	for v := range 5 {
		_, _ = store.Append(context.Background(), fmt.Append(nil, v), time.Now(), true)
	}
	store = store.restart()
	var s sink
	release := make(chan struct{})
	asked := make(waitCounter, 5)
	j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Overflow: muster.OverflowFail,
		Fire: func(ctx context.Context, items []item) error { <-release; return s.fire(ctx, items) }},
		journal.Config[int]{Store: store, Codec: journal.JSON[int](), ReplayLimiter: asked})
	start(t, j)
	for range 3 { // one in flight, one waiting, the third refused as full
		<-asked
	}
	stopped := make(chan error, 1)
	go func() { stopped <- j.Stop() }()
	select {
	case <-j.ReplayDone():
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Stop did not end the replay in 10 s while the batcher was full")
	}
	close(release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if got := values(s.items()); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("delivered %v, want [0 1]", got)
	}
	if st := j.Stats(); st.Replayed != 2 || st.Unfinished != 0 || st.ReplayErr != nil {
		t.Errorf("stats %+v", st)
	}
	store = store.restart()
	if st := store.Stats(); st.Items != 3 {
		t.Errorf("%d items journaled after Stop, want the 3 not replayed", st.Items)
	}
}

// Start refuses a configuration it cannot honour.
func TestLayerConfigErrors(t *testing.T) {
	fire := func(context.Context, []item) error { return nil }
	store := newLog(t, journal.LogOptions{})
	defer store.Close()
	for name, j := range map[string]*journal.Batcher[int]{
		"nil batcher": journal.Wrap[int](nil, journal.Config[int]{Store: store, Codec: journal.JSON[int]()}),
		"nil keyed":   journal.WrapKeyed[int, int](nil, journal.Config[int]{Store: store, Codec: journal.JSON[int]()}),
		"no store":    journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Fire: fire}, journal.Config[int]{Codec: journal.JSON[int]()}),
		"no codec":    journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Fire: fire}, journal.Config[int]{Store: store}),
		"negative age": journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Fire: fire},
			journal.Config[int]{Store: store, Codec: journal.JSON[int](), MaxItemAge: -1}),
		"batcher's dead letter": journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1, Fire: fire,
			DeadLetter: func(context.Context, []item, error) {}}, journal.Config[int]{Store: store, Codec: journal.JSON[int]()}),
		"keyed's dead letter": journal.WrapKeyed(&muster.Keyed[int, item]{MaxBatchSize: 1, Fire: fire, Key: func(it item) int { return it.Value },
			DeadLetter: func(context.Context, []item, error) {}}, journal.Config[int]{Store: store, Codec: journal.JSON[int]()}),
		"no fire": journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1}, journal.Config[int]{Store: store, Codec: journal.JSON[int]()}),
	} {
		if err := j.Start(); !errors.Is(err, muster.ErrInvalidConfig) {
			t.Errorf("%s: Start: %v", name, err)
		}
		if err := j.Add(context.Background(), 1); !errors.Is(err, muster.ErrNotStarted) {
			t.Errorf("%s: Add: %v", name, err)
		}
		if err := j.Stop(); !errors.Is(err, muster.ErrNotStarted) {
			t.Errorf("%s: Stop: %v", name, err)
		}
	}
	if store.Stats().Appended != 0 {
		t.Fatal("journaled without a start")
	}
}

// Flush covers what was added before it: delivered and finished when it
// returns.
func TestLayerFlush(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var s sink
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 100, Fire: s.fire},
			journal.Config[int]{Store: store, Codec: journal.JSON[int]()})
		if err := j.Flush(context.Background()); !errors.Is(err, muster.ErrNotStarted) {
			t.Fatalf("Flush before Start: %v", err)
		}
		start(t, j)
		addAll(t, j, 1, 2, 3)
		if err := j.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := values(s.items()); !slices.Equal(got, []int{1, 2, 3}) || store.Stats().Items != 0 {
			t.Fatalf("after Flush: delivered %v, %d journaled", got, store.Stats().Items)
		}
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A Finish that fails leaves the item journaled: counted, and delivered
// again (same ID) at the next start.
func TestLayerFinishFailed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var s sink
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 2,
			Fire: func(ctx context.Context, items []item) error {
				_ = store.Close() // the store fails under the batch's feet
				return s.fire(ctx, items)
			}},
			journal.Config[int]{Store: store, Codec: journal.JSON[int]()})
		start(t, j)
		addAll(t, j, 1, 2)
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		if st := j.Stats(); st.FinishFailed != 2 || st.Store.Items != 2 {
			t.Fatalf("stats %+v", st)
		}
		store2 := store.restart()
		defer func() { _ = store2.Close() }()
		var s2 sink
		j2 := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 2, Fire: s2.fire},
			journal.Config[int]{Store: store2, Codec: journal.JSON[int]()})
		start(t, j2)
		<-j2.ReplayDone()
		if err := j2.Stop(); err != nil {
			t.Fatal(err)
		}
		if a, b := s.items(), s2.items(); !slices.Equal(ids(a), ids(b)) || !b[0].Replayed {
			t.Fatalf("first delivery %v, second %v", a, b)
		}
	})
}

// Many producers at once: every item delivered once, the journal empty.
func TestLayerConcurrentAdds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		defer func() { _ = store.Close() }()
		var s sink
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 7, BatchTimeout: time.Millisecond, MaxConcurrentBatches: 3,
			PendingWorkCapacity: 20, Fire: s.fire},
			journal.Config[int]{Store: store, Codec: journal.JSON[int]()})
		start(t, j)
		var wg sync.WaitGroup
		for p := range 8 {
			wg.Go(func() {
				for i := range 100 {
					if err := j.Add(context.Background(), p*1000+i); err != nil {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		got := s.items()
		seen := map[journal.ID]int{}
		for _, it := range got {
			seen[it.ID]++
		}
		if len(got) != 800 || len(seen) != 800 || store.Stats().Items != 0 || j.Stats().Unfinished != 0 {
			t.Fatalf("%d delivered, %d IDs, %d journaled", len(got), len(seen), store.Stats().Items)
		}
	})
}

// dstCodec encodes ints in decimal and counts the Encodes handed a buffer
// with room already (one that Add reused).
type dstCodec struct{ reused atomic.Int64 }

func (c *dstCodec) Encode(dst []byte, v int) ([]byte, error) {
	if cap(dst) > 0 {
		c.reused.Add(1)
	}
	return strconv.AppendInt(dst, int64(v), 10), nil
}

func (c *dstCodec) Decode(b []byte) (int, error) { return strconv.Atoi(string(b)) }

// TestLayerReusesEncodingBuffers: Add encodes into a pooled buffer rather
// than a new one per item, and the reuse corrupts no record: a restart
// replays every item with its own value.
func TestLayerReusesEncodingBuffers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newLog(t, journal.LogOptions{})
		codec := &dstCodec{}
		// The downstream call fails when the Shutdown deadline cancels it:
		// the items stay journaled.
		never := func(ctx context.Context, _ []item) error { <-ctx.Done(); return errDown }
		j := journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1000, BatchTimeout: time.Hour, Fire: never},
			journal.Config[int]{Store: store, Codec: codec})
		start(t, j)
		const n = 50
		for i := range n {
			if err := j.Add(context.Background(), 1000+i); err != nil {
				t.Fatal(err)
			}
		}
		// The pool may drop a buffer now and then (it does so on purpose
		// under -race): most Encodes must still find one.
		if r := codec.reused.Load(); r < n/2 {
			t.Errorf("%d of %d Encodes were handed a buffer to reuse", r, n)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = j.Shutdown(ctx)
		synctest.Wait() // the in-flight batch has returned its error
		if k := store.Stats().Items; k != n {
			t.Fatalf("journaled after the deadline: %d, want %d", k, n)
		}
		store = store.restart()
		defer func() { _ = store.Close() }()
		var s sink
		j = journal.Wrap(&muster.Batcher[item]{MaxBatchSize: 1000, BatchTimeout: time.Millisecond, Fire: s.fire},
			journal.Config[int]{Store: store, Codec: codec})
		start(t, j)
		<-j.ReplayDone()
		if err := j.Stop(); err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, it := range s.items() {
			got = append(got, it.Value)
		}
		slices.Sort(got)
		want := make([]int, n)
		for i := range want {
			want[i] = 1000 + i
		}
		if !slices.Equal(got, want) {
			t.Fatalf("replayed %v, want %v", got, want)
		}
	})
}
