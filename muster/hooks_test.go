package muster_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

func TestHooksEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		type key struct{}
		var mu sync.Mutex
		var fires []muster.FireInfo
		var dones []muster.DoneInfo
		var started, stoppedInfo []muster.ClientInfo
		var doneCtxVals []any
		release := make(chan struct{})
		type enqKey struct{}
		type ck string
		hooks := &muster.Hooks{
			// Added keeps each item's context, with the time it joined.
			Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
				return context.WithValue(ctx, enqKey{}, time.Now())
			},
			Stopped: func(ctx context.Context, ci muster.ClientInfo) { stoppedInfo = append(stoppedInfo, ci) },
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				mu.Lock()
				defer mu.Unlock()
				info.Contexts = slices.Clone(info.Contexts)
				fires = append(fires, info)
				return context.WithValue(ctx, key{}, info.BatchID)
			},
			Done: func(ctx context.Context, info muster.DoneInfo) {
				mu.Lock()
				defer mu.Unlock()
				dones = append(dones, info)
				doneCtxVals = append(doneCtxVals, ctx.Value(key{}))
			},
		}
		var fireCtxVals []any
		observer := observerFunc(func(ci muster.ClientInfo) *muster.Hooks {
			started = append(started, ci) // Observe is the start
			return hooks
		})
		b := &muster.Batcher[int]{Name: "rows", MaxBatchSize: 2, BatchTimeout: time.Second, MaxConcurrentBatches: 1, PendingWorkCapacity: 4, Hooks: observer,
			Fire: func(ctx context.Context, items []int) error {
				mu.Lock()
				fireCtxVals = append(fireCtxVals, ctx.Value(key{}))
				mu.Unlock()
				if items[0] == 0 {
					<-release
					return errors.New("first fails")
				}
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		if len(started) != 1 || started[0].Name != "rows" || started[0].MaxBatchSize != 2 || started[0].MaxConcurrentBatches != 1 ||
			started[0].BatchTimeout != time.Second || started[0].PendingWorkCapacity != 4 || started[0].MaxKeys != 0 || started[0].Stats().Added != 0 {
			t.Fatalf("Observe saw %+v", started)
		}
		c0 := context.WithValue(context.Background(), ck("p"), 0)
		c1 := context.WithValue(context.Background(), ck("p"), 1)
		_ = b.Add(c0, 0)
		time.Sleep(100 * time.Millisecond)
		_ = b.Add(c1, 1) // batch 1 fires: size, age 100ms
		synctest.Wait()
		_ = b.Add(c0, 2)
		time.Sleep(300 * time.Millisecond)
		_ = b.Add(c1, 3) // batch 2 full: waits for the slot
		_ = b.Add(c1, 4) // queued behind batch 2
		if s := b.Stats(); s.Queued != 1 || s.Pending != 5 || s.InFlight != 1 || s.Waiting != 1 {
			t.Fatalf("stats with batch 2 waiting: %+v", s)
		}
		time.Sleep(500 * time.Millisecond)
		close(release) // batch 1 done after 900ms; batch 2 fires after 500ms waiting
		synctest.Wait()
		time.Sleep(time.Second) // batch 3 ([4]) times out
		synctest.Wait()
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(fires) != 3 || len(dones) != 3 {
			t.Fatalf("%d fires, %d dones", len(fires), len(dones))
		}
		f1, f2, f3 := fires[0], fires[1], fires[2]
		check := func(name string, got, want any) {
			t.Helper()
			if got != want {
				t.Errorf("%s = %v, want %v", name, got, want)
			}
		}
		check("f1.BatchID", f1.BatchID, uint64(1))
		check("f1.Size", f1.Size, 2)
		check("f1.Key", f1.Key, nil)
		check("f1.Trigger", f1.Trigger, muster.TriggerSize)
		check("f1.Age", f1.Age, 100*time.Millisecond)
		check("f1.SlotWait", f1.SlotWait, time.Duration(0))
		check("f1.InFlight", f1.InFlight, 1)
		if len(f1.Contexts) != 2 {
			t.Fatalf("f1.Contexts %v", f1.Contexts)
		}
		check("f1.ctx0", f1.Contexts[0].Value(ck("p")), 0)
		check("f1.ctx1", f1.Contexts[1].Value(ck("p")), 1)
		check("f1.enq", f1.Contexts[1].Value(enqKey{}).(time.Time).Sub(f1.Contexts[0].Value(enqKey{}).(time.Time)), 100*time.Millisecond)
		check("f2.BatchID", f2.BatchID, uint64(2))
		check("f2.Trigger", f2.Trigger, muster.TriggerSize)
		check("f2.Age", f2.Age, 800*time.Millisecond)
		check("f2.SlotWait", f2.SlotWait, 500*time.Millisecond)
		check("f2.Queued", f2.Queued, 0) // item 4 no longer queues once batch 2 has its slot
		check("f3.Trigger", f3.Trigger, muster.TriggerTimeout)
		check("f3.Size", f3.Size, 1)
		check("f3.Age", f3.Age, time.Second)
		check("d1.Duration", dones[0].Duration, 800*time.Millisecond)
		if dones[0].Err == nil || dones[1].Err != nil {
			t.Errorf("done errors %v, %v", dones[0].Err, dones[1].Err)
		}
		if !slices.Equal(fireCtxVals, []any{uint64(1), uint64(2), uint64(3)}) || !slices.Equal(doneCtxVals, fireCtxVals) {
			t.Errorf("Fired's context did not reach Fire and Done: %v %v", fireCtxVals, doneCtxVals)
		}
		if len(stoppedInfo) != 1 { // Stop returns only after the Stopped hook ran
			t.Fatalf("Stopped called %d times", len(stoppedInfo))
		}
		if id := stoppedInfo[0].ID; id == 0 || id != started[0].ID {
			t.Errorf("ClientInfo.ID: started %d, stopped %d", started[0].ID, id)
		}
		if s := stoppedInfo[0].Stats(); s.Added != 5 || s.Fired != 3 || s.Done != 3 || s.Failed != 1 {
			t.Errorf("final stats %+v", s)
		}
	})
}

