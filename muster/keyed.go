package muster

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTooManyKeys is returned by a Keyed client's Add when the item's key is
// new, MaxKeys keys are live, and none of them can be evicted to make room
// (each has items pending or a batch in flight). The item was not taken.
var ErrTooManyKeys = errors.New("muster: too many live keys")

// Defaults for Keyed.
const (
	// DefaultMaxKeys is the live-key bound of a Keyed client whose MaxKeys
	// is zero.
	DefaultMaxKeys = 1024

	// minKeyIdleTimeout is the floor of the default KeyIdleTimeout.
	minKeyIdleTimeout = time.Minute
)

// Keyed batches typed items per key: a key function routes each item to the
// batch of its key (tenant, destination, credentials), so that a batch never
// mixes keys, and Fire receives the key with the batch. Each key has its own
// size, bytes and time triggers and its own pending capacity, as if it had a
// [Batcher] of its own; all keys share one in-flight limit.
//
// Keys are created by the first Add that names them and evicted when they
// have been idle (nothing pending, nothing in flight, no Add) for
// KeyIdleTimeout. At most MaxKeys keys are live: a new key beyond that evicts
// the least recently used key that holds nothing, or, when every key holds
// something, Add returns [ErrTooManyKeys].
//
// Hooks see one client: Started once at Start, Stopped once at the end, when
// every key's batches are done (after a Shutdown deadline, when the last
// batch left in flight is done; its ClientInfo.Stats sums the keys), and Added, Fired, Done, Waited and Retried
// per item and per batch, with FireInfo.Key set to the batch's key. BatchID
// numbers batches per key.
//
// Configure the fields, call Start, then Add from any number of goroutines,
// and Stop or Shutdown at the end. Fields must not change after Start. A
// Keyed must not be copied after Start.
type Keyed[K comparable, T any] struct {
	// Key returns an item's key. It is called once per item, on the
	// producer's goroutine: it must be cheap and free of side effects.
	// Optional: nil puts every item under the zero K, which makes a Keyed
	// a Batcher whose Fire receives a key.
	Key func(item T) K

	// Fire processes each batch of one key. Required. It runs on the
	// batch's own goroutine, once the batch holds a shared in-flight slot.
	// items is only valid until Fire returns. To use a [Middleware], wrap a
	// FireFunc that closes over the key:
	//
	//	Fire: func(ctx context.Context, k K, items []T) error {
	//		return mw(func(ctx context.Context, items []T) error { return send(ctx, k, items) })(ctx, items)
	//	}
	Fire func(ctx context.Context, key K, items []T) error

	// MaxBatchSize fires a key's batch when it holds this many items. Zero:
	// no size trigger. See Batcher.MaxBatchSize.
	MaxBatchSize uint

	// BatchTimeout fires a key's batch this long after its first item
	// arrived. Zero: no time trigger.
	BatchTimeout time.Duration

	// MaxBatchBytes fires a key's batch before the next item would take it
	// past this many bytes, as measured by Sizer. See Batcher.MaxBatchBytes.
	MaxBatchBytes uint

	// Sizer returns an item's size for MaxBatchBytes; see Batcher.Sizer.
	Sizer func(item T) int

	// MaxConcurrentBatches caps the batches whose Fire runs at once, across
	// all keys. Zero: no cap.
	//
	// A batch that is closed takes a slot of its key first (each key allows
	// MaxConcurrentBatches, so no key alone can exceed the cap): from then on
	// it is in flight for its key, and its Fired hook has run. It then waits
	// for a shared slot before Fire is called; a wait is reported to the
	// Waited hook with Reason "slot" (see [ReportWait]). A Shutdown deadline
	// ends the wait: the batch fails with an error wrapping the cause
	// (ErrIncomplete). Stats.InFlight counts the batches holding a shared
	// slot (never more than this cap); Fired - Done also counts those
	// waiting for one.
	MaxConcurrentBatches uint

	// PendingWorkCapacity is, per key, how many items Add accepts behind a
	// batch that waits for a slot of its key before Add blocks (or fails or
	// drops, per Overflow). Backpressure is per key: a busy key holds back its
	// own producers, not the others'.
	PendingWorkCapacity uint

	// Overflow says what Add does when a key's pending capacity is used up;
	// see Overflow.
	Overflow Overflow

	// MaxKeys bounds the live keys. When an Add brings a new key and MaxKeys
	// keys are live, the least recently used key holding nothing is evicted
	// at once; if every key holds items or batches, Add returns
	// ErrTooManyKeys. Zero: DefaultMaxKeys. Finding an evictable key scans
	// the keys: keep it at thousands, not millions.
	MaxKeys int

	// KeyIdleTimeout is how long a key must have held nothing (no item
	// pending, no batch in flight) and taken no item before it is evicted.
	// A janitor checks every KeyIdleTimeout/2 (at least every millisecond),
	// so a key goes between KeyIdleTimeout and 1.5×KeyIdleTimeout after its
	// last activity. A later Add re-creates it. Zero: 10×BatchTimeout, and at
	// least a minute.
	KeyIdleTimeout time.Duration

	// Name identifies the client to hooks and telemetry. Keep it
	// low-cardinality: the key goes to FireInfo.Key, not here.
	Name string

	// Hooks observe the client (see the type's doc). Optional.
	Hooks *Hooks

	// BaseContext returns the context batches fire with. If nil,
	// context.Background() is used. It is called once, by Start.
	BaseContext func() context.Context

	s *keyedState[K, T]
}

