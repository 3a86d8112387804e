package redisjournal_test

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal/redisjournal"
)

// BenchmarkAppend measures one replica appending 100-byte items from 64
// goroutines to a local redis-server, without persistence ("none") and with
// appendfsync always ("aof-always"): "group" is Store.Append (group commit:
// one MULTI/EXEC pipeline per group), "xadd" the same XADDs made one round
// trip per item, for the paired ratio. It reports items/s and items per
// round trip. A round is one run (-count would run each sub-benchmark's
// rounds back to back, pairing nothing):
//
//	cd journal/redisjournal && for r in 1 2 3; do go test -run '^$' -bench Append -benchtime 2s; done
func BenchmarkAppend(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchAppend(b, false) })
	b.Run("aof-always", func(b *testing.B) { benchAppend(b, true) })
}

func benchAppend(b *testing.B, aof bool) {
	srv := startRedis(b, aof)
	rdb := redisjournal.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 64})
	b.Cleanup(func() { rdb.Close() })
	data := make([]byte, 100)
	par := max(1, 64/runtime.GOMAXPROCS(0))
	ctx := context.Background()

	b.Run("group", func(b *testing.B) {
		s := open(b, rdb, "bench")
		before := s.Stats()
		b.SetParallelism(par)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Append(ctx, data, time.Now(), true); err != nil {
					b.Error(err)
					return
				}
			}
		})
		el := time.Since(start)
		st := s.Stats()
		groups := st.Syncs - before.Syncs
		b.ReportMetric(float64(b.N)/el.Seconds(), "items/s")
		b.ReportMetric(float64(b.N)/float64(groups), "items/roundtrip")
		b.ReportMetric(float64((st.SyncTime-before.SyncTime).Microseconds())/float64(groups), "µs/roundtrip")
	})
	b.Run("xadd", func(b *testing.B) {
		b.SetParallelism(par)
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: "bench:xadd", Values: []any{"d", data, "a", "0"}}).Err(); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "items/s")
		b.ReportMetric(1, "items/roundtrip")
	})
}
