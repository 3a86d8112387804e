// Command fairness runs the fairness benchmark of issue 17 (see
// benchmarks.RunFairness): nine quiet keys and one loud key at 100 times
// their rate, without the loud key, with it, and with it under
// MaxPendingPerKey, in interleaved rounds; it prints a markdown table.
//
//	cd benchmarks && go run ./cmd/fairness -rounds 7 -duration 3s
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/musterhq/muster/benchmarks"
	"github.com/musterhq/muster/muster"
)

func main() {
	cfg := benchmarks.FairnessConfig{}
	flag.IntVar(&cfg.Rounds, "rounds", 7, "rounds recorded (each runs the three scenarios back to back)")
	flag.DurationVar(&cfg.Duration, "duration", 3*time.Second, "how long producers add in each scenario")
	flag.IntVar(&cfg.QuietKeys, "quiet", 9, "quiet keys")
	flag.IntVar(&cfg.QuietRate, "rate", 100, "items/s of each quiet key")
	flag.IntVar(&cfg.Loud, "loud", 100, "the loud key's rate, in multiples of -rate")
	perKey := flag.Uint("perkey", 200, "MaxPendingPerKey of the fair scenario")
	overflow := flag.String("overflow", "block", "Overflow policy: block or fail")
	flag.DurationVar(&cfg.Deadline, "deadline", 100*time.Millisecond, "a quiet Add's context deadline")
	flag.Parse()
	cfg.PerKey = *perKey
	switch *overflow {
	case "block":
		cfg.Overflow = muster.OverflowBlock
	case "fail":
		cfg.Overflow = muster.OverflowFail
	default:
		fmt.Fprintln(os.Stderr, "fairness: -overflow is block or fail")
		os.Exit(2)
	}
	cfg.Progress = os.Stderr
	r, err := benchmarks.RunFairness(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fairness:", err)
		os.Exit(1)
	}
	r.Markdown(os.Stdout, "cd benchmarks && go run ./cmd/fairness "+strings.Join(os.Args[1:], " "))
}
