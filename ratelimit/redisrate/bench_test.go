package redisrate_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"golang.org/x/time/rate"

	"github.com/musterhq/muster/ratelimit/redisrate"
)

// BenchmarkWaitN measures one WaitN(ctx, 10) (a batch of 10 items against a
// per-item quota) on one goroutine against a real local redis-server, and
// reports the round trips per batch (roundtrips/op). "idle": the quota never
// binds (1e8 items/s), so the figure is the limiter's own cost. "binding":
// 20,000 items/s, so batches wait for their tokens (ns/op is then the
// quota's pace, 500 µs per batch).
func BenchmarkWaitN(b *testing.B) {
	s := startRedis(b)
	// The floor: one bare go-redis round trip (PING) to the same server.
	b.Run("baseline/ping", func(b *testing.B) {
		c := s.Client(b)
		ctx := context.Background()
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Ping(ctx).Err(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(1, "roundtrips/op")
	})
	// The GCRA script itself: redis_rate's AllowN called directly.
	b.Run("baseline/redis_rate", func(b *testing.B) {
		rl := redis_rate.NewLimiter(s.Client(b))
		ctx := context.Background()
		lim := redis_rate.Limit{Rate: 1e8, Period: time.Second, Burst: 1e6}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := rl.AllowN(ctx, "baseline", lim, 10); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(1, "roundtrips/op")
	})
	for _, quota := range []struct {
		name  string
		limit rate.Limit
	}{{"idle", 1e8}, {"binding", 20_000}} {
		for _, lease := range []int{0, 1000} {
			b.Run(fmt.Sprintf("%s/lease=%d", quota.name, lease), func(b *testing.B) {
				c := s.Client(b)
				h := &countHook{}
				c.AddHook(h)
				l, err := redisrate.New(redisrate.Config{Client: c, Key: b.Name(), Limit: quota.limit, Burst: 1000, Lease: lease, Replicas: 1})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				ctx := context.Background()
				if err := l.WaitN(ctx, 10); err != nil { // load the script
					b.Fatal(err)
				}
				h.n.Store(0)
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					if err := l.WaitN(ctx, 10); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(h.n.Load())/float64(b.N), "roundtrips/op")
			})
		}
	}
}