func TestComposeOrder(t *testing.T) {
	var log []string
	mk := func(name string) *muster.Hooks {
		return &muster.Hooks{
			Fired: func(ctx context.Context, _ muster.FireInfo) context.Context {
				log = append(log, name+" fired")
				return context.WithValue(ctx, name, true)
			},
			Done: func(ctx context.Context, _ muster.DoneInfo) {
				log = append(log, name+" done", "sees a:"+boolStr(ctx.Value("a") != nil))
			},
		}
	}
	started := func(name string, h *muster.Hooks) muster.Observer {
		return observerFunc(func(muster.ClientInfo) *muster.Hooks { log = append(log, name+" started"); return h })
	}
	h := muster.Compose(nil, started("a", mk("a")), nil, (*muster.Hooks)(nil), started("b", mk("b")))
	if muster.Compose() != nil || muster.Compose(nil) != nil {
		t.Fatal("Compose of nothing is not nil")
	}
	one := mk("x")
	if muster.Compose(nil, one) != muster.Observer(one) {
		t.Fatal("Compose of one hook set should return it")
	}
	b := &muster.Batcher[int]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Hooks: h, Fire: func(context.Context, []int) error { return nil }}
	_ = b.Start()
	_ = b.Add(context.Background(), 1)
	_ = b.Stop()
	want := []string{"a started", "b started", "a fired", "b fired", "b done", "sees a:true", "a done", "sees a:true"}
	if !slices.Equal(log, want) {
		t.Fatalf("order %q, want %q", log, want)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestReportWaitAndRetry(t *testing.T) {
	var waits []muster.WaitInfo
	var retries []muster.RetryInfo
	b := &muster.Batcher[int]{Name: "n", MaxBatchSize: 1, MaxConcurrentBatches: 1,
		Hooks: &muster.Hooks{
			Waited:  func(ctx context.Context, w muster.WaitInfo) { waits = append(waits, w) },
			Retried: func(ctx context.Context, r muster.RetryInfo) { retries = append(retries, r) },
		},
		Fire: func(ctx context.Context, items []int) error {
			muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit, Tokens: 1, Duration: time.Second})
			muster.ReportRetry(ctx, muster.RetryInfo{Attempt: 1, Backoff: time.Millisecond})
			return nil
		}}
	_ = b.Start()
	_ = b.Add(context.Background(), 1)
	_ = b.Stop()
	if len(waits) != 1 || waits[0].Reason != muster.WaitRateLimit || waits[0].Tokens != 1 || waits[0].BatchID != 1 || waits[0].Duration != time.Second {
		t.Fatalf("waits %+v", waits)
	}
	if len(retries) != 1 || retries[0].BatchID != 1 || retries[0].Attempt != 1 {
		t.Fatalf("retries %+v", retries)
	}
	// Outside a batch, reporting is a no-op.
	muster.ReportWait(context.Background(), muster.WaitInfo{})
	muster.ReportRetry(context.Background(), muster.RetryInfo{})
}

