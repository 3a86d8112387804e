package muster

import (
	"context"
	"time"
)

// add offers one item, from Add, AddResult, Client.Add or a Client's worker
// (which always blocks for room, and whose item a Shutdown deadline refuses
// with ErrIncomplete). Its common case, an item joining the open batch of
// the last item's key without closing it, with no batch waiting for a slot
// and no Result, Batch or Sizer, is a lock, an append and an unlock, with
// no call but the Added hook's; every other item goes on to addLocked.
func (e *engine[K, T]) add(ctx context.Context, item T, wantResult, worker bool) (Result, error) {
	var key K
	size := 0
	if e.keyFn != nil || e.sizer != nil {
		var err error
		if key, size, err = e.measure(item); err != nil {
			return Result{}, e.refuse(ctx, err, time.Time{})
		}
	}
	e.mu.Lock()
	if ks := e.lastKey; ks != nil && ks.cur != nil && ks.cur.n < e.fill && ks.key == key && !wantResult &&
		e.phase == running && e.readyN.Load() == 0 && e.join == nil && e.sizer == nil {
		b := ks.cur
		b.items = append(b.items, item)
		b.n++
		e.openItems++
		e.added++
		if h := e.hooks; h != nil && h.Added != nil {
			e.keepLocked(b, callAdded(h.Added, ctx))
		}
		e.mu.Unlock()
		return Result{}, nil
	}
	return e.addLocked(ctx, key, item, size, wantResult, worker)
}

// addLocked is add for the items its common case leaves: what most never
// meet (a full client, a refusal) is in functions of their own, and the
// flight lock is taken only when the item closes its batch or a batch
// waits for a slot. It needs mu, and releases it.
func (e *engine[K, T]) addLocked(ctx context.Context, key K, item T, size int, wantResult, worker bool) (Result, error) {
	var l launches[K, T]
	var r Result
	var slow *slowAdd[T]
	var ks *keyState[K, T]
	err := error(nil)
	if e.phase != running || e.readyN.Load() != 0 && e.fullLocked(key) {
		if slow = e.makeRoomLocked(ctx, key, item, wantResult, worker); slow.done {
			return slow.r, slow.err // unlocked
		}
	}
	if ks, err = e.keyLocked(key); err == nil {
		var want *Result
		if wantResult {
			want = &r
		}
		err = e.appendLocked(ctx, ks, item, size, want, &l)
	}
	e.mu.Unlock()
	if l.one != nil {
		e.launch(&l)
	}
	if slow != nil || err != nil {
		return e.afterSlow(ctx, slow, r, err)
	}
	return r, nil
}

// addRun adds item and then, under the same lock, the items work holds
// (up to maxRun, and while no batch waits for a slot), each as add would: a
// Client's worker pays for the lock once per run of the items Work holds.
// An item that neither opens nor closes its batch goes to the Batch's Add
// under the run's one recover: a panic refuses the item and ends the run.
// An item that meets add's room check (the client is stopping, or a batch
// waits for a slot) goes through add, whose error addRun returns. It is for
// a client without Key or Sizer.
func (e *engine[K, T]) addRun(ctx context.Context, item T, work <-chan T) error {
	var l launches[K, T]
	var refused []error
	e.mu.Lock()
	if e.phase != running || e.readyN.Load() != 0 {
		e.mu.Unlock()
		_, err := e.add(ctx, item, false, true)
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			refused = append(refused, newPanicError(r))
		}
		e.mu.Unlock()
		e.launch(&l)
		for _, err := range refused {
			e.refuse(ctx, err, time.Time{})
		}
	}()
	for n, ok := 1, true; ok; n++ {
		if b := e.single.cur; b != nil && b.state != nil && b.n < e.fill && (e.hooks == nil || e.hooks.Added == nil) && !e.keepItems {
			b.state.Add(item)
			b.n++
			e.openItems++
			e.added++
		} else if err := e.appendLocked(ctx, &e.single, item, 0, nil, &l); err != nil {
			refused = append(refused, err)
		}
		if n == maxRun || e.readyN.Load() != 0 || ctx.Err() != nil { // as in the seed: leave Work alone while a batch waits, and to the worker's refusal after a Shutdown deadline
			break
		}
		select { // what work holds now, without waiting
		case item, ok = <-work:
		default:
			ok = false
		}
	}
	return nil
}

// maxRun bounds the items addRun adds under one lock.
const maxRun = 256

