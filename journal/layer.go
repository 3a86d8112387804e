package journal

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/muster"
)

// Item is what a journaled batcher batches: the user's value and what the
// journal knows of it. A batch's Fire receives []Item[T], so each item's ID
// sits beside it, index-aligned with the batch by construction, and stays
// the same through a retry middleware's attempts and through replays.
type Item[T any] struct {
	ID       ID        // the Store's; empty only for an item dropped before it was journaled
	Value    T         // the item as Add received it (as the Codec decoded it, when replayed)
	Accepted time.Time // when Add accepted it, in this run or an earlier one
	Replayed bool      // it was accepted by an earlier run (or a dead replica) and replayed
}

// Limiter paces the replay: a *rate.Limiter from golang.org/x/time/rate
// fits. WaitN is called once per replayed item, with n 1.
type Limiter interface {
	WaitN(ctx context.Context, n int) error
}

// Config configures a journaled batcher.
type Config[T any] struct {
	// Store keeps the items: the embedded Log, or a Redis store. Required.
	// The batcher does not close it: close it after Stop or Shutdown.
	Store Store

	// Codec encodes items for the Store. Required; JSON[T]() is the
	// simplest.
	Codec Codec[T]

	// DeadLetter receives the items whose outcome is final but is not
	// delivery, with why: a batch that failed for good (the error its Fire
	// returned after every middleware; the failed items of an
	// *muster.ItemErrors), items older than MaxItemAge (ErrExpired), items
	// dropped by the batcher's Overflow policy or because the Store was full
	// (muster.ErrDropped), records the Codec cannot decode (an error naming
	// the record). The items are finished (deleted from the journal) only
	// after it returns. It runs on the goroutine named by
	// muster.Keyed.DeadLetter; a panic in it is recovered and ignored.
	// Optional: without it those items are counted and finished.
	DeadLetter func(ctx context.Context, items []Item[T], err error)

	// MaxItemAge bounds how stale a delivered item may be: an item accepted
	// longer ago than this when its batch fires is not delivered but
	// dead-lettered with ErrExpired (for a replay after a long outage,
	// franz-go's RecordDeliveryTimeout, Prometheus' sampleAgeLimit). Zero:
	// no limit.
	MaxItemAge time.Duration

	// ReplayLimiter paces the replay at Start, so that a backlog does not
	// flatten the downstream that just recovered. Optional: without it the
	// replay goes as fast as the batcher takes items.
	ReplayLimiter Limiter

	// Hooks observe the journal (appends, replays, dead letters). Optional.
	Hooks *Hooks
}

// Stats are a journaled batcher's counters.
type Stats struct {
	muster.Stats            // the batcher's
	Store        StoreStats // the Store's

	Replayed     uint64 // items the replay handed to the batcher
	DeadLettered uint64 // items handed to DeadLetter (expired and dropped ones included)
	Expired      uint64 // items dead-lettered with ErrExpired
	FinishFailed uint64 // items whose Finish failed: they stay journaled and come back at the next start
	// Unfinished counts the items this run handed to the batcher (by Add or
	// the replay) whose outcome is not final: a crash now leaves them in the
	// journal.
	Unfinished int
	// ReplayDone reports that the replay has ended; ReplayErr is the error
	// that ended it early, if any (a Store or Limiter error; not Stop's).
	ReplayDone bool
	ReplayErr  error
}

// batcher is what Wrap and WrapKeyed wrap: a *muster.Batcher or a
// *muster.Keyed of Items.
type batcher[T any] interface {
	Start() error
	Add(context.Context, Item[T]) error
	AddResult(context.Context, Item[T]) (muster.Result, error)
	Flush(context.Context) error
	Shutdown(context.Context) error
	Stats() muster.Stats
}

// Batcher journals the items of a muster.Batcher or muster.Keyed: Add
// returns nil only once the item is in the Store, and the item leaves the
// Store only when its outcome is final. See the package doc for the
// guarantees. Make one with Wrap or WrapKeyed, then Start, Add from any
// number of goroutines, and Stop or Shutdown. It is safe for concurrent
// use once started.
type Batcher[T any] struct {
	c        Config[T]
	inner    batcher[T]
	overflow muster.Overflow
	fire     muster.FireFunc[Item[T]] // the user's, with their middleware
	misfit   error                    // a configuration Start refuses

	started, stopping atomic.Bool
	cancelReplay      context.CancelFunc
	replayDone        chan struct{}
	replayErr         error // written before replayDone is closed

	unfinished                                   atomic.Int64
	replayed, deadLettered, expired, finishFails atomic.Uint64
}

