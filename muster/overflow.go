package muster

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Overflow says what Add does when the pending capacity is used up (a
// batch waits for an in-flight slot and PendingWorkCapacity items are
// queued behind it). A send on a Client's Work blocks then, as in the seed.
type Overflow uint8

// The overflow policies.
const (
	// OverflowBlock (the default) blocks Add until there is room or its
	// context ends.
	OverflowBlock Overflow = iota
	// OverflowFail makes Add return ErrFull at once.
	OverflowFail
	// OverflowDropNewest drops the incoming item (counted in
	// Stats.Refused): Add returns nil.
	OverflowDropNewest
	// OverflowDropOldest takes the incoming item and drops the oldest queued
	// one (counted in Stats.Dropped): the first item of the second batch
	// waiting for a slot, or else of the oldest open batch; with none
	// queued, the incoming item. A batch keeps its age when its first item
	// is dropped. Not available to a Client, whose Batch holds its items.
	OverflowDropOldest
)

// slowAdd is what makeRoomLocked learned: the item's outcome when it
// settled it (done), or else how long the producer was held and what was
// dropped to make room.
type slowAdd[T any] struct {
	done  bool
	r     Result
	err   error
	since time.Time
	drop  *dropped[T]
}

// makeRoomLocked applies the Overflow policy while the pending capacity is
// used up, and refuses the item once the client stops. It needs mu, and
// takes fmu to look at the ready queue. When it returns done, the item's
// fate is settled and mu released; otherwise mu is held and the item may
// join.
func (e *engine[K, T]) makeRoomLocked(ctx context.Context, key K, item T, wantResult, worker bool) *slowAdd[T] {
	overflow, stopped := e.overflow, ErrStopped
	if worker { // see add
		overflow, stopped = OverflowBlock, ErrIncomplete
	}
	s := &slowAdd[T]{}
	refuse := func(err error) *slowAdd[T] { // with both locks held
		e.refused++
		e.fmu.Unlock()
		e.mu.Unlock()
		if s.done = true; err != ErrDropped {
			s.err = e.reportRefusal(ctx, err, time.Time{})
			return s
		}
		e.deadLetterItem(ctx, item, err) // Add returns nil for an item dropped
		e.reportRefusal(ctx, err, time.Time{})
		if wantResult {
			s.r = Result{o: droppedOutcome}
		}
		return s
	}
	for e.phase == running {
		e.fmu.Lock()
		over := e.keyOverLocked(key) // the key's own bound first: it is the key's own items that go
		if over == nil && !e.overCapacityLocked() {
			e.fmu.Unlock()
			break
		}
		if overflow == OverflowDropOldest {
			if !e.keyFitsLocked(key) { // drop nothing for an item refused anyway
				return refuse(ErrTooManyKeys)
			}
			if s.drop = e.dropOldestLocked(over); s.drop != nil {
				e.fmu.Unlock()
				return s
			}
		}
		switch {
		case overflow == OverflowFail && over != nil:
			return refuse(errKeyFull)
		case overflow == OverflowFail:
			return refuse(ErrFull)
		case overflow != OverflowBlock:
			return refuse(ErrDropped)
		}
		if s.since.IsZero() {
			s.since = time.Now()
		}
		space := e.spaceLocked()
		e.fmu.Unlock()
		e.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			err := ctx.Err()
			if worker { // its context ends at a Shutdown deadline
				err = ErrIncomplete
			}
			s.done, s.err = true, e.refuse(ctx, err, s.since)
			return s
		}
		e.mu.Lock()
	}
	if e.phase != running {
		e.refused++
		e.mu.Unlock()
		s.done, s.err = true, e.reportRefusal(ctx, stopped, s.since)
	}
	return s
}

// afterSlow reports, once the locks are released, what the slow path or a
// failed append left to say.
func (e *engine[K, T]) afterSlow(ctx context.Context, s *slowAdd[T], r Result, err error) (Result, error) {
	var since time.Time
	if s != nil {
		since = s.since
		if s.drop != nil {
			e.reportDrop(s.drop)
		}
	}
	if err != nil {
		return Result{}, e.refuse(ctx, err, since)
	}
	if h := e.hooks; !since.IsZero() && h != nil && h.Waited != nil {
		safely(func() { h.Waited(ctx, WaitInfo{Reason: WaitBackpressure, Duration: time.Since(since)}) })
	}
	return r, nil
}

// fullLocked reports whether the pending capacity, or key's share of it,
// is used up. It needs mu, and takes fmu only when a batch waits for a slot
// (see readyN; add tests readyN itself first, so that its common path makes
// no call).
func (e *engine[K, T]) fullLocked(key K) bool {
	if e.readyN.Load() == 0 {
		return false
	}
	e.fmu.Lock()
	full := e.overCapacityLocked() || e.keyOverLocked(key) != nil
	e.fmu.Unlock()
	return full
}

// keyOverLocked returns key's state when MaxPendingPerKey applies to it: a
// batch of the key waits for a slot and the key holds MaxPendingPerKey
// items that have not fired (in its open and waiting batches). Otherwise,
// and without MaxPendingPerKey, it returns nil. It needs both locks.
func (e *engine[K, T]) keyOverLocked(key K) *keyState[K, T] {
	if e.perKey == 0 {
		return nil
	}
	ks := e.lastKey
	if ks == nil || ks.key != key {
		ks = e.keys[key]
	}
	if ks == nil || ks.waiting == 0 || ks.pendingLocked() < e.perKey {
		return nil
	}
	return ks
}

