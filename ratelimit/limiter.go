package ratelimit

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// A Limiter is a token bucket of size burst refilled at limit tokens per second,
// built on [rate.Limiter], for callers that wait: batches per second (WaitN(ctx,
// 1) per batch) or items per second (WaitN(ctx, len(items))). It differs from a
// bare *rate.Limiter where batches need it to:
//
//   - WaitN accepts any n, also n larger than the burst (see below); a
//     *rate.Limiter returns an error instead.
//   - [Limiter.SetLimit] and [Limiter.SetBurst] reschedule a caller that is
//     already waiting; with a *rate.Limiter it keeps the delay computed under
//     the old configuration (so raising the limit, even to [rate.Inf], would not
//     release it).
//   - Waiters are served first come, first served, so a large request is not
//     starved by a stream of small ones (which, in turn, queue behind it).
//   - Cancellation returns the tokens and reports context.Cause(ctx).
//   - [Wait] reports how long a call waited.
//
// Limit semantics follow x/time/rate: [rate.Inf] means unlimited (burst is then
// ignored and WaitN never blocks nor takes a lock); a limit of zero (or less)
// refills nothing, so once the tokens in the bucket are spent WaitN blocks until
// the limit is raised or ctx is done: SetLimit(0) pauses the flow and
// SetLimit(r) resumes it. A burst of zero (or less) with a finite limit likewise
// blocks every caller. The bucket starts full.
//
// A request for n tokens, n larger than the burst, is served on credit: it waits
// until the bucket has produced n tokens (it may run the bucket below zero, as
// reservations do), so it is neither refused nor split into separately-queued
// parts, and the long-run rate is exactly the limit. Starting from a full bucket
// of b tokens at limit r, n tokens take (n-b)/r. Such a request still lets more
// than burst events through at one instant, which is what the caller asked for;
// keep the burst at least as large as the usual request (for an item limit, the
// batch size) if that matters downstream.
//
// One Limiter shared by several clients enforces one quota for all of them. The
// zero value is a valid Limiter with limit 0 and burst 0: it blocks every caller
// until SetLimit and SetBurst open it, with an empty bucket that then fills at
// the limit (or until SetLimit(rate.Inf)). A Limiter must
// not be copied after first use. A Limiter is safe for simultaneous use by
// multiple goroutines.
type Limiter struct {
	// limitBits mirrors limit (math.Float64bits) so that an unlimited WaitN
	// needs no lock.
	limitBits atomic.Uint64

	mu    sync.Mutex
	lim   *rate.Limiter // nil until first used; owned: nobody else reserves from it
	limit rate.Limit
	burst int // as set by the user
	// effBurst is lim's burst: burst, raised to the head's n while a head
	// asking for more than burst waits (see syncBurstLocked).
	effBurst int
	// queue holds the callers that could not proceed at once, oldest first.
	// Only queue[0], the head, ever holds a reservation, so it is always the
	// last one lim made and cancelling it returns its tokens exactly
	// (x/time/rate only partly restores a reservation that others were made
	// after).
	queue []*waiter
}

// waiter is one blocked WaitN call. All fields but wake are guarded by
// Limiter.mu.
type waiter struct {
	n       int
	r       *rate.Reservation // the head's reservation; nil otherwise
	at      time.Time         // when r is due
	granted bool              // the tokens are the caller's: it may proceed
	wake    chan struct{}     // capacity 1; signalled when the fields above change
}

// NewLimiter returns a Limiter that allows events at up to r per second with
// bursts of at most b, starting with a full bucket of b tokens. [rate.Inf]
// means no limit; see [Limiter] for zero and n > b. Use [rate.Every] to give
// r as an interval (rate.Every(100*time.Millisecond) is 10 per second).
func NewLimiter(r rate.Limit, b int) *Limiter {
	r = sanitize(r)
	l := &Limiter{lim: rate.NewLimiter(r, b), limit: r, burst: b, effBurst: b}
	l.limitBits.Store(math.Float64bits(float64(r)))
	return l
}

