package redisjournal_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
	"github.com/musterhq/muster/muster"
)

type Order struct {
	Tenant string
	Amount int
}

// upsertOrders writes a tenant's batch, deduplicating on the item IDs (an
// upsert keyed by it.ID), since a replayed item may have been written
// before.
func upsertOrders(ctx context.Context, items []journal.Item[Order]) error { return nil }

// A Keyed per tenant whose accepted orders survive the replica: each
// replica of the service runs this; when one dies, another delivers what it
// had accepted. (It needs a Redis server, so it is compiled, not run.)
func Example_keyed() {
	rdb := redisjournal.NewClient(&redis.Options{Addr: "redis:6379"})
	defer rdb.Close()
	store, err := redisjournal.Open(context.Background(), redisjournal.Options{Client: rdb, Name: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // after Stop

	orders := journal.WrapKeyed(&muster.Keyed[string, journal.Item[Order]]{
		Key:          func(it journal.Item[Order]) string { return it.Value.Tenant },
		MaxBatchSize: 100,
		BatchTimeout: 50 * time.Millisecond,
		Fire:         upsertOrders,
	}, journal.Config[Order]{Store: store, Codec: journal.JSON[Order]()})
	if err := orders.Start(); err != nil { // also takes over dead replicas' orders, until Stop
		log.Fatal(err)
	}
	defer orders.Stop()

	// nil: the order is in Redis, and will be written by this replica or,
	// if it dies, by another.
	if err := orders.Add(context.Background(), Order{Tenant: "acme", Amount: 42}); err != nil {
		log.Print(err) // not accepted: Redis is unavailable
	}
}