// keyedState is a started Keyed.
//
// Design: one engine per live key, in a sync.Map so that Add finds its key
// without a shared lock (an RWMutex's reader count would be one cache line
// written by every producer). mu serialises creation and eviction. An Add
// announces itself on its entry (adders) and then checks that the entry is
// not closed; eviction, under mu, closes the entry and then checks that no
// Add is announced (both sequentially consistent atomics: one of the two
// sees the other). An evicted engine is thus empty and quiescent when it is
// stopped, and an Add that meets a closed entry retries under mu, where it
// finds the entry open again or a fresh one: no item is lost or fired late.
type keyedState[K comparable, T any] struct {
	k         *Keyed[K, T]
	id        uint64
	base      context.Context
	keyHooks  *Hooks        // Hooks without Started and Stopped, for the key engines
	sem       chan struct{} // the shared in-flight slots; nil without a cap
	maxKeys   int
	idle      time.Duration
	sweepEach time.Duration
	keyFn     func(T) K

	keys sync.Map // K -> *keyEntry[T]

	mu          sync.Mutex
	n           int // live keys
	stopping    bool
	janitor     *time.Timer
	armed       bool
	retired     Stats  // counters of evicted keys
	refused     uint64 // items refused before reaching a key (ErrTooManyKeys, ErrStopped)
	stoppedOnce sync.Once
}

type keyEntry[T any] struct {
	e        *engine[T]
	adders   atomic.Int32 // Adds between lookup and return
	closed   atomic.Bool  // being evicted; only true while mu is held
	touched  atomic.Bool  // an Add or a Fire since the janitor last looked
	lastSeen time.Time    // (mu) when the janitor last saw it touched or busy
}

// Start checks the configuration and makes the client ready for Add. It
// starts no goroutine.
func (k *Keyed[K, T]) Start() error {
	if k.MaxBatchSize == 0 && k.BatchTimeout == 0 && k.MaxBatchBytes == 0 {
		return ErrZeroBoth
	}
	if k.Fire == nil {
		return fmt.Errorf("%w: Fire is nil", ErrInvalidConfig)
	}
	if (k.MaxBatchBytes > 0) != (k.Sizer != nil) {
		return fmt.Errorf("%w: MaxBatchBytes and Sizer go together", ErrInvalidConfig)
	}
	if k.Overflow > OverflowDropOldest {
		return fmt.Errorf("%w: unknown Overflow %v", ErrInvalidConfig, k.Overflow)
	}
	if k.MaxKeys < 0 || k.KeyIdleTimeout < 0 {
		return fmt.Errorf("%w: negative MaxKeys or KeyIdleTimeout", ErrInvalidConfig)
	}
	if k.s != nil {
		return ErrAlreadyStarted
	}
	s := &keyedState[K, T]{k: k, id: clientIDs.Add(1), maxKeys: k.MaxKeys, idle: k.KeyIdleTimeout, keyFn: k.Key}
	if s.maxKeys == 0 {
		s.maxKeys = DefaultMaxKeys
	}
	if s.idle == 0 {
		s.idle = max(10*k.BatchTimeout, minKeyIdleTimeout)
	}
	s.sweepEach = max(s.idle/2, time.Millisecond)
	s.base = context.Background()
	if k.BaseContext != nil {
		if b := k.BaseContext(); b != nil {
			s.base = b
		}
	}
	if k.MaxConcurrentBatches > 0 {
		s.sem = make(chan struct{}, clampInt(k.MaxConcurrentBatches))
	}
	if h := k.Hooks; h != nil {
		kh := *h
		kh.Started, kh.Stopped = nil, nil
		if kh.Added != nil || kh.Fired != nil || kh.Done != nil || kh.Waited != nil || kh.Retried != nil ||
			kh.KeepItemContexts || kh.KeepItemTimes {
			s.keyHooks = &kh // else the key engines keep their hook-free path
		}
	}
	s.janitor = time.AfterFunc(time.Hour, s.sweep)
	s.janitor.Stop()
	k.s = s
	if h := k.Hooks; h != nil && h.Started != nil {
		h.Started(s.clientInfo())
	}
	return nil
}