// Wrap journals b's items. Configure b as usual, with a Fire over
// []Item[T] (with its middleware), then call Wrap before anything else:
// from then on use only the returned Batcher (b's Start, Add, Stop are its
// to call). Wrap takes over b's Fire and DeadLetter: set Config.DeadLetter
// instead of b's (Start refuses a b whose DeadLetter is set).
func Wrap[T any](b *muster.Batcher[Item[T]], c Config[T]) *Batcher[T] {
	if b == nil {
		return &Batcher[T]{misfit: errors.New("nil *muster.Batcher"), replayDone: make(chan struct{})}
	}
	return wrap(b, c, b.Overflow, &b.Fire, &b.DeadLetter)
}

// WrapKeyed journals k's items, as Wrap does for a Batcher. k's Key
// function receives Items: route on Item.Value. The replay keeps each key's
// items in the order they were accepted.
func WrapKeyed[K comparable, T any](k *muster.Keyed[K, Item[T]], c Config[T]) *Batcher[T] {
	if k == nil {
		return &Batcher[T]{misfit: errors.New("nil *muster.Keyed"), replayDone: make(chan struct{})}
	}
	return wrap(k, c, k.Overflow, &k.Fire, &k.DeadLetter)
}

// wrap journals inner's items, taking over its Fire and DeadLetter fields.
func wrap[T any](inner batcher[T], c Config[T], o muster.Overflow, fire *muster.FireFunc[Item[T]], dl *func(context.Context, []Item[T], error)) *Batcher[T] {
	j := &Batcher[T]{c: c, inner: inner, overflow: o, fire: *fire, replayDone: make(chan struct{})}
	switch {
	case c.Store == nil:
		j.misfit = errors.New("Config.Store is nil")
	case c.Codec == nil:
		j.misfit = errors.New("Config.Codec is nil")
	case c.MaxItemAge < 0:
		j.misfit = fmt.Errorf("negative MaxItemAge %v", c.MaxItemAge)
	case *dl != nil:
		j.misfit = errors.New("the batcher's DeadLetter is set: set Config.DeadLetter instead")
	}
	if *fire != nil {
		*fire = j.fireBatch
	}
	*dl = j.deadLetter
	return j
}

