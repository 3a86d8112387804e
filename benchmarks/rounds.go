package benchmarks

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config is a run of interleaved rounds.
type Config struct {
	Rounds    int            // rounds recorded
	Items     int            // items per run
	Producers []int          // producer counts; each is a run of its own
	Seed      uint64         // for the shuffled order of each round
	Match     *regexp.Regexp // implementations to run (their references come too); nil: all
	Warmup    bool           // one unrecorded round at a tenth of Items first
	Progress  io.Writer      // a line per round; nil: none
	// OnSample, if not nil, is called after every recorded run, with the
	// round (from 0) and the run's position in it (from 0).
	OnSample func(round, position int, id string, producers int, s Sample)
}

// A block is an implementation and its chain of references (its
// reference, that one's reference, ...) at one producer count. A round runs
// the implementations of each block back to back, in a shuffled order, so
// that the ratios between them compare runs at most a few seconds apart.
type block struct {
	producers int
	chain     []Impl // chain[0] is compared with chain[1] (and the mutex baseline)
}

// ratios are the paired ratios of one implementation at one producer count,
// one per round.
type ratios struct {
	wall, cpu, mutex []float64
}

// Report holds the samples of every round.
type Report struct {
	Config  Config
	Impls   []Impl
	samples map[string][]Sample // by cellKey: every recorded run
	Start   time.Time
	Elapsed time.Duration

	ratios map[string]*ratios // by cellKey
	pairs  map[string][]pair  // by cellKey of a block's first implementation: its run and its reference's, per round
}

// pair is a block's first implementation's run and its reference's, in one
// round.
type pair struct{ impl, ref Sample }

func cellKey(id string, producers int) string { return fmt.Sprintf("%s\x00%d", id, producers) }

// Select returns the implementations whose ID or name match matches, with
// the references they are compared with, in impls' order.
func Select(impls []Impl, match *regexp.Regexp) []Impl {
	if match == nil {
		return impls
	}
	byID := make(map[string]Impl, len(impls))
	for _, im := range impls {
		byID[im.ID] = im
	}
	want := map[string]bool{}
	var mark func(id string)
	mark = func(id string) {
		if want[id] {
			return
		}
		want[id] = true
		if im, ok := byID[id]; ok && im.Ref != "" {
			mark(im.Ref)
		}
	}
	for _, im := range impls {
		if match.MatchString(im.ID) || match.MatchString(im.Name) {
			mark(im.ID)
		}
	}
	var out []Impl
	for _, im := range impls {
		if want[im.ID] {
			out = append(out, im)
		}
	}
	return out
}

// RunRounds runs, R times, every block of every selected implementation
// at every producer count: an implementation and its chain of references,
// back to back. Each round shuffles the blocks, and the order within each
// block, anew. It keeps every run, and the ratios between the runs of a
// block.
func RunRounds(cfg Config, impls []Impl) (*Report, error) {
	if cfg.Rounds < 1 || cfg.Items < 1 || len(cfg.Producers) == 0 {
		return nil, fmt.Errorf("benchmarks: need rounds, items and producers (got %d, %d, %v)", cfg.Rounds, cfg.Items, cfg.Producers)
	}
	impls = Select(impls, cfg.Match)
	if len(impls) == 0 {
		return nil, fmt.Errorf("benchmarks: no implementation matches %v", cfg.Match)
	}
	blocks := makeBlocks(impls, cfg.Producers)
	r := &Report{Config: cfg, Impls: impls, samples: map[string][]Sample{}, Start: time.Now(), ratios: map[string]*ratios{}, pairs: map[string][]pair{}}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d7573746572))
	first := 0
	if cfg.Warmup {
		first = -1
	}
	for round := first; round < cfg.Rounds; round++ {
		n := cfg.Items
		if round < 0 {
			n = max(cfg.Items/10, 1)
		}
		t0 := time.Now()
		runs := 0
		order := slices.Clone(blocks)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, b := range order {
			got := make([]Sample, len(b.chain))
			for _, i := range rng.Perm(len(b.chain)) {
				im := b.chain[i]
				s, err := Run(im, b.producers, n, nil)
				if err != nil {
					return nil, err
				}
				got[i] = s
				if round >= 0 {
					k := cellKey(im.ID, b.producers)
					r.samples[k] = append(r.samples[k], s)
					if cfg.OnSample != nil {
						cfg.OnSample(round, runs, im.ID, b.producers, s)
					}
				}
				runs++
			}
			if round >= 0 && len(b.chain) > 1 {
				r.addRatios(b, got)
			}
		}
		if cfg.Progress != nil {
			what := fmt.Sprintf("round %d/%d", round+1, cfg.Rounds)
			if round < 0 {
				what = "warm-up round"
			}
			fmt.Fprintf(cfg.Progress, "%s: %d runs in %v\n", what, runs, time.Since(t0).Round(time.Millisecond))
		}
	}
	r.Elapsed = time.Since(r.Start)
	return r, nil
}