// measure calls the Key and Sizer functions, outside the locks, with one
// deferred recover for both (a panic is the item's error) and for the key's
// comparison with itself.
func (e *engine[K, T]) measure(item T) (key K, size int, err error) {
	comparing := false
	defer func() {
		if r := recover(); r != nil && comparing {
			err = ErrInvalidKey
		} else if r != nil {
			err = newPanicError(r) // the Key or Sizer function panicked
		}
	}()
	if e.keyFn != nil {
		key = e.keyFn(item)
		// A NaN is never found again in a map; an uncomparable value held
		// in an interface panics when compared: neither equals itself.
		comparing = true
		if key != key {
			return key, 0, ErrInvalidKey
		}
		comparing = false
	}
	if e.sizer != nil {
		if size = e.sizer(item); size < 0 || size > e.maxBytes {
			return key, size, ErrTooLarge
		}
	}
	return key, size, nil
}

// refuse counts an item not taken and reports it (see reportRefusal). It
// takes mu.
func (e *engine[K, T]) refuse(ctx context.Context, err error, since time.Time) error {
	e.mu.Lock()
	e.refused++
	e.mu.Unlock()
	return e.reportRefusal(ctx, err, since)
}

// reportRefusal reports an item not taken, which its caller counted in
// refused under mu: a producer that backpressure held since a non-zero
// time gets its Waited hook first, with err as the reason the wait was cut
// short. It returns err.
func (e *engine[K, T]) reportRefusal(ctx context.Context, err error, since time.Time) error {
	if h := e.hooks; h != nil {
		if h.Waited != nil && !since.IsZero() {
			safely(func() { h.Waited(ctx, WaitInfo{Reason: WaitBackpressure, Duration: time.Since(since), Err: err}) })
		}
		if h.Refused != nil {
			safely(func() { h.Refused(ctx, AddInfo{Err: err}) })
		}
	}
	return err
}

// appendLocked puts an item into its key's open batch, closing the batches
// its arrival completes (only add's and addRun's common cases join without
// it). An error (a BatchMaker or Batch.Add that panicked) means the item was
// not taken. r, when not nil, receives the item's Result, taken before its
// batch may close: a closed batch may be done, and reused, before mu is
// released. What most items never need (a new batch, a Batch's Add, sizes)
// is in prepareLocked, and what happens once per batch or with hooks in
// joinedLocked. It needs mu (not fmu: closing a batch takes it).
func (e *engine[K, T]) appendLocked(ctx context.Context, ks *keyState[K, T], item T, size int, r *Result, l *launches[K, T]) error {
	b := ks.cur
	if b == nil || e.join != nil || e.sizer != nil {
		var err error
		if b, err = e.prepareLocked(ks, item, size, l); err != nil {
			return err
		}
	}
	if e.keepItems {
		b.items = append(b.items, item)
	}
	b.n++
	e.openItems++
	e.added++
	if r != nil {
		*r = b.result()
	}
	if b.n == 1 || b.n == e.max || e.hooks != nil && e.hooks.Added != nil || e.maxBytes > 0 {
		e.joinedLocked(ctx, b, l)
	}
	return nil
}

// prepareLocked readies ks's open batch for an item: it closes the batch
// the item would take past MaxBatchBytes, makes a new one, hands the item to
// a Batch, and records the item's size. It needs mu (not fmu).
func (e *engine[K, T]) prepareLocked(ks *keyState[K, T], item T, size int, l *launches[K, T]) (*batch[K, T], error) {
	b := ks.cur
	if b != nil && e.maxBytes > 0 && b.n > 0 && b.bytes+size > e.maxBytes {
		e.fmu.Lock()
		e.closeLocked(b, TriggerBytes, l)
		e.fmu.Unlock()
		b = nil
	}
	if b == nil {
		b = e.newBatchLocked(ks)
	}
	if e.join != nil {
		if err := e.join(&b.state, item); err != nil {
			if b.n == 0 {
				e.discardLocked(b)
			}
			return nil, err
		}
	}
	if e.sizer != nil {
		b.sizes = append(b.sizes, size)
		b.bytes += size
	}
	return b, nil
}

