package journal_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/muster"
)

// rawCodec keeps []byte items as they are.
type rawCodec struct{}

func (rawCodec) Encode(dst []byte, v []byte) ([]byte, error) { return append(dst, v...), nil }
func (rawCodec) Decode(data []byte) ([]byte, error)          { return slices.Clone(data), nil }

// BenchmarkLayerAdd: what the journal adds to an Add of a 100-byte item,
// against the same batcher without one, from 1 and 8 producers.
func BenchmarkLayerAdd(b *testing.B) {
	payload := make([]byte, 100)
	for _, producers := range []int{1, 8} {
		for _, impl := range []string{"batcher", "journal-process", "journal-synced"} {
			b.Run(fmt.Sprintf("impl=%s/producers=%d", impl, producers), func(b *testing.B) {
				inner := &muster.Batcher[journal.Item[[]byte]]{MaxBatchSize: 100, BatchTimeout: time.Millisecond,
					Fire: func(context.Context, []journal.Item[[]byte]) error { return nil }}
				add := func(v []byte) error { return inner.Add(context.Background(), journal.Item[[]byte]{Value: v}) }
				stop := inner.Stop
				if impl != "batcher" {
					d := journal.Process
					if impl == "journal-synced" {
						d = journal.Synced
					}
					log, err := journal.Open(b.TempDir(), journal.LogOptions{Durability: d})
					if err != nil {
						b.Fatal(err)
					}
					defer log.Close()
					j := journal.Wrap(inner, journal.Config[[]byte]{Store: log, Codec: rawCodec{}})
					if err := j.Start(); err != nil {
						b.Fatal(err)
					}
					add = func(v []byte) error { return j.Add(context.Background(), v) }
					stop = j.Stop
				} else if err := inner.Start(); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for p := range producers {
					n := b.N / producers
					if p == 0 {
						n += b.N % producers
					}
					wg.Go(func() {
						for range n {
							if err := add(payload); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				if err := stop(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "items/s")
			})
		}
	}
}
