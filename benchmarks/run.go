package benchmarks

import (
	"fmt"
	"runtime"
	"sync"
	"time"
)

// A Sample is one run of one implementation.
type Sample struct {
	Items   int64         // items added, and fired
	Batches int64         // batches fired
	Wall    time.Duration // from the first add to the last batch fired
	CPU     time.Duration // the process's user+system CPU time in that interval
	Mallocs uint64        // heap allocations in that interval
}

// NsPerItem is wall time per item.
func (s Sample) NsPerItem() float64 { return perItem(float64(s.Wall.Nanoseconds()), s.Items) }

// CPUNsPerItem is CPU time per item.
func (s Sample) CPUNsPerItem() float64 { return perItem(float64(s.CPU.Nanoseconds()), s.Items) }

// AllocsPerItem is heap allocations per item.
func (s Sample) AllocsPerItem() float64 { return perItem(float64(s.Mallocs), s.Items) }

// AllocsPerBatch is heap allocations per batch fired.
func (s Sample) AllocsPerBatch() float64 { return perItem(float64(s.Mallocs), s.Batches) }

func perItem(v float64, n int64) float64 {
	if n == 0 {
		return 0
	}
	return v / float64(n)
}

// A Timer brackets the timed region; *testing.B is one.
type Timer interface {
	StartTimer()
	StopTimer()
}

// Run starts im, adds n items (0..n-1) from producers goroutines, each
// adding a contiguous share, stops it, and checks that exactly n items were
// fired. The timed region runs from just before the producers start to the
// return of im's stop; setup and teardown are outside it. The heap is
// collected before the timed region, so that an earlier run's garbage is
// not billed to this one. timer, if not nil, is started and stopped at the
// region's ends.
func Run(im Impl, producers, n int, timer Timer) (Sample, error) {
	if producers < 1 {
		return Sample{}, fmt.Errorf("%d producers", producers)
	}
	c := new(Counter)
	defer c.teardown()
	add, stop := im.Start(c)
	if err := c.error(); err != nil {
		stop()
		return Sample{}, fmt.Errorf("%s: start: %w", im.Name, err)
	}

	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	if timer != nil {
		timer.StartTimer()
	}
	cpu := processCPU()
	t0 := time.Now()

	var wg sync.WaitGroup
	per, rem := n/producers, n%producers
	first := 0
	for p := range producers {
		lo := first
		hi := lo + per
		if p < rem {
			hi++
		}
		first = hi
		wg.Go(func() {
			for i := lo; i < hi; i++ {
				add(i)
			}
		})
	}
	wg.Wait()
	stop()

	wall := time.Since(t0)
	cpu = processCPU() - cpu
	if timer != nil {
		timer.StopTimer()
	}
	runtime.ReadMemStats(&ms)

	s := Sample{Items: c.items.Load(), Batches: c.batches.Load(), Wall: wall, CPU: cpu, Mallocs: ms.Mallocs - mallocs}
	if err := c.error(); err != nil {
		return s, fmt.Errorf("%s, %d producers: %w", im.Name, producers, err)
	}
	if s.Items != int64(n) {
		return s, fmt.Errorf("%s, %d producers: fired %d items, added %d", im.Name, producers, s.Items, n)
	}
	return s, nil
}
