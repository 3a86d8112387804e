package retry

import (
	"math"
	"sync"
	"time"
)

// The budget counts attempts over a sliding window of budgetWindow, kept as
// budgetSlots buckets, as Finagle's RetryBudget does with its ttl.
const (
	budgetWindow = 10 * time.Second
	budgetSlots  = 10
	budgetSlot   = budgetWindow / budgetSlots
)

// Budget caps retries as a share of the load, so that a failing downstream
// is not hammered by every batch retrying at once: over the last 10 seconds,
// retries may number at most
//
//	ratio × (batches started) + minPerSecond × 10
//
// Each batch's first attempt deposits ratio of a retry; each retry
// withdraws one. A retry the budget refuses is not made: the middleware
// gives up with an error matching ErrBudgetExhausted. The minPerSecond term
// is a reserve that lets a quiet client retry at all (it may be spent in one
// burst). This is Finagle's RetryBudget (its defaults: ratio 0.2, 10 per
// second, a 10 s window) and the idea behind gRPC's retry throttling.
//
// A Budget is safe for concurrent use. Pass one Budget to several New calls
// (for several batchers talking to one downstream) to share it. The zero
// value allows no retries; make one with NewBudget.
type Budget struct {
	ratio   float64
	reserve float64

	mu    sync.Mutex
	slots [budgetSlots]budgetBucket
}

type budgetBucket struct {
	epoch    int64 // which budgetSlot-long interval of time the counts are for
	deposits int   // first attempts
	retries  int   // withdrawals
}

// NewBudget returns a Budget that lets retries add at most ratio (0.2 is
// 20%) of the batches started to the load, plus minPerSecond retries a
// second whatever the load. Negative values count as zero.
func NewBudget(ratio, minPerSecond float64) *Budget {
	return &Budget{
		ratio:   math.Max(ratio, 0),
		reserve: math.Max(minPerSecond, 0) * budgetWindow.Seconds(),
	}
}

// Balance returns how many retries the budget would allow now.
func (b *Budget) Balance() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.balanceLocked(time.Now())
}

// deposit records a batch's first attempt.
func (b *Budget) deposit(now time.Time) {
	b.mu.Lock()
	b.bucketLocked(now).deposits++
	b.mu.Unlock()
}

// withdraw takes one retry from the budget, if it allows one.
func (b *Budget) withdraw(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.balanceLocked(now) < 1 {
		return false
	}
	b.bucketLocked(now).retries++
	return true
}

// bucketLocked returns the bucket for now, emptied if it held an older
// interval.
func (b *Budget) bucketLocked(now time.Time) *budgetBucket {
	epoch := now.UnixNano() / int64(budgetSlot)
	s := &b.slots[uint64(epoch)%budgetSlots]
	if s.epoch != epoch {
		*s = budgetBucket{epoch: epoch}
	}
	return s
}

func (b *Budget) balanceLocked(now time.Time) int {
	epoch := now.UnixNano() / int64(budgetSlot)
	deposits, retries := 0, 0
	for i := range b.slots {
		if s := &b.slots[i]; s.epoch > epoch-budgetSlots && s.epoch <= epoch {
			deposits += s.deposits
			retries += s.retries
		}
	}
	return int(math.Floor(b.reserve+b.ratio*float64(deposits))) - retries
}
