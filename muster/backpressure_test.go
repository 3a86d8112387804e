package muster_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/muster"
)

// At MaxConcurrentBatches in flight, a full batch waits, nothing drains Work,
// and producers block once PendingWorkCapacity is used up. The batch that
// then fires sees, in FireInfo.Queued, Stats.Queued at that moment: the
// items in Work.
func TestBackpressureWork(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		queued := map[uint64]int{} // FireInfo.Queued by batch
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 3, BatchMaker: r.maker,
			Hooks: &muster.Hooks{Fired: func(_ context.Context, info muster.FireInfo) context.Context {
				queued[info.BatchID] = info.Queued // batch goroutines run one at a time here
				return nil
			}}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 4 { // batch 1 in flight, batch 2 waiting for the slot
			c.Work <- i
		}
		synctest.Wait()
		for i := 4; i < 7; i++ { // fills Work's buffer
			c.Work <- i
		}
		synctest.Wait()
		if len(c.Work) != 3 {
			t.Fatalf("len(Work) = %d: the worker drained Work while a batch waited", len(c.Work))
		}
		if q := c.Stats().Queued; q != 3 {
			t.Fatalf("Queued = %d, want 3", q)
		}
		sent := make(chan struct{})
		go func() { c.Work <- 7; close(sent) }()
		synctest.Wait()
		select {
		case <-sent:
			t.Fatal("a producer was not blocked with Work full")
		default:
		}
		r.release() // batch 1 done: batch 2 fires, the worker drains again
		synctest.Wait()
		<-sent
		if queued[2] != 3 {
			t.Fatalf("batch 2 fired with Queued %d, want 3 (Work held 4 to 6)", queued[2])
		}
		for len(r.snapshot()) < 4 || r.held != nil {
			r.release()
			synctest.Wait()
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, r.snapshot(), items(0, 1), items(2, 3), items(4, 5), items(6, 7))
	})
}

// A producer blocked in a send on Work gets no Waited hook: the channel
// holds it, not the client (WaitBackpressure reports Add's waits only).
func TestBackpressureWorkSendNotReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var waits []muster.WaitInfo
		r := &recorder{hold: true}
		c := &muster.Client{MaxBatchSize: 1, MaxConcurrentBatches: 1, BatchMaker: r.maker,
			Hooks: &muster.Hooks{Waited: func(_ context.Context, w muster.WaitInfo) {
				mu.Lock()
				defer mu.Unlock()
				waits = append(waits, w)
			}}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		c.Work <- 1 // in flight
		c.Work <- 2 // waits for the slot: the worker takes nothing more
		synctest.Wait()
		sent := make(chan struct{})
		go func() { c.Work <- 3; close(sent) }()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-sent:
			t.Fatal("the send on Work was not held")
		default:
		}
		for len(r.snapshot()) < 3 {
			r.release()
			synctest.Wait()
		}
		<-sent
		r.release()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(waits) != 0 {
			t.Fatalf("Waited reported %+v for a send on Work", waits)
		}
	})
}

func TestBackpressureAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var blocked []time.Duration
		var waitErrs []error
		var events []string
		b, release, fired := holdBatcher(t, 3, muster.OverflowBlock, &muster.Hooks{
			Refused: func(ctx context.Context, info muster.AddInfo) {
				mu.Lock()
				defer mu.Unlock()
				events = append(events, "refused")
			},
			Waited: func(ctx context.Context, info muster.WaitInfo) {
				mu.Lock()
				defer mu.Unlock()
				if info.Reason != muster.WaitBackpressure || info.BatchID != 0 {
					t.Errorf("producer wait %+v", info)
				}
				events = append(events, "waited")
				blocked = append(blocked, info.Duration)
				waitErrs = append(waitErrs, info.Err)
			},
		})
		ctx := context.Background()
		for i := range 7 { // [0 1] in flight, [2 3] and [4 5] waiting, [6] open: 3 queued behind the oldest waiting
			if err := b.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		if s := b.Stats(); s.Queued != 3 || s.Pending != 7 || s.InFlight != 1 || s.Waiting != 2 {
			t.Fatalf("stats %+v", s)
		}
		// The next Add blocks until its context ends, and the item is not taken.
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		if err := b.Add(tctx, 99); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Add under backpressure: %v, want DeadlineExceeded", err)
		}
		if time.Since(start) != time.Second {
			t.Fatalf("Add gave up after %v", time.Since(start))
		}
		// A producer blocked in Add resumes when a slot frees.
		done := make(chan error)
		go func() { done <- b.Add(ctx, 7); close(done) }()
		synctest.Wait()
		time.Sleep(3 * time.Second)
		release <- struct{}{} // batch 1 done, batch 2 takes the slot, room again
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		close(release)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		want := [][]int{{0, 1}, {2, 3}, {4, 5}, {6, 7}}
		if got := fired(); !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("fired %v, want %v (99 must not be taken)", got, want)
		}
		// Waited is the one report of backpressure, for an item refused
		// (with why, before Refused) as for one taken.
		if !slices.Equal(blocked, []time.Duration{time.Second, 3 * time.Second}) {
			t.Fatalf("blocked durations reported %v", blocked)
		}
		if len(waitErrs) != 2 || !errors.Is(waitErrs[0], context.DeadlineExceeded) || waitErrs[1] != nil {
			t.Fatalf("Waited errors %v, want [DeadlineExceeded <nil>]", waitErrs)
		}
		if !slices.Equal(events, []string{"waited", "refused", "waited"}) {
			t.Fatalf("hook order %v", events)
		}
		if s := b.Stats(); s.Added != 8 || s.Refused != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}
