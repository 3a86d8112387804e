// Command genalerts writes muster's Prometheus alert rules to a file, by
// default ../prometheus/alerts.yml relative to the current directory, which
// go generate sets to deploy/grafana:
//
//	cd deploy/grafana && go generate ./...
//	cd deploy/grafana && go run ./cmd/genalerts -o ../prometheus/alerts.yml
//
// -scale compresses every window (for a test or a demo that runs minutes:
// -scale 0.0166667 makes an hour a minute) and -objective changes the
// objective. With -o - it writes to standard output.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/musterhq/muster/deploy/grafana"
)

func main() {
	out := flag.String("o", "../prometheus/alerts.yml", "output file, or - for standard output")
	scale := flag.Float64("scale", 1, "multiply every window, for and keep_firing_for by this, in (0, 1]")
	objective := flag.Float64("objective", grafana.DefaultRuleConfig().Objective, "share of processed items that must succeed, in (0, 1)")
	flag.Parse()
	if err := run(*out, *scale, *objective); err != nil {
		fmt.Fprintln(os.Stderr, "genalerts:", err)
		os.Exit(1)
	}
}

func run(out string, scale, objective float64) error {
	if !(scale > 0 && scale <= 1) {
		return fmt.Errorf("-scale %g: want a factor in (0, 1]", scale)
	}
	c := grafana.DefaultRuleConfig()
	c.Objective = objective
	data, err := grafana.AlertRules(c.Scaled(scale))
	if err != nil {
		return err
	}
	if out == "-" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(out, data, 0o644)
}
