package slogmuster_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/musterhq/muster/middleware/slogmuster"
	"github.com/musterhq/muster/muster"
)

// logBuffer is a concurrency-safe buffer of slog text lines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// lines returns the lines written so far, and forgets them.
func (b *logBuffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(b.buf.String())
	b.buf.Reset()
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// newLogger returns a text logger without times, writing to a buffer.
func newLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	h := slog.NewTextHandler(b, &slog.HandlerOptions{ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			return slog.Attr{}
		}
		return a
	}})
	return slog.New(h), b
}

func mustNil(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A flood of refusals writes DefaultBurst lines a second per reason; the
// next line says how many were left out, and what is left out at the end is
// logged when the client stops.
func TestRefusalsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := newLogger()
		release := make(chan struct{})
		b := &muster.Batcher[int]{
			Name: "orders", MaxBatchSize: 1, MaxConcurrentBatches: 1, Overflow: muster.OverflowFail,
			Hooks: slogmuster.New(l),
			Fire:  func(context.Context, []int) error { <-release; return nil },
		}
		mustNil(t, b.Start())
		ctx := context.Background()
		mustNil(t, b.Add(ctx, 0)) // in flight
		mustNil(t, b.Add(ctx, 1)) // waiting for the slot
		flood := func(n int) {
			for i := range n {
				if err := b.Add(ctx, 2+i); !errors.Is(err, muster.ErrFull) {
					t.Fatalf("Add: %v, want ErrFull", err)
				}
			}
		}
		flood(100)
		got := out.lines()
		if len(got) != slogmuster.DefaultBurst {
			t.Fatalf("%d lines for 100 refusals in an instant, want %d:\n%s", len(got), slogmuster.DefaultBurst, strings.Join(got, "\n"))
		}
		for _, line := range got {
			for _, want := range []string{"level=WARN", `msg="muster: item refused"`, "muster.batcher.name=orders", "reason=full", `error="muster: pending work capacity full"`} {
				if !strings.Contains(line, want) {
					t.Errorf("line %q lacks %s", line, want)
				}
			}
			if strings.Contains(line, "suppressed") {
				t.Errorf("line %q: nothing was suppressed before it", line)
			}
		}

		time.Sleep(slogmuster.DefaultInterval)
		flood(10)
		got = out.lines()
		if len(got) != slogmuster.DefaultBurst || !strings.HasSuffix(got[0], "suppressed=97") || strings.Contains(got[1], "suppressed") {
			t.Fatalf("the next second's lines, want the first to count the 97 left out:\n%s", strings.Join(got, "\n"))
		}

		close(release)
		mustNil(t, b.Stop())
		synctest.Wait()
		got = out.lines()
		if len(got) != 1 || got[0] != `level=WARN msg="muster: suppressed" muster.batcher.name=orders message="muster: item refused" reason=full suppressed=7` {
			t.Fatalf("at Stop, want one line for the 7 left out:\n%s", strings.Join(got, "\n"))
		}
	})
}

// Each reason has its own limit: a flood of one does not hide another.
func TestLimitPerReason(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := newLogger()
		b := &muster.Keyed[string, string]{
			Name: "tenants", Key: func(s string) string { return s }, MaxKeys: 1, MaxBatchSize: 10,
			Hooks: slogmuster.New(l, slogmuster.WithLimit(1, time.Minute)),
			Fire:  func(context.Context, []string) error { return nil },
		}
		mustNil(t, b.Start())
		ctx := context.Background()
		mustNil(t, b.Add(ctx, "a"))
		for range 5 {
			if err := b.Add(ctx, "b"); !errors.Is(err, muster.ErrTooManyKeys) {
				t.Fatalf("Add of a second key: %v", err)
			}
		}
		mustNil(t, b.Stop())
		for range 5 {
			if err := b.Add(ctx, "a"); !errors.Is(err, muster.ErrStopped) {
				t.Fatalf("Add after Stop: %v", err)
			}
		}
		got := out.lines()
		var tooMany, stopped int
		for _, line := range got {
			switch {
			case strings.Contains(line, `msg="muster: item refused"`) && strings.Contains(line, "reason=too_many_keys"):
				tooMany++
			case strings.Contains(line, `msg="muster: item refused"`) && strings.Contains(line, "reason=stopped"):
				stopped++
			}
		}
		if tooMany != 1 || stopped != 1 {
			t.Fatalf("%d too_many_keys and %d stopped lines, want 1 each:\n%s", tooMany, stopped, strings.Join(got, "\n"))
		}
	})
}

// panicky is a seed Batch whose Add panics on the item "bad".
type panicky struct{}

func (panicky) Add(item any) {
	if item == "bad" {
		panic("bad item")
	}
}

func (panicky) Fire(n muster.Notifier) { n.Done() }

