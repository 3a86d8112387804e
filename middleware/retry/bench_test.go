package retry_test

import (
	"context"
	"testing"

	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

// nop is called through a FireFunc value in every benchmark, so that the
// direct call is not inlined away.
var nop muster.FireFunc[int] = func(context.Context, []int) error { return nil }

// The success path: one attempt that succeeds, against calling the FireFunc
// directly. The default budget costs a lock and a clock read per batch.
func BenchmarkSuccess(b *testing.B) {
	ctx := context.Background()
	items := make([]int, 100)
	for _, bc := range []struct {
		name string
		fire muster.FireFunc[int]
	}{
		{"direct", nop},
		{"retry", retry.New[int]()(nop)},
		{"retry-nobudget", retry.New[int](retry.WithBudget(nil))(nop)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.fire(ctx, items); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(bc.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := bc.fire(ctx, items); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// A batch of 100 whose first attempt rejects 10 items, retried (without a
// wait) and taken at the second: the partial path's cost per batch.
func BenchmarkPartial(b *testing.B) {
	ctx := context.Background()
	items := make([]int, 100)
	errs := make([]error, len(items))
	for i := 0; i < len(errs); i += 10 {
		errs[i] = errDown
	}
	first := &muster.ItemErrors{Errs: errs}
	n := 0
	fire := retry.New[int](retry.WithBudget(nil), retry.WithRand(func() float64 { return 0 }))(
		func(context.Context, []int) error {
			n++
			if n%2 == 1 {
				return first
			}
			return nil
		})
	b.ReportAllocs()
	for b.Loop() {
		if err := fire(ctx, items); err != nil {
			b.Fatal(err)
		}
	}
}