// Start starts the batcher, then replays, in a goroutine of its own, the
// items the Store holds from earlier runs (or, for a shared store, from
// dead replicas): each is added to the batcher as Add would (oldest first,
// with its ID, Accepted time and Replayed set), through the same
// middleware and limits, blocking under backpressure, paced by
// ReplayLimiter. Under OverflowFail the replay waits for room and tries
// again; under a drop policy a replayed item is subject to it as any other
// (pace the replay to avoid that). Stop or Shutdown end the replay: what it
// had not reached stays journaled for the next start. ReplayDone is closed
// when the replay has ended.
func (j *Batcher[T]) Start() error {
	if j.misfit != nil {
		return fmt.Errorf("%w: journal: %v", muster.ErrInvalidConfig, j.misfit)
	}
	if err := j.inner.Start(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	j.cancelReplay = cancel
	j.started.Store(true)
	go j.replay(ctx)
	return nil
}

// ReplayDone is closed when the replay Start began has ended: every record
// the Store had to recover was handed to the batcher, or Stop, Shutdown or
// an error (Stats.ReplayErr) cut it short. A store that takes over dead
// replicas' items keeps recovering until Stop: its replay ends then.
func (j *Batcher[T]) ReplayDone() <-chan struct{} { return j.replayDone }

// Add journals v, then adds it to the batcher. It returns nil once the
// item is in the Store at its durability level and in the batcher; from
// then on its outcome reaches Fire or DeadLetter, in this run or, after a
// crash or a Shutdown deadline, in a later one.
//
// When the Store is at its byte bound, the batcher's Overflow applies:
// OverflowBlock waits for room until ctx ends; OverflowFail returns an
// error matching muster.ErrFull and ErrFull; either drop policy drops the
// incoming item (DeadLetter receives it, without an ID, with
// muster.ErrDropped) and returns nil. When the batcher refuses the item
// (stopped, ctx ended under backpressure, full), Add finishes it in the
// Store and returns the batcher's error; a crash between the two can
// still deliver it, at the next start (at least once).
func (j *Batcher[T]) Add(ctx context.Context, v T) error {
	_, err := j.add(ctx, v, false)
	return err
}

// AddResult adds v as Add does and returns its muster.Result, done when
// its outcome is known in this run: nil once delivered, its batch's or its
// own error, ErrExpired, muster.ErrDropped, or muster.ErrIncomplete when a
// Shutdown deadline left it journaled. An item dropped because the Store
// was full has no Result: AddResult returns muster.ErrDropped for it,
// after DeadLetter received it.
func (j *Batcher[T]) AddResult(ctx context.Context, v T) (muster.Result, error) {
	return j.add(ctx, v, true)
}

func (j *Batcher[T]) add(ctx context.Context, v T, wantResult bool) (muster.Result, error) {
	switch {
	case !j.started.Load():
		return muster.Result{}, muster.ErrNotStarted
	case j.stopping.Load():
		return muster.Result{}, muster.ErrStopped
	}
	buf := encodings.Get().(*[]byte)
	data, err := j.c.Codec.Encode((*buf)[:0], v)
	if err != nil {
		encodings.Put(buf)
		return muster.Result{}, fmt.Errorf("journal: encoding the item: %w", err)
	}
	now := time.Now()
	id, err := j.c.Store.Append(ctx, data, now, j.overflow == muster.OverflowBlock)
	if cap(data) <= maxPooledEncoding {
		*buf = data[:0] // the Store kept no reference to data
	}
	encodings.Put(buf)
	if h := j.c.Hooks; h != nil && h.Appended != nil {
		safely(func() { h.Appended(time.Since(now), err) })
	}
	if err != nil {
		return muster.Result{}, j.appendFailed(ctx, v, now, err, wantResult)
	}
	item := Item[T]{ID: id, Value: v, Accepted: now}
	j.unfinished.Add(1) // before the batcher may finish it
	var r muster.Result
	if wantResult {
		r, err = j.inner.AddResult(ctx, item)
	} else {
		err = j.inner.Add(ctx, item)
	}
	if err != nil {
		j.finish(id)
		return muster.Result{}, err
	}
	return r, nil
}

// encodings pools the buffers Add encodes items into (a *[]byte each): a
// Store keeps no reference to Append's data once Append returns.
var encodings = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledEncoding is the capacity above which an encoding buffer is left
// to the garbage collector rather than pooled, so that one large item does
// not keep its buffer alive.
const maxPooledEncoding = 64 << 10

// appendFailed applies the Overflow policy to an item the Store had no
// room for, and returns Add's error.
func (j *Batcher[T]) appendFailed(ctx context.Context, v T, now time.Time, err error, wantResult bool) error {
	if !errors.Is(err, ErrFull) {
		return err
	}
	switch j.overflow {
	case muster.OverflowDropNewest, muster.OverflowDropOldest:
		j.deadLetterUser(ctx, []Item[T]{{Value: v, Accepted: now}}, muster.ErrDropped)
		if wantResult {
			return muster.ErrDropped
		}
		return nil
	}
	return fmt.Errorf("%w: %w", muster.ErrFull, err)
}

// fireBatch is the batcher's Fire: it dead-letters the expired items (by
// returning ErrExpired for them), calls the user's Fire with the others,
// and finishes the delivered ones.
func (j *Batcher[T]) fireBatch(ctx context.Context, items []Item[T]) error {
	now := time.Now()
	stale := func(it *Item[T]) bool { return j.c.MaxItemAge > 0 && now.Sub(it.Accepted) > j.c.MaxItemAge }
	live := items
	expired := 0
	for i := range items {
		if stale(&items[i]) {
			expired++
		}
	}
	if expired == len(items) {
		return ErrExpired // deadLetter receives them all
	}
	if expired > 0 {
		live = make([]Item[T], 0, len(items)-expired)
		for i := range items {
			if !stale(&items[i]) {
				live = append(live, items[i])
			}
		}
	}
	err := j.fire(ctx, live)
	ie, _ := errors.AsType[*muster.ItemErrors](err)
	if ie != nil && len(ie.Errs) != len(live) {
		ie = nil // the whole batch's error
	}
	if expired == 0 {
		j.finishDelivered(items, err, ie)
		return err
	}
	// The outcome over the whole batch: ErrExpired for the expired items,
	// each live item's own error for the others.
	errs := make([]error, len(items))
	k := 0
	for i := range items {
		switch {
		case stale(&items[i]):
			errs[i] = ErrExpired
			continue
		case ie != nil:
			errs[i] = ie.Errs[k]
		default:
			errs[i] = err
		}
		k++
	}
	all := &muster.ItemErrors{Errs: errs}
	j.finishDelivered(items, nil, all)
	return all
}

// finishDelivered finishes the items err says were delivered: all of them
// when err is nil, those whose error in ie is nil otherwise.
func (j *Batcher[T]) finishDelivered(items []Item[T], err error, ie *muster.ItemErrors) {
	if ie == nil && err != nil {
		return
	}
	ids := make([]ID, 0, len(items))
	for i := range items {
		if ie == nil || ie.Errs[i] == nil {
			ids = append(ids, items[i].ID)
		}
	}
	j.finish(ids...)
}

// deadLetter is the batcher's DeadLetter: items whose outcome is final go
// to the user's, then are finished; items abandoned at a Shutdown deadline,
// or whose batch's context that deadline canceled, stay journaled.
func (j *Batcher[T]) deadLetter(ctx context.Context, items []Item[T], err error) {
	if errors.Is(err, muster.ErrIncomplete) || errors.Is(context.Cause(ctx), muster.ErrIncomplete) {
		return // kept for the next start: counted in unfinished
	}
	j.deadLetterUser(ctx, items, err)
	ids := make([]ID, len(items))
	for i := range items {
		ids[i] = items[i].ID
	}
	j.finish(ids...)
}

// deadLetterUser counts items whose outcome is not delivery and hands them
// to the user's DeadLetter.
func (j *Batcher[T]) deadLetterUser(ctx context.Context, items []Item[T], err error) {
	j.deadLetteredAdd(items, err)
	if h := j.c.Hooks; h != nil && h.DeadLettered != nil {
		safely(func() { h.DeadLettered(len(items), err) })
	}
	if dl := j.c.DeadLetter; dl != nil {
		safely(func() { dl(ctx, items, err) })
	}
}

func (j *Batcher[T]) deadLetteredAdd(items []Item[T], err error) {
	j.deadLettered.Add(uint64(len(items)))
	n := 0
	if ie, ok := errors.AsType[*muster.ItemErrors](err); ok && len(ie.Errs) == len(items) {
		for _, e := range ie.Errs {
			if errors.Is(e, ErrExpired) {
				n++
			}
		}
	} else if errors.Is(err, ErrExpired) {
		n = len(items)
	}
	j.expired.Add(uint64(n))
}

// finish marks items final in the Store. An item whose Finish fails stays
// journaled and is delivered again at the next start.
func (j *Batcher[T]) finish(ids ...ID) {
	if len(ids) == 0 {
		return
	}
	j.unfinished.Add(-int64(len(ids)))
	if err := j.c.Store.Finish(ids...); err != nil {
		j.finishFails.Add(uint64(len(ids)))
	}
}

// replay hands the Store's unfinished records of earlier runs to the
// batcher, until they are all handed or ctx ends.
func (j *Batcher[T]) replay(ctx context.Context) {
	defer close(j.replayDone)
	err := j.c.Store.Recover(ctx, func(r Record) error {
		v, err := j.c.Codec.Decode(r.Data)
		item := Item[T]{ID: r.ID, Value: v, Accepted: r.Accepted, Replayed: true}
		if err != nil {
			j.deadLetterUser(ctx, []Item[T]{item}, fmt.Errorf("journal: decoding record %s: %w", r.ID, err))
			j.unfinished.Add(1)
			j.finish(r.ID)
			return nil
		}
		if l := j.c.ReplayLimiter; l != nil {
			if err := l.WaitN(ctx, 1); err != nil {
				return err
			}
		}
		j.unfinished.Add(1)
		err = j.replayAdd(ctx, item)
		switch {
		case err == nil:
		case ctx.Err() != nil || errors.Is(err, muster.ErrStopped):
			j.unfinished.Add(-1) // not taken: still journaled
			return err
		default: // this item can never be taken (a bad key, too large, a panic)
			j.deadLetterUser(ctx, []Item[T]{item}, err)
			j.finish(item.ID)
			return nil
		}
		j.replayed.Add(1)
		if h := j.c.Hooks; h != nil && h.Recovered != nil {
			safely(h.Recovered)
		}
		return nil
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, muster.ErrStopped) {
		j.replayErr = err
	}
}

// replayAdd adds a replayed item to the batcher. Refused as full under
// OverflowFail, or with every key busy, it waits for room as OverflowBlock
// would, until ctx ends.
func (j *Batcher[T]) replayAdd(ctx context.Context, item Item[T]) error {
	for {
		err := j.inner.Add(ctx, item)
		if !errors.Is(err, muster.ErrFull) && !errors.Is(err, muster.ErrTooManyKeys) {
			return err
		}
		select {
		case <-time.After(replayRetry):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// replayRetry is how long the replay waits before adding again an item an
// OverflowFail batcher refused as full.
const replayRetry = 10 * time.Millisecond

// Flush fires the open batches now and waits until every batch closed
// before the call is done, or ctx ends (see muster.Batcher.Flush): it
// covers the items Add and the replay handed to the batcher before the
// call, not the records the replay has yet to reach (wait for ReplayDone
// first to cover them too).
func (j *Batcher[T]) Flush(ctx context.Context) error {
	if !j.started.Load() {
		return muster.ErrNotStarted
	}
	return j.inner.Flush(ctx)
}

// Stop ends the replay, then stops the batcher: it fires the partial
// batches and returns when every batch is done, every item finished or
// dead-lettered.
func (j *Batcher[T]) Stop() error { return j.Shutdown(context.Background()) }

// Shutdown stops as Stop does but gives up when ctx ends, as
// muster.Batcher.Shutdown does, with one difference: nothing is lost. The
// items of batches abandoned at the deadline, and of in-flight batches
// whose context the deadline canceled (and that failed), stay in the Store
// for the next start; DeadLetter does not see them. The
// *muster.ShutdownError says how many items this run left unfinished in
// Kept: those, and those still in flight when Shutdown returned (a Fire
// that ignores its context may yet deliver and finish them). Records the
// replay had not reached stay journaled too; Stats.Store counts them. The
// Store stays open: close it once Shutdown returned (a batch still in
// flight then may find it closed: its items come back at the next start).
func (j *Batcher[T]) Shutdown(ctx context.Context) error {
	if !j.started.Load() {
		return muster.ErrNotStarted
	}
	j.stopping.Store(true)
	j.cancelReplay()
	select {
	case <-j.replayDone:
	case <-ctx.Done():
	}
	err := j.inner.Shutdown(ctx)
	if se, ok := errors.AsType[*muster.ShutdownError](err); ok {
		se.Kept = int(j.unfinished.Load())
	}
	return err
}

// Stats returns the counters of the batcher, the Store and the journal.
func (j *Batcher[T]) Stats() Stats {
	s := Stats{Replayed: j.replayed.Load(), DeadLettered: j.deadLettered.Load(), Expired: j.expired.Load(),
		FinishFailed: j.finishFails.Load(), Unfinished: int(j.unfinished.Load())}
	if j.inner != nil {
		s.Stats = j.inner.Stats()
	}
	if j.c.Store != nil {
		s.Store = j.c.Store.Stats()
	}
	select {
	case <-j.replayDone:
		s.ReplayDone, s.ReplayErr = true, j.replayErr
	default:
	}
	return s
}

func safely(f func()) {
	defer func() { _ = recover() }()
	f()
}
