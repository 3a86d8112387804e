package muster

import (
	"context"
	"runtime"
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
// only then Fires) while fewer than MaxConcurrentBatches are in flight. No
// goroutine exists for a batch in the ready queue: the goroutine of a batch
// that is done runs the next admitted batch itself.
//
// One mutex guards it all. A producer takes it once per item; a batch once
// when it is done. Hooks and Fire run outside it, except Added, which runs
// under it so that it precedes its batch's Fired.

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
	// joined counts the items that ever joined: an item's outcome slot is
	// its rank among them. Items leave only from the front (dropped), so
	// the k-th item present has slot joined-n+k.
	joined  int32
	first   time.Time
	closed  time.Time
	trigger Trigger
	// At admission, for FireInfo.
	inflight, queued int

	prev, next *batch[K, T] // the open FIFO
}

// keyState is one key's share of the engine. A key costs this struct, a map
// entry and, while it holds items, an open batch.
type keyState[K comparable, T any] struct {
	key        K
	cur        *batch[K, T] // the open batch, or nil
	busy       int          // closed batches not done
	idleSince  time.Time
	prev, next *keyState[K, T] // the idle list, least recently used first
	idle       bool
}

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
}

type engine[K comparable, T any] struct {
	config[K, T]
	id     uint64
	hooks  *Hooks
	base   context.Context
	cancel context.CancelCauseFunc
	workQ  func() int    // len(Work) for a Client
	fed    chan struct{} // closed when a Client's worker has exited

	// What every Add touches comes first, near the lock.
	mu          sync.Mutex
	phase       phase
	feeding     bool           // a Client's worker may still add items
	single      keyState[K, T] // the one key of a Batcher or Client
	ready       []*batch[K, T] // closed, waiting for a slot, oldest first
	pending     int            // items taken and not fired: open and ready batches
	stats       Stats
	keys        map[K]*keyState[K, T]
	idleHead    *keyState[K, T]
	idleTail    *keyState[K, T]
	janitor     *time.Timer
	janitorSet  bool
	openHead    *batch[K, T]
	openTail    *batch[K, T]
	timer       *time.Timer
	timerSet    bool
	inflight    int
	flightItems int
	abandoning  int // batches abandoned whose Done hooks are running
	space       chan struct{}
	barriers    []*barrier
	free        []*batch[K, T]
	parked      []chan *batch[K, T] // idle batch goroutines, the latest last
	maxParked   int
	nextID      uint64
	late        int // Work items refused after a deadline
	drained     chan struct{}
}

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
	if e.maxParked == 0 {
		e.maxParked = runtime.GOMAXPROCS(0)
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
	return ClientInfo{ID: e.id, Name: e.name, MaxBatchSize: e.max, BatchTimeout: e.timeout,
		MaxConcurrentBatches: e.limit, PendingWorkCapacity: e.capacity, MaxKeys: mk, Stats: e.snapshot}
}

// observe asks the observer for this client's hooks; Start calls it before
// the client takes any item.
func (e *engine[K, T]) observe() {
	if e.observer != nil {
		func() {
			defer func() { _ = recover() }()
			e.hooks = e.observer.Observe(e.info())
		}()
	}
}

