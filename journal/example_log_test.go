package journal_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/musterhq/muster/journal"
)

// A Log keeps items until they are finished: after a restart, Recover hands
// back those that were not.
func ExampleOpen() {
	dir, err := os.MkdirTemp("", "journal-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	log, err := journal.Open(dir, journal.LogOptions{}) // Synced: each Append is fsync'd (in group commits)
	if err != nil {
		panic(err)
	}
	var ids []journal.ID
	for _, item := range []string{"order-1", "order-2", "order-3"} {
		id, err := log.Append(ctx, []byte(item), time.Now(), true)
		if err != nil {
			panic(err)
		}
		ids = append(ids, id)
	}
	// order-2 was delivered: it is finished and never recovered again.
	if err := log.Finish(ids[1]); err != nil {
		panic(err)
	}
	log.Close() // or a crash: nothing whose Append returned is lost

	log, err = journal.Open(dir, journal.LogOptions{})
	if err != nil {
		panic(err)
	}
	defer log.Close()
	err = log.Recover(ctx, func(r journal.Record) error {
		fmt.Printf("recovered %s (same ID: %v)\n", r.Data, r.ID == ids[0] || r.ID == ids[2])
		return nil
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("unfinished:", log.Stats().Items)
	// Output:
	// recovered order-1 (same ID: true)
	// recovered order-3 (same ID: true)
	// unfinished: 2
}
