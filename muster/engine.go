package muster

import (
	"context"
	"math"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// The engine behind Client and Batcher. Two locks keep producers and
// finishing batches out of each other's way:
//
//   - mu, the add lock, guards the batch being filled. Add takes it, appends,
//     and the producer whose item completes a batch closes it.
//   - fmu, the flight lock, guards closed batches: the in-flight count, the
//     queue of batches waiting for a slot, Flush barriers, the stop state.
//     A producer takes it once per batch, to admit the batch it closed; a
//     batch takes it once, when done, to hand its slot to the oldest waiting
//     batch. Lock order: mu before fmu.
//
// Goroutines are launched after both locks are released. Producers look at
// the waiting queue through an atomic counter, so the common Add never
// touches fmu. A reused time.AfterFunc timer closes a batch BatchTimeout
// after its first item. There is no worker goroutine for Add; Client's Work
// channel has one, which feeds the same path (the seed's design).

type state uint8

const (
	stateRunning  state = iota
	stateStopping       // no new items; draining
)

// batch is one batch in the making or in flight.
type batch[T any] struct {
	id       uint64
	n        int
	items    []T   // FireFunc path
	user     Batch // Batch path (Client)
	ctxs     []context.Context
	times    []time.Time
	results  []*Result // per-item results, index-aligned; nil when no item asked for one
	bytes    int       // sum of the items' sizes (with a Sizer)
	first    time.Time // first item's arrival (when a timeout or hooks need it)
	ready    time.Time // when it was closed (when hooks need it)
	trigger  Trigger
	inflight int // in flight at launch, this one included (hooks only)
	queued   int // items queued at launch (hooks only)
}

type barrier struct {
	maxID     uint64
	remaining int
	err       error
	ch        chan struct{}
}

type engine[T any] struct {
	// Set before start, then read-only.
	id        uint64
	name      string
	max       int
	timeout   time.Duration
	limit     int
	capacity  int
	fire      FireFunc[T]
	maker     func() Batch
	maxBytes  int
	sizer     func(T) int
	plain     bool // no Batch, no bytes trigger, no kept contexts or times: Add's fast path
	overflow  Overflow
	hooks     *Hooks
	keepCtxs  bool
	keepTimes bool
	base      context.Context
	cancel    context.CancelCauseFunc
	workLen   func() int // len(Work) for Client, nil for Batcher
	key       any        // the batch key of a Keyed client's per-key engine; nil otherwise

	mu         sync.Mutex // the add lock
	state      state
	cur        *batch[T]
	spare      *batch[T] // a recycled batch for the next cur
	nextID     uint64
	timer      *time.Timer // nil when there is no BatchTimeout
	timerArmed bool
	added      uint64
	refused    uint64
	dropped    uint64

	fmu           sync.Mutex  // the flight lock
	waiting       []*batch[T] // closed batches waiting for an in-flight slot, oldest first
	nwaiting      atomic.Int32
	waitingItems  int
	inflight      int
	inflightItems int
	space         chan struct{} // closed when producers may look again; nil when nobody waits
	barriers      []*barrier
	free          []*batch[T]
	stopping      bool
	lastClosed    bool // the final batch has been closed: nothing more will join
	isDrained     bool // the last batch is done; drained closes after the Stopped hook
	aborting      bool // abort is running the abandoned batches' hooks: not drained yet
	drained       chan struct{}
	fired         uint64
	done          uint64
	failed        uint64
	abandoned     uint64

	_       [cacheLine]byte
	aborted atomic.Bool
}

// cacheLine is a cache line and its adjacent-line prefetch pair on amd64.
const cacheLine = 128

// clientIDs numbers clients, for ClientInfo.ID.
var clientIDs atomic.Uint64

type engineConfig struct {
	name        string
	max         uint
	timeout     time.Duration
	limit       uint
	capacity    uint
	hooks       *Hooks
	baseContext func() context.Context
	overflow    Overflow
	key         any // FireInfo.Key (Keyed)
}

func clampInt(u uint) int {
	if u > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(u)
}

func newEngine[T any](c engineConfig) *engine[T] {
	e := &engine[T]{
		id:       clientIDs.Add(1),
		name:     c.name,
		max:      clampInt(c.max),
		timeout:  c.timeout,
		limit:    clampInt(c.limit),
		capacity: clampInt(c.capacity),
		hooks:    c.hooks,
		overflow: c.overflow,
		key:      c.key,
		drained:  make(chan struct{}),
	}
	if e.hooks != nil {
		e.keepCtxs = e.hooks.KeepItemContexts
		e.keepTimes = e.hooks.KeepItemTimes
	}
	base := context.Background()
	if c.baseContext != nil {
		if b := c.baseContext(); b != nil {
			base = b
		}
	}
	e.base, e.cancel = context.WithCancelCause(base)
	if e.timeout > 0 {
		e.timer = time.AfterFunc(time.Hour, e.onTimer)
		e.timer.Stop()
	}
	return e
}

func (e *engine[T]) clientInfo() ClientInfo {
	return ClientInfo{
		Name:                 e.name,
		MaxBatchSize:         e.max,
		BatchTimeout:         e.timeout,
		MaxConcurrentBatches: e.limit,
		PendingWorkCapacity:  e.capacity,
		ID:                   e.id,
		Stats:                e.snapshot,
	}
}

func (e *engine[T]) started() {
	if e.hooks != nil && e.hooks.Started != nil {
		e.hooks.Started(e.clientInfo())
	}
}

// addPlain is Batcher.Add's path for plain items (see engine.plain): a lock,
// an append and, once per batch, a close. Anything else (a stopping client,
// a batch waiting for a slot) goes to add.
func (e *engine[T]) addPlain(ctx context.Context, item T) error {
	e.mu.Lock()
	b := e.cur
	if e.state != stateRunning || e.nwaiting.Load() != 0 || b != nil && b.results != nil {
		e.mu.Unlock()
		return e.add(ctx, item, false, nil)
	}
	if b == nil {
		b, _ = e.newBatchLocked() // typed batches: no error
		e.cur = b
	}
	// joinedLocked's steps, without what a plain item never needs.
	b.items = append(b.items, item)
	b.n++
	e.added++
	if b.n == 1 {
		e.openLocked(b)
	}
	var launch *batch[T]
	if b.n == e.max {
		launch = e.closeLocked(b, TriggerSize)
	}
	e.mu.Unlock()
	if launch != nil {
		go e.run(launch)
	}
	if h := e.hooks; h != nil && h.Added != nil {
		h.Added(AddInfo{Name: e.name, Ctx: ctx})
	}
	return nil
}

// add offers one item. The Work channel's worker passes worker=true: it may
// add while the client is stopping (it drains Work), and it waits for a slot
// as soon as any batch waits, since the channel itself is its buffer.
func (e *engine[T]) add(ctx context.Context, item T, worker bool, res *Result) error {
	size := 0
	if e.sizer != nil {
		size = e.sizer(item) // user code: outside the lock
		if size > e.maxBytes {
			e.mu.Lock()
			return e.refuseLocked(ctx, time.Time{}, ErrTooLarge, res)
		}
	}
	var since time.Time
	var drop dropped
	e.mu.Lock()
	for {
		if e.state != stateRunning && (!worker || e.aborted.Load()) {
			err := ErrStopped
			if worker {
				err = ErrIncomplete
			}
			return e.refuseLocked(ctx, since, err, res)
		}
		if e.nwaiting.Load() == 0 {
			break
		}
		e.fmu.Lock()
		if !e.fullLocked(worker) {
			e.fmu.Unlock()
			break
		}
		if !worker && e.overflow != OverflowBlock {
			if e.overflow == OverflowDropOldest {
				if drop = e.dropOldestLocked(); drop.ok {
					e.fmu.Unlock()
					break
				}
			}
			e.fmu.Unlock()
			if e.overflow == OverflowFail {
				return e.refuseLocked(ctx, since, ErrFull, res)
			}
			e.refuseLocked(ctx, since, ErrDropped, res) // drop the newest: this one
			return nil
		}
		space := e.spaceLocked()
		e.fmu.Unlock()
		e.mu.Unlock()
		if since.IsZero() {
			since = time.Now()
		}
		select {
		case <-space:
		case <-ctx.Done():
			e.mu.Lock()
			return e.refuseLocked(ctx, since, ctx.Err(), res)
		}
		e.mu.Lock()
	}
	launch, launch2, err := e.appendLocked(ctx, item, res, size)
	if err != nil {
		e.mu.Unlock()
		e.launch(launch)
		e.mu.Lock()
		return e.refuseLocked(ctx, since, err, res)
	}
	e.mu.Unlock()
	e.launch(launch)
	e.launch(launch2)
	if drop.ok {
		drop.res.complete(ErrDropped)
		if h := e.hooks; h != nil && h.Added != nil {
			h.Added(AddInfo{Name: e.name, Ctx: drop.ctx, Err: ErrDropped})
		}
	}
	if h := e.hooks; h != nil && h.Added != nil {
		var blocked time.Duration
		if !since.IsZero() {
			blocked = time.Since(since)
		}
		h.Added(AddInfo{Name: e.name, Ctx: ctx, Blocked: blocked})
	}
	return nil
}

// dropped is an item dropped under OverflowDropOldest, to report once the
// locks are released.
type dropped struct {
	ok  bool
	ctx context.Context
	res *Result
}

// dropOldestLocked (mu and fmu held) drops the oldest item queued behind the
// batch waiting for a slot: the first of the next waiting batch, or of the
// current batch. It reports false when there is none (PendingWorkCapacity 0).
func (e *engine[T]) dropOldestLocked() dropped {
	var b *batch[T]
	waitingIdx := -1
	switch {
	case len(e.waiting) > 1:
		b, waitingIdx = e.waiting[1], 1
	case e.cur != nil && e.cur.n > 0 && e.cur.user == nil:
		b = e.cur
	default:
		return dropped{}
	}
	d := dropped{ok: true, ctx: context.Background()}
	if e.sizer != nil {
		b.bytes -= e.sizer(b.items[0])
	}
	b.items = removeFirst(b.items)
	if b.ctxs != nil {
		d.ctx = b.ctxs[0]
		b.ctxs = removeFirst(b.ctxs)
	}
	if b.times != nil {
		b.times = removeFirst(b.times)
	}
	if b.results != nil {
		d.res = b.results[0]
		b.results = removeFirst(b.results)
	}
	b.n--
	e.dropped++
	if waitingIdx >= 0 {
		e.waitingItems--
		if b.n == 0 { // nothing left to fire: it is done as it stands
			e.waiting = append(e.waiting[:waitingIdx], e.waiting[waitingIdx+1:]...)
			e.nwaiting.Store(int32(len(e.waiting)))
			e.releaseLocked(b.id, nil)
		}
	}
	return d
}

func removeFirst[S ~[]E, E any](s S) S {
	n := copy(s, s[1:])
	var zero E
	s[n] = zero
	return s[:n]
}

// appendLocked (mu held) puts an item into the current batch and closes the
// batches that its arrival completes; the caller launches them after
// unlocking. An error (a Batch.Add that panicked) means the item was not
// taken.
func (e *engine[T]) appendLocked(ctx context.Context, item T, res *Result, size int) (launch, launch2 *batch[T], err error) {
	b := e.cur
	if b != nil && e.maxBytes > 0 && b.n > 0 && b.bytes+size > e.maxBytes {
		launch = e.closeLocked(b, TriggerBytes) // the next item would pass the byte limit
		b = nil
	}
	if b == nil {
		var err error
		if b, err = e.newBatchLocked(); err != nil {
			return launch, nil, err
		}
		e.cur = b
	}
	if b.user != nil {
		if err := safeAdd(b.user, item); err != nil {
			return launch, nil, err
		}
	} else {
		b.items = append(b.items, item)
	}
	if res != nil && b.results == nil {
		b.results = make([]*Result, b.n, max(e.max, b.n+1))
	}
	if b.results != nil {
		b.results = append(b.results, res)
	}
	b.bytes += size
	launch2 = e.joinedLocked(ctx, b)
	if e.cur == b && e.maxBytes > 0 && b.bytes >= e.maxBytes {
		launch2 = e.closeLocked(b, TriggerBytes)
	}
	return launch, launch2, nil
}

// addRun is the Work worker's add: it takes item and then, under the same
// lock, whatever else Work holds at the moment, so that a busy worker pays
// for the lock once per run of items rather than once per item. It leaves
// to add (one item at a time) whatever needs more than an append: a batch
// waiting for a slot, a deadline that passed. It reports whether Work is
// still open.
func addRun(e *engine[any], item any, work chan interface{}) (open bool) {
	r := workRun{e: e, item: item, have: true, open: true}
	e.mu.Lock()
	r.takeLocked(work)
	e.mu.Unlock()
	e.afterRun(r.launches[:r.nl], r.added, r.refused)
	if r.have {
		_ = e.add(context.Background(), r.item, true, nil)
	}
	return r.open
}

// workRun is the state of one addRun.
type workRun struct {
	e        *engine[any]
	item     any // in hand, when have
	have     bool
	open     bool
	launches [8]*batch[any]
	nl       int
	added    int
	refused  error
}

// takeLocked (mu held) appends items while nothing stands in the way. One
// deferred recover covers the run: a Batch.Add that panics refuses its item
// (as safeAdd does on the one-at-a-time path) without a defer per item.
func (r *workRun) takeLocked(work chan interface{}) {
	const maxRun = 256
	e := r.e
	defer func() {
		if p := recover(); p != nil {
			e.refused++
			r.refused, r.have = newPanicError(p), false
		}
	}()
	ctx := context.Background()
	// Only a close under mu (ours, while we hold it) can queue a batch, and
	// only an abort under mu can start: one look before the run suffices.
	if e.aborted.Load() || e.nwaiting.Load() != 0 {
		return // the slow path decides for the item in hand
	}
	for run := 0; run < maxRun && r.nl < len(r.launches); run++ {
		launch, closed, err := e.appendUserLocked(ctx, r.item)
		if err != nil { // BatchMaker panicked: the item is refused
			e.refused++
			r.refused, r.have = err, false
			return
		}
		if launch != nil {
			r.launches[r.nl] = launch
			r.nl++
		}
		r.added++
		r.have = false
		if closed && launch == nil {
			return // the batch waits for a slot: as in the seed, leave Work alone
		}
		select {
		case next, ok := <-work:
			if !ok {
				r.open = false
				return
			}
			r.item, r.have = next, true
		default:
			return
		}
	}
}

// appendUserLocked (mu held) adds an item from Work to a Batch: Client's
// path, without bytes, results or a recover of its own (takeLocked has one).
func (e *engine[T]) appendUserLocked(ctx context.Context, item any) (launch *batch[T], closed bool, err error) {
	b := e.cur
	if b == nil {
		if b, err = e.newBatchLocked(); err != nil {
			return nil, false, err
		}
		e.cur = b
	}
	b.user.Add(item)
	if b.results != nil { // keep results index-aligned with the Batch's items
		b.results = append(b.results, nil)
	}
	launch = e.joinedLocked(ctx, b)
	return launch, e.cur != b, nil
}

// joinedLocked (mu held) accounts for an item just put into b (the current
// batch) and closes b when it is full. It returns the batch to launch, if
// it may fire now. addPlain inlines the same steps for plain items.
func (e *engine[T]) joinedLocked(ctx context.Context, b *batch[T]) *batch[T] {
	b.n++
	if e.keepCtxs {
		b.ctxs = append(b.ctxs, ctx)
	}
	if e.keepTimes {
		b.times = append(b.times, time.Now())
	}
	e.added++
	if b.n == 1 {
		e.openLocked(b)
	}
	if b.n == e.max {
		return e.closeLocked(b, TriggerSize)
	}
	return nil
}

// afterRun launches what a run of Work items closed and reports them.
func (e *engine[T]) afterRun(launches []*batch[T], added int, refused error) {
	for _, l := range launches {
		e.launch(l)
	}
	if h := e.hooks; h != nil && h.Added != nil {
		for range added {
			h.Added(AddInfo{Name: e.name, Ctx: context.Background()})
		}
		if refused != nil {
			h.Added(AddInfo{Name: e.name, Ctx: context.Background(), Err: refused})
		}
	}
}

// spaceLocked returns the channel closed when producers should look again.
func (e *engine[T]) spaceLocked() chan struct{} {
	if e.space == nil {
		e.space = make(chan struct{})
	}
	return e.space
}

// workerWait holds the Work worker while a closed batch waits for an
// in-flight slot, so that, as in the seed, nothing drains Work meanwhile and
// producers block once PendingWorkCapacity items are in it.
func (e *engine[T]) workerWait() {
	if e.nwaiting.Load() == 0 {
		return
	}
	e.fmu.Lock()
	for len(e.waiting) > 0 && !e.aborted.Load() {
		space := e.spaceLocked()
		e.fmu.Unlock()
		<-space
		e.fmu.Lock()
	}
	e.fmu.Unlock()
}

// refuseLocked counts a refused item, unlocks mu and reports it.
func (e *engine[T]) refuseLocked(ctx context.Context, since time.Time, err error, res *Result) error {
	e.refused++
	e.mu.Unlock()
	res.complete(err)
	if h := e.hooks; h != nil && h.Added != nil {
		var blocked time.Duration
		if !since.IsZero() {
			blocked = time.Since(since)
		}
		h.Added(AddInfo{Name: e.name, Ctx: ctx, Blocked: blocked, Err: err})
	}
	return err
}

// fullLocked (mu and fmu held) reports whether a producer must wait: a
// closed batch is waiting for a slot and PendingWorkCapacity items are
// already queued behind it.
func (e *engine[T]) fullLocked(worker bool) bool {
	if len(e.waiting) == 0 {
		return false
	}
	return worker || e.behindLocked() >= e.capacity
}

// behindLocked (mu and fmu held) counts the items queued behind the oldest
// waiting batch.
func (e *engine[T]) behindLocked() int {
	if len(e.waiting) == 0 {
		return 0
	}
	n := e.waitingItems - e.waiting[0].n
	if e.cur != nil {
		n += e.cur.n
	}
	return n
}

func safeMake(maker func() Batch) (b Batch, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return maker(), nil
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

func (e *engine[T]) newBatchLocked() (*batch[T], error) {
	if e.maker != nil {
		user, err := safeMake(e.maker) // user code under mu: a panic must not keep the lock
		if err != nil {
			return nil, err
		}
		return &batch[T]{user: user}, nil
	}
	if b := e.spare; b != nil {
		e.spare = nil
		return b, nil
	}
	b := &batch[T]{}
	if e.max > 0 {
		b.items = make([]T, 0, e.max)
		if e.keepCtxs {
			b.ctxs = make([]context.Context, 0, e.max)
		}
		if e.keepTimes {
			b.times = make([]time.Time, 0, e.max)
		}
	}
	return b, nil
}

// openLocked starts the age of a batch that just got its first item.
//
// The timer is not reset for every batch: Reset and Stop cost about a
// microsecond each here, more than a whole batch of Adds. It is armed when a
// batch opens and no timer is pending; when it goes off, it closes the
// current batch if that is old enough, and otherwise re-arms itself for the
// current batch's own deadline. Size-triggered batches thus cost the timer
// nothing, and no batch fires late or early.
func (e *engine[T]) openLocked(b *batch[T]) {
	if e.timeout <= 0 && e.hooks == nil {
		return
	}
	b.first = time.Now()
	if e.timeout > 0 && !e.timerArmed {
		e.timerArmed = true
		e.timer.Reset(e.timeout)
	}
}

// onTimer closes the current batch when its first item is BatchTimeout old,
// or re-arms the timer for when it will be.
func (e *engine[T]) onTimer() {
	var launch *batch[T]
	e.mu.Lock()
	e.timerArmed = false
	if b := e.cur; b != nil && b.n > 0 {
		if age := time.Since(b.first); age >= e.timeout {
			launch = e.closeLocked(b, TriggerTimeout)
		} else {
			e.timerArmed = true
			e.timer.Reset(e.timeout - age)
		}
	}
	e.mu.Unlock()
	if launch != nil {
		e.run(launch) // the timer's goroutine is the batch's own
	}
}

// closeLocked (mu held) ends the current batch. It returns the batch when it
// may fire now, for the caller to launch once it has unlocked; otherwise the
// batch queues for a slot.
func (e *engine[T]) closeLocked(b *batch[T], t Trigger) *batch[T] {
	e.cur = nil
	b.trigger = t
	e.nextID++
	b.id = e.nextID
	if e.hooks != nil {
		b.ready = time.Now()
	}
	e.fmu.Lock()
	defer e.fmu.Unlock()
	if n := len(e.free); n > 0 && e.spare == nil {
		e.spare = e.free[n-1]
		e.free[n-1] = nil
		e.free = e.free[:n-1]
	}
	if e.limit == 0 || e.inflight < e.limit {
		e.admitLocked(b)
		return b
	}
	e.waiting = append(e.waiting, b)
	e.nwaiting.Store(int32(len(e.waiting)))
	e.waitingItems += b.n
	return nil
}

// admitLocked (fmu held) gives a batch an in-flight slot.
func (e *engine[T]) admitLocked(b *batch[T]) {
	e.inflight++
	e.inflightItems += b.n
	e.fired++
	if e.hooks != nil {
		b.inflight = e.inflight
		b.queued = e.waitingItems
		if e.workLen != nil {
			b.queued += e.workLen()
		}
	}
}

// flushLocked (mu held) closes the current batch, if it holds anything, and
// returns it when it may fire now.
func (e *engine[T]) flushLocked(t Trigger) *batch[T] {
	if b := e.cur; b != nil && b.n > 0 {
		return e.closeLocked(b, t)
	}
	return nil
}

func (e *engine[T]) launch(b *batch[T]) {
	if b != nil {
		go e.run(b)
	}
}

func (e *engine[T]) snapshot() Stats {
	e.mu.Lock()
	e.fmu.Lock()
	s := Stats{
		Added:     e.added,
		Refused:   e.refused,
		Dropped:   e.dropped,
		Fired:     e.fired,
		Done:      e.done,
		Failed:    e.failed,
		Abandoned: e.abandoned,
		InFlight:  e.inflight,
		Pending:   e.waitingItems,
		Queued:    e.behindLocked(),
	}
	if e.cur != nil {
		s.Pending += e.cur.n
	}
	e.fmu.Unlock()
	e.mu.Unlock()
	if e.workLen != nil {
		s.Queued += e.workLen()
	}
	return s
}

func (e *engine[T]) fireInfo(b *batch[T], now time.Time) FireInfo {
	info := FireInfo{
		Name:                 e.name,
		BatchID:              b.id,
		Size:                 b.n,
		MaxBatchSize:         e.max,
		MaxConcurrentBatches: e.limit,
		Trigger:              b.trigger,
		InFlight:             b.inflight,
		Queued:               b.queued,
		Start:                now,
		Contexts:             b.ctxs,
		Enqueued:             b.times,
		Key:                  e.key,
	}
	if !b.first.IsZero() {
		info.Age = now.Sub(b.first)
	}
	if !b.ready.IsZero() {
		info.SlotWait = now.Sub(b.ready)
	}
	return info
}

// run is a batch's own goroutine. Without hooks it keeps its frames small:
// a new goroutine has a 2 KiB stack, and growing it costs more than firing.
func (e *engine[T]) run(b *batch[T]) {
	if e.hooks != nil {
		e.runHooked(b)
		return
	}
	if b.user != nil {
		e.fireUser(e.base, b, nil)
		return
	}
	e.finish(e.base, b, nil, callFire(e.fire, e.base, b.items))
}

//go:noinline
func (e *engine[T]) runHooked(b *batch[T]) {
	h := e.hooks
	info := new(FireInfo)
	*info = e.fireInfo(b, time.Now())
	ctx := e.base
	if h.Waited != nil || h.Retried != nil {
		ctx = context.WithValue(ctx, reporterKey{}, &reporter{hooks: h, name: e.name, id: b.id})
	}
	var err error
	if h.Fired != nil {
		ctx, err = callFired(h.Fired, ctx, *info)
	}
	switch {
	case err != nil:
	case b.user != nil:
		e.fireUser(ctx, b, info)
		return
	default:
		err = callFire(e.fire, ctx, b.items)
	}
	e.finish(ctx, b, info, err)
}

// fireUser calls a Batch's Fire (or FireContext) with a Notifier.
func (e *engine[T]) fireUser(ctx context.Context, b *batch[T], info *FireInfo) {
	n := &notifier[T]{e: e, b: b, ctx: ctx, info: info}
	if err := n.fire(); err != nil {
		n.finish(err)
	}
}

func callFired(f func(context.Context, FireInfo) context.Context, ctx context.Context, info FireInfo) (out context.Context, err error) {
	out = ctx
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	if c := f(ctx, info); c != nil {
		out = c
	}
	return out, nil
}

func callFire[T any](f FireFunc[T], ctx context.Context, items []T) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	return f(ctx, items)
}

// finish marks a batch done: hooks, slot, waiting batches, barriers.
func (e *engine[T]) finish(ctx context.Context, b *batch[T], info *FireInfo, err error) {
	if info != nil && e.hooks.Done != nil {
		e.doneHook(ctx, info, err)
	}
	if b.results != nil {
		completeAll(b.results, err)
	}
	var next *batch[T]
	e.fmu.Lock()
	e.inflight--
	e.inflightItems -= b.n
	e.done++
	if err != nil {
		e.failed++
	}
	e.releaseLocked(b.id, nil)
	if len(e.waiting) > 0 && (e.limit == 0 || e.inflight < e.limit) {
		next = e.waiting[0]
		n := copy(e.waiting, e.waiting[1:]) // few wait: a copy keeps the array for reuse
		e.waiting[n] = nil
		e.waiting = e.waiting[:n]
		e.nwaiting.Store(int32(len(e.waiting)))
		e.waitingItems -= next.n
		e.admitLocked(next)
		e.wakeLocked()
	}
	e.recycleLocked(b)
	drained := e.checkDrainedLocked()
	e.fmu.Unlock()
	e.launch(next)
	if drained {
		e.stopped()
	}
}

//go:noinline
func (e *engine[T]) doneHook(ctx context.Context, info *FireInfo, err error) {
	callDone(e.hooks.Done, ctx, DoneInfo{FireInfo: *info, Duration: time.Since(info.Start), Err: err})
}

func callDone(f func(context.Context, DoneInfo), ctx context.Context, info DoneInfo) {
	defer func() { _ = recover() }() // a panicking hook must not keep the slot
	f(ctx, info)
}

func (e *engine[T]) recycleLocked(b *batch[T]) {
	if b.user != nil || len(e.free) >= maxFree {
		return
	}
	clear(b.items)
	clear(b.ctxs)
	*b = batch[T]{items: b.items[:0], ctxs: b.ctxs[:0], times: b.times[:0]} // results are not reused
	e.free = append(e.free, b)
}

// wakeLocked (fmu held) lets every waiting producer look again.
func (e *engine[T]) wakeLocked() {
	if e.space != nil {
		close(e.space)
		e.space = nil
	}
}

// releaseLocked (fmu held) counts a finished batch against the Flush
// barriers it belongs to.
func (e *engine[T]) releaseLocked(id uint64, err error) {
	if len(e.barriers) == 0 {
		return
	}
	kept := e.barriers[:0]
	for _, bar := range e.barriers {
		if id <= bar.maxID {
			if err != nil {
				bar.err = err
			}
			bar.remaining--
			if bar.remaining == 0 {
				close(bar.ch)
				continue
			}
		}
		kept = append(kept, bar)
	}
	clear(e.barriers[len(kept):])
	e.barriers = kept
}

// flush closes the current batch and waits until every batch closed before
// it returned is done.
func (e *engine[T]) flush(ctx context.Context) error {
	e.mu.Lock()
	if e.state != stateRunning {
		e.mu.Unlock()
		return ErrStopped
	}
	launch := e.flushLocked(TriggerFlush)
	e.fmu.Lock()
	var bar *barrier
	if outstanding := len(e.waiting) + e.inflight; outstanding > 0 {
		bar = &barrier{maxID: e.nextID, remaining: outstanding, ch: make(chan struct{})}
		e.barriers = append(e.barriers, bar)
	}
	e.fmu.Unlock()
	e.mu.Unlock()
	e.launch(launch)
	if bar == nil {
		return nil
	}
	select {
	case <-bar.ch:
		return bar.err
	case <-ctx.Done():
		e.fmu.Lock()
		for i, x := range e.barriers {
			if x == bar {
				e.barriers = append(e.barriers[:i], e.barriers[i+1:]...)
				break
			}
		}
		e.fmu.Unlock()
		return ctx.Err()
	}
}

// checkDrainedLocked (fmu held) notes, once, that the client is stopping,
// its last batch is closed and every batch is done. It reports whether it
// did, so the caller runs stopped after unlocking.
func (e *engine[T]) checkDrainedLocked() bool {
	if e.isDrained || e.aborting || !e.stopping || !e.lastClosed || e.inflight > 0 || len(e.waiting) > 0 {
		return false
	}
	e.isDrained = true
	e.cancel(ErrStopped)
	if e.timer != nil {
		e.timer.Stop()
	}
	return true
}

// stopped runs the Stopped hook, then lets Stop and Shutdown return: when
// they do, every hook has run.
func (e *engine[T]) stopped() {
	defer close(e.drained)
	if e.hooks != nil && e.hooks.Stopped != nil {
		func() {
			defer func() { _ = recover() }() // a panicking hook must not hang Stop
			e.hooks.Stopped(e.clientInfo())
		}()
	}
}

// closeLast closes the final batch (unless a deadline abandoned it) and
// marks that nothing more will join. Stop does this for a Batcher; for a
// Client the Work worker does, once Work is drained.
func (e *engine[T]) closeLast() {
	e.mu.Lock()
	var launch *batch[T]
	if !e.aborted.Load() {
		launch = e.flushLocked(TriggerShutdown)
	}
	e.fmu.Lock()
	e.lastClosed = true
	drained := e.checkDrainedLocked()
	e.fmu.Unlock()
	e.mu.Unlock()
	e.launch(launch)
	if drained {
		e.stopped()
	}
}

// beginStop refuses new items from now on and wakes producers waiting for
// room (they get ErrStopped). It reports whether this call began the stop.
func (e *engine[T]) beginStop() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state != stateRunning {
		return false
	}
	e.state = stateStopping
	e.fmu.Lock()
	e.stopping = true
	e.wakeLocked()
	e.fmu.Unlock()
	return true
}

