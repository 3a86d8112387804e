// Command peers runs muster, its peers and baselines in interleaved rounds
// and prints a markdown table of the results (see package benchmarks).
//
//	cd benchmarks && go run ./cmd/peers -rounds 11 -items 1000000
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/musterhq/muster/benchmarks"
)

func main() {
	rounds := flag.Int("rounds", 11, "rounds recorded (each runs every implementation once per producer count)")
	items := flag.Int("items", 1_000_000, "items per implementation per round")
	producers := flag.String("producers", "1,8", "comma-separated producer counts")
	seed := flag.Uint64("seed", 1, "seed of the shuffled order of each round")
	match := flag.String("match", "", "regexp: run only the implementations whose ID or name matches (and their references)")
	warmup := flag.Bool("warmup", true, "run one unrecorded round at a tenth of -items first")
	list := flag.Bool("list", false, "list the implementations and exit")
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
