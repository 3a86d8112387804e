package muster

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The one engine under Client, Batcher and Keyed.
//
// Every key has at most one open batch, the one items join. Open batches
// form a FIFO in the order they opened, which is the order of their
// deadlines: one timer, on the oldest, closes them at BatchTimeout. A closed
// batch joins the ready queue; it is admitted (takes an in-flight slot, and
// only then Fires) while fewer than MaxConcurrentBatches are in flight:
// oldest first, or round-robin over keys with MaxPendingPerKey. No
// goroutine exists for a batch in the ready queue: the goroutine of a batch
// that is done runs the next admitted batch itself.
//
// Two mutexes guard it. The add lock (mu) guards what items join: the keys,
// the open batches and their FIFO, the timer, the items in open batches, and
// the Added, Refused and Dropped counters. The flight lock (fmu) guards what
// closed batches go through: the ready queue, the in-flight slots, the Flush
// barriers, the free batches and the parked batch goroutines, and the Fired,
// Done, Failed and Abandoned counters. The lock order is mu before fmu, never
// the reverse. phase and feeding are written with both held, so either lock
// reads them.
//
// A producer takes mu once per item, and fmu once per batch (when its item
// closes one) or while a batch waits for a slot. A batch that is done
// (finish) takes fmu alone while at most one batch waits for a slot and
// there are no hooks, and then mu, after releasing fmu, only when its
// Keyed key may have emptied or the client may have drained; with hooks and
// more than one batch waiting it takes mu before fmu, since the FireInfo of
// the batch it admits counts the queue, which mu guards. A function
// named ...Locked says in its doc which locks it needs. Hooks and Fire run
// outside both, except Added, which runs under mu so that it precedes its
// batch's Fired.
//
// Since Stop and a Client's worker close every open batch under both locks
// once no item can join any more, phase != running && !feeding implies that
// no batch is open: whether the client has drained is known under fmu.

// phase is a client's lifecycle.
type phase uint8

const (
	running  phase = iota
	stopping       // Stop or Shutdown began: no new items; what is open closes and drains
	aborted        // Shutdown's deadline passed: what had not fired was abandoned
	stopped        // every batch is done or abandoned: the Stopped hook runs
)

// batch is one batch: open (items join it), ready (closed, waiting for a
// slot), or in flight.
type batch[K comparable, T any] struct {
	ks    *keyState[K, T]
	id    uint64
	n     int   // items
	items []T   // a Batcher's or Keyed's items; a Client's with Middleware
	sizes []int // each item's size, with a Sizer (to drop without calling it again)
	user  Batch // a Client's Batch
	ctxs  []context.Context
	bytes int
	res   *outcome // AddResult's outcomes, from the first such item
	// left counts the items dropped from the batch: an item's outcome slot
	// is its rank among the items that ever joined (see joined).
	left    int32
	first   time.Time
	closed  time.Time
	trigger Trigger
	// At admission, for FireInfo.
	inflight, queued int

	link[batch[K, T]] // in the open FIFO
}

// keyState is one key's share of the engine. A key costs this struct, a map
// entry and, while it holds items, an open batch.
func (b *batch[K, T]) links() *link[batch[K, T]] { return &b.link }

type keyState[K comparable, T any] struct {
	key K
	cur *batch[K, T] // the open batch, or nil
	// batches counts a Keyed's batches that are open, or closed and not
	// done: the key holds nothing at 0. mu guards opening and discarding,
	// fmu finishing: atomic. A finishing batch thus learns without mu
	// whether its key may have emptied.
	batches              atomic.Int32
	idleSince            time.Time
	link[keyState[K, T]] // in the idle list, least recently used first
	idle                 bool
	// A Keyed's share of the ready queue and the slots, under fmu: its
	// batches waiting and their items, its batches in flight, and the
	// admission that last gave it a slot (0: none yet).
	waiting, waitingItems, inflight int
	served                          uint64
}

func (ks *keyState[K, T]) links() *link[keyState[K, T]] { return &ks.link }

type barrier struct {
	maxID     uint64
	remaining int
	err       error
	ch        chan struct{}
}

