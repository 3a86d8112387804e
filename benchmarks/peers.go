package benchmarks

import (
	"context"
	"fmt"
	"reflect"
	"time"

	fbmuster "github.com/facebookgo/muster"
	"gocloud.dev/pubsub/batcher"
	"google.golang.org/api/support/bundler"
)

// The peers, each configured for batches of 100 on the size trigger, with
// its time trigger (where it has one) an hour away.
func peerImpls() []Impl {
	return []Impl{
		facebookgo(1024, MutexInline),
		facebookgo(0, MutexInline),
		bundlerImpl(false),
		bundlerImpl(true),
		{
			// gocloud's batcher has no size trigger: batches form while its
			// handlers are busy. MinBatchSize = MaxBatchSize = 100 makes every
			// batch (but the last, at Shutdown) hold 100 items. 64 handlers,
			// as in research/performance.md: with its default of one, a
			// saturating producer makes each batch copy the backlog.
			// AddNoWait: Add would wait for the handler, one item at a time.
			ID:   "gocloud",
			Name: "gocloud.dev/pubsub/batcher (AddNoWait, 64 handlers)",
			Ref:  MutexInline,
			Start: func(c *Counter) (func(int), func()) {
				b := batcher.New(reflect.TypeFor[int](), &batcher.Options{MaxHandlers: 64, MinBatchSize: BatchSize, MaxBatchSize: BatchSize},
					func(items any) error { c.Fired(len(items.([]int))); return nil })
				return func(v int) { b.AddNoWait(v) }, b.Shutdown
			},
		},
	}
}

// FacebookgoID is the ID of facebookgo/muster with a Work channel of
// capacity n.
func FacebookgoID(capacity uint) string {
	if capacity == 0 {
		return "facebookgo-unbuffered"
	}
	return fmt.Sprintf("facebookgo-cap%d", capacity)
}

// workName describes a Work channel of capacity n.
func workName(capacity uint) string {
	if capacity == 0 {
		return "Work unbuffered"
	}
	return fmt.Sprintf("Work %d", capacity)
}

func facebookgo(capacity uint, ref string) Impl {
	return Impl{
		ID:   FacebookgoID(capacity),
		Name: "facebookgo/muster (" + workName(capacity) + ")",
		Ref:  ref,
		Start: func(c *Counter) (func(int), func()) {
			fc := &fbmuster.Client{MaxBatchSize: BatchSize, BatchTimeout: time.Hour, PendingWorkCapacity: capacity,
				BatchMaker: func() fbmuster.Batch { return &fbBatch{c: c} }}
			if err := fc.Start(); err != nil {
				c.Fail(err)
				return func(int) {}, func() {}
			}
			return func(v int) { fc.Work <- v }, func() { c.Fail(fc.Stop()) }
		},
	}
}

// fbBatch is facebookgo/muster's Batch: it counts.
type fbBatch struct {
	c *Counter
	n int
}

func (b *fbBatch) Add(any)                  { b.n++ }
func (b *fbBatch) Fire(n fbmuster.Notifier) { b.c.Fired(b.n); n.Done() }

func bundlerImpl(wait bool) Impl {
	id, name := "bundler-Add", "google.golang.org/api/support/bundler (Add)"
	if wait {
		id, name = "bundler-AddWait", "google.golang.org/api/support/bundler (AddWait)"
	}
	return Impl{
		ID:   id,
		Name: name,
		Ref:  MutexInline,
		Start: func(c *Counter) (func(int), func()) {
			b := bundler.NewBundler(int(0), func(items any) { c.Fired(len(items.([]int))) })
			b.DelayThreshold = time.Hour
			b.BundleCountThreshold = BatchSize
			if wait {
				ctx := context.Background()
				return func(v int) {
					if err := b.AddWait(ctx, v, 1); err != nil {
						c.Fail(err)
					}
				}, b.Flush
			}
			return func(v int) {
				if err := b.Add(v, 1); err != nil {
					c.Fail(err)
				}
			}, b.Flush
		},
	}
}
