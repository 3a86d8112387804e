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
	// Medians (and extremes) over rounds of (impl − bare) / (floor − bare),
	// each difference taken against the bare run of its own block, in CPU
	// ns/item and in wall ns/item.
	AboveCPU, AboveCPUMin, AboveCPUMax float64
	AboveWall                          float64
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
			var iv, fv, ac, aw []float64
			for i := range n {
				iv = append(iv, ratio(ip[i].impl, ip[i].ref, Sample.CPUNsPerItem))
				fv = append(fv, ratio(fl[i].impl, fl[i].ref, Sample.CPUNsPerItem))
				ac = append(ac, above(ip[i], fl[i], Sample.CPUNsPerItem))
				aw = append(aw, above(ip[i], fl[i], Sample.NsPerItem))
			}
			rows = append(rows, FloorRow{What: fp.what, Impl: fp.impl, Floor: fp.floor, Producers: p, Rounds: n,
				ImplVsBare: medianOf(iv), FloorVsBare: medianOf(fv),
				AboveCPU: medianOf(ac), AboveCPUMin: slices.Min(ac), AboveCPUMax: slices.Max(ac),
				AboveWall: medianOf(aw)})
		}
	}
	return rows
}

// above is (impl − its bare) / (floor − its bare) in f; 0 when the floor
// costs nothing above bare.
func above(impl, floor pair, f func(Sample) float64) float64 {
	d := f(floor.impl) - f(floor.ref)
	if d <= 0 {
		return 0
	}
	return (f(impl.impl) - f(impl.ref)) / d
}

// floorMarkdown writes the FloorRows as a table, if there are any.
func (r *Report) floorMarkdown(w io.Writer) {
	rows := r.FloorRows()
	if len(rows) == 0 {
		return
	}
	fmt.Fprintf(w, "\nAgainst the observability floor: \"× bare\" is the median over rounds of the CPU ratio to the bare Batcher run next to it; "+
		"\"÷ floor\" the median over rounds (lowest-highest) of (instrumented − bare) / (floor − bare), each against its own block's bare run.\n\n")
	fmt.Fprintln(w, "| observability | producers | muster × bare (CPU) | floor × bare (CPU) | muster ÷ floor above bare (CPU) | (wall) | rounds |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s (%s vs %s) | %d | %.2f | %.2f | %.2f (%.2f-%.2f) | %.2f | %d |\n", row.What, row.Impl, row.Floor, row.Producers,
			row.ImplVsBare, row.FloorVsBare, row.AboveCPU, row.AboveCPUMin, row.AboveCPUMax, row.AboveWall, row.Rounds)
	}
}