// config is what a Client, Batcher or Keyed hands to the engine.
type config[K comparable, T any] struct {
	name     string
	max      int
	maxBytes int
	timeout  time.Duration
	limit    int
	capacity int
	perKey   int // MaxPendingPerKey; 0: no per-key bound, oldest-first admission
	overflow Overflow
	sizer    func(T) int
	keyFn    func(T) K // nil: one key
	maxKeys  int
	idle     time.Duration
	keepAll  bool // keep items even with a Batch (Client with Middleware)
	fire     func(ctx context.Context, b *batch[K, T]) error
	maker    func() Batch
	observer Observer
	base     func() context.Context
	// deadLetter receives the items whose outcome is not delivery; nil:
	// none is called (a Client's).
	deadLetter func(ctx context.Context, items []T, err error)
}

type engine[K comparable, T any] struct {
	config[K, T]
	id     uint64
	hooks  *Hooks
	base   context.Context
	cancel context.CancelCauseFunc
	workQ  func() int    // len(Work) for a Client
	fed    chan struct{} // closed when a Client's worker has exited
	// What the add path asks of the configuration, one test each.
	measured  bool // a Key or Sizer to call for each item
	prepared  bool // each item needs prepareLocked: a BatchMaker's Batch or a Sizer
	keepItems bool // batches keep their items
	perItem   bool // each item needs joinedLocked: hooks or MaxBatchBytes
	plain     bool // neither prepared nor perItem: appendLocked's common case applies
	fill      int  // an open batch below this many items does not close on the next (MaxBatchSize-1)

	// The add lock and what it guards; what every Add touches comes first.
	mu        sync.Mutex
	phase     phase          // written under both locks
	feeding   bool           // a Client's worker may still add items; written under both locks
	single    keyState[K, T] // the one key of a Batcher or Client
	openItems int            // items in open batches
	added     uint64
	// readyN is len(ready), stored under fmu whenever it changes. Only
	// closing a batch adds to ready, and closing holds mu too: a producer
	// holding mu that loads 0 knows no batch waits for a slot (and none will
	// until it closes one), without taking fmu.
	readyN atomic.Int32
	// spare is the next new batch. Only mu's holder takes it (newBatchLocked
	// swaps it out), so that making a batch never needs fmu; it is refilled
	// under fmu, by a batch that is done (recycleLocked) or from the free
	// list when a batch closes, and under mu by a discarded batch: atomic.
	spare      atomic.Pointer[batch[K, T]]
	refused    uint64
	dropped    uint64
	keys       map[K]*keyState[K, T]
	lastKey    *keyState[K, T] // the key keyLocked found last, if still live: most items repeat it
	idleKeys   list[keyState[K, T], *keyState[K, T]]
	janitor    *time.Timer
	janitorSet bool
	open       list[batch[K, T], *batch[K, T]]
	timer      *time.Timer
	timerSet   bool
	late       int // Work items refused after a deadline

	_ [64]byte // keeps the flight lock off the add lock's cache line

	// The flight lock and what it guards.
	fmu         sync.Mutex
	ready       []*batch[K, T] // closed, waiting for a slot, oldest first (admitted in that order unless perKey)
	readyItems  int            // items in ready batches
	inflight    int
	flightItems int
	fired       uint64
	done        uint64
	failed      uint64
	abandoned   uint64
	abandoning  int // batches abandoned whose Done hooks are running
	space       chan struct{}
	barriers    []*barrier
	free        []*batch[K, T]
	parked      []chan *batch[K, T] // idle batch goroutines, the latest last
	maxParked   int
	nextID      uint64
	drained     chan struct{}
}

// maxParkedUnlimited bounds the idle batch goroutines of a client without
// MaxConcurrentBatches: enough for the batches a fast producer has in
// flight at once while hooks and middleware run (a parked goroutine costs
// its stack, a few KiB).
const maxParkedUnlimited = 64

// clientIDs numbers clients, for ClientInfo.ID.
var clientIDs atomic.Uint64

// maxFree bounds the batches kept for reuse; maxKeepCap the capacity of an
// items array worth keeping.
const (
	maxFree    = 64
	maxKeepCap = 4096
	initialCap = 128
)

