package muster_test

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"

	"github.com/musterhq/muster/muster"
)

// The Client's worker hands an item that neither opens nor closes its batch
// straight to the Batch's Add (addRun's run of what Work holds): a Batch.Add
// that panics there refuses only that item, and Stats, the Refused hook and
// the batches fired count it exactly once. MaxBatchSize 5 puts 13 in the
// middle of a batch (the direct path), 26 would close one (appendLocked's:
// it is the fifth item offered to its batch).
func TestWorkerRunBatchAddPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var refused refusals
		c := &muster.Client{MaxBatchSize: 5, PendingWorkCapacity: 20, Hooks: &muster.Hooks{Refused: refused.hook}}
		c.BatchMaker = func() muster.Batch {
			b := &recBatch{r: r}
			return batchFunc2{add: func(item any) {
				if item == 13 || item == 26 {
					panic("unlucky")
				}
				b.Add(item)
			}, fire: b.Fire}
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for _, v := range []int{1, 2, 13, 3, 4, 5, 6, 7, 8, 9, 26, 10} { // one run of the worker
			c.Work <- v
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, sorted(r.snapshot()), items(1, 2, 3, 4, 5), items(6, 7, 8, 9, 10))
		if errs := refused.get(); len(errs) != 2 || !isPanic(errs[0]) || !isPanic(errs[1]) {
			t.Fatalf("refusals reported: %v", errs)
		}
		if s := c.Stats(); s.Refused != 2 || s.Added != 10 || s.Fired != 2 || s.Done != 2 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A Shutdown deadline while the worker is blocked behind backpressure (it
// took an item from Work while producers on Add filled the capacity): the
// item it holds and those Work still holds are refused with ErrIncomplete,
// once each, and ShutdownError.Items counts them with the batches in flight
// and abandoned.
func TestShutdownDeadlineWorkerBlockedOnRoom(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		var refused refusals
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 2, BatchMaker: r.maker,
			Hooks: &muster.Hooks{Refused: refused.hook}}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the worker waits on Work, nothing waiting for a slot
		ctx := context.Background()
		for i := range 6 { // [0 1] in flight, [2 3] and [4 5] waiting: the capacity is used up
			if err := c.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		c.Work <- 6 // the worker, waiting on Work, takes it and blocks for room
		synctest.Wait()
		c.Work <- 7
		c.Work <- 8
		dctx, cancel := context.WithCancel(ctx)
		cancel()
		err := c.Shutdown(dctx)
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 3 || se.Items != 9 {
			t.Fatalf("Shutdown: %v (%+v)", err, se)
		}
		r.release()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		equalBatches(t, r.snapshot(), items(0, 1))
		if n := refused.count(muster.ErrIncomplete); n != 3 || len(refused.get()) != 3 {
			t.Fatalf("refusals reported: %v", refused.get())
		}
		if s := c.Stats(); s.Added != 6 || s.Refused != 3 || s.Abandoned != 4 || s.Fired != 1 || s.Done != 1 {
			t.Fatalf("stats %+v", s)
		}
	})
}

// A Shutdown deadline that finds the worker in the middle of a run (here in
// a Batch.Add, with no batch waiting for a slot): what Work still holds is
// refused with ErrIncomplete and nothing more fires, as Shutdown's doc says,
// rather than the worker's run going on adding (and firing) it after the
// deadline.
func TestShutdownDeadlineWorkerMidRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{}
		var refused refusals
		inAdd, release := make(chan struct{}), make(chan struct{})
		c := &muster.Client{MaxBatchSize: 1, PendingWorkCapacity: 10, Hooks: &muster.Hooks{Refused: refused.hook}}
		c.BatchMaker = func() muster.Batch {
			b := &recBatch{r: r}
			return batchFunc2{add: func(item any) {
				if item == 0 {
					close(inAdd)
					<-release
				}
				b.Add(item)
			}, fire: b.Fire}
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			c.Work <- i
		}
		<-inAdd // the worker holds 0; Work holds 1 to 4
		dctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error)
		go func() { done <- c.Shutdown(dctx) }()
		synctest.Wait() // Shutdown gave up: it waits for the worker
		close(release)
		err := <-done
		var se *muster.ShutdownError
		// The 4 items Work held, and 0 if its batch (admitted before the
		// abort) was still in flight.
		if !errors.As(err, &se) || se.Batches > 1 || se.Items != 4+se.Batches {
			t.Fatalf("Shutdown: %v (%+v)", err, se)
		}
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if got := r.snapshot(); len(got) > 1 {
			t.Errorf("fired %v after the deadline: Work held all but the first", got)
		}
		if n := refused.count(muster.ErrIncomplete); n != 4 {
			t.Errorf("%d items refused with ErrIncomplete, want the 4 Work held: %v", n, refused.get())
		}
	})
}

// A Batch.Add that panics while a Shutdown deadline passes (the worker took
// the item from Work before the deadline, and a batch waited for a slot, so
// the item went through add) refuses the item for its panic: it is not one
// of the items Work held at the deadline, and ShutdownError.Items does not
// count it as such.
func TestShutdownDeadlineDuringPanickingAdd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &recorder{hold: true}
		var refused refusals
		inAdd, release := make(chan struct{}), make(chan struct{})
		c := &muster.Client{MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10, Hooks: &muster.Hooks{Refused: refused.hook}}
		c.BatchMaker = func() muster.Batch {
			b := &recBatch{r: r}
			return batchFunc2{add: func(item any) {
				if item == 13 {
					close(inAdd)
					<-release
					panic("unlucky")
				}
				b.Add(item)
			}, fire: b.Fire}
		}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the worker waits on Work, nothing waiting for a slot
		ctx := context.Background()
		for i := range 5 { // [0 1] in flight, [2 3] waiting, [4] open
			if err := c.Add(ctx, i); err != nil {
				t.Fatal(err)
			}
		}
		c.Work <- 13
		<-inAdd
		dctx, cancel := context.WithCancel(ctx)
		cancel()
		done := make(chan error)
		go func() { done <- c.Shutdown(dctx) }()
		synctest.Wait() // Shutdown gave up: it waits for the worker
		close(release)
		err := <-done
		var se *muster.ShutdownError
		if !errors.As(err, &se) || se.Batches != 3 || se.Items != 5 {
			t.Errorf("Shutdown: %v (%+v), want 3 batches, 5 items", err, se)
		}
		r.release()
		if err := c.Stop(); err != nil {
			t.Fatal(err)
		}
		if errs := refused.get(); len(errs) != 1 || !isPanic(errs[0]) {
			t.Errorf("refusals reported: %v", errs)
		}
		if s := c.Stats(); s.Added != 5 || s.Refused != 1 || s.Abandoned != 3 {
			t.Errorf("stats %+v", s)
		}
	})
}
