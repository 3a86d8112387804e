package muster_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/musterhq/muster/muster"
)

// A loud tenant is held at MaxPendingPerKey while the others' items are
// still taken, and TopKeys names it: what a dashboard's top-k panel shows.
// Here the downstream is stuck (one slot, taken), so batches wait.
func ExampleKeyed_TopKeys() {
	type event struct{ tenant string }
	release := make(chan struct{})
	k := &muster.Keyed[string, event]{
		Key:                  func(e event) string { return e.tenant },
		MaxBatchSize:         10,
		MaxConcurrentBatches: 1,
		PendingWorkCapacity:  100, // shared by all tenants
		MaxPendingPerKey:     20,  // one tenant's share
		Overflow:             muster.OverflowFail,
		Fire: func(ctx context.Context, events []event) error {
			<-release
			return nil
		},
	}
	if err := k.Start(); err != nil {
		panic(err)
	}
	ctx := context.Background()
	full := 0
	for range 100 {
		if err := k.Add(ctx, event{"loud"}); errors.Is(err, muster.ErrFull) {
			full++
		}
	}
	for _, tenant := range []string{"a", "b", "a"} {
		if err := k.Add(ctx, event{tenant}); err != nil {
			fmt.Println(tenant, err)
		}
	}
	fmt.Println("loud items refused:", full)
	for _, s := range k.TopKeys(3) {
		fmt.Printf("%s: %d pending, %d batches waiting, %d in flight\n", s.Key, s.Pending, s.Waiting, s.InFlight)
	}
	close(release)
	if err := k.Stop(); err != nil {
		panic(err)
	}
	// Output:
	// loud items refused: 70
	// loud: 20 pending, 2 batches waiting, 1 in flight
	// a: 2 pending, 0 batches waiting, 0 in flight
	// b: 1 pending, 0 batches waiting, 0 in flight
}