func newEngine[K comparable, T any](c config[K, T]) *engine[K, T] {
	e := &engine[K, T]{config: c, id: clientIDs.Add(1), drained: make(chan struct{}), maxParked: c.limit}
	e.measured = c.keyFn != nil || c.sizer != nil
	e.prepared = c.maker != nil || c.sizer != nil
	e.keepItems = c.maker == nil || c.keepAll
	e.perItem = c.maxBytes > 0
	e.fill = c.max - 1
	if c.max == 0 {
		e.fill = math.MaxInt
	}
	if e.maxParked == 0 {
		e.maxParked = maxParkedUnlimited
	}
	base := context.Background()
	if c.base != nil {
		if b := c.base(); b != nil {
			base = b
		}
	}
	e.base, e.cancel = context.WithCancelCause(base)
	if c.keyFn != nil {
		e.keys = make(map[K]*keyState[K, T])
	}
	if c.timeout > 0 {
		e.timer = time.AfterFunc(time.Hour, e.onTimer)
		e.timer.Stop()
	}
	if c.keyFn != nil {
		e.janitor = time.AfterFunc(time.Hour, e.onJanitor)
		e.janitor.Stop()
	}
	return e
}

func (e *engine[K, T]) info() ClientInfo {
	mk := 0
	if e.keyFn != nil {
		mk = e.maxKeys
	}
	ci := ClientInfo{ID: e.id, Name: e.name, MaxBatchSize: e.max, BatchTimeout: e.timeout,
		MaxConcurrentBatches: e.limit, PendingWorkCapacity: e.capacity, MaxKeys: mk, Stats: e.snapshot}
	if e.keyFn != nil {
		ci.MaxPendingPerKey, ci.TopKeys = e.perKey, e.topKeysAny
	}
	return ci
}

// observe asks the observer for this client's hooks; Start calls it before
// the client takes any item.
func (e *engine[K, T]) observe() {
	if e.observer != nil {
		func() {
			defer func() { _ = recover() }()
			e.hooks = e.observer.Observe(e.info())
		}()
		if e.hooks.empty() {
			e.hooks = nil // nothing to call: pay for nothing
		}
	}
	e.perItem = e.perItem || e.hooks != nil
	e.plain = !e.prepared && !e.perItem
}

// add offers one item: the path of Add, AddResult and Client.Add. What
// most items never meet (a key or size to compute, a full client, a
// refusal) is in functions of their own, so that the common path is a
// lock, an append and an unlock; the flight lock is taken only when the
// item closes its batch or a batch waits for a slot.
func (e *engine[K, T]) add(ctx context.Context, item T, wantResult bool) (Result, error) {
	var key K
	size := 0
	if e.measured {
		var err error
		if key, size, err = e.measure(item); err != nil {
			return Result{}, e.refuse(ctx, err, time.Time{})
		}
	}
	var l launches[K, T]
	var r Result
	var slow *slowAdd[T]
	ks, err := &e.single, error(nil)
	e.mu.Lock()
	if e.phase != running || e.readyN.Load() != 0 && e.fullLocked(key) {
		if slow = e.makeRoomLocked(ctx, key, item, wantResult); slow.done {
			return slow.r, slow.err // unlocked
		}
	}
	if e.keyFn != nil {
		ks, err = e.keyLocked(key)
	}
	if err == nil {
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

// measure calls the Key and Sizer functions, outside the locks, with one
// deferred recover for both (a panic is the item's error).
func (e *engine[K, T]) measure(item T) (key K, size int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r) // the Key or Sizer function panicked
		}
	}()
	if e.keyFn != nil {
		key = e.keyFn(item)
		// A NaN is never found again in a map; an uncomparable value held
		// in an interface panics when compared: neither equals itself.
		if !selfEqual(key) {
			return key, 0, ErrInvalidKey
		}
	}
	if e.sizer != nil {
		if size = e.sizer(item); size < 0 || size > e.maxBytes {
			return key, size, ErrTooLarge
		}
	}
	return key, size, nil
}

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
//
//go:noinline
func (e *engine[K, T]) makeRoomLocked(ctx context.Context, key K, item T, wantResult bool) *slowAdd[T] {
	s := &slowAdd[T]{}
	for e.phase == running {
		e.fmu.Lock()
		over := e.keyOverLocked(key) // the key's own bound first: it is the key's own items that go
		if over == nil && !e.overCapacityLocked() {
			e.fmu.Unlock()
			break
		}
		if e.overflow == OverflowDropOldest {
			if !e.keyFitsLocked(key) { // drop nothing for an item refused anyway
				e.fmu.Unlock()
				e.mu.Unlock()
				s.done, s.err = true, e.refuse(ctx, ErrTooManyKeys, time.Time{})
				return s
			}
			if s.drop = e.dropOldestLocked(over); s.drop != nil {
				e.fmu.Unlock()
				return s
			}
		}
		switch e.overflow {
		case OverflowFail:
			e.fmu.Unlock()
			e.mu.Unlock()
			err := ErrFull
			if over != nil {
				err = errKeyFull
			}
			s.done, s.err = true, e.refuse(ctx, err, time.Time{})
			return s
		case OverflowDropNewest, OverflowDropOldest:
			e.fmu.Unlock()
			e.mu.Unlock()
			e.deadLetterItem(ctx, item, ErrDropped)
			e.refuse(ctx, ErrDropped, time.Time{})
			if s.done = true; wantResult {
				s.r = Result{o: droppedOutcome}
			}
			return s
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
			s.done, s.err = true, e.refuse(ctx, ctx.Err(), s.since)
			return s
		}
		e.mu.Lock()
	}
	if e.phase != running {
		e.mu.Unlock()
		s.done, s.err = true, e.refuse(ctx, ErrStopped, s.since)
	}
	return s
}

