package otelmuster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// 250 items, one every 10 ms, batches of up to 100, a 1 s timeout: two
// batches fire by size (each 0.99 s after its first item), the last 50 by
// the timeout; each batch takes 100 ms.
func TestMetricsScripted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mp, r := newMeterProvider()
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		b := &muster.Batcher[int]{
			Name:                 "orders",
			MaxBatchSize:         100,
			BatchTimeout:         time.Second,
			MaxConcurrentBatches: 2,
			PendingWorkCapacity:  10,
			Fire: func(context.Context, []int) error {
				time.Sleep(100 * time.Millisecond)
				return nil
			},
			Hooks: h,
		}
		mustStart(t, b.Start)
		name := kv("muster.batcher.name", "orders")
		for i := range 250 {
			mustNil(t, b.Add(context.Background(), i))
			if i == 99 { // the first batch is in flight
				synctest.Wait()
				s := collect(t, r)
				s.wantSum("muster.batch.inflight", name, 1)
				s.wantSum("muster.batch.inflight.limit", name, 2)
				s.wantSum("muster.queue.size", name, 0)
				s.wantSum("muster.queue.capacity", name, 10)
				s.wantSum("muster.item.pending", name, 100) // the batch in flight
				s.wantSum("muster.item.added", name, 100)
				if _, ok := s.sum("muster.item.processed", name); ok {
					t.Error("items processed before their batch is done")
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(2 * time.Second)
		mustNil(t, b.Stop())
		synctest.Wait() // Stop may return before the Stopped hook has run
		if err := b.Add(context.Background(), 0); !errors.Is(err, muster.ErrStopped) {
			t.Fatalf("Add after Stop: %v", err)
		}

		s := collect(t, r)
		size := kv("muster.batcher.name", "orders", "muster.batch.trigger", "size")
		timeout := kv("muster.batcher.name", "orders", "muster.batch.trigger", "timeout")
		s.wantSum("muster.item.added", name, 250)
		s.wantSum("muster.item.refused", kv("muster.batcher.name", "orders", "error.type", "stopped"), 1)
		s.wantSum("muster.item.processed", name, 250)
		if n := s.points("muster.item.processed"); n != 1 {
			t.Errorf("%d processed series, want 1 (no errors)", n)
		}
		s.wantHist("muster.batch.items", size, 2, 200)
		s.wantHist("muster.batch.items", timeout, 1, 50)
		s.wantHist("muster.batch.utilization.ratio", size, 2, 2)
		s.wantHist("muster.batch.utilization.ratio", timeout, 1, 0.5)
		s.wantHist("muster.batch.wait.duration", size, 2, 2*0.99)
		s.wantHist("muster.batch.wait.duration", timeout, 1, 1)
		s.wantHist("muster.batch.duration", name, 3, 0.3)
		s.wantSum("muster.batch.inflight", name, 0)
		for _, n := range []string{"muster.queue.size", "muster.queue.capacity", "muster.batch.inflight.limit", "muster.item.pending"} {
			if s.points(n) != 0 {
				t.Errorf("%s still observed after Stop", n)
			}
		}
		for _, n := range []string{"muster.add.blocked.duration", "muster.ratelimit.wait.duration", "muster.batch.retries"} {
			if s.points(n) != 0 {
				t.Errorf("%s recorded", n)
			}
		}
	})
}

