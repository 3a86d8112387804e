package muster_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/musterhq/muster/muster"
)

// A Keyed client batches per tenant: a batch never mixes tenants, each
// tenant's batches fill on their own, and all tenants share the in-flight
// limit.
func ExampleKeyed() {
	type event struct{ tenant, body string }
	var mu sync.Mutex
	var sent []string
	k := &muster.Keyed[string, event]{
		Key:                  func(e event) string { return e.tenant },
		MaxBatchSize:         2,
		MaxConcurrentBatches: 4, // for all tenants together
		MaxKeys:              100,
		Fire: func(ctx context.Context, events []event) error {
			tenant := events[0].tenant // a batch never mixes keys
			bodies := make([]string, len(events))
			for i, e := range events {
				bodies[i] = e.body
			}
			mu.Lock()
			defer mu.Unlock()
			sent = append(sent, tenant+": "+strings.Join(bodies, ","))
			return nil
		},
	}
	if err := k.Start(); err != nil {
		fmt.Println(err)
		return
	}
	ctx := context.Background()
	for _, e := range []event{{"acme", "a1"}, {"globex", "g1"}, {"acme", "a2"}, {"acme", "a3"}, {"globex", "g2"}, {"initech", "i1"}} {
		if err := k.Add(ctx, e); err != nil {
			fmt.Println(err)
		}
	}
	_ = k.Stop() // fires the partial batches: acme's a3, initech's i1
	slices.Sort(sent)
	for _, s := range sent {
		fmt.Println(s)
	}
	fmt.Println("keys:", k.Stats().Keys)
	// Output:
	// acme: a1,a2
	// acme: a3
	// globex: g1,g2
	// initech: i1
	// keys: 3
}
