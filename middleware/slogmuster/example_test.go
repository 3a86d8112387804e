package slogmuster_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/musterhq/muster/middleware/slogmuster"
	"github.com/musterhq/muster/muster"
)

// A batcher whose queue is full refuses a flood of items: the log gets a
// few lines for it, not one per item, and at Stop a line counting the
// rest. A batch that fails for good is logged with its error type.
func ExampleNew() {
	// A service passes its own logger; times and durations are left out
	// here so that the output is stable.
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 || a.Key == "duration" {
				return slog.Attr{}
			}
			return a
		},
	}))
	release := make(chan struct{})
	b := &muster.Batcher[int]{
		Name:                 "orders",
		MaxBatchSize:         1,
		MaxConcurrentBatches: 1,
		Overflow:             muster.OverflowFail,
		Hooks:                slogmuster.New(logger, slogmuster.WithLimit(2, slogmuster.DefaultInterval)),
		Fire: func(_ context.Context, items []int) error {
			<-release
			if items[0] == 0 {
				return fmt.Errorf("insert: %w", syscall.ECONNREFUSED)
			}
			return nil
		},
	}
	if err := b.Start(); err != nil {
		panic(err)
	}
	_ = b.Add(context.Background(), 0) // in flight
	_ = b.Add(context.Background(), 1) // waiting for the slot
	for i := range 50 {
		_ = b.Add(context.Background(), 2+i) // refused: ErrFull
	}
	close(release)
	_ = b.Stop()
	// Output:
	// level=WARN msg="muster: item refused" muster.batcher.name=orders reason=full error="muster: pending work capacity full"
	// level=WARN msg="muster: item refused" muster.batcher.name=orders reason=full error="muster: pending work capacity full"
	// level=ERROR msg="muster: batch failed" muster.batcher.name=orders batch=1 items=1 trigger=size reason=syscall.Errno error="insert: connection refused"
	// level=WARN msg="muster: suppressed" muster.batcher.name=orders message="muster: item refused" reason=full suppressed=48
}
