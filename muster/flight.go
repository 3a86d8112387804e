package muster

import (
	"context"
	"errors"
	"time"
)

// readyChangedLocked publishes len(ready) to producers (see readyN). It
// needs fmu.
func (e *engine[K, T]) readyChangedLocked() {
	if n := int32(len(e.ready)); e.readyN.Load() != n {
		e.readyN.Store(n)
	}
}

// launches are the batches admitted under the locks, to start after them.
type launches[K comparable, T any] struct {
	one   *batch[K, T]
	oneTo chan *batch[K, T] // the parked goroutine that takes one; nil: the caller (finish) or unstarted (launch)
	more  []*batch[K, T]
}

// launch hands each admitted batch to its parked goroutine, or else queues
// it in unstarted and starts a goroutine for it, after the locks are
// released: the first batch goroutine free takes it (see run).
func (e *engine[K, T]) launch(l *launches[K, T]) {
	if l.oneTo != nil {
		l.oneTo <- l.one
		l.one = nil
	}
	if n := len(l.more); l.one != nil || n > 0 {
		e.fmu.Lock()
		if l.one != nil {
			e.unstarted.pushBack(l.one)
			n++
		}
		for _, b := range l.more {
			e.unstarted.pushBack(b)
		}
		e.fmu.Unlock()
		for range n {
			go e.run()
		}
	}
}

// closeLocked closes an open batch: it joins the ready queue, and every
// batch that may now take a slot is added to l. It refills the spare from
// the free list. It needs both locks.
func (e *engine[K, T]) closeLocked(b *batch[K, T], t Trigger, l *launches[K, T]) {
	e.endOpenLocked(b, t)
	if e.hooks != nil {
		b.closed = time.Now()
	}
	e.openItems -= b.n
	e.readyItems += b.n
	e.ready = append(e.ready, b)
	if e.keyFn != nil {
		b.ks.waiting++
		b.ks.waitingItems += b.n
	}
	if n := len(e.free); n > 0 && e.spare.Load() == nil {
		e.spare.Store(e.free[n-1])
		e.free[n-1] = nil
		e.free = e.free[:n-1]
	}
	e.admitLocked(l)
	e.readyChangedLocked()
}

// endOpenLocked ends an open batch's time open, for trigger t: it leaves
// the open FIFO and its key, and gets its id, the order batches closed in.
// It needs both locks.
func (e *engine[K, T]) endOpenLocked(b *batch[K, T], t Trigger) {
	e.unlinkOpenLocked(b)
	b.ks.cur = nil
	b.trigger = t
	e.nextID++
	b.id = e.nextID
}

// admitLocked gives waiting batches free slots: oldest first or, with
// MaxPendingPerKey, round-robin over keys (see nextLocked). It needs fmu;
// with hooks, mu too unless at most one batch is ready (see queuedLocked).
// Its caller then calls readyChangedLocked.
func (e *engine[K, T]) admitLocked(l *launches[K, T]) {
	for len(e.ready) > 0 && (e.limit == 0 || e.inflight < e.limit) {
		i := 0
		if e.perKey > 0 {
			i = e.nextLocked()
		}
		b := e.ready[i]
		n := i + copy(e.ready[i:], e.ready[i+1:])
		e.ready[n] = nil
		e.ready = e.ready[:n]
		e.readyItems -= b.n
		e.inflight++
		e.flightItems += b.n
		e.fired++
		if e.keyFn != nil {
			ks := b.ks
			ks.waiting--
			ks.waitingItems -= b.n
			ks.inflight++
			ks.served = e.fired
		}
		if e.hooks != nil {
			b.inflight = e.inflight
			b.queued = e.queuedLocked()
			if e.outside != nil {
				b.queued += e.outside()
			}
		}
		var to chan *batch[K, T]
		if n := len(e.parked); n > 0 { // a parked batch goroutine takes it
			to = e.parked[n-1]
			e.parked = e.parked[:n-1]
		}
		l.add(b, to)
		e.wakeLocked()
	}
}

// nextLocked returns the index in the ready queue of the batch a free slot
// goes to under MaxPendingPerKey: the oldest batch of the key served
// longest ago (a key never served first, then oldest first). A key's
// batches keep their order, and each key with batches waiting gets a slot
// in turn, whatever the others' backlog: round-robin over keys. It scans
// the ready queue (PendingWorkCapacity bounds its length, since every
// batch behind the oldest holds an item it counts), stopping at a key never
// served. It needs fmu.
func (e *engine[K, T]) nextLocked() int {
	best := 0
	for i := 1; i < len(e.ready) && e.ready[best].ks.served > 0; i++ {
		if e.ready[i].ks.served < e.ready[best].ks.served {
			best = i
		}
	}
	return best
}