// Backpressure, refusals, waits, retries and failures; and every instrument
// carries the catalogue's unit, description and buckets.
func TestMetricsBackpressureAndFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mp, r := newMeterProvider()
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		release := make(chan struct{})
		errBusy := errors.New("busy")
		b := &muster.Batcher[int]{
			Name:                 "orders",
			MaxBatchSize:         10,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  5,
			Fire: func(ctx context.Context, items []int) error {
				<-release
				muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit, Tokens: 1, Duration: 20 * time.Millisecond})
				muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitReason(42), Duration: time.Hour}) // not a rate limit, not backpressure
				muster.ReportWait(ctx, muster.WaitInfo{Duration: time.Hour})                                // no reason: recorded nowhere
				muster.ReportRetry(ctx, muster.RetryInfo{Attempt: 1, Err: errBusy, Backoff: time.Millisecond})
				switch items[0] {
				case 0:
					return fmt.Errorf("insert: %w", quotaError{})
				case 10:
					panic("boom")
				}
				return nil
			},
			Hooks: h,
		}
		mustStart(t, b.Start)
		ctx := context.Background()
		for i := range 25 { // batch 1 in flight, batch 2 waits, 5 queued behind it
			mustNil(t, b.Add(ctx, i))
		}
		synctest.Wait()
		name := kv("muster.batcher.name", "orders")
		s := collect(t, r)
		s.wantSum("muster.queue.size", name, 5)
		s.wantSum("muster.queue.capacity", name, 5)
		s.wantSum("muster.item.pending", name, 25) // 10 in flight, 10 waiting for a slot, 5 queued
		s.wantSum("muster.batch.inflight.limit", name, 1)
		s.wantSum("muster.batch.inflight", name, 1)

		refused := make(chan error)
		go func() {
			ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			refused <- b.Add(ctx, 100)
		}()
		taken := make(chan error)
		go func() { taken <- b.Add(ctx, 101) }()
		time.Sleep(time.Second)
		close(release)
		if err := <-refused; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("blocked Add: %v", err)
		}
		mustNil(t, <-taken)
		mustNil(t, b.Stop())

		s = collect(t, r)
		errType := func(et string) (o []string) { return []string{"muster.batcher.name", "orders", "error.type", et} }
		s.wantSum("muster.item.added", name, 26)
		s.wantSum("muster.item.refused", kv(errType("timeout")...), 1)
		s.wantSum("muster.item.processed", name, 6)
		s.wantSum("muster.item.processed", kv(errType("quota")...), 10)
		s.wantSum("muster.item.processed", kv(errType("panic")...), 10)
		s.wantHist("muster.batch.duration", name, 1, 0)
		s.wantHist("muster.batch.duration", kv(errType("quota")...), 1, 1) // released after 1 s
		s.wantHist("muster.batch.duration", kv(errType("panic")...), 1, 0)
		s.wantHist("muster.add.blocked.duration", name, 2, 1.5)
		s.wantHist("muster.ratelimit.wait.duration", name, 3, 0.06)
		s.wantSum("muster.batch.retries", kv(errType("*errors.errorString")...), 3)
		s.wantSum("muster.batch.inflight", name, 0)
		s.wantHist("muster.batch.items", kv("muster.batcher.name", "orders", "muster.batch.trigger", "size"), 2, 20)
		s.wantHist("muster.batch.items", kv("muster.batcher.name", "orders", "muster.batch.trigger", "shutdown"), 1, 6)

		// The catalogue is the single source of truth.
		for _, spec := range musterconv.All() {
			if slices.Contains([]string{"muster.queue.size", "muster.queue.capacity", "muster.batch.inflight.limit", "muster.item.pending"}, spec.Name()) {
				continue // unregistered at Stop; checked below
			}
			if slices.Contains([]string{musterconv.BatcherKeys.Name(), musterconv.KeyPending.Name(), musterconv.KeyWaiting.Name()}, spec.Name()) {
				continue // Keyed clients only: TestMetricsKeys, TestMetricsTopKeys
			}
			m, ok := s.metrics[spec.Name()]
			if !ok {
				t.Errorf("%s not recorded", spec.Name())
				continue
			}
			if m.Unit != spec.Unit() || m.Description != spec.Description() {
				t.Errorf("%s: unit %q description %q, want %q %q", spec.Name(), m.Unit, m.Description, spec.Unit(), spec.Description())
			}
			if spec.Kind() == musterconv.KindHistogram {
				var bounds []float64
				switch d := m.Data.(type) {
				case metricdata.Histogram[int64]:
					bounds = d.DataPoints[0].Bounds
				case metricdata.Histogram[float64]:
					bounds = d.DataPoints[0].Bounds
				}
				if !slices.Equal(bounds, spec.Buckets()) {
					t.Errorf("%s: buckets %v, want %v", spec.Name(), bounds, spec.Buckets())
				}
			}
		}
	})
}

