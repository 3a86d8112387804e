package benchmarks

import (
	"fmt"
	"io"
	"slices"
)

// floorPairs are the instrumented implementations measured against their
// floor (floor.go): what muster's observer costs above the bare Batcher,
// as a multiple of what the same observability work done in Fire costs
// above it.
var floorPairs = []struct{ impl, floor, what string }{
	{"muster-otel-nospan", "floor-tracing", "tracing + metrics"},
	{"muster-otel-metrics", "floor-metrics", "metrics"},
}

// FloorRow is one instrumented implementation against its floor at one
// producer count.
type FloorRow struct {
	What, Impl, Floor string
	Producers         int
	Rounds            int
	// Medians over rounds of CPU ns/item ratios to the bare Batcher run
	// next to each (in its block).
	ImplVsBare, FloorVsBare float64
	// Medians over rounds of impl − bare and floor − bare, each difference
	// taken against the bare run of its own block, in CPU ns/item.
	ImplAbove, FloorAbove float64
	// AboveCPU is ImplAbove / FloorAbove (a ratio of medians: a round whose
	// floor costs next to nothing above bare would make a per-round ratio
	// explode); AboveCPUMin and AboveCPUMax are the extremes of the
	// per-round ratios. AboveWall is AboveCPU in wall ns/item.
	AboveCPU, AboveCPUMin, AboveCPUMax float64
	AboveWall                          float64
	// Pooled is the same ratio from the medians of all runs (CPU ns/item)
	// of the implementation, the floor and the bare Batcher at this
	// producer count, pairing nothing: a check on the paired figure when
	// neighbouring runs disturb each other.
	Pooled float64
}

// FloorRows returns a row for every pair of floorPairs the report ran, at
// every producer count.
func (r *Report) FloorRows() []FloorRow {
	var rows []FloorRow
	for _, p := range r.Config.Producers {
		for _, fp := range floorPairs {
			ip, fl := r.pairs[cellKey(fp.impl, p)], r.pairs[cellKey(fp.floor, p)]
			n := min(len(ip), len(fl))
			if n == 0 {
				continue
			}
			var iv, fv, ic, fc, iw, fw, ac []float64
			for i := range n {
				iv = append(iv, ratio(ip[i].impl, ip[i].ref, Sample.CPUNsPerItem))
				fv = append(fv, ratio(fl[i].impl, fl[i].ref, Sample.CPUNsPerItem))
				ic = append(ic, diff(ip[i], Sample.CPUNsPerItem))
				fc = append(fc, diff(fl[i], Sample.CPUNsPerItem))
				iw = append(iw, diff(ip[i], Sample.NsPerItem))
				fw = append(fw, diff(fl[i], Sample.NsPerItem))
				ac = append(ac, ic[i]/fc[i])
			}
			rows = append(rows, FloorRow{What: fp.what, Impl: fp.impl, Floor: fp.floor, Producers: p, Rounds: n,
				ImplVsBare: medianOf(iv), FloorVsBare: medianOf(fv),
				ImplAbove: medianOf(ic), FloorAbove: medianOf(fc),
				AboveCPU: medianOf(ic) / medianOf(fc), AboveCPUMin: slices.Min(ac), AboveCPUMax: slices.Max(ac),
				AboveWall: medianOf(iw) / medianOf(fw)})
			if bare := r.samples[cellKey(MusterBatcher, p)]; len(bare) > 0 {
				b := median(bare, Sample.CPUNsPerItem)
				rows[len(rows)-1].Pooled = (median(r.samples[cellKey(fp.impl, p)], Sample.CPUNsPerItem) - b) /
					(median(r.samples[cellKey(fp.floor, p)], Sample.CPUNsPerItem) - b)
			}
		}
	}
	return rows
}

// diff is what p's implementation costs above its reference, in f.
func diff(p pair, f func(Sample) float64) float64 { return f(p.impl) - f(p.ref) }

// CoreFloor is muster's Batcher against the floor of its contract
// (MutexPool) at one producer count: the median over rounds of the ratio
// of the two CPU ratios to the inline mutex, each taken against the mutex
// run of its own block (extremes over rounds beside it).
type CoreFloor struct {
	Producers, Rounds            int
	BatcherVsMutex, FloorVsMutex float64 // medians over rounds
	Ratio, RatioMin, RatioMax    float64
}

// CoreFloors returns a CoreFloor for every producer count at which the
// report ran both the Batcher and the floor.
func (r *Report) CoreFloors() []CoreFloor {
	var out []CoreFloor
	for _, p := range r.Config.Producers {
		bp, fp := r.pairs[cellKey(MusterBatcher, p)], r.pairs[cellKey(MutexPool, p)]
		n := min(len(bp), len(fp))
		if n == 0 {
			continue
		}
		var bv, fv, rv []float64
		for i := range n {
			bv = append(bv, ratio(bp[i].impl, bp[i].ref, Sample.CPUNsPerItem))
			fv = append(fv, ratio(fp[i].impl, fp[i].ref, Sample.CPUNsPerItem))
			rv = append(rv, bv[i]/fv[i])
		}
		out = append(out, CoreFloor{Producers: p, Rounds: n, BatcherVsMutex: medianOf(bv), FloorVsMutex: medianOf(fv),
			Ratio: medianOf(rv), RatioMin: slices.Min(rv), RatioMax: slices.Max(rv)})
	}
	return out
}

// floorMarkdown writes the CoreFloors and the FloorRows as tables, if there
// are any.
func (r *Report) floorMarkdown(w io.Writer) {
	if cfs := r.CoreFloors(); len(cfs) > 0 {
		fmt.Fprintf(w, "\nAgainst the floor of the Batcher contract (%s): the CPU ratios to the inline mutex run in the same block, medians over rounds; "+
			"\"÷ floor\" is the median over rounds of the Batcher's ratio over the floor's (lowest-highest in brackets).\n\n", MutexPool)
		fmt.Fprintln(w, "| producers | Batcher × mutex (CPU) | floor × mutex (CPU) | Batcher ÷ floor (CPU) | rounds |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|")
		for _, c := range cfs {
			fmt.Fprintf(w, "| %d | %.2f | %.2f | %.2f (%.2f-%.2f) | %d |\n", c.Producers, c.BatcherVsMutex, c.FloorVsMutex, c.Ratio, c.RatioMin, c.RatioMax, c.Rounds)
		}
	}
	rows := r.FloorRows()
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nAgainst the observability floor: \"× bare\" is the median over rounds of the CPU ratio to the bare Batcher run next to it; "+
		"\"above bare\" the median over rounds of the CPU ns/item an implementation costs above the bare run of its own block; "+
		"\"÷ floor\" is muster's median above bare over the floor's (lowest-highest per-round ratio in brackets), in CPU and in wall time; \"pooled\" the same from the medians of all runs of each, pairing nothing.\n\n")
	fmt.Fprintln(w, "| observability | producers | muster × bare (CPU) | floor × bare (CPU) | muster above bare (CPU ns/item) | floor above bare | muster ÷ floor (CPU) | (wall) | (pooled) | rounds |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s (%s vs %s) | %d | %.2f | %.2f | %s | %s | %.2f (%.2f-%.2f) | %.2f | %.2f | %d |\n", row.What, row.Impl, row.Floor, row.Producers,
			row.ImplVsBare, row.FloorVsBare, num(row.ImplAbove), num(row.FloorAbove), row.AboveCPU, row.AboveCPUMin, row.AboveCPUMax, row.AboveWall, row.Pooled, row.Rounds)
	}
}
