package muster

import (
	"context"
	"errors"
	"fmt"
)

// More errors returned by the package. Compare with errors.Is.
var (
	// ErrFull is returned by Add under OverflowFail when the pending
	// capacity is used up. The item was not taken.
	ErrFull = errors.New("muster: pending work capacity full")

	// ErrDropped is the outcome of an item dropped to make room: the
	// incoming one under OverflowDropNewest (Add returns nil; hooks and its
	// Result see ErrDropped), or the oldest queued one under
	// OverflowDropOldest (hooks and its Result see ErrDropped).
	ErrDropped = errors.New("muster: item dropped to make room")

	// ErrTooLarge is returned by Add when an item's size alone passes
	// MaxBatchBytes. The item was not taken.
	ErrTooLarge = errors.New("muster: item larger than MaxBatchBytes")
)

// Overflow says what Add does when the pending capacity is used up: a batch
// waits for an in-flight slot and PendingWorkCapacity items are queued
// behind it. It does not apply to the Work channel, which keeps the seed's
// blocking semantics.
type Overflow uint8

// The overflow policies.
const (
	// OverflowBlock (the default) blocks Add until there is room or its
	// context ends.
	OverflowBlock Overflow = iota
	// OverflowFail makes Add return ErrFull at once; the item is not taken.
	OverflowFail
	// OverflowDropNewest drops the incoming item: Add returns nil, the
	// item counts in Stats.Refused, and the Added hook sees ErrDropped.
	OverflowDropNewest
	// OverflowDropOldest takes the incoming item and drops the oldest
	// queued one (the first item behind the batch waiting for a slot); it
	// counts in Stats.Dropped, the Added hook is called for it again with
	// ErrDropped, and its Result sees ErrDropped. With PendingWorkCapacity
	// 0 nothing is queued, and the incoming item is dropped instead. A batch
	// keeps its age when its first item is dropped, so its BatchTimeout still
	// counts from that item's arrival. Not available to a Client's Batch,
	// which already holds its items.
	OverflowDropOldest
)

// String returns the policy's name: block, fail, drop-newest, drop-oldest.
func (o Overflow) String() string {
	switch o {
	case OverflowBlock:
		return "block"
	case OverflowFail:
		return "fail"
	case OverflowDropNewest:
		return "drop-newest"
	case OverflowDropOldest:
		return "drop-oldest"
	}
	return fmt.Sprintf("Overflow(%d)", uint8(o))
}

// Result is the outcome of one item added with AddResult: it is done when
// the item's batch is done (after retries, when a retry middleware wraps
// Fire), when the item is dropped, or at once when it was refused.
type Result struct {
	done chan struct{}
	err  error
}

func newResult() *Result { return &Result{done: make(chan struct{})} }

// Done is closed when the outcome is known.
func (r *Result) Done() <-chan struct{} { return r.done }

// Err returns the item's outcome once Done is closed: nil when its batch
// succeeded, the batch's error, the item's own error from an *ItemErrors,
// ErrDropped, or the refusal's error. Before that it returns nil.
func (r *Result) Err() error {
	select {
	case <-r.done:
		return r.err
	default:
		return nil
	}
}

// Wait blocks until the outcome is known, and returns it, or until ctx ends,
// and returns ctx's error (the item stays in its batch).
func (r *Result) Wait(ctx context.Context) error {
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// complete sets the outcome; nil r is ignored.
func (r *Result) complete(err error) {
	if r == nil {
		return
	}
	r.err = err
	close(r.done)
}

// completeAll completes a batch's results with its outcome; an *ItemErrors
// gives each item its own.
func completeAll(results []*Result, err error) {
	var ie *ItemErrors
	if errors.As(err, &ie) && len(ie.Errs) == len(results) {
		for i, r := range results {
			r.complete(ie.Errs[i])
		}
		return
	}
	for _, r := range results {
		r.complete(err)
	}
}

// ItemErrors reports that only some items of a batch failed, for a bulk API
// that rejects 3 items of 100: a FireFunc returns it (a Batch passes it to
// DoneWith) with Errs index-aligned with the batch's items, nil where the
// item succeeded. Results see each item's own error. The batch counts as
// failed; telemetry counts only the failed items as such.
type ItemErrors struct {
	Errs []error
}

// Error summarises the failures.
func (e *ItemErrors) Error() string {
	n, first := 0, error(nil)
	for _, err := range e.Errs {
		if err != nil {
			if first == nil {
				first = err
			}
			n++
		}
	}
	return fmt.Sprintf("muster: %d of %d items failed: %v", n, len(e.Errs), first)
}

// Unwrap returns the non-nil item errors.
func (e *ItemErrors) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Failed counts the items that failed.
func (e *ItemErrors) Failed() int {
	n := 0
	for _, err := range e.Errs {
		if err != nil {
			n++
		}
	}
	return n
}
