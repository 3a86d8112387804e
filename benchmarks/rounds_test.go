package benchmarks

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
)

func TestImpls(t *testing.T) {
	id := regexp.MustCompile(`^[A-Za-z0-9.-]+$`)
	seen := map[string]bool{}
	for _, im := range Impls() {
		if !id.MatchString(im.ID) {
			t.Errorf("ID %q: want letters, digits, '.', '-'", im.ID)
		}
		if seen[im.ID] {
			t.Errorf("ID %q twice", im.ID)
		}
		if im.Ref != "" && !seen[im.Ref] {
			t.Errorf("%s: reference %q is not listed before it", im.ID, im.Ref)
		}
		if im.Ref == "" && im.ID != MutexInline {
			t.Errorf("%s: no reference", im.ID)
		}
		seen[im.ID] = true
	}
}

func TestSelectKeepsReferences(t *testing.T) {
	var got []string
	for _, im := range Select(Impls(), regexp.MustCompile(`^muster-Client-cap1024$`)) {
		got = append(got, im.ID)
	}
	want := []string{MutexInline, FacebookgoID(1024), "muster-Client-cap1024"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("Select = %v, want %v", got, want)
	}
}

// TestRounds runs every implementation in a tiny interleaved run, so that
// neither the implementations nor the report can rot: each run checks that
// every item added was fired.
func TestRounds(t *testing.T) {
	cfg := Config{Rounds: 2, Items: 3001, Producers: []int{1, 8}, Seed: 7, Warmup: true}
	r, err := RunRounds(cfg, Impls())
	if err != nil {
		t.Fatal(err)
	}
	rows := r.Rows()
	if want := len(Impls()) * len(cfg.Producers); len(rows) != want {
		t.Fatalf("%d rows, want %d", len(rows), want)
	}
	for _, row := range rows {
		if row.NsPerItem <= 0 {
			t.Errorf("%s/%d: ns/item %v", row.Impl.ID, row.Producers, row.NsPerItem)
		}
		if (row.Ratio > 0) != (row.Impl.Ref != "") {
			t.Errorf("%s/%d: ratio %v to %q", row.Impl.ID, row.Producers, row.Ratio, row.Impl.Ref)
		}
		if row.RatioMin > row.Ratio || row.Ratio > row.RatioMax {
			t.Errorf("%s/%d: ratio %v outside [%v, %v]", row.Impl.ID, row.Producers, row.Ratio, row.RatioMin, row.RatioMax)
		}
	}
	var buf bytes.Buffer
	r.Markdown(&buf, "the command")
	out := buf.String()
	if !strings.HasPrefix(out, "```sh\nthe command\n```\n") {
		t.Errorf("the command is not above the table:\n%s", out)
	}
	for _, im := range Impls() {
		if n := strings.Count(out, "\n| "+im.Name+" |"); n != len(cfg.Producers) {
			t.Errorf("%q: %d rows, want %d", im.Name, n, len(cfg.Producers))
		}
	}
	t.Logf("\n%s", out)
}

func TestRunCountsItems(t *testing.T) {
	lossy := Impl{ID: "lossy", Name: "lossy", Start: func(c *Counter) (func(int), func()) {
		n := 0
		return func(int) { n++ }, func() { c.Fired(n - 1) }
	}}
	if _, err := Run(lossy, 1, 10, nil); err == nil || !strings.Contains(err.Error(), "fired 9 items, added 10") {
		t.Errorf("Run = %v, want a count mismatch", err)
	}
}

func TestBlocks(t *testing.T) {
	ids := func(b block) string {
		var s []string
		for _, im := range b.chain {
			s = append(s, im.ID)
		}
		return strings.Join(s, ",")
	}
	got := map[string]bool{}
	for _, b := range makeBlocks(Impls(), []int{1}) {
		got[ids(b)] = true
	}
	for _, want := range []string{
		"mutex-go,mutex",
		"muster-Batcher,mutex",
		"muster-Keyed-1key,muster-Batcher,mutex",
		"muster-Client-cap1024,facebookgo-cap1024,mutex",
	} {
		if !got[want] {
			t.Errorf("no block %s in %v", want, got)
		}
	}
	if got["mutex"] {
		t.Errorf("a block of the mutex baseline alone, though others run it: %v", got)
	}
	alone := makeBlocks(Select(Impls(), regexp.MustCompile(`^mutex$`)), []int{1, 8})
	if len(alone) != 2 || ids(alone[0]) != "mutex" || ids(alone[1]) != "mutex" {
		t.Errorf("the mutex baseline alone: %d blocks", len(alone))
	}
}