// Issue 9 (d): every item's Added hook runs before its batch's Fired, with
// 8 producers racing to fill batches of 4. Added keeps a context naming the
// item; Fired must find one for every item, index-aligned with the items
// Fire receives, and no Added may run for an item whose batch has fired.
func TestAddedBeforeFired(t *testing.T) {
	type idKey struct{}
	const producers, per = 8, 500
	var mu sync.Mutex
	fired := map[int]bool{}
	var problems []string
	problem := func(format string, args ...any) {
		if len(problems) < 10 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	type batchKey struct{}
	hooks := &muster.Hooks{
		Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
			id := ctx.Value(idKey{}).(int)
			mu.Lock()
			defer mu.Unlock()
			if fired[id] {
				problem("Added for item %d after its batch fired", id)
			}
			return ctx
		},
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			mu.Lock()
			defer mu.Unlock()
			if len(info.Contexts) != info.Size {
				problem("batch %d: %d contexts for %d items", info.BatchID, len(info.Contexts), info.Size)
				return nil
			}
			ids := make([]int, info.Size)
			for i, c := range info.Contexts {
				if c == nil {
					problem("batch %d: item %d fired before its Added hook ran", info.BatchID, i)
					continue
				}
				ids[i] = c.Value(idKey{}).(int)
				fired[ids[i]] = true
			}
			return context.WithValue(ctx, batchKey{}, ids)
		},
	}
	var total atomic.Int64
	b := &muster.Batcher[int]{MaxBatchSize: 4, Hooks: hooks,
		Fire: func(ctx context.Context, items []int) error {
			ids, _ := ctx.Value(batchKey{}).([]int)
			if !slices.Equal(ids, items) {
				mu.Lock()
				problem("Fire got %v, the kept contexts name %v", items, ids)
				mu.Unlock()
			}
			total.Add(int64(len(items)))
			return nil
		}}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range per {
				id := p*per + i
				if err := b.Add(context.WithValue(context.Background(), idKey{}, id), id); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	if total.Load() != producers*per || len(fired) != producers*per {
		t.Errorf("fired %d items (%d distinct), want %d", total.Load(), len(fired), producers*per)
	}
}