// Add adds an item to the current batch of its key; the call that fills the
// batch fires it. It returns ErrTooManyKeys when the key is new and no room
// can be made for it (see MaxKeys), and otherwise behaves as Batcher.Add,
// with backpressure per key.
func (k *Keyed[K, T]) Add(ctx context.Context, item T) error {
	if k.s == nil {
		return ErrNotStarted
	}
	return k.s.add(ctx, item, nil)
}

// AddResult adds an item as Add does and returns its Result, done when the
// item's batch is done. A refused item gets an error and no Result.
func (k *Keyed[K, T]) AddResult(ctx context.Context, item T) (*Result, error) {
	if k.s == nil {
		return nil, ErrNotStarted
	}
	r := newResult()
	if err := k.s.add(ctx, item, r); err != nil {
		return nil, err
	}
	return r, nil
}

// Flush fires the pending partial batch of every key now and waits until
// every batch closed before the call is done, or ctx ends. It returns
// ErrStopped once stopping, and otherwise the first error a key's flush
// returned (ErrIncomplete, ctx's error). Batch errors are not returned.
func (k *Keyed[K, T]) Flush(ctx context.Context) error {
	if k.s == nil {
		return ErrNotStarted
	}
	return k.s.flush(ctx)
}

// Stop fires the partial batch of every key and returns when every batch is
// done. Add returns ErrStopped from the moment Stop begins. Calling it again
// waits the same way and returns nil.
func (k *Keyed[K, T]) Stop() error { return k.Shutdown(context.Background()) }

// Shutdown stops as Stop does but gives up when ctx ends, for all keys at
// once (see Client.Shutdown for what happens to batches then). The
// *ShutdownError it returns sums the batches and items left over all keys.
func (k *Keyed[K, T]) Shutdown(ctx context.Context) error {
	if k.s == nil {
		return ErrNotStarted
	}
	return k.s.shutdown(ctx)
}

// Stats returns the client's counters summed over its keys, evicted ones
// included, with Keys the number of live keys. It is zero before Start.
func (k *Keyed[K, T]) Stats() Stats {
	if k.s == nil {
		return Stats{}
	}
	return k.s.stats()
}

func (s *keyedState[K, T]) clientInfo() ClientInfo {
	k := s.k
	return ClientInfo{
		ID:                   s.id,
		Name:                 k.Name,
		MaxBatchSize:         clampInt(k.MaxBatchSize),
		BatchTimeout:         k.BatchTimeout,
		MaxConcurrentBatches: clampInt(k.MaxConcurrentBatches),
		PendingWorkCapacity:  clampInt(k.PendingWorkCapacity),
		Stats:                s.stats,
	}
}

func (s *keyedState[K, T]) add(ctx context.Context, item T, res *Result) error {
	var key K
	if s.keyFn != nil {
		key = s.keyFn(item)
	}
	ent, err := s.acquire(key)
	if err != nil {
		res.complete(err)
		if h := s.k.Hooks; h != nil && h.Added != nil {
			h.Added(AddInfo{Name: s.k.Name, Ctx: ctx, Err: err})
		}
		return err
	}
	if !ent.touched.Load() {
		ent.touched.Store(true) // no write, and no cache-line bouncing, while busy
	}
	err = ent.e.add(ctx, item, false, res)
	ent.adders.Add(-1)
	return err
}