// Observable instruments carry the catalogue's unit and description too.
func TestMetricsObservableCatalogue(t *testing.T) {
	mp, r := newMeterProvider()
	h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	b := &muster.Batcher[int]{MaxBatchSize: 1, MaxConcurrentBatches: 1, Fire: func(context.Context, []int) error { return nil }, Hooks: h}
	mustStart(t, b.Start)
	defer b.Stop()
	s := collect(t, r)
	for _, spec := range []musterconv.Spec{musterconv.QueueSize.Spec, musterconv.QueueCapacity.Spec, musterconv.BatchInflightLimit.Spec, musterconv.ItemPending.Spec} {
		m, ok := s.metrics[spec.Name()]
		if !ok || m.Unit != spec.Unit() || m.Description != spec.Description() {
			t.Errorf("%s: %+v", spec.Name(), m)
		}
		if d, ok := m.Data.(metricdata.Sum[int64]); !ok || d.IsMonotonic {
			t.Errorf("%s: %T, want a non-monotonic sum", spec.Name(), m.Data)
		}
	}
	s.wantSum("muster.queue.capacity", kv("muster.batcher.name", "muster"), 0) // unnamed
}

// At a Shutdown deadline: the in-flight batch and the abandoned one both
// count as processed with error.type shutdown_incomplete; the abandoned one
// has no duration and never was in flight.
func TestMetricsShutdownIncomplete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mp, r := newMeterProvider()
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		b := &muster.Batcher[int]{
			Name:                 "orders",
			MaxBatchSize:         2,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  10,
			Fire: func(ctx context.Context, _ []int) error {
				<-ctx.Done()
				return context.Cause(ctx)
			},
			Hooks: h,
		}
		mustStart(t, b.Start)
		for i := range 5 {
			mustNil(t, b.Add(context.Background(), i))
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, muster.ErrIncomplete) {
			t.Fatalf("Shutdown: %v", err)
		}
		synctest.Wait()
		s := collect(t, r)
		name := kv("muster.batcher.name", "orders")
		lost := kv("muster.batcher.name", "orders", "error.type", "shutdown_incomplete")
		s.wantSum("muster.item.added", name, 5)
		s.wantSum("muster.item.processed", lost, 5)
		s.wantHist("muster.batch.duration", lost, 1, 1)
		s.wantSum("muster.batch.inflight", name, 0)
		s.wantHist("muster.batch.items", kv("muster.batcher.name", "orders", "muster.batch.trigger", "size"), 1, 2)
	})
}

// Clients sharing a name add up; each one's Stop removes only its share.
func TestMetricsSharedName(t *testing.T) {
	synctest.Test(t, testMetricsSharedName)
}

func testMetricsSharedName(t *testing.T) {
	mp, r := newMeterProvider()
	h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	release := make(chan struct{})
	gate := release
	newB := func(name string, capacity, limit uint) *muster.Batcher[int] {
		b := &muster.Batcher[int]{
			Name: name, MaxBatchSize: 10, PendingWorkCapacity: capacity, MaxConcurrentBatches: limit,
			Fire: func(context.Context, []int) error { return nil }, Hooks: h,
		}
		if name == "x" && capacity == 3 && gate != nil {
			wait := gate
			b.Fire = func(context.Context, []int) error { <-wait; return nil }
			gate = nil // only x1 waits
		}
		mustStart(t, b.Start)
		return b
	}
	ctx := context.Background()
	x1, x2, y := newB("x", 3, 1), newB("x", 4, 2), newB("y", 5, 1)
	x3 := newB("x", 3, 1) // configured as x1 is
	for i := range 22 {   // x1: a batch in flight, one waiting, 2 items queued
		mustNil(t, x1.Add(ctx, i))
	}
	x, yy := kv("muster.batcher.name", "x"), kv("muster.batcher.name", "y")
	s := collect(t, r)
	s.wantSum("muster.queue.capacity", x, 10)
	s.wantSum("muster.queue.size", x, 2)
	s.wantSum("muster.batch.inflight.limit", x, 4)
	s.wantSum("muster.queue.capacity", yy, 5)
	s.wantSum("muster.batch.inflight.limit", yy, 1)
	mustNil(t, x2.Stop())
	synctest.Wait() // Stop may return before the Stopped hook has run
	s = collect(t, r)
	s.wantSum("muster.queue.capacity", x, 6)
	s.wantSum("muster.batch.inflight.limit", x, 2)
	// x3, configured as x1 is, stops: its share goes, x1's queue is still
	// observed.
	mustNil(t, x3.Add(ctx, 0))
	mustNil(t, x3.Stop())
	synctest.Wait()
	s = collect(t, r)
	s.wantSum("muster.queue.capacity", x, 3)
	s.wantSum("muster.queue.size", x, 2)
	close(release)
	mustNil(t, x1.Stop())
	mustNil(t, y.Stop())
	synctest.Wait()
	s = collect(t, r)
	if n := s.points("muster.queue.capacity"); n != 0 {
		t.Errorf("%d capacity series after every Stop", n)
	}
	// A new client of an old name is observed again.
	x4 := newB("x", 7, 0)
	s = collect(t, r)
	s.wantSum("muster.queue.capacity", x, 7)
	if _, ok := s.sum("muster.batch.inflight.limit", x); ok {
		t.Error("limit observed for a client without one")
	}
	mustNil(t, x4.Stop())
}