// Issue 9 (k): a hook that panics is recovered and ignored, wherever it
// runs: an Added hook on a Client's Work worker (where a panic would kill
// the process) or under Add (where it would leave the lock held), and the
// other hooks too. The items' fate does not change.
func TestPanickingHooksAreIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := func() { panic("hook bug") }
		hooks := &muster.Hooks{
			Added:   func(context.Context, muster.AddInfo) context.Context { boom(); return nil },
			Refused: func(context.Context, muster.AddInfo) { boom() },
			Waited:  func(context.Context, muster.WaitInfo) { boom() },
			Fired:   func(context.Context, muster.FireInfo) context.Context { boom(); return nil },
			Retried: func(context.Context, muster.RetryInfo) { boom() },
			Done:    func(context.Context, muster.DoneInfo) { boom() },
			Stopped: func(context.Context, muster.ClientInfo) { boom() },
		}
		r := &recorder{}
		c := &muster.Client{MaxBatchSize: 2, PendingWorkCapacity: 4, BatchMaker: r.maker, Hooks: hooks}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			c.Work <- i // the worker runs Added
		}
		synctest.Wait()
		if err := c.Add(context.Background(), 3); err != nil { // the producer runs Added, under the lock
			t.Fatal(err)
		}
		if err := c.Add(context.Background(), 4); err != nil { // the lock was released
			t.Fatal(err)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := c.Add(context.Background(), 5); !errors.Is(err, muster.ErrStopped) { // Refused panics
			t.Fatalf("Add after Stop: %v", err)
		}
		equalBatches(t, sorted(r.snapshot()), items(0, 1), items(2, 3), items(4))
		if s := c.Stats(); s.Added != 5 || s.Fired != 3 || s.Done != 3 || s.Failed != 0 || s.Refused != 1 {
			t.Fatalf("stats %+v: a panicking hook changed the items' fate", s)
		}

		// The same on the typed path, with a panicking Observe.
		var gotMu sync.Mutex
		var got []int
		b := &muster.Batcher[int]{MaxBatchSize: 2, Hooks: observerFunc(func(muster.ClientInfo) *muster.Hooks { panic("observe bug") }),
			Fire: func(ctx context.Context, items []int) error {
				gotMu.Lock()
				defer gotMu.Unlock()
				got = append(got, items...)
				return nil
			}}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		b2 := &muster.Batcher[int]{MaxBatchSize: 2, Hooks: hooks,
			Fire: func(ctx context.Context, items []int) error {
				muster.ReportRetry(ctx, muster.RetryInfo{Attempt: 1})
				muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit})
				gotMu.Lock()
				defer gotMu.Unlock()
				got = append(got, items...)
				return nil
			}}
		if err := b2.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			_ = b.Add(context.Background(), i)
			_ = b2.Add(context.Background(), 10+i)
		}
		_ = b.Stop()
		_ = b2.Stop()
		slices.Sort(got)
		if !slices.Equal(got, []int{0, 1, 2, 10, 11, 12}) {
			t.Fatalf("fired %v", got)
		}
	})
}

// Compose chains Added as it chains Fired: each hook receives the context
// the previous one kept, and the last non-nil one is kept. Refused and
// Stopped run in order.
func TestComposeAddedRefused(t *testing.T) {
	type k string
	var log []string
	keep := func(name string, ret bool) *muster.Hooks {
		return &muster.Hooks{
			Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
				log = append(log, fmt.Sprintf("%s added, sees a=%v", name, ctx.Value(k("a"))))
				if !ret {
					return nil
				}
				return context.WithValue(ctx, k(name), true)
			},
			Refused: func(ctx context.Context, info muster.AddInfo) { log = append(log, name+" refused "+info.Err.Error()) },
			Stopped: func(context.Context, muster.ClientInfo) { log = append(log, name+" stopped") },
		}
	}
	var kept []context.Context
	fired := &muster.Hooks{Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
		kept = slices.Clone(info.Contexts)
		return nil
	}}
	b := &muster.Batcher[int]{MaxBatchSize: 1, Hooks: muster.Compose(keep("a", true), keep("b", false), fired),
		Fire: func(context.Context, []int) error { return nil }}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	_ = b.Add(context.Background(), 1)
	_ = b.Stop()
	_ = b.Add(context.Background(), 2)
	want := []string{"a added, sees a=<nil>", "b added, sees a=true", "a stopped", "b stopped",
		"a refused " + muster.ErrStopped.Error(), "b refused " + muster.ErrStopped.Error()}
	if !slices.Equal(log, want) {
		t.Errorf("log\n got %q\nwant %q", log, want)
	}
	if len(kept) != 1 || kept[0] == nil || kept[0].Value(k("a")) != true {
		t.Errorf("kept contexts %v: want a's", kept)
	}
}

