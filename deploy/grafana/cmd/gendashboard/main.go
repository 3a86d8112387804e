// Command gendashboard writes muster's Grafana dashboard (classic JSON model)
// to a file, by default dashboards/muster.json relative to the current
// directory, which go generate sets to deploy/grafana:
//
//	cd deploy/grafana && go generate ./...
//	cd deploy/grafana && go run ./cmd/gendashboard -o dashboards/muster.json
//
// With -o - it writes to standard output.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/musterhq/muster/deploy/grafana"
)

func main() {
	out := flag.String("o", "dashboards/muster.json", "output file, or - for standard output")
	flag.Parse()
	if err := run(*out); err != nil {
		fmt.Fprintln(os.Stderr, "gendashboard:", err)
		os.Exit(1)
	}
}

func run(out string) error {
	data, err := grafana.JSON()
	if err != nil {
		return err
	}
	if out == "-" {
		_, err = os.Stdout.Write(data)
		return err
	}
	return os.WriteFile(out, data, 0o644)
}
