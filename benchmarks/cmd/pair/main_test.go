package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestReadAndSummary(t *testing.T) {
	dir := t.TempDir()
	raw := "round\tposition\timpl\tproducers\titems\tbatches\twall_ns\tcpu_ns\tmallocs\n" +
		"1\t0\tmutex\t1\t100\t1\t0\t1000\t0\n" +
		"1\t1\tmutex\t1\t100\t1\t0\t3000\t0\n" + // a second run of the reference: the mean is 20 ns/item
		"1\t2\tmuster-Batcher\t1\t200\t2\t0\t8000\t0\n" +
		"1\t3\tmuster-Batcher\t8\t100\t1\t0\t5000\t0\n"
	path := filepath.Join(dir, "base.1.tsv")
	if err := os.WriteFile(path, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	r := read(path)
	if r[key("mutex", 1)] != 20 || r[key("muster-Batcher", 1)] != 40 || r[key("muster-Batcher", 8)] != 50 {
		t.Fatalf("read: %v", r)
	}
	if got := ratiosOf([]run{r}, key("muster-Batcher", 1), key("mutex", 1), ""); len(got) != 1 || got[0] != 2 {
		t.Fatalf("ratios: %v", got)
	}
	if got := ratiosOf([]run{r}, key("muster-Batcher", 8), key("mutex", 8), ""); len(got) != 0 {
		t.Fatalf("a ratio without its denominator: %v", got)
	}
	// (60 - 20) / (40 - 20): twice the cost above the mutex's.
	r[key("otel", 1)] = 60
	if got := ratiosOf([]run{r}, key("otel", 1), key("muster-Batcher", 1), key("mutex", 1)); len(got) != 1 || got[0] != 2 {
		t.Fatalf("ratio above a third: %v", got)
	}
	if got := summary([]float64{3, 1, 2, 4}); got != "2.50 (1.00-4.00)" {
		t.Fatalf("summary: %q", got)
	}
	if got := summary(nil); got != "" {
		t.Fatalf("summary of nothing: %q", got)
	}
	if got := load(filepath.Join(dir, "base.*.tsv")); len(got) != 1 || got[0][key("mutex", 1)] != 20 {
		t.Fatalf("load: %v", got)
	}
}
