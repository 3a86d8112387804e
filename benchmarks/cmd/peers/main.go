// Command peers runs muster, its peers and baselines in interleaved rounds
// and prints a markdown table of the results (see package benchmarks).
//
//	cd benchmarks && go run ./cmd/peers -rounds 11 -items 1000000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/musterhq/muster/benchmarks"
)

func main() {
	rounds := flag.Int("rounds", 11, "rounds recorded (each runs every implementation back to back with its references, at each producer count)")
	items := flag.Int("items", 1_000_000, "items per implementation per round")
	producers := flag.String("producers", "1,8", "comma-separated producer counts")
	seed := flag.Uint64("seed", 1, "seed of the shuffled order of each round")
	match := flag.String("match", "", "regexp: run only the implementations whose ID or name matches (and their references)")
	warmup := flag.Bool("warmup", true, "run one unrecorded round at a tenth of -items first")
	list := flag.Bool("list", false, "list the implementations and exit")
	raw := flag.String("raw", "", "also write every recorded run to this file, tab-separated")
	flag.Parse()

	impls := benchmarks.Impls()
	if *list {
		for _, im := range impls {
			ref := "vs " + im.Ref
			if im.Ref == "" {
				ref = "(reference)"
			}
			fmt.Printf("%-24s %-24s %s\n", im.ID, ref, im.Name)
		}
		return
	}
	cfg := benchmarks.Config{Rounds: *rounds, Items: *items, Seed: *seed, Warmup: *warmup, Progress: os.Stderr}
	for f := range strings.SplitSeq(*producers, ",") {
		p, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || p < 1 {
			fatalf("bad -producers %q", *producers)
		}
		cfg.Producers = append(cfg.Producers, p)
	}
	if *match != "" {
		re, err := regexp.Compile(*match)
		if err != nil {
			fatalf("bad -match: %v", err)
		}
		cfg.Match = re
	}
	if *raw != "" {
		f, err := os.Create(*raw)
		if err != nil {
			fatalf("%v", err)
		}
		w := bufio.NewWriter(f)
		fmt.Fprintln(w, "round\tposition\timpl\tproducers\titems\tbatches\twall_ns\tcpu_ns\tmallocs")
		cfg.OnSample = func(round, pos int, id string, producers int, s benchmarks.Sample) {
			fmt.Fprintf(w, "%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", round, pos, id, producers, s.Items, s.Batches,
				s.Wall.Nanoseconds(), s.CPU.Nanoseconds(), s.Mallocs)
		}
		defer func() {
			if err := w.Flush(); err != nil {
				fatalf("%v", err)
			}
			if err := f.Close(); err != nil {
				fatalf("%v", err)
			}
		}()
	}
	report, err := benchmarks.RunRounds(cfg, impls)
	if err != nil {
		fatalf("%v", err)
	}
	// The command, with every setting spelled out, so that the table can be
	// reproduced from what is printed above it.
	cmd := fmt.Sprintf("cd benchmarks && go run ./cmd/peers -rounds %d -items %d -producers %s -seed %d -warmup=%t",
		*rounds, *items, *producers, *seed, *warmup)
	if *match != "" {
		cmd += " -match " + strconv.Quote(*match)
	}
	report.Markdown(os.Stdout, cmd)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "peers: "+format+"\n", args...)
	os.Exit(1)
}