// acquire returns the live entry of key, announced (adders incremented),
// creating it if need be.
func (s *keyedState[K, T]) acquire(key K) (*keyEntry[T], error) {
	if v, ok := s.keys.Load(key); ok {
		ent := v.(*keyEntry[T])
		ent.adders.Add(1)
		if !ent.closed.Load() {
			return ent, nil
		}
		ent.adders.Add(-1) // being evicted: decide under mu
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.keys.Load(key); ok { // under mu, an entry in the map is open
		ent := v.(*keyEntry[T])
		ent.adders.Add(1)
		return ent, nil
	}
	if s.stopping {
		s.refused++
		return nil, ErrStopped
	}
	if s.n >= s.maxKeys && !s.evictLRULocked() {
		s.refused++
		return nil, ErrTooManyKeys
	}
	ent := s.newEntryLocked(key)
	ent.adders.Add(1)
	s.keys.Store(key, ent)
	s.n++
	if !s.armed {
		s.armed = true
		s.janitor.Reset(s.sweepEach)
	}
	return ent, nil
}

func (s *keyedState[K, T]) newEntryLocked(key K) *keyEntry[T] {
	k := s.k
	ent := &keyEntry[T]{lastSeen: time.Now()}
	ent.touched.Store(true)
	e := newEngine[T](engineConfig{
		name:        k.Name,
		max:         k.MaxBatchSize,
		timeout:     k.BatchTimeout,
		limit:       k.MaxConcurrentBatches,
		capacity:    k.PendingWorkCapacity,
		hooks:       s.keyHooks,
		baseContext: func() context.Context { return s.base },
		overflow:    k.Overflow,
		key:         key,
	})
	e.fire = s.fireFunc(key, ent)
	if k.MaxBatchBytes > 0 {
		e.maxBytes = clampInt(k.MaxBatchBytes)
		e.sizer = k.Sizer
	}
	e.plain = e.maxBytes == 0 && !e.keepCtxs && !e.keepTimes
	ent.e = e
	return ent
}

// fireFunc is a key's FireFunc: it waits for a shared slot, then calls Fire
// with the key.
func (s *keyedState[K, T]) fireFunc(key K, ent *keyEntry[T]) FireFunc[T] {
	fire := s.k.Fire
	sem := s.sem
	return func(ctx context.Context, items []T) error {
		defer ent.touched.Store(true) // a batch done counts as activity
		if sem != nil {
			select {
			case sem <- struct{}{}:
			default:
				start := time.Now()
				select {
				case sem <- struct{}{}:
					ReportWait(ctx, WaitInfo{Reason: "slot", Duration: time.Since(start)})
				case <-ctx.Done():
					err := fmt.Errorf("muster: waiting for a shared in-flight slot: %w", context.Cause(ctx))
					ReportWait(ctx, WaitInfo{Reason: "slot", Duration: time.Since(start), Err: err})
					return err
				}
			}
			defer func() { <-sem }()
		}
		return fire(ctx, key, items)
	}
}

// tryEvictLocked (mu held) evicts ent if no Add is using it and it holds
// nothing; it reports whether it did.
func (s *keyedState[K, T]) tryEvictLocked(key any, ent *keyEntry[T]) bool {
	ent.closed.Store(true)
	if ent.adders.Load() != 0 {
		ent.closed.Store(false)
		return false
	}
	// No Add is inside the engine, and none will enter it: its counters
	// can only change through batches already closed.
	if st := ent.e.snapshot(); st.Pending != 0 || st.InFlight != 0 {
		ent.closed.Store(false)
		return false
	}
	s.keys.Delete(key)
	s.n--
	if ent.e.beginStop() {
		ent.e.closeLast() // empty: it drains at once
	}
	addStats(&s.retired, ent.e.snapshot())
	return true
}

// evictLRULocked (mu held) evicts the least recently active key that holds
// nothing, to make room for a new key.
func (s *keyedState[K, T]) evictLRULocked() bool {
	type cand struct {
		key  any
		ent  *keyEntry[T]
		seen time.Time
	}
	var cands []cand
	s.keys.Range(func(key, v any) bool {
		ent := v.(*keyEntry[T])
		seen := ent.lastSeen
		if ent.touched.Load() {
			seen = time.Now()
		}
		cands = append(cands, cand{key, ent, seen})
		return true
	})
	for len(cands) > 0 {
		oldest := 0
		for i, c := range cands {
			if c.seen.Before(cands[oldest].seen) {
				oldest = i
			}
		}
		if s.tryEvictLocked(cands[oldest].key, cands[oldest].ent) {
			return true
		}
		cands[oldest] = cands[len(cands)-1]
		cands = cands[:len(cands)-1]
	}
	return false
}

// sweep is the janitor: it evicts keys idle for KeyIdleTimeout. It runs
// every sweepEach while there are live keys.
func (s *keyedState[K, T]) sweep() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = false
	if s.stopping {
		return
	}
	now := time.Now()
	s.keys.Range(func(key, v any) bool {
		ent := v.(*keyEntry[T])
		if ent.touched.Swap(false) {
			ent.lastSeen = now
			return true
		}
		if now.Sub(ent.lastSeen) >= s.idle && !s.tryEvictLocked(key, ent) {
			ent.lastSeen = now // busy: idle time counts from when it is not
		}
		return true
	})
	if s.n > 0 {
		s.armed = true
		s.janitor.Reset(s.sweepEach)
	}
}