// An item sent on Work whose Batch.Add panics, and a Fire that panics, are
// logged at ERROR with their stacks.
func TestPanicsWithStack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := newLogger()
		c := &muster.Client{Name: "seed", MaxBatchSize: 10, PendingWorkCapacity: 10, Hooks: slogmuster.New(l),
			BatchMaker: func() muster.Batch { return panicky{} }}
		mustNil(t, c.Start())
		c.Work <- "ok"
		c.Work <- "bad"
		mustNil(t, c.Stop())
		got := out.lines()
		if len(got) != 1 {
			t.Fatalf("%d lines, want 1:\n%s", len(got), strings.Join(got, "\n"))
		}
		for _, want := range []string{"level=ERROR", `msg="muster: item refused"`, "muster.batcher.name=seed", "reason=panic", "bad item", "stack=", "slogmuster_test.panicky.Add"} {
			if !strings.Contains(got[0], want) {
				t.Errorf("line lacks %s: %s", want, got[0])
			}
		}

		b := &muster.Batcher[int]{
			Name: "fire", MaxBatchSize: 2, Hooks: slogmuster.New(l),
			Fire: func(_ context.Context, items []int) error { panic("fire boom") },
		}
		mustNil(t, b.Start())
		mustNil(t, b.Add(context.Background(), 1))
		mustNil(t, b.Add(context.Background(), 2))
		mustNil(t, b.Stop())
		got = out.lines()
		if len(got) != 1 {
			t.Fatalf("%d lines, want 1:\n%s", len(got), strings.Join(got, "\n"))
		}
		for _, want := range []string{"level=ERROR", `msg="muster: batch failed"`, "muster.batcher.name=fire", "batch=1", "items=2", "trigger=size", "reason=panic", "fire boom", "stack=", "TestPanicsWithStack"} {
			if !strings.Contains(got[0], want) {
				t.Errorf("line lacks %s: %s", want, got[0])
			}
		}
	})
}

type quotaError struct{}

func (quotaError) Error() string     { return "quota exceeded" }
func (quotaError) ErrorType() string { return "quota" }

// Failed batches are logged with their error and error type, a partial
// failure with the number of items that failed; successful ones are not.
func TestFailedBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := newLogger()
		b := &muster.Keyed[string, int]{
			Name: "rows", Key: func(int) string { return "eu" }, MaxBatchSize: 3, MaxConcurrentBatches: 1, Hooks: slogmuster.New(l),
			Fire: func(_ context.Context, items []int) error {
				switch items[0] {
				case 0:
					return quotaError{}
				case 3:
					return &muster.ItemErrors{Errs: []error{nil, quotaError{}, nil}}
				}
				return nil
			},
		}
		mustNil(t, b.Start())
		for i := range 9 {
			mustNil(t, b.Add(context.Background(), i))
		}
		mustNil(t, b.Stop())
		got := out.lines()
		if len(got) != 2 {
			t.Fatalf("%d lines, want 2 (two failed batches):\n%s", len(got), strings.Join(got, "\n"))
		}
		want := []string{
			`level=ERROR msg="muster: batch failed" muster.batcher.name=rows batch=1 items=3 trigger=size key=eu reason=quota error="quota exceeded" duration=0s`,
			`level=ERROR msg="muster: batch failed" muster.batcher.name=rows batch=2 items=3 trigger=size key=eu reason=partial error="muster: 1 of 3 items failed: quota exceeded" duration=0s failed=1`,
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("line %d:\n got %s\nwant %s", i, got[i], want[i])
			}
		}
	})
}

// A Shutdown whose deadline passes logs each batch it abandons unfired,
// with its items, however many (abandoned batches are not rate limited).
func TestAbandonedAtShutdown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := newLogger()
		b := &muster.Batcher[int]{
			Name: "slow", MaxBatchSize: 2, MaxConcurrentBatches: 1, PendingWorkCapacity: 10,
			Hooks: slogmuster.New(l, slogmuster.WithLimit(1, time.Hour)),
			Fire: func(ctx context.Context, _ []int) error {
				<-ctx.Done() // a downstream that never answers
				return ctx.Err()
			},
		}
		mustNil(t, b.Start())
		for i := range 8 { // [0 1] in flight, 3 batches waiting
			mustNil(t, b.Add(context.Background(), i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := b.Shutdown(ctx)
		if !errors.Is(err, muster.ErrIncomplete) {
			t.Fatalf("Shutdown: %v", err)
		}
		synctest.Wait()
		var abandoned, failed int
		for _, line := range out.lines() {
			switch {
			case strings.Contains(line, `msg="muster: batch abandoned"`):
				abandoned++
				for _, want := range []string{"level=ERROR", "muster.batcher.name=slow", "items=2", "reason=shutdown_incomplete", "age=1s"} {
					if !strings.Contains(line, want) {
						t.Errorf("line lacks %s: %s", want, line)
					}
				}
			case strings.Contains(line, `msg="muster: batch failed"`):
				failed++ // the batch in flight, canceled at the deadline
			default:
				t.Errorf("unexpected line %s", line)
			}
		}
		if abandoned != 3 || failed != 1 {
			t.Fatalf("%d abandoned and %d failed batches logged, want 3 and 1", abandoned, failed)
		}
	})
}

// WithLimit(0, 0) logs every event.
func TestNoLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, out := newLogger()
		b := &muster.Batcher[int]{Name: "x", MaxBatchSize: 1, Hooks: slogmuster.New(l, slogmuster.WithLimit(0, 0)),
			Fire: func(context.Context, []int) error { return nil }}
		mustNil(t, b.Start())
		mustNil(t, b.Stop())
		for range 20 {
			_ = b.Add(context.Background(), 1)
		}
		if n := len(out.lines()); n != 20 {
			t.Fatalf("%d lines for 20 refusals without a limit", n)
		}
	})
}