// TestComposeIsolatesPanics: one observer's panicking hook costs the others
// nothing: each still gets every event, and a context an earlier Added or
// Fired kept survives a later one's panic.
func TestComposeIsolatesPanics(t *testing.T) {
	type key struct{}
	boom := &muster.Hooks{
		Added:   func(context.Context, muster.AddInfo) context.Context { panic("added") },
		Refused: func(context.Context, muster.AddInfo) { panic("refused") },
		Fired:   func(context.Context, muster.FireInfo) context.Context { panic("fired") },
		Done:    func(context.Context, muster.DoneInfo) { panic("done") },
		Stopped: func(context.Context, muster.ClientInfo) { panic("stopped") },
	}
	var mu sync.Mutex
	var events []string
	var kept, firedCtx int
	rec := func(s string) { mu.Lock(); events = append(events, s); mu.Unlock() }
	seen := &muster.Hooks{
		Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
			rec("added")
			return context.WithValue(ctx, key{}, "kept")
		},
		Refused: func(context.Context, muster.AddInfo) { rec("refused") },
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			rec("fired")
			mu.Lock()
			for _, c := range info.Contexts {
				if c != nil && c.Value(key{}) == "kept" {
					kept++
				}
			}
			mu.Unlock()
			return context.WithValue(ctx, key{}, "fired")
		},
		Done: func(ctx context.Context, _ muster.DoneInfo) {
			rec("done")
			if ctx.Value(key{}) == "fired" {
				mu.Lock()
				firedCtx++
				mu.Unlock()
			}
		},
		Stopped: func(context.Context, muster.ClientInfo) { rec("stopped") },
	}
	for _, order := range [][]muster.Observer{{boom, seen}, {seen, boom}} {
		events, kept, firedCtx = nil, 0, 0
		b := &muster.Batcher[int]{MaxBatchSize: 1, Hooks: muster.Compose(order...),
			Fire: func(context.Context, []int) error { return nil }}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		_ = b.Add(context.Background(), 2) // refused: stopped
		want := []string{"added", "fired", "done", "stopped", "refused"}
		if !slices.Equal(events, want) || kept != 1 || firedCtx != 1 {
			t.Errorf("events %v (kept %d, fired ctx %d), want %v with the kept and fired contexts", events, kept, firedCtx, want)
		}
	}
}

// Stopped runs after every Added and every batch's hooks; an item offered
// after Stop began is refused with ErrStopped whenever it comes, so its
// Refused may follow Stopped (as the Hooks doc says).
func TestStoppedOrder(t *testing.T) {
	var events eventLog
	note := events.note
	b := &muster.Batcher[int]{MaxBatchSize: 2, Fire: func(context.Context, []int) error { return nil },
		Hooks: &muster.Hooks{
			Added:   func(ctx context.Context, _ muster.AddInfo) context.Context { note("added"); return nil },
			Fired:   func(ctx context.Context, _ muster.FireInfo) context.Context { note("fired"); return nil },
			Done:    func(context.Context, muster.DoneInfo) { note("done") },
			Refused: func(_ context.Context, info muster.AddInfo) { note("refused " + info.Err.Error()) },
			Stopped: func(context.Context, muster.ClientInfo) { note("stopped") },
		}}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	_ = b.Add(context.Background(), 1)
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(context.Background(), 2); !errors.Is(err, muster.ErrStopped) {
		t.Fatalf("Add after Stop: %v", err)
	}
	want := []string{"added", "fired", "done", "stopped", "refused " + muster.ErrStopped.Error()}
	if got := events.get(); !slices.Equal(got, want) {
		t.Fatalf("hooks ran %q, want %q", got, want)
	}
}

