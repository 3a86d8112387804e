//go:build !muster_journal_log

// Stands in for the Log until it is merged; then this file goes.

package journal_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/muster"
)

// A journaled batcher: Fire sees each item's ID (for an upsert that
// dedupes replays), and the item the database rejects for good reaches the
// dead-letter function instead of vanishing.
func Example() {
	store := newMemStore(0) // a Store: the embedded Log, or Redis
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
				fmt.Printf("upsert id=%s name=%s\n", it.ID, it.Value)
			}
			return &muster.ItemErrors{Errs: errs} // nil where the row was written
		},
	}, journal.Config[string]{
		Store: store,
		Codec: journal.JSON[string](),
		DeadLetter: func(ctx context.Context, items []journal.Item[string], err error) {
			fmt.Printf("dead letter: %d item(s), %s: %v\n", len(items), items[0].ID, err)
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
	fmt.Println("left in the journal:", b.Stats().Store.Items)
	// Output:
	// upsert id=r1-1 name=ada
	// upsert id=r1-3 name=grace
	// dead letter: 1 item(s), r1-2: muster: 1 of 1 item failed: empty name
	// left in the journal: 0
}