// sanitize maps NaN, which x/time/rate would treat as no limit, to 0.
func sanitize(r rate.Limit) rate.Limit {
	if r != r {
		return 0
	}
	return r
}

// Limit returns the current maximum rate of events per second.
func (l *Limiter) Limit() rate.Limit {
	return rate.Limit(math.Float64frombits(l.limitBits.Load()))
}

// Burst returns the current bucket size.
func (l *Limiter) Burst() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.burst
}

// WaitN blocks until n events may happen or ctx is done. It returns nil at
// once when n <= 0 or the limit is [rate.Inf]. When ctx is done first it gives
// the tokens it had reserved back (to the callers queued after it) and returns
// context.Cause(ctx), which matches ctx.Err() with [errors.Is]. It does not
// fail early because ctx's deadline is nearer than the expected delay (as
// *rate.Limiter does), since a concurrent SetLimit may shorten that delay.
//
// Use [Wait] to also learn how long the call waited.
func (l *Limiter) WaitN(ctx context.Context, n int) error {
	_, err := l.wait(ctx, n)
	return err
}

// wait implements WaitN and reports the time waited.
func (l *Limiter) wait(ctx context.Context, n int) (time.Duration, error) {
	if n <= 0 {
		return 0, nil
	}
	select {
	case <-ctx.Done():
		return 0, context.Cause(ctx)
	default:
	}
	if rate.Limit(math.Float64frombits(l.limitBits.Load())) == rate.Inf {
		return 0, nil
	}

	start := time.Now()
	l.mu.Lock()
	// Fast path: nobody is queued (so taking tokens jumps no queue) and the
	// bucket holds enough.
	if len(l.queue) == 0 && l.lim != nil && n <= l.burst && l.lim.AllowN(start, n) {
		l.mu.Unlock()
		return 0, nil
	}
	l.ensureLocked()
	w := &waiter{n: n, wake: make(chan struct{}, 1)}
	l.queue = append(l.queue, w)
	if len(l.queue) == 1 {
		l.promoteLocked(start)
	}
	l.mu.Unlock()

	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		l.mu.Lock()
		now := time.Now()
		if l.settleLocked(w, now) {
			l.mu.Unlock()
			return now.Sub(start), nil
		}
		var due <-chan time.Time
		if w.r != nil {
			d := w.at.Sub(now)
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			due = timer.C
		}
		l.mu.Unlock()

		select {
		case <-due:
		case <-w.wake:
		case <-ctx.Done():
			l.mu.Lock()
			now := time.Now()
			if l.settleLocked(w, now) {
				// The tokens became ours at this very moment: they are
				// spent, so let the caller use them.
				l.mu.Unlock()
				return now.Sub(start), nil
			}
			l.abandonLocked(w, now)
			l.mu.Unlock()
			return now.Sub(start), context.Cause(ctx)
		}
	}
}

// settleLocked reports whether w may proceed, granting it if it is the head
// and its reservation is due.
func (l *Limiter) settleLocked(w *waiter, now time.Time) bool {
	if w.granted {
		return true
	}
	if w.r != nil && !w.at.After(now) {
		l.grantHeadLocked()
		l.promoteLocked(now)
		return true
	}
	return false
}

// SetLimit changes the rate, at once for callers already waiting: the first
// in line gets its reserved tokens back and reserves them again under the new
// limit, keeping the tokens accumulated so far (the others reserve when their
// turn comes). [rate.Inf] releases every waiter; 0 pauses them (see
// [Limiter]).
func (l *Limiter) SetLimit(r rate.Limit) {
	r = sanitize(r)
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.ensureLocked()
	l.unreserveLocked(now)
	l.lim.SetLimitAt(now, r)
	l.limit = r
	l.limitBits.Store(math.Float64bits(float64(r)))
	l.promoteLocked(now)
}

// SetBurst changes the bucket size. Tokens above the new size are dropped and
// raising it adds none, so a caller already waiting keeps its place and its
// schedule, except that a burst of zero (or less) pauses it (see [Limiter]).
func (l *Limiter) SetBurst(b int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	l.ensureLocked()
	l.burst = b
	if b <= 0 {
		l.unreserveLocked(now)
	}
	l.promoteLocked(now) // applies b to lim
}

