package muster

import (
	"context"
	"errors"
	"fmt"
)

// Result is the outcome of one item added with AddResult: done when the
// item's batch is done (after a retry middleware's retries), or the batch it
// was dropped from is; at once for an item dropped as the newest. It is a
// small value: copy it freely. The zero Result is done, with no error.
type Result struct {
	o *outcome
	i int32 // the item's slot in its batch's outcome
}

// outcome is a batch's results.
type outcome struct {
	done chan struct{}
	err  error   // the batch's error
	errs []error // per slot, once an item was dropped or failed alone
}

var (
	closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()
	// droppedOutcome is the Result of an item dropped as the newest.
	droppedOutcome = &outcome{done: closedChan, err: ErrDropped}
)

// Done is closed when the outcome is known.
func (r Result) Done() <-chan struct{} {
	if r.o == nil {
		return closedChan
	}
	return r.o.done
}

// Err returns the item's outcome once Done is closed (before, nil): nil
// when its batch succeeded, the batch's error, the item's own from an
// *ItemErrors, ErrDropped, or ErrIncomplete.
func (r Result) Err() error {
	if r.o == nil {
		return nil
	}
	select {
	case <-r.o.done:
		if r.o.errs != nil {
			return r.o.errs[r.i]
		}
		return r.o.err
	default:
		return nil
	}
}

// Wait blocks until the outcome is known and returns it. If ctx ends first
// it returns an error matching ErrWaitCanceled and ctx's error: the item
// stays in its batch. A nil ctx gets ErrNilContext.
func (r Result) Wait(ctx context.Context) error {
	if ctx == nil {
		return ErrNilContext
	}
	select {
	case <-r.Done():
		return r.Err()
	case <-ctx.Done():
		select {
		case <-r.Done(): // both ready: the outcome wins
			return r.Err()
		default:
		}
		return fmt.Errorf("%w: %w", ErrWaitCanceled, ctx.Err())
	}
}

// result returns the Result of the item that just joined b, as its last.
func (b *batch[K, T]) result() Result {
	if b.res == nil {
		b.res = &outcome{done: make(chan struct{})}
	}
	return Result{o: b.res, i: b.joined() - 1}
}

// joined counts the items that ever joined b: those in it and those
// dropped from it.
func (b *batch[K, T]) joined() int32 { return int32(b.n) + b.left }

// slot returns the outcome slot of b's k-th item: items leave a batch only
// from its front, so the k-th item present joined (left+k)-th.
func (b *batch[K, T]) slot(k int) int32 {
	return b.left + int32(k)
}

// setSlot records err for slot s.
func (o *outcome) setSlot(s int32, err error, slots int32) {
	if o.errs == nil {
		o.errs = make([]error, slots)
	}
	for int32(len(o.errs)) < slots {
		o.errs = append(o.errs, nil)
	}
	o.errs[s] = err
}

// complete sets the outcome of b's items: err, or each item's own from an
// *ItemErrors as long as the batch.
func (b *batch[K, T]) complete(err error) {
	o := b.res
	if o == nil {
		return
	}
	var ie *ItemErrors
	if errors.As(err, &ie) && len(ie.Errs) == b.n {
		for k := range b.n {
			o.setSlot(b.slot(k), ie.Errs[k], b.joined())
		}
	} else if o.errs != nil {
		for k := range b.n {
			o.setSlot(b.slot(k), err, b.joined())
		}
	}
	o.err = err
	close(o.done)
}