// The Refused hook of an item taken, then dropped under OverflowDropOldest,
// runs on the dropping Add's goroutine once the lock is released (after its
// DeadLetter call): the client may stop meanwhile, so it may follow Stopped,
// as the Hooks doc says. A slow DeadLetter holds that window open.
func TestDroppedRefusedMayFollowStopped(t *testing.T) {
	var events eventLog
	note := events.note
	release, inDeadLetter, outDeadLetter := make(chan struct{}), make(chan struct{}), make(chan struct{})
	b := &muster.Batcher[int]{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 1, Overflow: muster.OverflowDropOldest,
		Fire:       func(context.Context, []int) error { <-release; return nil },
		DeadLetter: func(context.Context, []int, error) { close(inDeadLetter); <-outDeadLetter },
		Hooks: &muster.Hooks{
			Refused: func(_ context.Context, info muster.AddInfo) { note(fmt.Sprintf("refused taken=%v", info.Taken)) },
			Stopped: func(context.Context, muster.ClientInfo) { note("stopped") },
		}}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // [0 1] in flight, [2 3] waiting for the slot, [4] queued behind them
		if err := b.Add(context.Background(), i); err != nil {
			t.Fatal(err)
		}
	}
	added := make(chan error)
	go func() { added <- b.Add(context.Background(), 5) }() // drops 4, takes 5
	<-inDeadLetter
	close(release)
	if err := b.Stop(); err != nil { // fires [5]; returns once Stopped has run
		t.Fatal(err)
	}
	close(outDeadLetter)
	if err := <-added; err != nil {
		t.Fatal(err)
	}
	if want := []string{"stopped", "refused taken=true"}; !slices.Equal(events.get(), want) {
		t.Fatalf("hooks ran %q, want %q", events.get(), want)
	}
}

// A Client's worker hands most items of a run straight to the Batch, but
// not with an Added hook: every item sent on Work gets its Added call, and
// each batch's FireInfo.Contexts holds one context per item, in order.
func TestAddedOnWorkRun(t *testing.T) {
	type idKey struct{}
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		added := 0
		var contexts [][]int
		hooks := &muster.Hooks{
			Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
				mu.Lock()
				defer mu.Unlock()
				added++
				return context.WithValue(ctx, idKey{}, added)
			},
			Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
				ids := make([]int, 0, info.Size)
				for _, c := range info.Contexts {
					id, _ := c.Value(idKey{}).(int)
					ids = append(ids, id)
				}
				mu.Lock()
				contexts = append(contexts, ids)
				mu.Unlock()
				return ctx
			},
		}
		r := &recorder{}
		c := &muster.Client{MaxBatchSize: 5, PendingWorkCapacity: 20, BatchMaker: r.maker, Hooks: hooks}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 { // one run of the worker
			c.Work <- i
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(contexts, func(a, b []int) int { return a[0] - b[0] })
		if added != 10 || fmt.Sprint(contexts) != "[[1 2 3 4 5] [6 7 8 9 10]]" {
			t.Fatalf("Added called %d times; contexts by batch %v", added, contexts)
		}
	})
}

// An Added hook that keeps a context for some items only (a tracing layer
// keeps those of sampled requests): FireInfo.Contexts is aligned with the
// items, nil where nothing was kept, whether the kept item opened its
// batch, joined it in the middle (add's common case) or closed it.
func TestAddedKeepsSparseContexts(t *testing.T) {
	type idKey struct{}
	var got [][]any
	hooks := &muster.Hooks{
		Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
			if id := ctx.Value(idKey{}).(int); id%3 == 2 {
				return ctx
			}
			return nil
		},
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			var ids []any
			for _, c := range info.Contexts {
				if c == nil {
					ids = append(ids, nil)
				} else {
					ids = append(ids, c.Value(idKey{}))
				}
			}
			got = append(got, ids)
			return nil
		},
	}
	b := &muster.Batcher[int]{MaxBatchSize: 4, Hooks: hooks, MaxConcurrentBatches: 1,
		Fire: func(context.Context, []int) error { return nil }}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := b.Add(context.WithValue(context.Background(), idKey{}, i), i); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Stop(); err != nil {
		t.Fatal(err)
	}
	want := [][]any{{nil, nil, 2, nil}, {nil, 5, nil, nil}, {8, nil}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Contexts' kept ids per batch: %v, want %v", got, want)
	}
}