// add offers one item: the path of Add, AddResult and Client.Add. What
// most items never meet (a key or size to compute, a full client, a
// refusal) is in functions of their own, so that the common path is a
// lock, an append and an unlock.
func (e *engine[K, T]) add(ctx context.Context, item T, wantResult bool) (Result, error) {
	var key K
	size := 0
	if e.keyFn != nil || e.sizer != nil {
		var err error
		if key, size, err = e.measure(item); err != nil {
			return Result{}, e.refuse(ctx, err, 0)
		}
	}
	e.mu.Lock()
	var slow *slowAdd
	if e.phase != running || e.fullLocked() {
		if slow = e.makeRoomLocked(ctx, key, wantResult); slow.done {
			return slow.r, slow.err // unlocked
		}
	}
	ks, err := &e.single, error(nil)
	if e.keyFn != nil {
		ks, err = e.keyLocked(key)
	}
	var l launches[K, T]
	var r Result
	if err == nil {
		if err = e.appendLocked(ctx, ks, item, size, &l); err == nil && wantResult {
			r = ks.curOrLast(&l).result()
		}
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

// measure calls the Key and Sizer functions, outside the lock.
func (e *engine[K, T]) measure(item T) (key K, size int, err error) {
	if e.keyFn != nil {
		if key, err = keyOf(e.keyFn, item); err != nil {
			return key, 0, err
		}
	}
	if e.sizer != nil {
		if size, err = sizeOf(e.sizer, item); err == nil && (size < 0 || size > e.maxBytes) {
			err = ErrTooLarge
		}
	}
	return key, size, err
}

// slowAdd is what makeRoomLocked learned: the item's outcome when it
// settled it (done), or else how long the producer was held and what was
// dropped to make room.
type slowAdd struct {
	done  bool
	r     Result
	err   error
	since time.Time
	drop  *dropped
}

// makeRoomLocked applies the Overflow policy while the pending capacity is
// used up, and refuses the item once the client stops. When it returns
// done, the item's fate is settled and the lock released; otherwise the
// lock is held and the item may join.
//
//go:noinline
func (e *engine[K, T]) makeRoomLocked(ctx context.Context, key K, wantResult bool) *slowAdd {
	s := &slowAdd{}
	for e.phase == running && e.fullLocked() {
		if e.overflow == OverflowDropOldest {
			if !e.keyFitsLocked(key) { // drop nothing for an item refused anyway
				e.mu.Unlock()
				s.done, s.err = true, e.refuse(ctx, ErrTooManyKeys, 0)
				return s
			}
			if s.drop = e.dropOldestLocked(); s.drop != nil {
				return s
			}
		}
		switch e.overflow {
		case OverflowFail:
			e.mu.Unlock()
			s.done, s.err = true, e.refuse(ctx, ErrFull, 0)
			return s
		case OverflowDropNewest, OverflowDropOldest:
			e.mu.Unlock()
			e.refuse(ctx, ErrDropped, 0)
			if s.done = true; wantResult {
				s.r = Result{o: droppedOutcome}
			}
			return s
		}
		if s.since.IsZero() {
			s.since = time.Now()
		}
		space := e.spaceLocked()
		e.mu.Unlock()
		select {
		case <-space:
		case <-ctx.Done():
			s.done, s.err = true, e.refuse(ctx, ctx.Err(), time.Since(s.since))
			return s
		}
		e.mu.Lock()
	}
	if e.phase != running {
		e.mu.Unlock()
		s.done, s.err = true, e.refuse(ctx, ErrStopped, blockedFor(s.since))
	}
	return s
}

// afterSlow reports, once the lock is released, what the slow path or a
// failed append left to say.
//
//go:noinline
func (e *engine[K, T]) afterSlow(ctx context.Context, s *slowAdd, r Result, err error) (Result, error) {
	var since time.Time
	if s != nil {
		since = s.since
		if s.drop != nil {
			e.reportDrop(s.drop)
		}
	}
	if err != nil {
		return Result{}, e.refuse(ctx, err, blockedFor(since))
	}
	if h := e.hooks; !since.IsZero() && h != nil && h.Waited != nil {
		safely(func() { h.Waited(ctx, WaitInfo{Reason: WaitBackpressure, Duration: time.Since(since)}) })
	}
	return r, nil
}

// curOrLast returns the batch the last item joined: the key's open batch,
// or the one it just closed.
func (ks *keyState[K, T]) curOrLast(l *launches[K, T]) *batch[K, T] {
	if ks.cur != nil {
		return ks.cur
	}
	return l.last
}

func blockedFor(since time.Time) time.Duration {
	if since.IsZero() {
		return 0
	}
	return time.Since(since)
}

// refuse counts an item not taken and reports it.
func (e *engine[K, T]) refuse(ctx context.Context, err error, blocked time.Duration) error {
	e.mu.Lock()
	e.stats.Refused++
	e.mu.Unlock()
	if h := e.hooks; h != nil && h.Refused != nil {
		safely(func() { h.Refused(ctx, AddInfo{Blocked: blocked, Err: err}) })
	}
	return err
}

func keyOf[K comparable, T any](f func(T) K, item T) (k K, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r) // the Key function panicked
		}
	}()
	k = f(item)
	if !selfEqual(k) { // a NaN, never found again in a map; or uncomparable
		return k, ErrInvalidKey
	}
	return k, nil
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

func sizeOf[T any](f func(T) int, item T) (n int, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return f(item), nil
}

// fullLocked reports whether the pending capacity is used up: a closed
// batch waits for a slot and PendingWorkCapacity items are queued behind it.
func (e *engine[K, T]) fullLocked() bool {
	return len(e.ready) > 0 && e.queuedLocked() >= e.capacity
}

