package redisrate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/middleware/throttle"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/ratelimit/redisrate"
)

type Row struct{ ID int }

func insertRows(ctx context.Context, rows []Row) error { return nil }

// Every replica of the service runs this: together they insert at most 600
// rows per second. (It needs a Redis server, so it is compiled, not run.)
func Example() {
	rdb := redisrate.NewClient(&redis.Options{Addr: "redis:6379"}) // ContextTimeoutEnabled, no retries
	defer rdb.Close()
	quota, err := redisrate.New(redisrate.Config{Client: rdb, Key: "orders-api", Limit: 600, Burst: 100})
	if err != nil {
		panic(err)
	}
	defer quota.Close()

	b := &muster.Batcher[Row]{
		MaxBatchSize: 100,
		BatchTimeout: 20 * time.Millisecond,
		Fire:         throttle.New[Row](quota, throttle.WithPerItem())(insertRows),
	}
	_ = b.Start()
	defer b.Stop()
}

// The modes are the values of the muster.ratelimit.mode attribute.
func ExampleMode() {
	for _, m := range []redisrate.Mode{redisrate.ModeShared, redisrate.ModeLocal, redisrate.ModeClosed} {
		fmt.Println(m)
	}
	// Output:
	// shared
	// local
	// closed
}