// errKeyFull is OverflowFail's error for an item of a key at
// MaxPendingPerKey: it matches ErrFull.
var errKeyFull = fmt.Errorf("%w: the key holds MaxPendingPerKey items", ErrFull)

// pendingLocked counts the key's items that have not fired: in its open
// batch and its batches waiting for a slot. It needs both locks.
func (ks *keyState[K, T]) pendingLocked() int {
	n := ks.waitingItems
	if ks.cur != nil {
		n += ks.cur.n
	}
	return n
}

// overCapacityLocked reports whether a closed batch waits for a slot and
// PendingWorkCapacity items are queued behind it. It needs both locks.
func (e *engine[K, T]) overCapacityLocked() bool {
	return len(e.ready) > 0 && e.queuedLocked() >= e.capacity
}

// queuedLocked counts the items behind the oldest batch waiting for a slot:
// those PendingWorkCapacity bounds. It needs fmu, and mu too unless at most
// one batch is ready (with none there is no queue; with one, what is
// queued is in open batches, which mu guards).
func (e *engine[K, T]) queuedLocked() int {
	if len(e.ready) == 0 {
		return 0
	}
	return e.openItems + e.readyItems - e.ready[0].n
}

// spaceLocked returns the channel wakeLocked closes. It needs fmu.
func (e *engine[K, T]) spaceLocked() chan struct{} {
	if e.space == nil {
		e.space = make(chan struct{})
	}
	return e.space
}

// wakeLocked lets every waiting producer (and a Client's worker) look
// again. It needs fmu.
func (e *engine[K, T]) wakeLocked() {
	if e.space != nil {
		close(e.space)
		e.space = nil
	}
}

// dropped is an item dropped under OverflowDropOldest, reported once the
// lock is released.
type dropped[T any] struct {
	ctx  context.Context
	item T
}

// dropOldestLocked drops the oldest queued item: the first of the second
// ready batch, or of the oldest open batch holding one. With ks (a key at
// MaxPendingPerKey), it drops that key's oldest queued item instead: the
// first of its oldest ready batch other than the oldest of all, or of its
// open batch. It returns nil when nothing is queued. It needs both locks.
func (e *engine[K, T]) dropOldestLocked(ks *keyState[K, T]) *dropped[T] {
	var b *batch[K, T]
	i := -1 // b's index in ready, or -1 when b is open
	switch {
	case ks != nil:
		for j := 1; j < len(e.ready) && i < 0; j++ {
			if e.ready[j].ks == ks {
				i, b = j, e.ready[j]
			}
		}
		if b == nil && ks.cur != nil && ks.cur.n > 0 {
			b = ks.cur
		}
	case len(e.ready) > 1:
		i, b = 1, e.ready[1]
	default:
		for b = e.open.head; b != nil && b.n == 0; b = e.open.next(b) {
		}
	}
	if b == nil {
		return nil
	}
	d := &dropped[T]{ctx: context.Background()}
	if len(b.ctxs) > 0 && b.ctxs[0] != nil {
		d.ctx = b.ctxs[0]
	}
	if e.keepItems {
		d.item = b.items[0]
	}
	if b.res != nil {
		b.res.setSlot(b.slot(0), ErrDropped, b.joined())
	}
	if b.sizes != nil {
		b.bytes -= b.sizes[0]
		b.sizes = removeFirst(b.sizes)
	}
	b.items = removeFirst(b.items)
	b.ctxs = removeFirst(b.ctxs)
	b.n--
	b.left++
	e.dropped++
	if i >= 0 {
		e.readyItems--
		if e.keyFn != nil {
			b.ks.waitingItems--
		}
		if b.n == 0 { // a ready batch with nothing left to fire
			e.ready = slices.Delete(e.ready, i, i+1)
			if e.keyFn != nil {
				b.ks.waiting--
			}
			e.readyChangedLocked()
			b.complete(nil)
			e.releaseLocked(b.id, nil)
			if ks := b.ks; e.batchGoneLocked(b) {
				e.idleIfEmptyLocked(ks)
			}
		}
	} else {
		e.openItems--
		if b.n == 0 && e.timeout == 0 { // no age to keep: nothing holds it open
			e.discardLocked(b)
		}
	}
	return d
}

func removeFirst[S ~[]E, E any](s S) S {
	if len(s) == 0 {
		return s
	}
	n := copy(s, s[1:])
	var zero E
	s[n] = zero
	return s[:n]
}

func (e *engine[K, T]) reportDrop(d *dropped[T]) {
	e.deadLetterItem(d.ctx, d.item, ErrDropped)
	if h := e.hooks; h != nil && h.Refused != nil {
		safely(func() { h.Refused(d.ctx, AddInfo{Err: ErrDropped, Taken: true}) })
	}
}

// awaitNoneWaiting blocks while a closed batch waits for a slot: a
// Client's worker calls it before it takes an item from Work, so that, as
// in the seed, producers block once Work is full. It reports false when
// abandon is closed first. It takes fmu.
func (e *engine[K, T]) awaitNoneWaiting(abandon <-chan struct{}) bool {
	if e.readyN.Load() == 0 {
		return true
	}
	e.fmu.Lock()
	for len(e.ready) > 0 {
		space := e.spaceLocked()
		e.fmu.Unlock()
		select {
		case <-space:
		case <-abandon:
			return false
		}
		e.fmu.Lock()
	}
	e.fmu.Unlock()
	return true
}
