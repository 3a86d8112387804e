package journal_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/muster"
)

// A journaled batcher: Fire writes each item under its ID (an upsert, so
// that a replayed item overwrites itself instead of doubling), and the
// item the database rejects for good reaches the dead-letter function
// instead of vanishing.
func Example() {
	dir, err := os.MkdirTemp("", "journal-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	log, err := journal.Open(dir, journal.LogOptions{}) // Synced: Add returns once fsync'd
	if err != nil {
		fmt.Println(err)
		return
	}
	defer log.Close()

	table := map[journal.ID]string{} // the database: upsert on the item's ID
	errEmpty := errors.New("empty name")
	b := journal.Wrap(&muster.Batcher[journal.Item[string]]{
		MaxBatchSize: 3,
		Fire: func(ctx context.Context, items []journal.Item[string]) error {
			errs := make([]error, len(items))
			for i, it := range items {
				if it.Value == "" {
					errs[i] = errEmpty
					continue
				}
				table[it.ID] = it.Value
			}
			return &muster.ItemErrors{Errs: errs} // nil where the row was written
		},
	}, journal.Config[string]{
		Store: log,
		Codec: journal.JSON[string](),
		DeadLetter: func(ctx context.Context, items []journal.Item[string], err error) {
			fmt.Printf("dead letter: %d item(s): %v\n", len(items), err)
		},
	})
	if err := b.Start(); err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"ada", "", "grace"} {
		if err := b.Add(context.Background(), name); err != nil {
			fmt.Println(err)
		}
	}
	if err := b.Stop(); err != nil {
		fmt.Println(err)
	}
	fmt.Println("rows:", len(table))
	fmt.Println("left in the journal:", log.Stats().Items)
	// Output:
	// dead letter: 1 item(s): muster: 1 of 1 item failed: empty name
	// rows: 2
	// left in the journal: 0
}
