package benchmarks

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/musterhq/muster/muster"
)

// The fairness harness measures what it says: a short run of each scenario
// (no timing is asserted, only what the scenarios guarantee whatever the
// machine's speed). The loud key is held at MaxPendingPerKey under "fair",
// and no quiet item is lost there; every quiet item is counted once; the
// report has a row per scenario.
func TestFairnessHarness(t *testing.T) {
	cfg := FairnessConfig{Rounds: 1, Duration: 400 * time.Millisecond, QuietKeys: 9, QuietRate: 100, Loud: 100,
		PerKey: 200, Overflow: muster.OverflowBlock, Deadline: time.Hour}
	r, err := RunFairness(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range FairnessScenarios {
		s := r.Samples[sc][0]
		if s.QuietAdds == 0 || s.QuietAdds > cfg.QuietKeys*40 || s.QuietLost != 0 {
			t.Errorf("%s: %d quiet adds, %d lost (an Add may block, but an hour's deadline loses nothing)", sc, s.QuietAdds, s.QuietLost)
		}
		if (sc == "quiet") != (s.LoudAdds == 0) || s.LoudTaken != s.LoudAdds {
			t.Errorf("%s: loud key %d of %d taken", sc, s.LoudTaken, s.LoudAdds)
		}
	}
	if got := r.Samples["fair"][0].MaxLoudPending; got > int(cfg.PerKey) {
		t.Errorf("fair: the loud key held %d items, above MaxPendingPerKey %d", got, cfg.PerKey)
	}
	var b bytes.Buffer
	r.Markdown(&b, "cmd")
	for _, sc := range FairnessScenarios {
		if !strings.Contains(b.String(), "| "+sc+" |") {
			t.Errorf("no row for %s in\n%s", sc, b.String())
		}
	}
}
