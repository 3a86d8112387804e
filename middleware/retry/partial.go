package retry

import (
	"errors"
	"time"

	"github.com/musterhq/muster/muster"
)

// partial is the state of a batch whose attempts report per-item errors
// (a *muster.ItemErrors): what each of the batch's items last got, and the
// items still to send.
type partial[T any] struct {
	// final holds each original item's latest error, index-aligned with the
	// batch's items: nil once it succeeded, the error that was not retried,
	// or the error of its last attempt.
	final []error
	// items are the items the next attempt sends, in their original order,
	// and idx their indices in the batch. Both are allocated once, at the
	// first partial failure, and compacted in place as items drop out: they
	// never share the caller's array.
	items []T
	idx   []int
	// hint is the largest delay hint among the errors of the items to
	// resend after the last attempt.
	hint time.Duration
}

// itemErrorsFor returns the *muster.ItemErrors in err's chain if it is
// aligned with n items, and nil otherwise.
func itemErrorsFor(err error, n int) *muster.ItemErrors {
	if ie, ok := errors.AsType[*muster.ItemErrors](err); ok && len(ie.Errs) == n {
		return ie
	}
	return nil
}

// permanentAbove reports whether err marks as Permanent the whole of ie it
// wraps, rather than one of ie's items: whether a *PermanentError sits on
// the single-error chain from err down to ie.
func permanentAbove(err error, ie *muster.ItemErrors) bool {
	for err != nil {
		switch e := err.(type) {
		case *muster.ItemErrors:
			if e == ie {
				return false
			}
		case *PermanentError:
			return true
		}
		err = errors.Unwrap(err)
	}
	return false
}

// retryable reports whether err may be retried: not marked Permanent and
// accepted by WithRetryIf.
func (c *config) retryable(err error) bool {
	return !IsPermanent(err) && (c.retryIf == nil || c.retryIf(err))
}

// newPartial starts the per-item tracking of a batch whose attempt over all
// its items failed with errs (index-aligned with items).
func newPartial[T any](c *config, items []T, errs []error) *partial[T] {
	p := &partial[T]{final: make([]error, len(items))}
	copy(p.final, errs) // the FireFunc may reuse its own slice
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	if failed == 0 {
		return p
	}
	p.idx = make([]int, 0, failed)
	for i, err := range errs {
		if err != nil && c.retryable(err) { // retryIf is called once per error
			p.idx = append(p.idx, i)
			p.hint = max(p.hint, hintOf(err))
		}
	}
	if len(p.idx) == 0 {
		return p
	}
	p.items = make([]T, len(p.idx))
	for j, i := range p.idx {
		p.items[j] = items[i]
	}
	return p
}

// update records the outcome of an attempt over p.items and keeps, in
// place, the items to resend. err applies item by item when it is a
// *muster.ItemErrors aligned with p.items, to every item sent otherwise.
func (p *partial[T]) update(c *config, err error) {
	ie := itemErrorsFor(err, len(p.items))
	retry := err != nil && (ie == nil || !permanentAbove(err, ie))
	p.hint = 0
	w := 0
	for j, i := range p.idx {
		e := err
		if ie != nil {
			e = ie.Errs[j]
		}
		p.final[i] = e
		if e != nil && retry && c.retryable(e) {
			p.items[w], p.idx[w] = p.items[j], i
			w++
			p.hint = max(p.hint, hintOf(e))
		}
	}
	clear(p.items[w:]) // drop references to items that are done
	p.items, p.idx = p.items[:w], p.idx[:w]
}

// giveUp wraps the error of each item still to send in an *Error with the
// reason, and returns the outcome.
func (p *partial[T]) giveUp(reason error, attempts int, elapsed time.Duration) error {
	for _, i := range p.idx {
		p.final[i] = &Error{Attempts: attempts, Elapsed: elapsed, Reason: reason, Last: p.final[i]}
	}
	clear(p.items)
	p.items, p.idx = p.items[:0], p.idx[:0]
	return p.outcome()
}

// outcome is nil if every item succeeded, and a *muster.ItemErrors over the
// batch's items otherwise.
func (p *partial[T]) outcome() error {
	for _, err := range p.final {
		if err != nil {
			return &muster.ItemErrors{Errs: p.final}
		}
	}
	return nil
}

// hintOf returns the delay hint err (or an error it wraps) carries, or 0.
func hintOf(err error) time.Duration {
	if h, ok := errors.AsType[retryAfter](err); ok {
		return max(h.RetryAfter(), 0)
	}
	return 0
}

// hintAfter returns the delay hint after an attempt that failed with err:
// the one err carries while the batch is retried as a whole (p nil), the
// largest among the items to resend otherwise.
func (p *partial[T]) hintAfter(err error) time.Duration {
	if p == nil {
		return hintOf(err)
	}
	return p.hint
}