// queuedLocked counts the items behind the oldest batch waiting for a slot:
// those PendingWorkCapacity bounds.
func (e *engine[K, T]) queuedLocked() int {
	if len(e.ready) == 0 {
		return 0
	}
	return e.pending - e.ready[0].n
}

func (e *engine[K, T]) spaceLocked() chan struct{} {
	if e.space == nil {
		e.space = make(chan struct{})
	}
	return e.space
}

// wakeLocked lets every waiting producer (and a Client's worker) look again.
func (e *engine[K, T]) wakeLocked() {
	if e.space != nil {
		close(e.space)
		e.space = nil
	}
}

// keyFitsLocked reports whether keyLocked would find or make key's state.
func (e *engine[K, T]) keyFitsLocked(key K) bool {
	if e.keyFn == nil || e.idleHead != nil || len(e.keys) < e.maxKeys {
		return true
	}
	_, ok := e.keys[key]
	return ok
}

// keyLocked finds or makes the state of key.
func (e *engine[K, T]) keyLocked(key K) (*keyState[K, T], error) {
	if e.keyFn == nil {
		return &e.single, nil
	}
	if ks := e.keys[key]; ks != nil {
		if ks.idle {
			e.unidleLocked(ks)
		}
		return ks, nil
	}
	if len(e.keys) >= e.maxKeys {
		if e.idleHead == nil {
			return nil, ErrTooManyKeys
		}
		e.evictLocked(e.idleHead)
	}
	ks := &keyState[K, T]{key: key}
	e.keys[key] = ks
	return ks, nil
}

// appendLocked puts an item into its key's open batch, closing the batches
// its arrival completes: the one way an item joins a batch. What most items
// never need (a new batch, a Batch's Add, sizes) is in prepareLocked, and
// what happens once per batch or with hooks in joinedLocked, so that the
// rest stays small. An error (a BatchMaker or Batch.Add that panicked) means
// the item was not taken.
func (e *engine[K, T]) appendLocked(ctx context.Context, ks *keyState[K, T], item T, size int, l *launches[K, T]) error {
	b := ks.cur
	if b == nil || b.user != nil || e.sizer != nil {
		var err error
		if b, err = e.prepareLocked(ks, item, size, l); err != nil {
			return err
		}
	}
	if b.user == nil || e.keepAll {
		b.items = append(b.items, item)
	}
	b.n++
	b.joined++
	e.pending++
	e.stats.Added++
	if b.n == 1 || b.n == e.max || e.hooks != nil || e.maxBytes > 0 {
		e.joinedLocked(ctx, b, l)
	}
	return nil
}

