// Command pair reads the raw files (-raw) of the peers command run
// alternately from two builds, a base and a head, and prints, as a markdown
// table, each requested ratio of CPU time per item in each build (per
// round, the two implementations of the same run; median over rounds,
// extremes in brackets) and the head's CPU per item over the base's, paired
// round by round, for the ratio's numerator.
//
//	for r in $(seq 1 11); do for v in base head; do
//	  /tmp/$v -rounds 1 -items 1000000 -producers 1,8 -seed $r -match '...' -raw /tmp/$v.$r.tsv
//	done; done
//	go run ./cmd/pair -base '/tmp/base.*.tsv' -head '/tmp/head.*.tsv' \
//	  -ratios 'muster-Batcher/mutex,muster-Keyed-1key/muster-Batcher'
//
// A ratio num/den@sub compares costs above sub's: (num - sub) / (den - sub),
// as "tracing costs 1.2x the floor's cost above bare" does.
//
// The files of each build are paired in the order of the number in their
// names (base.3.tsv with head.3.tsv). A ratio whose implementations a build
// did not run is left blank for that build.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// run is one file's samples: CPU ns per item by implementation and
// producer count.
type run map[string]float64

func key(impl string, producers int) string { return impl + "@" + strconv.Itoa(producers) }

func main() {
	base := flag.String("base", "", "glob of the base build's raw files")
	head := flag.String("head", "", "glob of the head build's raw files")
	ratios := flag.String("ratios", "", "comma-separated num/den (or num/den@sub) implementation pairs")
	producers := flag.String("producers", "1,8", "comma-separated producer counts")
	flag.Parse()
	b, h := load(*base), load(*head)
	if len(b) == 0 || len(b) != len(h) {
		fatalf("%d base files and %d head files: want the same number, at least one", len(b), len(h))
	}
	fmt.Printf("| ratio (CPU per item) | producers | base | head | head / base (numerator) |\n|---|--:|--:|--:|--:|\n")
	for _, r := range strings.Split(*ratios, ",") {
		r, sub, _ := strings.Cut(r, "@")
		num, den, ok := strings.Cut(r, "/")
		if !ok {
			fatalf("ratio %q: want num/den or num/den@sub", r)
		}
		for _, ps := range strings.Split(*producers, ",") {
			p, err := strconv.Atoi(ps)
			if err != nil {
				fatalf("producers %q: %v", ps, err)
			}
			kn, kd, ks := key(num, p), key(den, p), ""
			if sub != "" {
				ks = key(sub, p)
			}
			var paired []float64
			for i := range b {
				if b[i][kn] > 0 && h[i][kn] > 0 {
					paired = append(paired, h[i][kn]/b[i][kn])
				}
			}
			name := fmt.Sprintf("`%s` / `%s`", num, den)
			if sub != "" {
				name = fmt.Sprintf("(`%s` - `%s`) / (`%s` - `%s`)", num, sub, den, sub)
			}
			fmt.Printf("| %s | %d | %s | %s | %s |\n", name, p,
				summary(ratiosOf(b, kn, kd, ks)), summary(ratiosOf(h, kn, kd, ks)), summary(paired))
		}
	}
}

// ratiosOf returns, for each run holding both, r[kn]/r[kd], or with ks
// (not "") (r[kn]-r[ks])/(r[kd]-r[ks]).
func ratiosOf(runs []run, kn, kd, ks string) []float64 {
	var out []float64
	for _, r := range runs {
		if r[kn] <= 0 || r[kd] <= 0 || ks != "" && r[ks] <= 0 {
			continue
		}
		out = append(out, (r[kn]-r[ks])/(r[kd]-r[ks])) // r[""] is 0
	}
	return out
}

// summary is "median (min-max)", or "" for no values.
func summary(v []float64) string {
	if len(v) == 0 {
		return ""
	}
	slices.Sort(v)
	m := v[len(v)/2]
	if len(v)%2 == 0 {
		m = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return fmt.Sprintf("%.2f (%.2f-%.2f)", m, v[0], v[len(v)-1])
}

var number = regexp.MustCompile(`\d+`)

// load reads the files matching glob, ordered by the last number in their
// names.
func load(glob string) []run {
	files, err := filepath.Glob(glob)
	if err != nil {
		fatalf("%v", err)
	}
	n := func(f string) int {
		ms := number.FindAllString(filepath.Base(f), -1)
		if len(ms) == 0 {
			return 0
		}
		v, _ := strconv.Atoi(ms[len(ms)-1])
		return v
	}
	slices.SortFunc(files, func(a, b string) int { return n(a) - n(b) })
	var out []run
	for _, f := range files {
		out = append(out, read(f))
	}
	return out
}

// read parses one raw file (the peers command's -raw format). A file with
// several runs of an implementation (a reference runs once per block) keeps
// their mean.
func read(path string) run {
	f, err := os.Open(path)
	if err != nil {
		fatalf("%v", err)
	}
	defer f.Close()
	sums, counts := map[string]float64{}, map[string]int{}
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		fs := strings.Split(sc.Text(), "\t")
		if line == 0 {
			if len(fs) < 9 || fs[2] != "impl" || fs[7] != "cpu_ns" {
				fatalf("%s: not a raw file of the peers command (header %q)", path, sc.Text())
			}
			continue
		}
		if len(fs) < 9 {
			fatalf("%s:%d: %d fields", path, line+1, len(fs))
		}
		p, err1 := strconv.Atoi(fs[3])
		items, err2 := strconv.ParseFloat(fs[4], 64)
		cpu, err3 := strconv.ParseFloat(fs[7], 64)
		if err1 != nil || err2 != nil || err3 != nil || items <= 0 {
			fatalf("%s:%d: bad numbers in %q", path, line+1, sc.Text())
		}
		k := key(fs[2], p)
		sums[k] += cpu / items
		counts[k]++
	}
	if err := sc.Err(); err != nil {
		fatalf("%s: %v", path, err)
	}
	r := run{}
	for k, s := range sums {
		r[k] = s / float64(counts[k])
	}
	return r
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pair: "+format+"\n", args...)
	os.Exit(2)
}
