// Command journal measures the embedded journal (journal.Log) on this
// machine: the disk's fsync latency (4 KiB append + fdatasync, and 4 KiB
// overwritten in place in a zero-filled file + fdatasync), Append at
// Synced and at Process from many producers (items/s, Append latency,
// process CPU per item), in interleaved rounds, and the replay of large
// backlogs (Open and Recover: MB/s, peak heap and RSS), each in a child
// process of its own so that its RSS is the replay's alone.
//
//	cd benchmarks && go run ./cmd/journal -rounds 5 -items 1000000 -backlogs 256,1024
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/musterhq/muster/benchmarks"
	"github.com/musterhq/muster/journal"
)

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to measure (the runs make and remove subdirectories)")
	rounds := flag.Int("rounds", 5, "interleaved rounds of the fsync and Append runs")
	items := flag.Int("items", 1_000_000, "items per Append run")
	producers := flag.Int("producers", 64, "producers of the Append runs")
	many := flag.Int("many", 1024, "producers of a further synced run, to show how throughput follows the group size (0: none)")
	size := flag.Int("size", 100, "item size in bytes")
	samples := flag.Int("fsync-samples", 1000, "fsync samples per round")
	backlogs := flag.String("backlogs", "256,1024", "comma-separated backlog sizes to replay, in MiB (empty: none)")
	child := flag.String("replay-child", "", "(internal) replay the log in this directory and print the result as JSON")
	seed := flag.Uint64("seed", 1, "seed of the order within each round")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the fsync and Append runs to this file")
	flag.Parse()

	if *child != "" {
		r, err := benchmarks.JournalReplay(*child)
		if err != nil {
			fatalf("replay: %v", err)
		}
		json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	fmt.Printf("command: %s\n", strings.Join(os.Args, " "))
	fmt.Printf("dir %s, %d rounds, %d items of %d bytes, %d producers, GOMAXPROCS from %d CPUs\n\n", *dir, *rounds, *items, *size, *producers, numCPU())

	type run struct {
		name string
		do   func() (benchmarks.AppendResult, error)
	}
	runs := []run{
		{"synced", func() (benchmarks.AppendResult, error) {
			return benchmarks.JournalAppend(*dir, journal.Synced, *producers, *items, *size)
		}},
		{"process", func() (benchmarks.AppendResult, error) {
			return benchmarks.JournalAppend(*dir, journal.Process, *producers, *items, *size)
		}},
		{"process-1", func() (benchmarks.AppendResult, error) {
			return benchmarks.JournalAppend(*dir, journal.Process, 1, *items/4, *size)
		}},
	}
	names := []string{"synced", "process", "process-1"}
	if *many > 0 {
		runs = append(runs, run{fmt.Sprintf("synced-%d", *many), func() (benchmarks.AppendResult, error) {
			return benchmarks.JournalAppend(*dir, journal.Synced, *many, *items, *size)
		}})
		names = append(names, runs[len(runs)-1].name)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fatalf("cpuprofile: %v", err)
		}
	}
	rng := rand.New(rand.NewPCG(*seed, 15))
	var fsyncs, inPlace []benchmarks.Latencies
	res := map[string][]benchmarks.AppendResult{}
	for round := range *rounds {
		fl, err := benchmarks.FsyncLatency(*dir, *samples)
		if err != nil {
			fatalf("fsync: %v", err)
		}
		fsyncs = append(fsyncs, fl)
		ip, err := benchmarks.FsyncInPlaceLatency(*dir, *samples)
		if err != nil {
			fatalf("fsync in place: %v", err)
		}
		inPlace = append(inPlace, ip)
		order := slices.Clone(runs)
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, r := range order {
			a, err := r.do()
			if err != nil {
				fatalf("%s: %v", r.name, err)
			}
			res[r.name] = append(res[r.name], a)
		}
		s := res["synced"][round]
		fmt.Fprintf(os.Stderr, "round %d: fsync p50/p99 %s/%s; synced %.0f items/s p99 %s; process CPU %s/item\n",
			round, fl.P50, fl.P99, s.ItemsPerSec(), s.Append.P99, res["process"][round].CPUPerItem())
	}

	pprof.StopCPUProfile()
	med := func(vs []float64) float64 { slices.Sort(vs); return vs[len(vs)/2] }
	fsP50 := med(mapf(fsyncs, func(l benchmarks.Latencies) float64 { return float64(l.P50) }))
	fsP99 := med(mapf(fsyncs, func(l benchmarks.Latencies) float64 { return float64(l.P99) }))
	fmt.Printf("| measure | median of %d rounds | per round |\n|---|---|---|\n", *rounds)
	fmt.Printf("| fsync (4 KiB write + fdatasync) p50 | %s | %s |\n", dur(fsP50), join(fsyncs, func(l benchmarks.Latencies) string { return dur(float64(l.P50)) }))
	fmt.Printf("| fsync mean | %s | %s |\n", dur(med(mapf(fsyncs, func(l benchmarks.Latencies) float64 { return float64(l.Mean) }))),
		join(fsyncs, func(l benchmarks.Latencies) string { return dur(float64(l.Mean)) }))
	fmt.Printf("| fsync p99 | %s | %s |\n", dur(fsP99), join(fsyncs, func(l benchmarks.Latencies) string { return dur(float64(l.P99)) }))
	ipP50 := med(mapf(inPlace, func(l benchmarks.Latencies) float64 { return float64(l.P50) }))
	fmt.Printf("| fsync in place (4 KiB overwrite of synced zeros + fdatasync) p50 / mean / p99 | %s / %s / %s | p50 %s |\n", dur(ipP50),
		dur(med(mapf(inPlace, func(l benchmarks.Latencies) float64 { return float64(l.Mean) }))),
		dur(med(mapf(inPlace, func(l benchmarks.Latencies) float64 { return float64(l.P99) }))),
		join(inPlace, func(l benchmarks.Latencies) string { return dur(float64(l.P50)) }))
	for _, name := range names {
		rs := res[name]
		p := rs[0].Producers
		fmt.Printf("| %s, %d producers: items/s | %.0f | %s |\n", name, p, med(mapf(rs, benchmarks.AppendResult.ItemsPerSec)),
			join(rs, func(r benchmarks.AppendResult) string { return fmt.Sprintf("%.0f", r.ItemsPerSec()) }))
		fmt.Printf("| %s: Append p50 / p99 | %s / %s | %s |\n", name,
			dur(med(mapf(rs, func(r benchmarks.AppendResult) float64 { return float64(r.Append.P50) }))),
			dur(med(mapf(rs, func(r benchmarks.AppendResult) float64 { return float64(r.Append.P99) }))),
			join(rs, func(r benchmarks.AppendResult) string { return dur(float64(r.Append.P99)) }))
		fmt.Printf("| %s: process CPU per item | %s | %s |\n", name,
			dur(med(mapf(rs, func(r benchmarks.AppendResult) float64 { return float64(r.CPUPerItem()) }))),
			join(rs, func(r benchmarks.AppendResult) string { return dur(float64(r.CPUPerItem())) }))
		fmt.Printf("| %s: mean group commit (write + fdatasync at synced) | %s | %s |\n", name,
			dur(med(mapf(rs, func(r benchmarks.AppendResult) float64 { return float64(r.CommitTime) / float64(r.Commits) }))),
			join(rs, func(r benchmarks.AppendResult) string { return dur(float64(r.CommitTime) / float64(r.Commits)) }))
		fmt.Printf("| %s: items per group commit | %.0f | %s |\n", name,
			med(mapf(rs, func(r benchmarks.AppendResult) float64 { return float64(r.Items) / float64(r.Commits) })),
			join(rs, func(r benchmarks.AppendResult) string {
				return fmt.Sprintf("%.0f", float64(r.Items)/float64(r.Commits))
			}))
	}
	synced := res["synced"]
	ips := med(mapf(synced, benchmarks.AppendResult.ItemsPerSec))
	p99 := med(mapf(synced, func(r benchmarks.AppendResult) float64 { return float64(r.Append.P99) }))
	cpu := med(mapf(res["process"], func(r benchmarks.AppendResult) float64 { return float64(r.CPUPerItem()) }))
	fmt.Println()
	fmt.Printf("target synced >= 250000 items/s: %.0f: %s (64 producers need commits of 256 us at most; in-place fsync p50 %s)\n", ips, met(ips >= 250000), dur(ipP50))
	fmt.Printf("target synced Append p99 <= fsync p99 + 1 ms (%s): %s: %s\n", dur(fsP99+1e6), dur(p99), met(p99 <= fsP99+1e6))
	fmt.Printf("target process CPU per item <= 1.2 us: %s: %s\n", dur(cpu), met(cpu <= 1200))

	if *backlogs == "" {
		return
	}
	fmt.Printf("\n| backlog | segment files | items | Open (scan) | Recover | Open+Recover MB/s | Recover MB/s | peak heap | heap after | peak RSS |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for f := range strings.SplitSeq(*backlogs, ",") {
		mib, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || mib <= 0 {
			fatalf("bad -backlogs %q", *backlogs)
		}
		bdir, err := os.MkdirTemp(*dir, "backlog-*")
		if err != nil {
			fatalf("%v", err)
		}
		n, err := benchmarks.BuildBacklog(bdir, int64(mib)<<20, *size)
		if err != nil {
			os.RemoveAll(bdir)
			fatalf("building the backlog: %v", err)
		}
		out, err := exec.Command(os.Args[0], "-replay-child", bdir).Output()
		os.RemoveAll(bdir)
		if err != nil {
			fatalf("replay child: %v", err)
		}
		var r benchmarks.ReplayResult
		if err := json.Unmarshal(out, &r); err != nil {
			fatalf("replay child: %v: %s", err, out)
		}
		if r.Items != n {
			fatalf("replay of %d MiB recovered %d items, want %d", mib, r.Items, n)
		}
		fmt.Printf("| %d MiB | %d | %d | %s | %s | %.0f | %.0f | %.1f MiB | %.1f MiB | %.1f MiB |\n", mib, r.SegmentFiles, r.Items,
			r.Open.Round(time.Millisecond), r.Recover.Round(time.Millisecond), r.MBPerSec(), r.RecoverMBPerSec(),
			float64(r.PeakHeap)/(1<<20), float64(r.HeapAfterGC)/(1<<20), float64(r.PeakRSS)/(1<<20))
	}
	fmt.Println("\n(the backlogs were just written: their pages were in the page cache)")
}

func mapf[T any](xs []T, f func(T) float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

func join[T any](xs []T, f func(T) string) string {
	var s []string
	for _, x := range xs {
		s = append(s, f(x))
	}
	return strings.Join(s, ", ")
}

func dur(ns float64) string {
	d := time.Duration(ns)
	switch {
	case d >= time.Millisecond:
		return fmt.Sprintf("%.2f ms", ns/1e6)
	case d >= time.Microsecond:
		return fmt.Sprintf("%.2f us", ns/1e3)
	}
	return fmt.Sprintf("%.0f ns", ns)
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func numCPU() int { return runtime.NumCPU() }

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "journal: "+format+"\n", args...)
	os.Exit(1)
}
