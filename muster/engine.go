package muster

import (
	"context"
	"math"
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
// the reverse. phase is written with both held, so either lock reads it.
//
// A producer takes mu once per item, and fmu once per batch (when its item
// closes one) or while a batch waits for a slot. A batch that is done
// (finish) takes fmu alone while at most one batch waits for a slot and
// there are no hooks, and then mu, after releasing fmu, only when its
// Keyed key may have emptied or the client may have drained; with hooks and
// more than one batch waiting it takes mu before fmu, since the FireInfo of
// the batch it admits counts the queue, which mu guards. A function
// named ...Locked needs the locks its doc names, held by its caller; any
// other function takes what it needs itself. Hooks and Fire run outside
// both, except Added, which runs under mu so that it precedes its batch's
// Fired.
//
// The engine's stages, one file each:
//   - add.go: an item's way into its key's open batch, under mu;
//   - overflow.go: room for it: backpressure and the Overflow policies,
//     under mu, with fmu to look at the ready queue;
//   - flight.go: closing a batch, admitting it to a slot, firing it and
//     finishing it; fmu, and mu where a key or the drain is concerned;
//   - keys.go: a Keyed's key states, their idling and eviction, under mu;
//     TopKeys, under both;
//   - stop.go: Stop, Shutdown's deadline and the counters, under both.
//
// The client leaves running under both locks, and closes (Stop) or
// abandons (a Client's Shutdown deadline while its worker drained Work)
// every open batch as it does: phase != running implies that no batch is
// open, so whether the client has drained is known under fmu.

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
	state Batch // a Client's Batch, made by join for its first item
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

	link[batch[K, T]] // in the open FIFO; admitted, in unstarted
}

func (b *batch[K, T]) links() *link[batch[K, T]] { return &b.link }

// keyState is one key's share of the engine. A key costs this struct, a map
// entry and, while it holds items, an open batch.
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

// barrier is one Flush's wait: for the batches closed before it (ids up to
// maxID) that were waiting or in flight.
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
	fire     func(ctx context.Context, b *batch[K, T]) error
	// join, when set, is called under mu for an item as it joins a batch
	// (but for addRun's common case), with the batch's state (nil for its
	// first item): a Client's BatchMaker and Batch.Add. An error refuses it.
	join func(state *Batch, item T) error
	// keepItems keeps each batch's items for fire: false only for a
	// Client without Middleware, whose Batch holds them.
	keepItems bool
	// outside counts the items queued before the engine (a Client's Work),
	// for Stats.Queued and FireInfo.Queued; nil: none.
	outside  func() int
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
	fill   int // an open batch below this many items does not close on the next (MaxBatchSize-1)

	// The add lock and what it guards; what every Add touches comes first.
	mu        sync.Mutex
	phase     phase          // written under both locks
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
	lastKey    *keyState[K, T] // the key keyLocked found last, if still live (single without Key): most items repeat it
	idleKeys   list[keyState[K, T], *keyState[K, T]]
	janitor    *time.Timer
	janitorSet bool
	open       list[batch[K, T], *batch[K, T]]
	timer      *time.Timer
	timerSet   bool

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
	parked      []chan *batch[K, T]             // idle batch goroutines, the latest last
	unstarted   list[batch[K, T], *batch[K, T]] // admitted, taken by no goroutine yet (see run)
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
	e.lastKey = &e.single // a Keyed's: none yet
	if c.keyFn != nil {
		e.keys, e.lastKey = make(map[K]*keyState[K, T]), nil
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
}

// usable checks what every client method checks first: the client started
// (e is nil before Start) and ctx is not nil.
func (e *engine[K, T]) usable(ctx context.Context) error {
	if e == nil {
		return ErrNotStarted
	}
	if ctx == nil {
		return ErrNilContext
	}
	return nil
}
