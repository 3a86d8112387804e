package redisjournal_test

import (
	"context"
	"log"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
)

// Every replica of the service opens the same journal; Recover runs for the
// life of the replica, delivering the items of replicas that died. (It needs
// a Redis server, so it is compiled, not run.)
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	rdb := redisjournal.NewClient(&redis.Options{Addr: "redis:6379"})
	defer rdb.Close()
	store, err := redisjournal.Open(ctx, redisjournal.Options{Client: rdb, Name: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	deliver := func(r journal.Record) error {
		// Hand r.Data to the batcher (its Fire dedupes on r.ID), and
		// store.Finish(r.ID) once its outcome is final.
		return nil
	}
	go store.Recover(ctx, deliver)

	id, err := store.Append(ctx, []byte(`{"order":42}`), time.Now(), true)
	if err != nil {
		log.Fatal(err) // not accepted: Redis is unavailable
	}
	// ... once the item is written downstream:
	_ = store.Finish(id)
}