// makeBlocks makes a block for every implementation with a reference, and
// one for any implementation no block runs (a reference selected alone).
func makeBlocks(impls []Impl, producers []int) []block {
	byID := make(map[string]Impl, len(impls))
	for _, im := range impls {
		byID[im.ID] = im
	}
	var chains [][]Impl
	covered := map[string]bool{}
	for _, im := range impls {
		if im.Ref == "" {
			continue
		}
		chain := []Impl{im}
		for ref, ok := byID[im.Ref]; ok && !slices.ContainsFunc(chain, func(c Impl) bool { return c.ID == ref.ID }); ref, ok = byID[ref.Ref] {
			chain = append(chain, ref)
		}
		for _, c := range chain {
			covered[c.ID] = true
		}
		chains = append(chains, chain)
	}
	for _, im := range impls {
		if !covered[im.ID] {
			chains = append(chains, []Impl{im})
		}
	}
	var blocks []block
	for _, p := range producers {
		for _, c := range chains {
			blocks = append(blocks, block{producers: p, chain: c})
		}
	}
	return blocks
}

// addRatios records the ratios of a block's first implementation to its
// reference (chain[1]) and to the mutex baseline, if the block ran it.
func (r *Report) addRatios(b block, got []Sample) {
	k := cellKey(b.chain[0].ID, b.producers)
	rs := r.ratios[k]
	if rs == nil {
		rs = new(ratios)
		r.ratios[k] = rs
	}
	r.pairs[k] = append(r.pairs[k], pair{got[0], got[1]})
	rs.wall = append(rs.wall, ratio(got[0], got[1], Sample.NsPerItem))
	rs.cpu = append(rs.cpu, ratio(got[0], got[1], Sample.CPUNsPerItem))
	for i := 2; i < len(b.chain); i++ {
		if b.chain[i].ID == MutexInline {
			rs.mutex = append(rs.mutex, ratio(got[0], got[i], Sample.NsPerItem))
		}
	}
}

func ratio(s, ref Sample, f func(Sample) float64) float64 {
	if d := f(ref); d > 0 {
		return f(s) / d
	}
	return 0
}

// Row is one implementation at one producer count, summarised over rounds.
type Row struct {
	Impl      Impl
	Producers int
	Runs      int     // runs recorded (references run once per block)
	NsPerItem float64 // median over runs
	CPUNs     float64 // median CPU ns per item
	Allocs    float64 // median allocations per item
	AllocsB   float64 // median allocations per batch
	// Ratios to the reference, the medians (and extremes) over rounds of
	// the ratio between the two runs of a block; zero without a reference.
	Ratio, RatioMin, RatioMax float64
	CPURatio                  float64
	// VsMutex is the same against the inline mutex baseline, when that is
	// further along the chain of references (zero otherwise).
	VsMutex float64
}

