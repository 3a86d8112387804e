package redisjournal_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/muster"
)

// order is the item of the layer test: a tenant's numbered order.
type order struct {
	Tenant string
	N      int
}

// wrapOrders is a muster.Keyed per tenant over the store, with the
// journal layer; one batch in flight at a time, so that Fire sees the
// order the items were handed in.
func wrapOrders(store journal.Store, fire muster.FireFunc[journal.Item[order]]) *journal.Batcher[order] {
	return journal.WrapKeyed(&muster.Keyed[string, journal.Item[order]]{
		Key:                  func(it journal.Item[order]) string { return it.Value.Tenant },
		MaxBatchSize:         10,
		BatchTimeout:         5 * time.Millisecond,
		MaxConcurrentBatches: 1,
		PendingWorkCapacity:  100, // the accepted items wait while the database hangs
		Fire:                 fire,
	}, journal.Config[order]{Store: store, Codec: journal.JSON[order]()})
}

// The layer over a muster.Keyed on this store: a replica whose database is
// stuck dies with its accepted items journaled; another replica's journaled
// Keyed takes them over and delivers every one, with the IDs the dead
// replica's Appends returned, in order per tenant, and finishes them.
func TestLayerTakeover(t *testing.T) {
	srv := startRedis(t, false)
	rdb := srv.Client(t)

	storeA := open(t, rdb, "layer")
	stuck := make(chan struct{})
	a := wrapOrders(storeA, func(ctx context.Context, items []journal.Item[order]) error {
		<-stuck // the database hangs: nothing is delivered
		return nil
	})
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(stuck)
		_ = a.Stop() // its finishes fail: its store is gone
	})
	const perTenant = 20
	for n := range perTenant {
		for _, tenant := range []string{"acme", "globex", "initech"} {
			if err := a.Add(context.Background(), order{tenant, n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	storeA.Abandon() // the replica is SIGKILLed: no goodbye

	storeB := open(t, rdb, "layer")
	var mu sync.Mutex
	got := map[string][]int{}
	ids := map[journal.ID]bool{}
	b := wrapOrders(storeB, func(ctx context.Context, items []journal.Item[order]) error {
		mu.Lock()
		defer mu.Unlock()
		for _, it := range items {
			if !it.Replayed || !strings.HasPrefix(string(it.ID), storeA.Replica()+"/") {
				return fmt.Errorf("item %+v: not a replayed item of the dead replica", it)
			}
			got[it.Value.Tenant] = append(got[it.Value.Tenant], it.Value.N)
			ids[it.ID] = true
		}
		return nil
	})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	waitFor(t, 10*time.Second, "the takeover's delivery", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(ids) == 3*perTenant
	})
	mu.Lock()
	for tenant, ns := range got {
		for i, n := range ns {
			if n != i {
				t.Fatalf("%s delivered %v: not every order once, in order", tenant, ns)
			}
		}
	}
	mu.Unlock()
	waitFor(t, 5*time.Second, "the delivered items finished and the dead stream deleted", func() bool {
		n, _ := rdb.Exists(context.Background(), "muster:journal:{layer}:s:"+storeA.Replica()).Result()
		return n == 0
	})
	if st := b.Stats(); st.Replayed != 3*perTenant || st.Store.Takeovers != 1 {
		t.Fatalf("stats: replayed %d, takeovers %d", st.Replayed, st.Store.Takeovers)
	}
}
