// Command otel-demo is a small order service that batches its writes with
// muster and shows everything an operator sees: a span per request and per
// batch (linked), muster's metrics on a Prometheus endpoint (or pushed over
// OTLP), and a progress line per second. Run it with `make demo`; see
// README.md for what it shows and its flags.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// Push metrics every 5 s rather than the SDK's 60 s when OTLP is on, so
	// that a collector's dashboard follows the demo; the variable still wins.
	if os.Getenv("OTEL_METRIC_EXPORT_INTERVAL") == "" {
		os.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "5000")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, restore the default handling: a second
		// Ctrl-C kills a shutdown that takes too long.
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
