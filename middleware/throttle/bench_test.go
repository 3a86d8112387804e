package throttle_test

import (
	"context"
	"testing"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit"
)

// nop is called through a FireFunc value in every benchmark, so that the
// direct call is not inlined away.
var nop muster.FireFunc[int] = func(context.Context, []int) error { return nil }

// An idle limiter (rate.Inf) against calling the FireFunc directly.
func BenchmarkIdle(b *testing.B) {
	ctx := context.Background()
	items := make([]int, 100)
	for _, bc := range []struct {
		name string
		fire muster.FireFunc[int]
	}{
		{"direct", nop},
		{"ratelimit.Limiter", throttle.New[int](ratelimit.NewLimiter(rate.Inf, 0), throttle.WithPerItem())(nop)},
		{"rate.Limiter", throttle.New[int](rate.NewLimiter(rate.Inf, 0), throttle.WithPerItem())(nop)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bc.fire(ctx, items); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