// Rows summarises the report, per producer count, in the order of the
// implementations.
func (r *Report) Rows() []Row {
	var rows []Row
	for _, p := range r.Config.Producers {
		for _, im := range r.Impls {
			k := cellKey(im.ID, p)
			ss := r.samples[k]
			if len(ss) == 0 {
				continue
			}
			row := Row{Impl: im, Producers: p, Runs: len(ss),
				NsPerItem: median(ss, Sample.NsPerItem), CPUNs: median(ss, Sample.CPUNsPerItem),
				Allocs: median(ss, Sample.AllocsPerItem), AllocsB: median(ss, Sample.AllocsPerBatch)}
			if rs := r.ratios[k]; rs != nil {
				row.Ratio, row.RatioMin, row.RatioMax = medianOf(rs.wall), slices.Min(rs.wall), slices.Max(rs.wall)
				row.CPURatio = medianOf(rs.cpu)
				row.VsMutex = medianOf(rs.mutex)
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func median(ss []Sample, f func(Sample) float64) float64 {
	vs := make([]float64, len(ss))
	for i, s := range ss {
		vs[i] = f(s)
	}
	return medianOf(vs)
}

func medianOf(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	vs = slices.Clone(vs)
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

// Markdown writes the report: the command that made it, the machine, and a
// table per producer count, ready to paste into BENCHMARKS.md.
func (r *Report) Markdown(w io.Writer, command string) {
	cfg := r.Config
	fmt.Fprintf(w, "```sh\n%s\n```\n\n", command)
	fmt.Fprintf(w, "%s, %s/%s, GOMAXPROCS %d, %s; %s. %d rounds of %d items per run, in shuffled order (seed %d); %v in all.\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), cpuModel(), r.Start.UTC().Format("2006-01-02 15:04 MST"),
		cfg.Rounds, cfg.Items, cfg.Seed, r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "Each round runs every implementation back to back with its reference (and the reference's reference). "+
		"ns/item and CPU ns/item are medians over all runs; \"× ref\" is the median over rounds of the ratio between an implementation's run and its reference's "+
		"run next to it (lowest-highest in brackets), \"× mutex\" the same against the inline mutex baseline where that is not the reference already. "+
		"CPU is the process's user+system time, every goroutine's.\n")
	rows := r.Rows()
	names := make(map[string]string, len(r.Impls))
	for _, im := range r.Impls {
		names[im.ID] = im.Name
	}
	for _, p := range cfg.Producers {
		fmt.Fprintf(w, "\n%d producer%s:\n\n", p, plural(p))
		fmt.Fprintln(w, "| implementation | ns/item | × ref (wall) | × ref (CPU) | reference | × mutex | CPU ns/item | allocs/item | allocs/batch |")
		fmt.Fprintln(w, "|---|--:|--:|--:|---|--:|--:|--:|--:|")
		for _, row := range rows {
			if row.Producers != p {
				continue
			}
			ratio, cpuRatio, ref, vsMutex := "", "", "", ""
			if row.Ratio > 0 {
				ratio = fmt.Sprintf("%.2f (%.2f-%.2f)", row.Ratio, row.RatioMin, row.RatioMax)
				cpuRatio = fmt.Sprintf("%.2f", row.CPURatio)
				ref = names[row.Impl.Ref]
			}
			if row.VsMutex > 0 {
				vsMutex = fmt.Sprintf("%.2f", row.VsMutex)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", row.Impl.Name, num(row.NsPerItem), ratio, cpuRatio, ref, vsMutex,
				num(row.CPUNs), fmt.Sprintf("%.3f", row.Allocs), fmt.Sprintf("%.2f", row.AllocsB))
		}
	}
	r.floorMarkdown(w)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// num prints 3 significant figures or so.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// cpuModel names the processor, from /proc/cpuinfo where there is one.
func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				return strings.TrimSpace(v)
			}
		}
	}
	return "unknown CPU"
}