// run is a batch goroutine. It takes the oldest batch in unstarted; when a
// batch is done it runs the next batch the freed slot admitted, or else the
// oldest in unstarted; with none, it parks (up to maxParked goroutines do)
// until a batch is admitted or the client stops. A goroutine that never
// took a batch exits instead: under hooks a new goroutine's stack grows,
// copied frame by frame, which cost a third of the metrics path's CPU
// (BENCHMARKS.md). A busy client thus starts few goroutines, and runs its
// batches on stacks that hooks and middleware have grown. It takes fmu.
func (e *engine[K, T]) run() {
	var b *batch[K, T]
	var next chan *batch[K, T]
	for ran := false; ; ran = true {
		for b != nil {
			if e.hooks == nil {
				b = e.finish(e.base, b, nil, e.fire(e.base, b))
			} else {
				b = e.runHooked(b)
			}
		}
		e.fmu.Lock()
		if b = e.unstarted.head; b != nil {
			e.unstarted.remove(b)
			e.fmu.Unlock()
			continue
		}
		if !ran || e.phase == stopped || len(e.parked) >= e.maxParked {
			e.fmu.Unlock()
			return
		}
		if next == nil {
			next = make(chan *batch[K, T], 1)
		}
		e.parked = append(e.parked, next)
		e.fmu.Unlock()
		if b = <-next; b == nil {
			return // stopped
		}
	}
}

func (e *engine[K, T]) runHooked(b *batch[K, T]) *batch[K, T] {
	h := e.hooks
	info := e.fireInfo(b, time.Now())
	ctx := e.base
	if h.Waited != nil || h.Retried != nil {
		ctx = context.WithValue(ctx, reporterKey{}, &reporter{hooks: h, id: b.id})
	}
	if h.Fired != nil {
		func() {
			defer func() { _ = recover() }()
			if c := h.Fired(ctx, info); c != nil {
				ctx = c
			}
		}()
	}
	return e.finish(ctx, b, &info, e.fire(ctx, b))
}

func (e *engine[K, T]) fireInfo(b *batch[K, T], now time.Time) FireInfo {
	info := FireInfo{BatchID: b.id, Size: b.n, Trigger: b.trigger, InFlight: b.inflight,
		Queued: b.queued, Start: now, Age: now.Sub(b.first)}
	if len(b.ctxs) > 0 {
		info.Contexts = b.ctxs // one per item: keepLocked pads it
	}
	if e.keyFn != nil {
		info.Key = b.ks.key
	}
	if !b.closed.IsZero() {
		info.SlotWait = now.Sub(b.closed)
	}
	return info
}

// callFire calls a FireFunc, recovering a panic as the batch's error.
func callFire[T any](f FireFunc[T], ctx context.Context, items []T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return f(ctx, items)
}

// finish marks a batch done and returns the next batch its slot admitted,
// for the caller's goroutine to run. It takes fmu only, unless FireInfo's
// Queued needs mu (hooks, and more than one batch waits for a slot); a
// Keyed's batch then takes mu, after fmu, when its key may have emptied,
// and so does the last batch of a stopped client, to mark it stopped.
func (e *engine[K, T]) finish(ctx context.Context, b *batch[K, T], info *FireInfo, err error) *batch[K, T] {
	err = checkItemErrors(err, b.n)
	if err != nil && e.deadLetter != nil {
		e.deadLetterFailed(ctx, b, err)
	}
	if info != nil && e.hooks.Done != nil {
		e.doneHook(ctx, info, err)
	}
	if b.res != nil {
		b.complete(err)
	}
	var l launches[K, T]
	withMu := e.hooks != nil && e.readyN.Load() > 1
	for {
		if withMu {
			e.mu.Lock()
		}
		e.fmu.Lock()
		if withMu || e.hooks == nil || len(e.ready) <= 1 {
			break
		}
		e.fmu.Unlock() // a batch closed meanwhile: admission needs mu
		withMu = true
	}
	e.inflight--
	e.flightItems -= b.n
	if e.keyFn != nil {
		b.ks.inflight--
	}
	e.done++
	if err != nil {
		e.failed++
	}
	e.releaseLocked(b.id, nil)
	ks := b.ks // batchGoneLocked clears b
	emptied := e.batchGoneLocked(b)
	if e.phase != aborted {
		e.admitLocked(&l)
		e.readyChangedLocked()
	}
	drained := e.drainableLocked()
	if withMu {
		if emptied {
			e.idleIfEmptyLocked(ks)
		}
		drained = drained && e.drainedLocked()
		e.fmu.Unlock()
		e.mu.Unlock()
	} else {
		e.fmu.Unlock()
		if emptied || drained {
			drained = e.afterFinish(ks, emptied, drained)
		}
	}
	if l.more != nil { // only Flush and Stop close several at once
		e.launch(&launches[K, T]{more: l.more})
	}
	if drained {
		e.stopped()
	}
	if l.oneTo != nil { // a parked goroutine was chosen for it
		l.oneTo <- l.one
		return nil
	}
	return l.one
}

// afterFinish does what a batch that is done needs mu for: idling its key
// when it may have emptied, and marking the client stopped when it may have
// drained (which it reports). It takes mu, and fmu for the latter.
func (e *engine[K, T]) afterFinish(ks *keyState[K, T], emptied, drainable bool) (drained bool) {
	e.mu.Lock()
	if emptied {
		e.idleIfEmptyLocked(ks)
	}
	if drainable {
		e.fmu.Lock()
		drained = e.drainedLocked()
		e.fmu.Unlock()
	}
	e.mu.Unlock()
	return drained
}