// afterSlow reports, once the locks are released, what the slow path or a
// failed append left to say.
//
//go:noinline
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

// refuse counts an item not taken and reports it: a producer that
// backpressure held since a non-zero time gets its Waited hook first, with
// err as the reason the wait was cut short. It takes mu.
func (e *engine[K, T]) refuse(ctx context.Context, err error, since time.Time) error {
	e.mu.Lock()
	e.refused++
	e.mu.Unlock()
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

// selfEqual reports whether k == k; comparing an uncomparable value held in
// an interface panics, and such a key is not equal to itself either.
func selfEqual[K comparable](k K) (eq bool) {
	defer func() {
		if recover() != nil {
			eq = false
		}
	}()
	return k == k
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

// readyChangedLocked publishes len(ready) to producers (see readyN). It
// needs fmu.
func (e *engine[K, T]) readyChangedLocked() {
	if n := int32(len(e.ready)); e.readyN.Load() != n {
		e.readyN.Store(n)
	}
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

// keyFitsLocked reports whether keyLocked would find or make key's state.
// It needs mu.
func (e *engine[K, T]) keyFitsLocked(key K) bool {
	if e.keyFn == nil || e.idleKeys.head != nil || len(e.keys) < e.maxKeys {
		return true
	}
	_, ok := e.keys[key]
	return ok
}

// keyLocked finds or makes the state of key. It needs mu.
func (e *engine[K, T]) keyLocked(key K) (*keyState[K, T], error) {
	if e.keyFn == nil {
		return &e.single, nil
	}
	ks := e.lastKey
	if ks == nil || ks.key != key { // keyOf refused the keys not equal to themselves
		ks = e.keys[key]
	}
	if ks != nil {
		if ks.idle {
			e.unidleLocked(ks)
		}
		e.lastKey = ks
		return ks, nil
	}
	if len(e.keys) >= e.maxKeys {
		if e.idleKeys.head == nil {
			return nil, ErrTooManyKeys
		}
		e.evictLocked(e.idleKeys.head)
	}
	ks = &keyState[K, T]{key: key}
	e.keys[key] = ks
	e.lastKey = ks
	return ks, nil
}

// appendLocked puts an item into its key's open batch, closing the batches
// its arrival completes: the one way an item joins a batch. An error (a
// BatchMaker or Batch.Add that panicked) means the item was not taken. r,
// when not nil, receives the item's Result, taken before its batch may
// close: a closed batch may be done, and reused, before mu is released. It
// needs mu (not fmu: closing a batch takes it).
//
// Its common case, an item that neither opens nor closes its batch on a
// client without Batch, Sizer, MaxBatchBytes or hooks, makes no call; every
// other item goes through joinLocked. (A plain client's open batch is in the
// open FIFO already: the joinLocked call that made it added its first item.)
func (e *engine[K, T]) appendLocked(ctx context.Context, ks *keyState[K, T], item T, size int, r *Result, l *launches[K, T]) error {
	if b := ks.cur; b != nil && e.plain && b.n < e.fill && r == nil {
		b.items = append(b.items, item)
		b.n++
		e.openItems++
		e.added++
		return nil
	}
	return e.joinLocked(ctx, ks, item, size, r, l)
}

// joinLocked is appendLocked for every item: what most items never need (a
// new batch, a Batch's Add, sizes) is in prepareLocked, and what happens
// once per batch or with hooks in joinedLocked. It needs mu.
func (e *engine[K, T]) joinLocked(ctx context.Context, ks *keyState[K, T], item T, size int, r *Result, l *launches[K, T]) error {
	b := ks.cur
	if b == nil || e.prepared {
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
	if b.n == 1 || b.n == e.max || e.perItem {
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
		var err error
		if b, err = e.newBatchLocked(ks); err != nil {
			e.idleIfEmptyLocked(ks)
			return nil, err
		}
	}
	if b.user != nil {
		if err := safeAdd(b.user, item); err != nil {
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

func safeAdd(b Batch, item any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	b.Add(item)
	return nil
}

// newBatchLocked makes ks's open batch, from the spare when there is one.
// It needs mu only: the spare spares it the free list, which fmu guards.
func (e *engine[K, T]) newBatchLocked(ks *keyState[K, T]) (*batch[K, T], error) {
	b := e.spare.Swap(nil)
	if b == nil {
		b = &batch[K, T]{}
		if e.maker == nil || e.keepAll {
			b.items = make([]T, 0, min(max(e.max, 1), initialCap))
		}
	}
	if e.maker != nil {
		u, err := safeMake(e.maker)
		if err != nil {
			e.spareLocked(b)
			return nil, err
		}
		b.user = u
	}
	b.ks = ks
	ks.cur = b
	if e.keyFn != nil {
		ks.batches.Add(1)
	}
	return b, nil
}

func safeMake(maker func() Batch) (b Batch, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	if b = maker(); b == nil {
		panic("BatchMaker returned nil")
	}
	return b, nil
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
	e.spareLocked(b)
	if e.keyFn != nil && ks.batches.Add(-1) == 0 {
		e.idleIfEmptyLocked(ks)
	}
}

// launches are the batches admitted under the locks, to start after them.
type launches[K comparable, T any] struct {
	one   *batch[K, T]
	oneTo chan *batch[K, T] // the parked goroutine that takes one; nil: a new one
	more  []*batch[K, T]
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

// launch hands each admitted batch to its parked goroutine or starts one,
// after the locks are released.
func (e *engine[K, T]) launch(l *launches[K, T]) {
	switch {
	case l.oneTo != nil:
		l.oneTo <- l.one
	case l.one != nil:
		go e.run(l.one)
	}
	for _, b := range l.more {
		go e.run(b)
	}
}

// closeLocked closes an open batch: it joins the ready queue, and every
// batch that may now take a slot is added to l. It refills the spare from
// the free list. It needs both locks.
func (e *engine[K, T]) closeLocked(b *batch[K, T], t Trigger, l *launches[K, T]) {
	e.unlinkOpenLocked(b)
	b.ks.cur = nil
	b.trigger = t
	e.nextID++
	b.id = e.nextID
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
			if e.workQ != nil {
				b.queued += e.workQ()
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

// run is the goroutine of an admitted batch. When the batch is done it runs
// the next batch the freed slot admitted; with none, it parks (up to
// maxParked goroutines do) until a batch is admitted or the client stops.
// A busy client thus starts no goroutine per batch, and reuses stacks that
// hooks and middleware have grown. It takes fmu to park.
func (e *engine[K, T]) run(b *batch[K, T]) {
	var next chan *batch[K, T]
	for {
		for b != nil {
			if e.hooks == nil {
				b = e.finish(e.base, b, nil, e.fire(e.base, b))
			} else {
				b = e.runHooked(b)
			}
		}
		e.fmu.Lock()
		if e.phase == stopped || len(e.parked) >= e.maxParked {
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

//go:noinline
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
		for len(b.ctxs) < b.n {
			b.ctxs = append(b.ctxs, nil)
		}
		info.Contexts = b.ctxs
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
//
//go:noinline
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

// doneHook runs the Done hook in a frame of its own: the goroutine of a
// batch without hooks keeps a small stack (growing it costs more than a
// batch of Adds).
//
//go:noinline
func (e *engine[K, T]) doneHook(ctx context.Context, info *FireInfo, err error) {
	done := DoneInfo{FireInfo: *info, Duration: time.Since(info.Start), Err: err}
	safely(func() { e.hooks.Done(ctx, done) })
}

// batchGoneLocked forgets a batch that is done or abandoned. It reports
// whether a Keyed's key may have emptied: its caller then calls
// idleIfEmptyLocked, under mu. It needs fmu.
func (e *engine[K, T]) batchGoneLocked(b *batch[K, T]) (emptied bool) {
	ks := b.ks
	e.recycleLocked(b)
	return e.keyFn != nil && ks.batches.Add(-1) == 0
}

// recycleLocked keeps b for reuse: as the spare when there is none, or in
// the free list, for closeLocked to make it the spare. It needs fmu.
func (e *engine[K, T]) recycleLocked(b *batch[K, T]) {
	if !e.reusable(b) {
		return
	}
	resetBatch(b)
	if e.spare.Load() == nil && e.spare.CompareAndSwap(nil, b) {
		return
	}
	if len(e.free) < maxFree {
		e.free = append(e.free, b)
	}
}

// spareLocked keeps b, an open batch that holds nothing, as the spare when
// there is none. It needs mu.
func (e *engine[K, T]) spareLocked(b *batch[K, T]) {
	if !e.reusable(b) {
		return
	}
	resetBatch(b)
	e.spare.CompareAndSwap(nil, b)
}

// reusable reports whether b is worth reusing: not a Batch of the user's
// that the client does not keep, nor an items array grown too large.
func (e *engine[K, T]) reusable(b *batch[K, T]) bool {
	return (b.user == nil || e.keepAll) && cap(b.items) <= maxKeepCap
}

// resetBatch clears b for reuse, keeping its arrays.
func resetBatch[K comparable, T any](b *batch[K, T]) {
	clear(b.items)
	clear(b.ctxs)
	items, ctxs, sizes := b.items[:0], b.ctxs[:0], b.sizes[:0]
	*b = batch[K, T]{} // cleared in place: a composite literal would be built on the stack
	b.items, b.ctxs, b.sizes = items, ctxs, sizes
}

// idleIfEmptyLocked puts a key that holds nothing at the end of the idle
// list, from which the janitor and MaxKeys evict. It needs mu.
func (e *engine[K, T]) idleIfEmptyLocked(ks *keyState[K, T]) {
	if e.keyFn == nil || ks.idle || ks.batches.Load() > 0 || e.keys[ks.key] != ks {
		return
	}
	ks.idle = true
	ks.idleSince = time.Now()
	e.idleKeys.pushBack(ks)
	if !e.janitorSet && e.phase == running {
		e.janitorSet = true
		e.janitor.Reset(e.idle)
	}
}

// unidleLocked takes ks out of the idle list. It needs mu.
func (e *engine[K, T]) unidleLocked(ks *keyState[K, T]) {
	e.idleKeys.remove(ks)
	ks.idle = false
}

// evictLocked forgets an idle key. It needs mu.
func (e *engine[K, T]) evictLocked(ks *keyState[K, T]) {
	e.unidleLocked(ks)
	delete(e.keys, ks.key)
	if e.lastKey == ks {
		e.lastKey = nil
	}
}

// onJanitor evicts the keys idle for KeyIdleTimeout, oldest first. It
// takes mu.
func (e *engine[K, T]) onJanitor() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.janitorSet = false
	now := time.Now()
	for ks := e.idleKeys.head; ks != nil; ks = e.idleKeys.head {
		if wait := e.idle - now.Sub(ks.idleSince); wait > 0 {
			if e.phase == running {
				e.janitorSet = true
				e.janitor.Reset(wait)
			}
			return
		}
		e.evictLocked(ks)
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

// deadLetterFailed hands the items of a batch whose Fire failed to the
// DeadLetter function: all of them with err, or, for an *ItemErrors aligned
// with the batch, the failed ones with an *ItemErrors aligned with them.
//
//go:noinline
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

// beginStop refuses new items from now on, wakes the producers waiting for
// room (they get ErrStopped) and, unless a Client's worker still feeds
// items, closes the open batches. It reports whether this call began it.
// It takes both locks.
func (e *engine[K, T]) beginStop() bool {
	var l launches[K, T]
	e.mu.Lock()
	if e.phase != running {
		e.mu.Unlock()
		return false
	}
	e.fmu.Lock()
	e.phase = stopping
	e.wakeLocked()
	if !e.feeding {
		e.closeAllLocked(TriggerShutdown, &l)
	}
	drained := e.drainedLocked()
	e.fmu.Unlock()
	e.mu.Unlock()
	e.launch(&l)
	if drained {
		e.stopped()
	}
	return true
}

// drainableLocked reports whether the client stopped taking items and
// every batch is done, so that drainedLocked would mark it stopped. It
// needs fmu only: no batch is open once phase != running && !feeding (see
// the engine's doc).
func (e *engine[K, T]) drainableLocked() bool {
	return e.phase != running && e.phase != stopped && !e.feeding && len(e.ready) == 0 && e.inflight == 0 && e.abandoning == 0
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
// their context canceled, a Client's worker refuses what Work still holds,
// and the error counts what was not done. It takes both locks.
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
		for b := e.open.head; b != nil; b = e.open.head {
			if b.n == 0 {
				e.discardLocked(b)
				continue
			}
			e.unlinkOpenLocked(b)
			b.ks.cur = nil
			b.trigger = TriggerShutdown
			e.nextID++
			b.id = e.nextID
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
	feeding := e.feeding
	e.fmu.Unlock()
	e.mu.Unlock()
	if feeding {
		<-e.fed // the worker refuses what Work holds, then closes fed
	}
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
	if aborting {
		se.Items += e.late // refused from Work by the worker, which fed has let finish
	}
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

// snapshot reads the counters. It takes both locks.
func (e *engine[K, T]) snapshot() Stats {
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
	if e.workQ != nil {
		s.Queued += e.workQ()
	}
	return s
}

// Stats are a client's counters, read with its Stats method or through
// ClientInfo.Stats.
type Stats struct {
	Added     uint64 // items taken
	Refused   uint64 // items not taken (stopped, context ended, full, dropped as newest, too large, bad key, too many keys, a panic)
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

// KeyStats is one key's share of a Keyed client, from Keyed.KeyStats and
// Keyed.TopKeys: what an operator looks at to find the key (the tenant)
// that holds the capacity.
type KeyStats[K comparable] struct {
	Key K
	// Pending counts the key's items taken and not yet fired: in its open
	// batch and its batches waiting for a slot. MaxPendingPerKey bounds it.
	Pending  int
	Waiting  int // the key's batches waiting for an in-flight slot
	InFlight int // the key's batches between Fired and Done
}

// keyStats reads one key's share. It takes both locks.
func (e *engine[K, T]) keyStats(key K) (KeyStats[K], bool) {
	e.mu.Lock()
	e.fmu.Lock()
	defer e.mu.Unlock()
	defer e.fmu.Unlock()
	ks := e.keys[key]
	if ks == nil {
		return KeyStats[K]{}, false
	}
	return ks.statsLocked(), true
}

func (ks *keyState[K, T]) statsLocked() KeyStats[K] {
	return KeyStats[K]{Key: ks.key, Pending: ks.pendingLocked(), Waiting: ks.waiting, InFlight: ks.inflight}
}

// topKeys returns the n keys holding the most. It takes both locks while it
// reads every live key, keeping the n first in order as it goes (an
// insertion into n entries: n is small, a dashboard's top-k).
func (e *engine[K, T]) topKeys(n int) []KeyStats[K] {
	if n <= 0 {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fmu.Lock()
	defer e.fmu.Unlock()
	top := make([]KeyStats[K], 0, min(n, len(e.keys)))
	for _, ks := range e.keys {
		s := ks.statsLocked()
		if s.Pending == 0 && s.Waiting == 0 && s.InFlight == 0 || len(top) == n && !holdsMore(s, top[n-1]) {
			continue
		}
		if len(top) < n {
			top = append(top, s)
		} else {
			top[n-1] = s
		}
		for i := len(top) - 1; i > 0 && holdsMore(top[i], top[i-1]); i-- {
			top[i], top[i-1] = top[i-1], top[i]
		}
	}
	return top
}

// topKeysAny is topKeys for ClientInfo, whose observers do not know K.
func (e *engine[K, T]) topKeysAny(n int) []KeyStats[any] {
	top := e.topKeys(n)
	if top == nil {
		return nil
	}
	out := make([]KeyStats[any], len(top))
	for i, s := range top {
		out[i] = KeyStats[any]{Key: s.Key, Pending: s.Pending, Waiting: s.Waiting, InFlight: s.InFlight}
	}
	return out
}

// holdsMore orders TopKeys: by Pending, then Waiting, then InFlight.
func holdsMore[K comparable](a, b KeyStats[K]) bool {
	if a.Pending != b.Pending {
		return a.Pending > b.Pending
	}
	if a.Waiting != b.Waiting {
		return a.Waiting > b.Waiting
	}
	return a.InFlight > b.InFlight
}