// joinedLocked finishes an item's joining b: the Added hook, the batch's age
// when it is the first item, the batch's close when it is the last. It
// needs mu, and takes fmu to close the batch.
func (e *engine[K, T]) joinedLocked(ctx context.Context, b *batch[K, T], l *launches[K, T]) {
	if h := e.hooks; h != nil && h.Added != nil {
		e.keepLocked(b, callAdded(h.Added, ctx))
	}
	if b.n == 1 && b.first.IsZero() {
		e.openLocked(b)
	}
	t := TriggerSize
	switch {
	case b.n == e.max:
	case e.maxBytes > 0 && b.bytes >= e.maxBytes:
		t = TriggerBytes
	default:
		return
	}
	e.fmu.Lock()
	e.closeLocked(b, t, l)
	e.fmu.Unlock()
}

// keepLocked keeps the context the Added hook returned for b's last item.
// It needs mu.
func (e *engine[K, T]) keepLocked(b *batch[K, T], kept context.Context) {
	if kept == nil && len(b.ctxs) == 0 {
		return
	}
	for len(b.ctxs) < b.n-1 {
		b.ctxs = append(b.ctxs, nil)
	}
	b.ctxs = append(b.ctxs, kept)
}

// callAdded calls an Added hook, recovering a panic (nothing kept): it runs
// under mu, on a producer's goroutine or a Client's worker.
func callAdded(f func(context.Context, AddInfo) context.Context, ctx context.Context) (kept context.Context) {
	defer func() {
		if recover() != nil {
			kept = nil
		}
	}()
	return f(ctx, AddInfo{})
}

// newBatchLocked makes ks's open batch, from the spare when there is one.
// It needs mu only: the spare spares it the free list, which fmu guards.
func (e *engine[K, T]) newBatchLocked(ks *keyState[K, T]) *batch[K, T] {
	b := e.spare.Swap(nil)
	if b == nil {
		b = &batch[K, T]{}
		if e.keepItems {
			b.items = make([]T, 0, min(max(e.max, 1), initialCap))
		}
	}
	b.ks = ks
	ks.cur = b
	if e.keyFn != nil {
		ks.batches.Add(1)
	}
	return b
}

// openLocked starts a batch's age and puts it at the end of the open FIFO.
//
// The timer is armed only when none is pending; when it goes off it closes
// the batches whose deadline passed and re-arms for the oldest of the
// others. Size-triggered batches thus cost the timer nothing (Reset and Stop
// cost about a microsecond each here, more than a batch of Adds). It needs
// mu.
func (e *engine[K, T]) openLocked(b *batch[K, T]) {
	b.first = time.Now()
	e.open.pushBack(b)
	if e.timer != nil && !e.timerSet {
		e.timerSet = true
		e.timer.Reset(e.timeout)
	}
}

// unlinkOpenLocked takes b out of the open FIFO. It needs mu.
func (e *engine[K, T]) unlinkOpenLocked(b *batch[K, T]) {
	if b.first.IsZero() {
		return // never opened
	}
	e.open.remove(b)
}

// onTimer closes the open batches whose deadline passed. It takes both
// locks.
func (e *engine[K, T]) onTimer() {
	var l launches[K, T]
	e.mu.Lock()
	e.fmu.Lock()
	e.timerSet = false
	now := time.Now()
	for b := e.open.head; b != nil && e.phase != aborted; b = e.open.head {
		if age := now.Sub(b.first); age < e.timeout {
			e.timerSet = true
			e.timer.Reset(e.timeout - age)
			break
		}
		if b.n == 0 {
			e.discardLocked(b) // emptied by drops: nothing to fire
			continue
		}
		e.closeLocked(b, TriggerTimeout, &l)
	}
	e.fmu.Unlock()
	e.mu.Unlock()
	e.launch(&l)
}

// discardLocked drops an open batch that holds nothing; it becomes the
// spare. It needs mu.
func (e *engine[K, T]) discardLocked(b *batch[K, T]) {
	e.unlinkOpenLocked(b)
	ks := b.ks
	ks.cur = nil
	b.complete(nil) // only dropped items' results
	e.recycleLocked(b, false)
	if e.keyFn != nil && ks.batches.Add(-1) == 0 {
		e.idleIfEmptyLocked(ks)
	}
}

// add notes an admitted batch, and the parked goroutine that will take it.
func (l *launches[K, T]) add(b *batch[K, T], to chan *batch[K, T]) {
	if l.one == nil {
		l.one, l.oneTo = b, to
		return
	}
	if to != nil {
		to <- b // rare (several admitted at once): hand it over now
		return
	}
	l.more = append(l.more, b)
}
