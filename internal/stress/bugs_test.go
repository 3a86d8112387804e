package stress

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

// Reproductions of library bugs the stress test ran into. Each is skipped
// until the library is fixed; the stress test steers around them (see the
// comments where it does).

// A FireFunc wrapped by retry.New delivers item 0 and fails item 1 (a
// *muster.ItemErrors), then panics on the retry of item 1. The panic escapes
// the middleware, the core fails the whole batch with a *muster.PanicError,
// and item 0's Result (and the metrics: muster.item.processed{error.type=panic})
// say it failed, though it was delivered. retry's doc promises "nil for an
// item that succeeded" once an attempt reported per-item errors.
func TestBugRetryPanicAfterPartial(t *testing.T) {
	t.Skip("bug: retry lets a panic of a later attempt fail items an earlier partial attempt delivered")
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		fire := retry.New[int](retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}))(
			func(ctx context.Context, items []int) error {
				calls++
				if calls == 1 {
					return &muster.ItemErrors{Errs: []error{nil, errors.New("busy")}}
				}
				panic("downstream panic")
			})
		b := &muster.Batcher[int]{MaxBatchSize: 2, Fire: fire}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		r0, _ := b.AddResult(context.Background(), 0)
		r1, _ := b.AddResult(context.Background(), 1)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := r0.Err(); err != nil {
			t.Errorf("item 0 was delivered by the first attempt; its Result says %v", err)
		}
		if err := r1.Err(); !errors.Is(err, muster.ErrPanic) {
			t.Errorf("item 1: %v, want a panic", err)
		}
	})
}

// muster.ErrTooManyKeys (Keyed) has no error.type of its own: otelmuster
// classes it by its Go type, "*errors.errorString", shared with any
// errors.New error, so that muster.item.added{error.type} cannot tell a
// refusal for too many keys from anything else.
func TestBugErrorTypeTooManyKeys(t *testing.T) {
	t.Skip("bug: otelmuster.ErrorType(muster.ErrTooManyKeys) is \"*errors.errorString\"")
	if got := otelmuster.ErrorType(muster.ErrTooManyKeys); got == "*errors.errorString" {
		t.Errorf("ErrorType(ErrTooManyKeys) = %q, want a class of its own (e.g. \"too_many_keys\")", got)
	}
}