// Metrics have no Added hook, so an accepted item costs them nothing; a
// batch's Fired and Done allocate nothing (Fired keeps the batch's context).
func TestMetricsAllocations(t *testing.T) {
	mp, _ := newMeterProvider()
	o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	h := o.Observe(muster.ClientInfo{ID: 1, Name: "orders", MaxBatchSize: 100})
	if h.Added != nil {
		t.Error("metrics have an Added hook: every Add would pay for it")
	}
	ctx := context.Background()
	fire := muster.FireInfo{Size: 100, Trigger: muster.TriggerSize, Age: time.Millisecond}
	h.Done(h.Fired(ctx, fire), muster.DoneInfo{FireInfo: fire})
	if n := testing.AllocsPerRun(1000, func() {
		h.Done(h.Fired(ctx, fire), muster.DoneInfo{FireInfo: fire, Duration: time.Millisecond})
	}); n > 0 {
		t.Errorf("Fired+Done: %v allocations, want none", n)
	}
}

// NewHooks traces and measures.
func TestNewHooks(t *testing.T) {
	mp, r := newMeterProvider()
	tp, sr := newTracerProvider()
	h, err := otelmuster.NewHooks(otelmuster.WithMeterProvider(mp), otelmuster.WithTracerProvider(tp))
	mustNil(t, err)
	if hk := h.Observe(muster.ClientInfo{Name: "probe"}); hk == nil || hk.Added == nil || hk.Fired == nil || hk.Done == nil || hk.Refused == nil {
		t.Errorf("hooks missing: %+v", hk)
	}
	b := &muster.Batcher[int]{Name: "orders", MaxBatchSize: 3, Fire: func(context.Context, []int) error { return nil }, Hooks: h}
	mustStart(t, b.Start)
	for i := range 7 {
		mustNil(t, b.Add(remoteCtx(i, true), i))
	}
	mustNil(t, b.Stop())
	if n := len(spansNamed(sr, "fire orders")); n != 3 {
		t.Errorf("%d spans", n)
	}
	if n := len(spansNamed(sr, "create orders")); n != 7 {
		t.Errorf("%d create spans, want one per sampled item", n)
	}
	collect(t, r).wantSum("muster.item.processed", kv("muster.batcher.name", "orders"), 7)
}

// A batch where only some items failed counts each item with its own
// error.type; refusals and drops under the overflow policies are counted.
func TestMetricsPartialFailureAndOverflow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mp, r := newMeterProvider()
		h, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		release := make(chan struct{})
		b := &muster.Batcher[int]{
			Name: "rows", MaxBatchSize: 4, MaxConcurrentBatches: 1, PendingWorkCapacity: 0,
			Overflow: muster.OverflowFail, Hooks: h,
			Fire: func(ctx context.Context, items []int) error {
				<-release
				errs := make([]error, len(items))
				errs[1], errs[3] = quotaError{}, quotaError{}
				return &muster.ItemErrors{Errs: errs}
			},
		}
		mustStart(t, b.Start)
		for i := range 8 { // one batch in flight, one waiting
			mustNil(t, b.Add(context.Background(), i))
		}
		if err := b.Add(context.Background(), 8); !errors.Is(err, muster.ErrFull) {
			t.Fatalf("Add at capacity: %v", err)
		}
		close(release)
		mustNil(t, b.Stop())
		s := collect(t, r)
		s.wantSum("muster.item.processed", kv("muster.batcher.name", "rows"), 4)
		s.wantSum("muster.item.processed", kv("muster.batcher.name", "rows", "error.type", "quota"), 4)
		s.wantSum("muster.item.added", kv("muster.batcher.name", "rows"), 8)
		s.wantSum("muster.item.refused", kv("muster.batcher.name", "rows", "error.type", "full"), 1)
	})
}