// engines returns the live keys' engines.
func (s *keyedState[K, T]) engines() []*engine[T] {
	var es []*engine[T]
	s.keys.Range(func(_, v any) bool {
		es = append(es, v.(*keyEntry[T]).e)
		return true
	})
	return es
}

func (s *keyedState[K, T]) flush(ctx context.Context) error {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return ErrStopped
	}
	es := s.engines()
	s.mu.Unlock()
	// Flush every key at once, so that no key's partial batch waits for
	// another key's batches to be done.
	errs := make([]error, len(es))
	var wg sync.WaitGroup
	for i, e := range es {
		wg.Go(func() { errs[i] = e.flush(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if errors.Is(err, ErrStopped) {
			// Evicted meanwhile (it was empty then), or stopping.
			s.mu.Lock()
			stopping := s.stopping
			s.mu.Unlock()
			if !stopping {
				continue
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *keyedState[K, T]) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	s.janitor.Stop()
	s.armed = false
	es := s.engines() // the map no longer changes
	s.mu.Unlock()
	for _, e := range es {
		if e.beginStop() {
			e.closeLast()
		}
	}
	var total *ShutdownError
	for _, e := range es {
		err := e.wait(ctx)
		var se *ShutdownError
		if errors.As(err, &se) {
			if total == nil {
				total = &ShutdownError{Cause: se.Cause}
			}
			total.Batches += se.Batches
			total.Items += se.Items
		}
	}
	if h := s.k.Hooks; h != nil && h.Stopped != nil {
		if total == nil {
			s.stoppedOnce.Do(func() { h.Stopped(s.clientInfo()) })
		} else {
			go func() { // once the batches left in flight are done
				for _, e := range es {
					<-e.drained
				}
				s.stoppedOnce.Do(func() { h.Stopped(s.clientInfo()) })
			}()
		}
	}
	if total == nil {
		return nil
	}
	return total
}

func (s *keyedState[K, T]) stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.retired
	st.Refused += s.refused
	s.keys.Range(func(_, v any) bool {
		addStats(&st, v.(*keyEntry[T]).e.snapshot())
		return true
	})
	st.Keys = s.n
	if s.sem != nil {
		// In flight means holding one of the shared slots; batches of a key
		// that wait for one have fired (Fired counts them) but are not.
		st.InFlight = len(s.sem)
	}
	return st
}

func addStats(to *Stats, s Stats) {
	to.Added += s.Added
	to.Refused += s.Refused
	to.Dropped += s.Dropped
	to.Fired += s.Fired
	to.Done += s.Done
	to.Failed += s.Failed
	to.Abandoned += s.Abandoned
	to.InFlight += s.InFlight
	to.Pending += s.Pending
	to.Queued += s.Queued
	to.Keys += s.Keys
}