// prepareLocked readies ks's open batch for an item: it closes the batch
// the item would take past MaxBatchBytes, makes a new one, hands the item to
// a Batch, and records the item's size.
func (e *engine[K, T]) prepareLocked(ks *keyState[K, T], item T, size int, l *launches[K, T]) (*batch[K, T], error) {
	b := ks.cur
	if b != nil && e.maxBytes > 0 && b.n > 0 && b.bytes+size > e.maxBytes {
		e.closeLocked(b, TriggerBytes, l)
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
// when it is the first item, the batch's close when it is the last.
func (e *engine[K, T]) joinedLocked(ctx context.Context, b *batch[K, T], l *launches[K, T]) {
	if h := e.hooks; h != nil && h.Added != nil {
		e.keepLocked(b, callAdded(h.Added, ctx))
	}
	if b.n == 1 && b.first.IsZero() {
		e.openLocked(b)
	}
	switch {
	case b.n == e.max:
		e.closeLocked(b, TriggerSize, l)
	case e.maxBytes > 0 && b.bytes >= e.maxBytes:
		e.closeLocked(b, TriggerBytes, l)
	}
}

// keepLocked keeps the context the Added hook returned for b's last item.
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
// under the lock, on a producer's goroutine or a Client's worker.
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

// newBatchLocked makes ks's open batch.
func (e *engine[K, T]) newBatchLocked(ks *keyState[K, T]) (*batch[K, T], error) {
	var b *batch[K, T]
	if n := len(e.free); n > 0 {
		b, e.free[n-1] = e.free[n-1], nil
		e.free = e.free[:n-1]
	} else {
		b = &batch[K, T]{}
		if e.maker == nil || e.keepAll {
			b.items = make([]T, 0, min(max(e.max, 1), initialCap))
		}
	}
	if e.maker != nil {
		u, err := safeMake(e.maker)
		if err != nil {
			e.recycleLocked(b)
			return nil, err
		}
		b.user = u
	}
	b.ks = ks
	ks.cur = b
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
// cost about a microsecond each here, more than a batch of Adds).
func (e *engine[K, T]) openLocked(b *batch[K, T]) {
	b.first = time.Now()
	b.prev = e.openTail
	if e.openTail != nil {
		e.openTail.next = b
	} else {
		e.openHead = b
	}
	e.openTail = b
	if e.timer != nil && !e.timerSet {
		e.timerSet = true
		e.timer.Reset(e.timeout)
	}
}

func (e *engine[K, T]) unlinkOpenLocked(b *batch[K, T]) {
	if b.first.IsZero() {
		return // never opened
	}
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		e.openHead = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	} else {
		e.openTail = b.prev
	}
	b.prev, b.next = nil, nil
}

func (e *engine[K, T]) onTimer() {
	var l launches[K, T]
	e.mu.Lock()
	e.timerSet = false
	now := time.Now()
	for b := e.openHead; b != nil && e.phase != aborted; b = e.openHead {
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
	e.mu.Unlock()
	e.launch(&l)
}

// discardLocked drops an open batch that holds nothing.
func (e *engine[K, T]) discardLocked(b *batch[K, T]) {
	e.unlinkOpenLocked(b)
	ks := b.ks
	ks.cur = nil
	b.complete(nil) // only dropped items' results
	e.recycleLocked(b)
	e.idleIfEmptyLocked(ks)
}

// launches are the batches admitted under the lock, to start after it.
type launches[K comparable, T any] struct {
	one  *batch[K, T]
	more []*batch[K, T]
	last *batch[K, T] // the last batch closed
}

func (l *launches[K, T]) add(b *batch[K, T]) {
	if l.one == nil {
		l.one = b
		return
	}
	l.more = append(l.more, b)
}

// launch starts a goroutine for each admitted batch.
func (e *engine[K, T]) launch(l *launches[K, T]) {
	if l.one != nil {
		go e.run(l.one)
	}
	for _, b := range l.more {
		go e.run(b)
	}
}

// closeLocked closes an open batch: it joins the ready queue, and every
// batch that may now take a slot is added to l.
func (e *engine[K, T]) closeLocked(b *batch[K, T], t Trigger, l *launches[K, T]) {
	e.unlinkOpenLocked(b)
	b.ks.cur = nil
	b.ks.busy++
	b.trigger = t
	e.nextID++
	b.id = e.nextID
	if e.hooks != nil {
		b.closed = time.Now()
	}
	e.ready = append(e.ready, b)
	l.last = b
	e.admitLocked(l)
}

// admitLocked gives waiting batches free slots, oldest first.
func (e *engine[K, T]) admitLocked(l *launches[K, T]) {
	for len(e.ready) > 0 && (e.limit == 0 || e.inflight < e.limit) {
		b := e.ready[0]
		n := copy(e.ready, e.ready[1:])
		e.ready[n] = nil
		e.ready = e.ready[:n]
		e.pending -= b.n
		e.inflight++
		e.flightItems += b.n
		e.stats.Fired++
		if e.hooks != nil {
			b.inflight = e.inflight
			b.queued = e.queuedLocked()
			if e.workQ != nil {
				b.queued += e.workQ()
			}
		}
		if n := len(e.parked); n > 0 {
			e.parked[n-1] <- b // a parked batch goroutine takes it
			e.parked = e.parked[:n-1]
		} else {
			l.add(b)
		}
		e.wakeLocked()
	}
}

// run is the goroutine of an admitted batch. When the batch is done it runs
// the next batch the freed slot admitted; with none, it parks (up to
// maxParked goroutines do) until a batch is admitted or the client stops.
// A busy client thus starts no goroutine per batch, and reuses stacks that
// hooks and middleware have grown.
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
		e.mu.Lock()
		if e.phase == stopped || len(e.parked) >= e.maxParked {
			e.mu.Unlock()
			return
		}
		if next == nil {
			next = make(chan *batch[K, T], 1)
		}
		e.parked = append(e.parked, next)
		e.mu.Unlock()
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
// for the caller's goroutine to run.
func (e *engine[K, T]) finish(ctx context.Context, b *batch[K, T], info *FireInfo, err error) *batch[K, T] {
	if info != nil && e.hooks.Done != nil {
		e.doneHook(ctx, info, err)
	}
	if b.res != nil {
		b.complete(err)
	}
	var l launches[K, T]
	e.mu.Lock()
	e.inflight--
	e.flightItems -= b.n
	e.stats.Done++
	if err != nil {
		e.stats.Failed++
	}
	e.releaseLocked(b.id, nil)
	e.batchGoneLocked(b)
	if e.phase != aborted {
		e.admitLocked(&l)
	}
	drained := e.drainedLocked()
	e.mu.Unlock()
	if l.more != nil { // only Flush and Stop close several at once
		e.launch(&launches[K, T]{more: l.more})
	}
	if drained {
		e.stopped()
	}
	return l.one
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

// batchGoneLocked forgets a batch that is done or abandoned.
func (e *engine[K, T]) batchGoneLocked(b *batch[K, T]) {
	ks := b.ks
	ks.busy--
	e.recycleLocked(b)
	e.idleIfEmptyLocked(ks)
}

func (e *engine[K, T]) recycleLocked(b *batch[K, T]) {
	if len(e.free) >= maxFree || b.user != nil && !e.keepAll || cap(b.items) > maxKeepCap {
		return
	}
	clear(b.items)
	clear(b.ctxs)
	items, ctxs, sizes := b.items[:0], b.ctxs[:0], b.sizes[:0]
	*b = batch[K, T]{} // cleared in place: a composite literal would be built on the stack
	b.items, b.ctxs, b.sizes = items, ctxs, sizes
	e.free = append(e.free, b)
}

// idleIfEmptyLocked puts a key that holds nothing at the end of the idle
// list, from which the janitor and MaxKeys evict.
func (e *engine[K, T]) idleIfEmptyLocked(ks *keyState[K, T]) {
	if e.keyFn == nil || ks.idle || ks.cur != nil || ks.busy > 0 || e.keys[ks.key] != ks {
		return
	}
	ks.idle = true
	ks.idleSince = time.Now()
	ks.prev = e.idleTail
	if e.idleTail != nil {
		e.idleTail.next = ks
	} else {
		e.idleHead = ks
	}
	e.idleTail = ks
	if !e.janitorSet && e.phase == running {
		e.janitorSet = true
		e.janitor.Reset(e.idle)
	}
}

func (e *engine[K, T]) unidleLocked(ks *keyState[K, T]) {
	if ks.prev != nil {
		ks.prev.next = ks.next
	} else {
		e.idleHead = ks.next
	}
	if ks.next != nil {
		ks.next.prev = ks.prev
	} else {
		e.idleTail = ks.prev
	}
	ks.prev, ks.next, ks.idle = nil, nil, false
}

func (e *engine[K, T]) evictLocked(ks *keyState[K, T]) {
	e.unidleLocked(ks)
	delete(e.keys, ks.key)
}

// onJanitor evicts the keys idle for KeyIdleTimeout, oldest first.
func (e *engine[K, T]) onJanitor() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.janitorSet = false
	now := time.Now()
	for ks := e.idleHead; ks != nil; ks = e.idleHead {
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
type dropped struct{ ctx context.Context }

// dropOldestLocked drops the oldest queued item: the first of the second
// ready batch, or of the oldest open batch holding one. It returns nil when
// nothing is queued.
func (e *engine[K, T]) dropOldestLocked() *dropped {
	var b *batch[K, T]
	if len(e.ready) > 1 {
		b = e.ready[1]
	} else {
		for b = e.openHead; b != nil && b.n == 0; b = b.next {
		}
		if b == nil {
			return nil
		}
	}
	d := &dropped{ctx: context.Background()}
	if len(b.ctxs) > 0 && b.ctxs[0] != nil {
		d.ctx = b.ctxs[0]
	}
	if b.res != nil {
		b.res.setSlot(b.slot(0), ErrDropped, b.joined)
	}
	if b.sizes != nil {
		b.bytes -= b.sizes[0]
		b.sizes = removeFirst(b.sizes)
	}
	b.items = removeFirst(b.items)
	b.ctxs = removeFirst(b.ctxs)
	b.n--
	e.pending--
	e.stats.Dropped++
	if b.n == 0 && len(e.ready) > 1 && b == e.ready[1] { // a ready batch with nothing left to fire
		e.ready = append(e.ready[:1], e.ready[2:]...)
		b.complete(nil)
		e.releaseLocked(b.id, nil)
		e.batchGoneLocked(b)
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

func (e *engine[K, T]) reportDrop(d *dropped) {
	if h := e.hooks; h != nil && h.Refused != nil {
		safely(func() { h.Refused(d.ctx, AddInfo{Err: ErrDropped}) })
	}
}

// closeAllLocked closes every open batch (emptied ones are discarded).
func (e *engine[K, T]) closeAllLocked(t Trigger, l *launches[K, T]) {
	for b := e.openHead; b != nil; b = e.openHead {
		if b.n == 0 {
			e.discardLocked(b)
		} else {
			e.closeLocked(b, t, l)
		}
	}
}

// releaseLocked counts a finished batch against the Flush barriers it
// belongs to.
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
// it returned is done.
func (e *engine[K, T]) flush(ctx context.Context) error {
	var l launches[K, T]
	e.mu.Lock()
	if e.phase != running {
		e.mu.Unlock()
		return ErrStopped
	}
	e.closeAllLocked(TriggerFlush, &l)
	var bar *barrier
	if n := len(e.ready) + e.inflight; n > 0 {
		bar = &barrier{maxID: e.nextID, remaining: n, ch: make(chan struct{})}
		e.barriers = append(e.barriers, bar)
	}
	e.mu.Unlock()
	e.launch(&l)
	if bar == nil {
		return nil
	}
	select {
	case <-bar.ch:
		return bar.err
	case <-ctx.Done():
		e.mu.Lock()
		defer e.mu.Unlock()
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
func (e *engine[K, T]) beginStop() bool {
	var l launches[K, T]
	e.mu.Lock()
	if e.phase != running {
		e.mu.Unlock()
		return false
	}
	e.phase = stopping
	e.wakeLocked()
	if !e.feeding {
		e.closeAllLocked(TriggerShutdown, &l)
	}
	drained := e.drainedLocked()
	e.mu.Unlock()
	e.launch(&l)
	if drained {
		e.stopped()
	}
	return true
}

// drainedLocked reports, once, that the client stopped and every batch is
// done; the caller then runs stopped, after unlocking.
func (e *engine[K, T]) drainedLocked() bool {
	if e.phase == running || e.phase == stopped || e.feeding || e.openHead != nil || len(e.ready) > 0 || e.inflight > 0 || e.abandoning > 0 {
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
// and the error counts what was not done.
func (e *engine[K, T]) abort(ctx context.Context) error {
	e.mu.Lock()
	if e.phase == stopped { // drained meanwhile
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
		for b := e.openHead; b != nil; b = e.openHead {
			if b.n == 0 {
				e.discardLocked(b)
				continue
			}
			e.unlinkOpenLocked(b)
			b.ks.cur = nil
			b.ks.busy++
			b.trigger = TriggerShutdown
			e.nextID++
			b.id = e.nextID
			abandoned = append(abandoned, b)
		}
		abandoned = append(abandoned, e.ready...)
		clear(e.ready)
		e.ready = e.ready[:0]
		e.pending = 0
		e.abandoning += len(abandoned)
		e.wakeLocked()
	}
	feeding := e.feeding
	e.mu.Unlock()
	if feeding {
		<-e.fed // the worker refuses what Work holds, then closes fed
	}
	now := time.Now()
	for _, b := range abandoned {
		if h := e.hooks; h != nil && h.Done != nil {
			done := DoneInfo{FireInfo: e.fireInfo(b, now), Err: ErrIncomplete}
			safely(func() { h.Done(e.base, done) })
		}
		b.complete(ErrIncomplete)
	}
	e.mu.Lock()
	se := &ShutdownError{Batches: flightBatches + len(abandoned), Items: flightItems, Cause: context.Cause(ctx)}
	if aborting {
		se.Items += e.late // refused from Work by the worker, which fed has let finish
	}
	for _, b := range abandoned {
		se.Items += b.n
		e.stats.Abandoned += uint64(b.n)
		e.releaseLocked(b.id, ErrIncomplete)
		e.batchGoneLocked(b)
	}
	e.abandoning -= len(abandoned)
	drained := e.drainedLocked()
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

func (e *engine[K, T]) snapshot() Stats {
	e.mu.Lock()
	s := e.stats
	s.InFlight = e.inflight
	s.Waiting = len(e.ready)
	s.Pending = e.pending + e.flightItems
	s.Queued = e.queuedLocked()
	s.Keys = len(e.keys)
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
