package muster

import (
	"context"
	"time"
)

// closeAllLocked closes every open batch (emptied ones are discarded). It
// needs both locks.
func (e *engine[K, T]) closeAllLocked(t Trigger, l *launches[K, T]) {
	for b := e.open.head; b != nil; b = e.open.head {
		if b.n == 0 {
			e.discardLocked(b)
		} else {
			e.closeLocked(b, t, l)
		}
	}
}

// beginStop refuses new items from now on, wakes the producers waiting for
// room (they get ErrStopped) and closes the open batches; once begun, it
// does nothing. It takes both locks.
func (e *engine[K, T]) beginStop() {
	var l launches[K, T]
	e.mu.Lock()
	if e.phase != running {
		e.mu.Unlock()
		return
	}
	e.fmu.Lock()
	e.phase = stopping
	e.wakeLocked()
	e.closeAllLocked(TriggerShutdown, &l)
	drained := e.drainedLocked()
	e.fmu.Unlock()
	e.mu.Unlock()
	e.launch(&l)
	if drained {
		e.stopped()
	}
}

// drainableLocked reports whether the client stopped taking items and
// every batch is done, so that drainedLocked would mark it stopped. It
// needs fmu only: no batch is open once phase != running (see the
// engine's doc).
func (e *engine[K, T]) drainableLocked() bool {
	return e.phase != running && e.phase != stopped && len(e.ready) == 0 && e.inflight == 0 && e.abandoning == 0
}

// drainedLocked reports, once, that the client stopped and every batch is
// done, and marks it stopped; the caller then runs stopped, after
// unlocking. It needs both locks.
func (e *engine[K, T]) drainedLocked() bool {
	if !e.drainableLocked() || e.open.head != nil {
		return false
	}
	e.phase = stopped
	for _, next := range e.parked {
		next <- nil
	}
	e.parked = nil
	e.cancel(ErrStopped)
	if e.timer != nil {
		e.timer.Stop()
	}
	if e.janitor != nil {
		e.janitor.Stop()
	}
	return true
}

// stopped runs the Stopped hook, then lets Stop and Shutdown return.
func (e *engine[K, T]) stopped() {
	defer close(e.drained)
	if h := e.hooks; h != nil && h.Stopped != nil {
		safely(func() { h.Stopped(e.base, e.info()) })
	}
}

// wait blocks until the client has drained or ctx ends; then it abandons
// what is left (see abort).
func (e *engine[K, T]) wait(ctx context.Context) error {
	select {
	case <-e.drained:
		return nil
	case <-ctx.Done():
		return e.abort(ctx)
	}
}

// abort gives up at a Shutdown deadline: batches that have not fired are
// abandoned (their Done hooks see ErrIncomplete), in-flight batches see
// their context canceled, and the error counts what was not done. It takes both locks.
func (e *engine[K, T]) abort(ctx context.Context) error {
	e.mu.Lock()
	e.fmu.Lock()
	if e.phase == stopped { // drained meanwhile
		e.fmu.Unlock()
		e.mu.Unlock()
		<-e.drained
		return nil
	}
	// What is in flight at the deadline is not done: count it before the
	// cancellation lets those batches finish.
	flightBatches, flightItems := e.inflight, e.flightItems
	var abandoned []*batch[K, T]
	aborting := e.phase != aborted // this call gives up; a later one waits for what is still in flight
	if aborting {
		e.phase = aborted
		e.cancel(ErrIncomplete)
		for b := e.open.head; b != nil; b = e.open.head { // open only when a Client gave up draining Work
			if b.n == 0 {
				e.discardLocked(b)
				continue
			}
			e.endOpenLocked(b, TriggerShutdown)
			abandoned = append(abandoned, b)
		}
		for _, b := range e.ready {
			b.ks.waiting, b.ks.waitingItems = 0, 0
		}
		abandoned = append(abandoned, e.ready...)
		clear(e.ready)
		e.ready = e.ready[:0]
		e.readyChangedLocked()
		e.openItems, e.readyItems = 0, 0
		e.abandoning += len(abandoned)
		e.wakeLocked()
	}
	e.fmu.Unlock()
	e.mu.Unlock()
	now := time.Now()
	for _, b := range abandoned {
		if e.deadLetter != nil {
			e.callDeadLetter(e.base, b.items, ErrIncomplete)
		}
		if h := e.hooks; h != nil && h.Done != nil {
			done := DoneInfo{FireInfo: e.fireInfo(b, now), Err: ErrIncomplete, Abandoned: true}
			done.Start, done.SlotWait = time.Time{}, 0 // it never fired
			safely(func() { h.Done(e.base, done) })
		}
		b.complete(ErrIncomplete)
	}
	e.mu.Lock()
	e.fmu.Lock()
	se := &ShutdownError{Batches: flightBatches + len(abandoned), Items: flightItems, Cause: context.Cause(ctx)}
	for _, b := range abandoned {
		se.Items += b.n
		e.abandoned += uint64(b.n)
		e.releaseLocked(b.id, ErrIncomplete)
		if ks := b.ks; e.batchGoneLocked(b) {
			e.idleIfEmptyLocked(ks)
		}
	}
	e.abandoning -= len(abandoned)
	drained := e.drainedLocked()
	e.fmu.Unlock()
	e.mu.Unlock()
	if drained {
		e.stopped()
	}
	if se.Batches == 0 && se.Items == 0 {
		<-e.drained
		return nil
	}
	return se
}

// snapshot reads the counters (zero before Start: e is nil). It takes both
// locks.
func (e *engine[K, T]) snapshot() Stats {
	if e == nil {
		return Stats{}
	}
	e.mu.Lock()
	e.fmu.Lock()
	s := Stats{Added: e.added, Refused: e.refused, Dropped: e.dropped,
		Fired: e.fired, Done: e.done, Failed: e.failed, Abandoned: e.abandoned}
	s.InFlight = e.inflight
	s.Waiting = len(e.ready)
	s.Pending = e.openItems + e.readyItems + e.flightItems
	s.Queued = e.queuedLocked()
	s.Keys = len(e.keys)
	e.fmu.Unlock()
	e.mu.Unlock()
	if e.outside != nil {
		s.Queued += e.outside()
	}
	return s
}

// Stats are a client's counters, read with its Stats method or through
// ClientInfo.Stats.
type Stats struct {
	Added     uint64 // items taken
	Refused   uint64 // items not taken (stopped, context ended, full, dropped as newest, too large, bad key, too many keys, a panic, in Work at a Shutdown deadline)
	Dropped   uint64 // items taken, then dropped under OverflowDropOldest
	Fired     uint64 // batches that took an in-flight slot and fired
	Done      uint64 // batches fired and done, failed ones included (abandoned ones are not: see Abandoned)
	Failed    uint64 // batches done with an error
	Abandoned uint64 // items in batches abandoned at a Shutdown deadline, never fired
	InFlight  int    // batches between Fired and Done: never above MaxConcurrentBatches
	Waiting   int    // closed batches waiting for an in-flight slot
	// Pending counts the items taken and not yet done: in open, waiting
	// and in-flight batches. A crash now would lose them.
	Pending int
	// Queued counts the items PendingWorkCapacity bounds: those behind the
	// oldest batch waiting for a slot, plus, for a Client, those in Work.
	Queued int
	Keys   int // live keys of a Keyed; 0 otherwise
}