// ensureLocked creates lim for a zero Limiter: limit 0, burst 0 and so an
// empty bucket that fills once a limit and a burst are set, as with
// rate.Limiter's zero value.
func (l *Limiter) ensureLocked() {
	if l.lim == nil {
		l.lim = rate.NewLimiter(l.limit, l.burst)
		l.effBurst = l.burst
	}
}

// unreserveLocked leaves no reservation outstanding before a configuration
// change: it grants the head if its reservation is due and cancels it
// otherwise.
func (l *Limiter) unreserveLocked(now time.Time) {
	if len(l.queue) == 0 || l.queue[0].r == nil {
		return
	}
	if h := l.queue[0]; !h.at.After(now) {
		l.grantHeadLocked()
	} else {
		h.r.CancelAt(now)
		h.r = nil
	}
}

// syncBurstLocked gives lim the burst it needs: the user's, or the head's n
// when that is larger (and the user's is positive). rate.Limiter neither
// reserves more than its burst nor keeps more tokens than that, so a request
// for more than the burst raises it while it is first in line: it can then
// reserve its n tokens at once, on credit, and keeps the tokens it has
// accumulated when SetLimit makes it reserve again. The tokens it leaves
// behind are capped to the user's burst when it is gone.
func (l *Limiter) syncBurstLocked(now time.Time) {
	b := l.burst
	if b > 0 && len(l.queue) > 0 && l.queue[0].n > b {
		b = l.queue[0].n
	}
	if b != l.effBurst {
		l.lim.SetBurstAt(now, b)
		l.effBurst = b
	}
}

// promoteLocked gives the head of the queue its reservation, granting heads
// whose tokens are available at once, until the head has to wait (or the queue
// is empty). It wakes every waiter whose state it changed.
func (l *Limiter) promoteLocked(now time.Time) {
	for {
		l.syncBurstLocked(now)
		if len(l.queue) == 0 {
			return
		}
		h := l.queue[0]
		if h.r != nil {
			return
		}
		switch {
		case l.limit == rate.Inf:
			l.grantHeadLocked()
			continue
		case !(l.limit > 0) || l.burst <= 0:
			// Closed: no refill, or no bucket. Only tokens already in
			// the bucket can serve the head; otherwise it waits for
			// SetLimit or SetBurst.
			if h.n <= l.effBurst && l.lim.AllowN(now, h.n) {
				l.grantHeadLocked()
				continue
			}
			return
		}
		h.r = l.lim.ReserveN(now, h.n) // h.n <= effBurst
		if !h.r.OK() {                 // cannot happen: n <= burst, no deadline
			h.r = nil
			return
		}
		h.at = now.Add(h.r.DelayFrom(now))
		if !h.at.After(now) {
			l.grantHeadLocked()
			continue
		}
		signal(h) // it has a reservation now: let it arm its timer
		return
	}
}

// grantHeadLocked lets the head proceed: its tokens are spent. The caller
// must promote the next one.
func (l *Limiter) grantHeadLocked() {
	h := l.queue[0]
	l.queue[0] = nil
	l.queue = l.queue[1:]
	if len(l.queue) == 0 {
		l.queue = nil
	}
	h.r = nil
	h.granted = true
	signal(h)
}

// abandonLocked removes w, whose context is done, from the queue. If it was
// the head, its reservation is cancelled, which returns all its tokens because
// it is the only outstanding one, and the next caller is promoted.
func (l *Limiter) abandonLocked(w *waiter, now time.Time) {
	i := slices.Index(l.queue, w)
	if i < 0 {
		return
	}
	if w.r != nil {
		w.r.CancelAt(now)
		w.r = nil
	}
	l.queue = slices.Delete(l.queue, i, i+1)
	if i == 0 {
		l.promoteLocked(now)
	}
}

func signal(w *waiter) {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}
