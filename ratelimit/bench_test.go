package ratelimit_test

import (
	"context"
	"testing"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit"
)

// The cost of WaitN when it never blocks, which is what a middleware pays per
// batch when the limit is not binding: unlimited (rate.Inf), or a bucket too
// large to run dry. x/time/rate's own Limiter is the baseline.
func BenchmarkWaitNIdle(b *testing.B) {
	const huge = 1 << 40 // tokens per second and burst: never runs dry
	waiters := []struct {
		name string
		new  func() ratelimit.Waiter
	}{
		{"Limiter/inf", func() ratelimit.Waiter { return ratelimit.NewLimiter(rate.Inf, 0) }},
		{"Limiter/hugeburst", func() ratelimit.Waiter { return ratelimit.NewLimiter(huge, huge) }},
		{"Adaptive/hugeburst", func() ratelimit.Waiter {
			a, err := ratelimit.NewAdaptive(ratelimit.AdaptiveConfig{Max: huge, Burst: huge})
			if err != nil {
				b.Fatal(err)
			}
			return a
		}},
		{"rate.Limiter/inf", func() ratelimit.Waiter { return rate.NewLimiter(rate.Inf, 0) }},
		{"rate.Limiter/hugeburst", func() ratelimit.Waiter { return rate.NewLimiter(huge, huge) }},
	}
	ctx := context.Background()
	for _, w := range waiters {
		b.Run(w.name, func(b *testing.B) {
			lim := w.new()
			b.ReportAllocs()
			for b.Loop() {
				if err := lim.WaitN(ctx, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(w.name+"/Wait", func(b *testing.B) {
			lim := w.new()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ratelimit.Wait(ctx, lim, 1); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(w.name+"/parallel", func(b *testing.B) {
			lim := w.new()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := lim.WaitN(ctx, 1); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