// doneHook runs the Done hook.
func (e *engine[K, T]) doneHook(ctx context.Context, info *FireInfo, err error) {
	done := DoneInfo{FireInfo: *info, Duration: time.Since(info.Start), Err: err}
	safely(func() { e.hooks.Done(ctx, done) })
}

// batchGoneLocked forgets a batch that is done or abandoned. It reports
// whether a Keyed's key may have emptied: its caller then calls
// idleIfEmptyLocked, under mu. It needs fmu.
func (e *engine[K, T]) batchGoneLocked(b *batch[K, T]) (emptied bool) {
	ks := b.ks
	e.recycleLocked(b, true)
	return e.keyFn != nil && ks.batches.Add(-1) == 0
}

// recycleLocked keeps b for reuse unless its items array grew past
// maxKeepCap: as the spare when there is none, or else, with free (the
// caller holds fmu), in the free list, for closeLocked to make it the spare.
// It needs fmu or mu (a discarded open batch, free false).
func (e *engine[K, T]) recycleLocked(b *batch[K, T], free bool) {
	if cap(b.items) > maxKeepCap {
		return
	}
	resetBatch(b)
	if (e.spare.Load() != nil || !e.spare.CompareAndSwap(nil, b)) && free && len(e.free) < maxFree {
		e.free = append(e.free, b)
	}
}

// resetBatch clears b for reuse, keeping its arrays.
func resetBatch[K comparable, T any](b *batch[K, T]) {
	clear(b.items)
	clear(b.ctxs)
	items, ctxs, sizes := b.items[:0], b.ctxs[:0], b.sizes[:0]
	*b = batch[K, T]{} // cleared in place: a composite literal would be built on the stack
	b.items, b.ctxs, b.sizes = items, ctxs, sizes
}

// deadLetterFailed hands the items of a batch whose Fire failed to the
// DeadLetter function: all of them with err, or, for an *ItemErrors aligned
// with the batch, the failed ones with an *ItemErrors aligned with them.
func (e *engine[K, T]) deadLetterFailed(ctx context.Context, b *batch[K, T], err error) {
	items := b.items
	if ie, ok := errors.AsType[*ItemErrors](err); ok && len(ie.Errs) == len(items) {
		var failed []T
		var errs []error
		for i, ierr := range ie.Errs {
			if ierr != nil {
				failed = append(failed, items[i])
				errs = append(errs, ierr)
			}
		}
		if len(failed) == 0 {
			return
		}
		items, err = failed, &ItemErrors{Errs: errs}
	}
	e.callDeadLetter(ctx, items, err)
}

// deadLetterItem hands one dropped item to the DeadLetter function, if any.
func (e *engine[K, T]) deadLetterItem(ctx context.Context, item T, err error) {
	if e.deadLetter != nil {
		e.callDeadLetter(ctx, []T{item}, err)
	}
}

// callDeadLetter calls the DeadLetter function, recovering a panic.
func (e *engine[K, T]) callDeadLetter(ctx context.Context, items []T, err error) {
	safely(func() { e.deadLetter(ctx, items, err) })
}

// releaseLocked counts a finished batch against the Flush barriers it
// belongs to. It needs fmu.
func (e *engine[K, T]) releaseLocked(id uint64, err error) {
	kept := e.barriers[:0]
	for _, bar := range e.barriers {
		if id <= bar.maxID {
			if err != nil {
				bar.err = err
			}
			if bar.remaining--; bar.remaining == 0 {
				close(bar.ch)
				continue
			}
		}
		kept = append(kept, bar)
	}
	clear(e.barriers[len(kept):])
	e.barriers = kept
}

// flush closes the open batches and waits until every batch closed before
// it returned is done. It takes both locks (fmu alone to give up waiting).
func (e *engine[K, T]) flush(ctx context.Context) error {
	var l launches[K, T]
	e.mu.Lock()
	if e.phase != running {
		e.mu.Unlock()
		return ErrStopped
	}
	e.fmu.Lock()
	e.closeAllLocked(TriggerFlush, &l)
	var bar *barrier
	if n := len(e.ready) + e.inflight; n > 0 {
		bar = &barrier{maxID: e.nextID, remaining: n, ch: make(chan struct{})}
		e.barriers = append(e.barriers, bar)
	}
	e.fmu.Unlock()
	e.mu.Unlock()
	e.launch(&l)
	if bar == nil {
		return nil
	}
	select {
	case <-bar.ch:
		return bar.err
	case <-ctx.Done():
		e.fmu.Lock()
		defer e.fmu.Unlock()
		for i, x := range e.barriers {
			if x == bar {
				e.barriers = append(e.barriers[:i], e.barriers[i+1:]...)
				return ctx.Err()
			}
		}
		return bar.err // done meanwhile
	}
}
