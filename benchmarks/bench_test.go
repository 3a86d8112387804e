package benchmarks

import (
	"fmt"
	"testing"
)

// BenchmarkImpl runs every implementation for b.N items (ns/op is ns per
// item), with the same code as cmd/peers: compare runs with benchstat.
//
//	go test -run '^$' -bench Impl -benchmem -count 6 -cpu 2 . | tee peers.txt
//	benchstat -col /impl peers.txt
//
// Besides ns/op and allocs/op (per item), cpu-ns/item is the process's CPU
// time per item and allocs/batch the heap allocations per batch fired.
func BenchmarkImpl(b *testing.B) {
	for _, producers := range []int{1, 8} {
		for _, im := range Impls() {
			b.Run(fmt.Sprintf("impl=%s/producers=%d", im.ID, producers), func(b *testing.B) {
				b.ReportAllocs()
				b.StopTimer()
				b.ResetTimer()
				s, err := Run(im, producers, b.N, b)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(s.CPUNsPerItem(), "cpu-ns/item")
				b.ReportMetric(s.AllocsPerBatch(), "allocs/batch")
			})
		}
	}
}