// wait blocks until the engine is drained or ctx ends; then it gives up on
// what is left (see abort).
func (e *engine[T]) wait(ctx context.Context) error {
	select {
	case <-e.drained:
		return nil
	default:
	}
	select {
	case <-e.drained:
		return nil
	case <-ctx.Done():
		return e.abort(ctx)
	}
}

// abort gives up at a shutdown deadline: batches that have not fired are
// abandoned (their Done hook sees ErrIncomplete), in-flight batches see their
// context canceled, and the error counts what did not finish.
func (e *engine[T]) abort(ctx context.Context) error {
	var abandoned []*batch[T]
	first := false
	e.mu.Lock()
	e.fmu.Lock()
	if e.isDrained {
		e.fmu.Unlock()
		e.mu.Unlock()
		<-e.drained // the Stopped hook is running
		return nil
	}
	if !e.aborted.Swap(true) {
		first = true
		e.aborting = true // the Stopped hook waits for the Done hooks below
		e.cancel(ErrIncomplete)
		if b := e.cur; b != nil && b.n > 0 {
			e.nextID++
			b.id = e.nextID
			b.trigger = TriggerShutdown
			abandoned = append(abandoned, b)
		}
		e.cur = nil
		abandoned = append(abandoned, e.waiting...)
		clear(e.waiting)
		e.waiting = e.waiting[:0]
		e.nwaiting.Store(0)
		e.waitingItems = 0
		e.wakeLocked()
		for _, b := range abandoned {
			e.abandoned += uint64(b.n)
			e.releaseLocked(b.id, ErrIncomplete)
		}
	}
	se := &ShutdownError{Batches: e.inflight + len(abandoned), Items: e.inflightItems, Cause: context.Cause(ctx)}
	for _, b := range abandoned {
		se.Items += b.n
	}
	drained := e.checkDrainedLocked()
	e.fmu.Unlock()
	e.mu.Unlock()
	if e.workLen != nil {
		se.Items += e.workLen()
	}
	for _, b := range abandoned {
		completeAll(b.results, ErrIncomplete)
	}
	if h := e.hooks; h != nil && h.Done != nil {
		now := time.Now()
		for _, b := range abandoned {
			callDone(h.Done, e.base, DoneInfo{FireInfo: e.fireInfo(b, now), Err: ErrIncomplete})
		}
	}
	if first {
		e.fmu.Lock()
		e.aborting = false
		drained = e.checkDrainedLocked()
		e.fmu.Unlock()
	}
	if drained {
		e.stopped()
	}
	if se.Batches == 0 && se.Items == 0 {
		// Nothing is left but closing the last batch (the Work worker's
		// closeLast, or a concurrent Stop's), which is under way: return
		// when it is done and the Stopped hook has run.
		<-e.drained
		return nil
	}
	return se
}

// notifier is the Notifier a Batch's Fire receives.
type notifier[T any] struct {
	e    *engine[T]
	b    *batch[T]
	ctx  context.Context
	info *FireInfo // nil without hooks
	once atomic.Bool
}

var _ ErrorNotifier = (*notifier[any])(nil)

// Done marks the batch done. Calls after the first are ignored.
func (n *notifier[T]) Done() { n.finish(nil) }

// DoneError marks the batch done with an error (nil means success). Calls
// after the first are ignored.
func (n *notifier[T]) DoneError(err error) { n.finish(err) }

func (n *notifier[T]) finish(err error) {
	if n.once.CompareAndSwap(false, true) {
		n.e.finish(n.ctx, n.b, n.info, err)
	}
}

func (n *notifier[T]) fire() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	if fc, ok := n.b.user.(FireContexter); ok {
		fc.FireContext(n.ctx, n)
	} else {
		n.b.user.Fire(n)
	}
	return nil
}

func newPanicError(r any) *PanicError {
	return &PanicError{Value: r, Stack: debug.Stack()}
}

// maxFree bounds the recycled batches kept for reuse: enough for the batches
// a fast producer closes while earlier ones are still being scheduled.
const maxFree = 64
