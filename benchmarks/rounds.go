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
	Items     int            // items per implementation per round
	Producers []int          // producer counts; each is a run of its own
	Seed      uint64         // for the shuffled order of each round
	Match     *regexp.Regexp // implementations to run (their references come too); nil: all
	Warmup    bool           // one unrecorded round at a tenth of Items first
	Progress  io.Writer      // a line per round; nil: none
	// OnSample, if not nil, is called after every recorded run, with the
	// round (from 0) and the run's position in it (from 0).
	OnSample func(round, position int, id string, producers int, s Sample)
}

// A cell is one implementation at one producer count.
type cell struct {
	impl      Impl
	producers int
}

// Report holds the samples of every round.
type Report struct {
	Config  Config
	Impls   []Impl
	Samples map[string][]Sample // by cellKey, one per round
	Start   time.Time
	Elapsed time.Duration
}

func cellKey(name string, producers int) string { return fmt.Sprintf("%s\x00%d", name, producers) }

// Select returns the implementations whose name cfg.Match matches, with
// the references they are compared with, in impls' order.
func Select(impls []Impl, match *regexp.Regexp) []Impl {
	if match == nil {
		return impls
	}
	byName := make(map[string]Impl, len(impls))
	for _, im := range impls {
		byName[im.ID] = im
	}
	want := map[string]bool{}
	var mark func(name string)
	mark = func(name string) {
		if want[name] {
			return
		}
		want[name] = true
		if im, ok := byName[name]; ok && im.Ref != "" {
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

// RunRounds runs every selected implementation once per round at every
// producer count, in an order shuffled anew each round, and keeps the
// samples.
func RunRounds(cfg Config, impls []Impl) (*Report, error) {
	if cfg.Rounds < 1 || cfg.Items < 1 || len(cfg.Producers) == 0 {
		return nil, fmt.Errorf("benchmarks: need rounds, items and producers (got %d, %d, %v)", cfg.Rounds, cfg.Items, cfg.Producers)
	}
	impls = Select(impls, cfg.Match)
	if len(impls) == 0 {
		return nil, fmt.Errorf("benchmarks: no implementation matches %v", cfg.Match)
	}
	var cells []cell
	for _, p := range cfg.Producers {
		for _, im := range impls {
			cells = append(cells, cell{im, p})
		}
	}
	r := &Report{Config: cfg, Impls: impls, Samples: map[string][]Sample{}, Start: time.Now()}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6d7573746572))
	rounds := cfg.Rounds
	first := 0
	if cfg.Warmup {
		first = -1
	}
	for round := first; round < rounds; round++ {
		n := cfg.Items
		if round < 0 {
			n = max(cfg.Items/10, 1)
		}
		t0 := time.Now()
		order := slices.Clone(cells)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for pos, c := range order {
			s, err := Run(c.impl, c.producers, n, nil)
			if err != nil {
				return nil, err
			}
			if round >= 0 {
				k := cellKey(c.impl.ID, c.producers)
				r.Samples[k] = append(r.Samples[k], s)
				if cfg.OnSample != nil {
					cfg.OnSample(round, pos, c.impl.ID, c.producers, s)
				}
			}
		}
		if cfg.Progress != nil {
			what := fmt.Sprintf("round %d/%d", round+1, rounds)
			if round < 0 {
				what = "warm-up round"
			}
			fmt.Fprintf(cfg.Progress, "%s: %d runs in %v\n", what, len(order), time.Since(t0).Round(time.Millisecond))
		}
	}
	r.Elapsed = time.Since(r.Start)
	return r, nil
}

// Row is one implementation at one producer count, summarised over rounds.
type Row struct {
	Impl      Impl
	Producers int
	NsPerItem float64 // median over rounds
	CPUNs     float64 // median CPU ns per item
	Allocs    float64 // median allocations per item
	AllocsB   float64 // median allocations per batch
	// Ratios to the reference, the medians (and extremes) of the paired
	// ratios of each round; zero without a reference.
	Ratio, RatioMin, RatioMax float64
	CPURatio                  float64
	// VsMutex is the median paired ratio to the inline mutex baseline
	// (zero when that is the reference, or was not run).
	VsMutex float64
}

// Rows summarises the report, per producer count, in the order of the
// implementations.
func (r *Report) Rows() []Row {
	var rows []Row
	for _, p := range r.Config.Producers {
		for _, im := range r.Impls {
			ss := r.Samples[cellKey(im.ID, p)]
			if len(ss) == 0 {
				continue
			}
			row := Row{Impl: im, Producers: p,
				NsPerItem: median(ss, Sample.NsPerItem), CPUNs: median(ss, Sample.CPUNsPerItem),
				Allocs: median(ss, Sample.AllocsPerItem), AllocsB: median(ss, Sample.AllocsPerBatch)}
			if refs := r.Samples[cellKey(im.Ref, p)]; im.Ref != "" && len(refs) == len(ss) {
				wall := paired(ss, refs, Sample.NsPerItem)
				row.Ratio, row.RatioMin, row.RatioMax = medianOf(wall), slices.Min(wall), slices.Max(wall)
				row.CPURatio = medianOf(paired(ss, refs, Sample.CPUNsPerItem))
			}
			if mx := r.Samples[cellKey(MutexInline, p)]; im.Ref != MutexInline && im.ID != MutexInline && len(mx) == len(ss) {
				row.VsMutex = medianOf(paired(ss, mx, Sample.NsPerItem))
			}
			rows = append(rows, row)
		}
	}
	return rows
}

func paired(ss, refs []Sample, f func(Sample) float64) []float64 {
	out := make([]float64, len(ss))
	for i := range ss {
		if d := f(refs[i]); d > 0 {
			out[i] = f(ss[i]) / d
		}
	}
	return out
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
	fmt.Fprintf(w, "%s, %s/%s, GOMAXPROCS %d, %s; %s. %d rounds of %d items per implementation, in shuffled order (seed %d); %v in all.\n\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0), cpuModel(), r.Start.UTC().Format("2006-01-02 15:04 MST"),
		cfg.Rounds, cfg.Items, cfg.Seed, r.Elapsed.Round(time.Second))
	fmt.Fprintf(w, "Medians over rounds. \"× ref\" is the median of the ratios to the reference taken round by round (lowest-highest in brackets); "+
		"\"× mutex\" the same against the inline mutex baseline, where that is not the reference already; CPU is the process's user+system time, every goroutine's.\n")
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
