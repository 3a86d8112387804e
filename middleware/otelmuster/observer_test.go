package otelmuster_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// Issue 9: hooks are per client. Two idle batchers of one name, a started
// before b, look alike to anything that guesses a client from its name and
// counters; stopping b must remove b's share of the gauges and nothing of
// a's: a's queued items are still read afterwards, and only a's capacity.
func TestMetricsPerClientScoping(t *testing.T) {
	mp, r := newMeterProvider()
	o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	gate := make(chan struct{})
	a := &muster.Batcher[int]{
		Name: "orders", MaxBatchSize: 1, MaxConcurrentBatches: 1, PendingWorkCapacity: 5,
		Fire:  func(context.Context, []int) error { <-gate; return nil },
		Hooks: o,
	}
	b := &muster.Batcher[int]{
		Name: "orders", MaxBatchSize: 1, MaxConcurrentBatches: 2, PendingWorkCapacity: 7,
		Fire:  func(context.Context, []int) error { return nil },
		Hooks: o,
	}
	mustStart(t, a.Start)
	mustStart(t, b.Start)
	name := kv("muster.batcher.name", "orders")
	s := collect(t, r)
	s.wantSum("muster.queue.capacity", name, 12)
	s.wantSum("muster.batch.inflight.limit", name, 3)
	s.wantSum("muster.queue.size", name, 0)

	mustNil(t, b.Stop()) // both idle: identical counters
	s = collect(t, r)
	s.wantSum("muster.queue.capacity", name, 5)
	s.wantSum("muster.batch.inflight.limit", name, 1)

	// a: one batch in flight (blocked), one waiting for the slot, 3 queued
	// behind it.
	for i := range 5 {
		mustNil(t, a.Add(context.Background(), i))
	}
	if q := a.Stats().Queued; q != 3 {
		t.Fatalf("Stats.Queued = %d, want 3", q)
	}
	s = collect(t, r)
	s.wantSum("muster.queue.size", name, 3)
	s.wantSum("muster.queue.capacity", name, 5)
	s.wantSum("muster.batch.inflight.limit", name, 1)

	close(gate)
	mustNil(t, a.Stop())
	s = collect(t, r)
	for _, n := range []string{"muster.queue.size", "muster.queue.capacity", "muster.batch.inflight.limit"} {
		if s.points(n) != 0 {
			t.Errorf("%s still observed after both stopped", n)
		}
	}
	s.wantSum("muster.item.added", name, 5)
	s.wantSum("muster.item.processed", name, 5)
}

// The same scoping with the hooks called directly: each Observe gives a
// client of its own, even with the same ClientInfo but for its ID.
func TestMetricsObservePerClient(t *testing.T) {
	mp, r := newMeterProvider()
	o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	queued := []int{4, 6}
	info := func(i int) muster.ClientInfo {
		return muster.ClientInfo{ID: uint64(i + 1), Name: "twins", MaxBatchSize: 10, PendingWorkCapacity: 10,
			Stats: func() muster.Stats { return muster.Stats{Queued: queued[i]} }}
	}
	h0, h1 := o.Observe(info(0)), o.Observe(info(1))
	name := kv("muster.batcher.name", "twins")
	collect(t, r).wantSum("muster.queue.size", name, 10)
	h1.Stopped(context.Background(), info(1))
	s := collect(t, r)
	s.wantSum("muster.queue.size", name, 4)
	s.wantSum("muster.queue.capacity", name, 10)
	h1.Stopped(context.Background(), info(1)) // twice: still only its own share
	collect(t, r).wantSum("muster.queue.size", name, 4)
	h0.Stopped(context.Background(), info(0))
	if n := collect(t, r).points("muster.queue.size"); n != 0 {
		t.Errorf("%d queue.size series after both stopped", n)
	}
}

// A Keyed with 1,000 keys and MaxConcurrentBatches 2: batches of all keys
// share the two slots, so muster.batch.inflight never reads above 2, and
// the capacity is PendingWorkCapacity, shared by the keys (not per key), as
// the backpressure producers meet. Collected while loaded: concurrently
// with the batches and producers, and exactly once they are all blocked.
func TestMetricsKeyedSharedLimits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			keys     = 1000
			capacity = 50
			limit    = 2
		)
		mp, r := newMeterProvider()
		o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		tokens := make(chan struct{}, keys)
		k := &muster.Keyed[int, int]{
			Name:                 "tenants",
			Key:                  func(i int) int { return i },
			MaxBatchSize:         1,
			MaxConcurrentBatches: limit,
			PendingWorkCapacity:  capacity,
			MaxKeys:              keys,
			Fire:                 func(context.Context, []int) error { <-tokens; return nil },
			Hooks:                o,
		}
		mustStart(t, k.Start)
		var producers sync.WaitGroup
		for p := range 8 {
			producers.Go(func() {
				for i := p; i < keys; i += 8 {
					if err := k.Add(context.Background(), i); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		name := kv("muster.batcher.name", "tenants")
		check := func(s snapshot) (inflight, queued int64) {
			t.Helper()
			inflight, _ = s.sum("muster.batch.inflight", name) // absent before the first fire
			if inflight < 0 || inflight > limit {
				t.Fatalf("muster.batch.inflight = %d, want at most %d", inflight, limit)
			}
			s.wantSum("muster.batch.inflight.limit", name, limit)
			s.wantSum("muster.queue.capacity", name, capacity)
			queued, _ = s.sum("muster.queue.size", name)
			if queued < 0 || queued > capacity {
				t.Fatalf("muster.queue.size = %d, want 0 to %d", queued, capacity)
			}
			return inflight, queued
		}
		released := 0
		for step := 0; released < keys; step++ {
			check(collect(t, r)) // while batches run and producers add
			synctest.Wait()
			// Everyone is blocked: the two slots are taken, producers wait
			// for room (as long as enough items remain).
			inflight, queued := check(collect(t, r))
			left := keys - released // items not done
			if want := int64(min(limit, left)); inflight != want {
				t.Fatalf("step %d, %d done: inflight %d, want %d", step, released, inflight, want)
			}
			if want := int64(max(0, min(capacity, left-limit-1))); queued != want {
				t.Fatalf("step %d, %d done: queue.size %d, want %d", step, released, queued, want)
			}
			for range min(1+step%4, left) { // release 1 to 4 batches
				tokens <- struct{}{}
				released++
			}
		}
		producers.Wait()
		synctest.Wait()
		s := collect(t, r)
		s.wantSum("muster.batch.inflight", name, 0)
		s.wantSum("muster.queue.size", name, 0)
		s.wantSum("muster.batcher.keys", name, keys)
		s.wantSum("muster.item.processed", name, keys)
		mustNil(t, k.Stop())
	})
}

// Both ways in a trace: an item added under a sampled request span gets a
// "create" span, child of the request span, linked to the batch span, which
// links back to it; an item under an unsampled (valid) span context is
// linked directly, with no create span; an item without a span gets
// neither.
func TestTracingItemSpansBothWays(t *testing.T) {
	tp, sr := newTracerProvider()
	b := &muster.Batcher[int]{
		Name:         "orders",
		MaxBatchSize: 3,
		Fire:         func(context.Context, []int) error { return nil },
		Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)),
	}
	mustStart(t, b.Start)
	reqCtx, req := tp.Tracer("user").Start(context.Background(), "request")
	unsampled := remoteCtx(7, false)
	mustNil(t, b.Add(reqCtx, 1))
	mustNil(t, b.Add(unsampled, 2))
	mustNil(t, b.Add(context.Background(), 3))
	req.End()
	mustNil(t, b.Stop())

	if n := len(sr.Ended()); n != 3 {
		t.Errorf("%d spans, want 3 (request, create, fire)", n)
	}
	batches, creates := spansNamed(sr, "fire orders"), spansNamed(sr, "create orders")
	if len(batches) != 1 || len(creates) != 1 {
		t.Fatalf("%d batch spans, %d create spans; want 1 and 1", len(batches), len(creates))
	}
	batch, create := batches[0], creates[0]
	// The create span is in the request's trace, its child.
	if !create.Parent().Equal(req.SpanContext()) {
		t.Errorf("create span's parent %v, want the request span %v", create.Parent(), req.SpanContext())
	}
	if create.SpanContext().TraceID() != req.SpanContext().TraceID() {
		t.Error("create span not in the request's trace")
	}
	if create.SpanKind() != trace.SpanKindProducer {
		t.Errorf("create span kind %v, want producer", create.SpanKind())
	}
	wantAttr(t, attrs(create.Attributes()), "muster.batcher.name", "orders")
	if create.Status().Code != codes.Unset {
		t.Errorf("create span status %v", create.Status())
	}
	if !create.EndTime().Equal(batch.StartTime()) {
		t.Errorf("create span ended %v, want at the fire %v", create.EndTime(), batch.StartTime())
	}
	// It links to the batch span.
	if l := create.Links(); len(l) != 1 || !l[0].SpanContext.Equal(batch.SpanContext()) {
		t.Errorf("create span links %v, want the batch span %v", l, batch.SpanContext())
	}
	// The batch span links to it, then to the unsampled context, directly.
	want := []trace.SpanContext{create.SpanContext(), trace.SpanContextFromContext(unsampled)}
	links := batch.Links()
	if len(links) != len(want) {
		t.Fatalf("batch links %v, want %v", links, want)
	}
	for i := range want {
		if !links[i].SpanContext.Equal(want[i]) {
			t.Errorf("batch link %d = %v, want %v", i, links[i].SpanContext, want[i])
		}
	}
	if batch.Parent().IsValid() {
		t.Errorf("batch span's parent %v, want a new root", batch.Parent())
	}
}

// WithItemSpans(false): sampled request spans are linked directly, with no
// create span.
func TestTracingItemSpansOff(t *testing.T) {
	tp, sr := newTracerProvider()
	b := &muster.Batcher[int]{
		Name:         "orders",
		MaxBatchSize: 2,
		Fire:         func(context.Context, []int) error { return nil },
		Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp), otelmuster.WithItemSpans(false)),
	}
	mustStart(t, b.Start)
	reqCtx, req := tp.Tracer("user").Start(context.Background(), "request")
	mustNil(t, b.Add(reqCtx, 1))
	mustNil(t, b.Add(remoteCtx(3, false), 2))
	req.End()
	mustNil(t, b.Stop())
	if n := len(spansNamed(sr, "create orders")); n != 0 {
		t.Errorf("%d create spans with item spans off", n)
	}
	batches := spansNamed(sr, "fire orders")
	if len(batches) != 1 {
		t.Fatalf("%d batch spans", len(batches))
	}
	if l := batches[0].Links(); len(l) != 2 || !l[0].SpanContext.Equal(req.SpanContext()) ||
		!l[1].SpanContext.Equal(trace.SpanContextFromContext(remoteCtx(3, false))) {
		t.Errorf("batch links %v, want the request span, then the unsampled context", l)
	}
}

// An item taken, then dropped under OverflowDropOldest: its create span ends
// at the drop with error status and error.type dropped, and no batch span
// links to it.
func TestTracingItemSpanDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, sr := newTracerProvider()
		gate := make(chan struct{})
		b := &muster.Batcher[int]{
			Name:                 "orders",
			MaxBatchSize:         1,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  1,
			Overflow:             muster.OverflowDropOldest,
			Fire:                 func(context.Context, []int) error { <-gate; return nil },
			Hooks:                otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)),
		}
		mustStart(t, b.Start)
		ctx := context.Background()
		mustNil(t, b.Add(ctx, 1)) // in flight, blocked
		mustNil(t, b.Add(ctx, 2)) // waits for the slot
		reqCtx, req := tp.Tracer("user").Start(ctx, "request")
		mustNil(t, b.Add(reqCtx, 3)) // queued behind it: the capacity is used up
		req.End()
		if n := len(spansNamed(sr, "create orders")); n != 0 {
			t.Fatalf("%d create spans ended before the drop", n)
		}
		mustNil(t, b.Add(ctx, 4)) // drops item 3
		if st := b.Stats(); st.Dropped != 1 {
			t.Fatalf("Stats.Dropped = %d, want 1", st.Dropped)
		}
		creates := spansNamed(sr, "create orders")
		if len(creates) != 1 {
			t.Fatalf("%d create spans ended at the drop, want 1", len(creates))
		}
		c := creates[0]
		if c.Status().Code != codes.Error || c.Status().Description != muster.ErrDropped.Error() {
			t.Errorf("dropped item's create span status %+v, want error %q", c.Status(), muster.ErrDropped)
		}
		wantAttr(t, attrs(c.Attributes()), "error.type", "dropped")
		if !c.Parent().Equal(req.SpanContext()) {
			t.Errorf("create span's parent %v, want the request", c.Parent())
		}
		if len(c.Links()) != 0 {
			t.Errorf("dropped item's create span links %v", c.Links())
		}
		close(gate)
		mustNil(t, b.Stop())
		batches := spansNamed(sr, "fire orders")
		if len(batches) != 3 {
			t.Fatalf("%d batch spans, want 3 (items 1, 2, 4)", len(batches))
		}
		for _, s := range batches {
			if len(s.Links()) != 0 {
				t.Errorf("batch %v links %v: nothing it carried had a span", attrs(s.Attributes())["muster.batch.id"], s.Links())
			}
		}
		if n := len(spansNamed(sr, "create orders")); n != 1 {
			t.Errorf("%d create spans in all, want 1", n)
		}
	})
}

// Backpressure: a producer held in Add is measured by
// muster.add.blocked.duration and gets a muster.wait event (reason
// backpressure) on its own span.
func TestBackpressureWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, sr := newTracerProvider()
		mp, r := newMeterProvider()
		o, err := otelmuster.NewHooks(otelmuster.WithTracerProvider(tp), otelmuster.WithMeterProvider(mp))
		mustNil(t, err)
		gate := make(chan struct{})
		b := &muster.Batcher[int]{
			Name:                 "orders",
			MaxBatchSize:         1,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  0,
			Fire:                 func(context.Context, []int) error { <-gate; return nil },
			Hooks:                o,
		}
		mustStart(t, b.Start)
		mustNil(t, b.Add(context.Background(), 1)) // in flight, blocked
		mustNil(t, b.Add(context.Background(), 2)) // waits for the slot: full
		added := make(chan error)
		go func() {
			ctx, span := tp.Tracer("user").Start(context.Background(), "producer")
			err := b.Add(ctx, 3) // held until the first batch is done
			span.End()
			added <- err
		}()
		time.Sleep(750 * time.Millisecond)
		synctest.Wait()
		if n := len(spansNamed(sr, "producer")); n != 0 {
			t.Fatal("the producer was not held")
		}
		close(gate)
		mustNil(t, <-added)
		mustNil(t, b.Stop())

		collect(t, r).wantHist("muster.add.blocked.duration", kv("muster.batcher.name", "orders"), 1, 0.75)
		producers := spansNamed(sr, "producer")
		if len(producers) != 1 {
			t.Fatalf("%d producer spans", len(producers))
		}
		ev := producers[0].Events()
		if len(ev) != 1 || ev[0].Name != "muster.wait" {
			t.Fatalf("producer span events %+v, want one muster.wait", ev)
		}
		a := attrs(ev[0].Attributes)
		wantAttr(t, a, "muster.wait.reason", "backpressure")
		wantAttr(t, a, "muster.wait.duration", 0.75)
		if _, ok := a["error.type"]; ok {
			t.Error("error.type on a wait that ended with the item taken")
		}
		for _, s := range spansNamed(sr, "fire orders") {
			for _, e := range s.Events() {
				t.Errorf("batch span event %q: backpressure belongs to the producer", e.Name)
			}
		}
	})
}

// Observe's hooks are safe to call for a client that never had a batch,
// and one observer serves several clients at once.
func TestObserverManyClients(t *testing.T) {
	tp, sr := newTracerProvider()
	mp, r := newMeterProvider()
	o, err := otelmuster.NewHooks(otelmuster.WithTracerProvider(tp), otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	var bs []*muster.Batcher[int]
	for i := range 4 {
		b := &muster.Batcher[int]{
			Name: fmt.Sprint("c", i%2), MaxBatchSize: 2,
			Fire: func(context.Context, []int) error { return nil }, Hooks: o,
		}
		mustStart(t, b.Start)
		bs = append(bs, b)
	}
	var wg sync.WaitGroup
	for _, b := range bs {
		wg.Go(func() {
			for j := range 10 {
				if err := b.Add(remoteCtx(j, true), j); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for _, b := range bs {
		mustNil(t, b.Stop())
	}
	for _, n := range []string{"c0", "c1"} {
		if got := len(spansNamed(sr, "fire "+n)); got != 10 {
			t.Errorf("%d batch spans for %s, want 10", got, n)
		}
		if got := len(spansNamed(sr, "create "+n)); got != 20 {
			t.Errorf("%d create spans for %s, want 20", got, n)
		}
		collect(t, r).wantSum("muster.item.processed", kv("muster.batcher.name", n), 20)
	}
	if err := bs[0].Add(context.Background(), 0); !errors.Is(err, muster.ErrStopped) {
		t.Errorf("Add after Stop: %v", err)
	}
}

type tagKey struct{}

// Composed before another observer whose Added returns a context derived
// from the one it was given (so that FireInfo.Contexts holds that one), the
// tracing observer still finds its create spans: they end at the fire,
// linked to the batch span. Two tracing observers each end their own
// create and batch spans, and each batch span gets its own wait event.
func TestTracingComposedItemSpans(t *testing.T) {
	tp1, sr1 := newTracerProvider()
	tp2, sr2 := newTracerProvider()
	var seen []any
	var mu sync.Mutex
	tagger := &muster.Hooks{
		Added: func(ctx context.Context, _ muster.AddInfo) context.Context {
			return context.WithValue(ctx, tagKey{}, "tag")
		},
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range info.Contexts {
				seen = append(seen, c.Value(tagKey{}))
			}
			return nil
		},
	}
	b := &muster.Batcher[int]{
		Name:         "orders",
		MaxBatchSize: 2,
		Fire: func(ctx context.Context, _ []int) error {
			muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit, Duration: time.Millisecond})
			return nil
		},
		Hooks: muster.Compose(
			otelmuster.NewTracing(otelmuster.WithTracerProvider(tp1)),
			otelmuster.NewTracing(otelmuster.WithTracerProvider(tp2)),
			tagger,
		),
	}
	mustStart(t, b.Start)
	reqCtx, req := tp1.Tracer("user").Start(context.Background(), "request")
	mustNil(t, b.Add(reqCtx, 1))
	mustNil(t, b.Add(remoteCtx(4, false), 2))
	req.End()
	mustNil(t, b.Stop())
	for i, sr := range []*tracetest.SpanRecorder{sr1, sr2} {
		batches, creates := spansNamed(sr, "fire orders"), spansNamed(sr, "create orders")
		if len(batches) != 1 || len(creates) != 1 {
			t.Fatalf("tracer %d: %d batch spans, %d create spans ended; want 1 and 1", i+1, len(batches), len(creates))
		}
		c := creates[0]
		if !c.Parent().Equal(req.SpanContext()) {
			t.Errorf("tracer %d: create span's parent %v, want the request", i+1, c.Parent())
		}
		if l := c.Links(); len(l) != 1 || !l[0].SpanContext.Equal(batches[0].SpanContext()) {
			t.Errorf("tracer %d: create span links %v, want its batch span", i+1, l)
		}
		want := []trace.SpanContext{c.SpanContext(), trace.SpanContextFromContext(remoteCtx(4, false))}
		if l := batches[0].Links(); len(l) != 2 || !l[0].SpanContext.Equal(want[0]) || !l[1].SpanContext.Equal(want[1]) {
			t.Errorf("tracer %d: batch links %v, want %v", i+1, l, want)
		}
		if ev := batches[0].Events(); len(ev) != 1 || ev[0].Name != "muster.ratelimit.wait" {
			t.Errorf("tracer %d: batch span events %+v, want one muster.ratelimit.wait", i+1, ev)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(seen) != "[tag tag]" {
		t.Errorf("the other observer's contexts carried %v, want its tags", seen)
	}
}

// A Keyed refusing an item whose key is a NaN counts it with error.type
// invalid_key.
func TestMetricsInvalidKey(t *testing.T) {
	mp, r := newMeterProvider()
	o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	k := &muster.Keyed[float64, float64]{
		Name: "floats", Key: func(f float64) float64 { return f }, MaxBatchSize: 1,
		Fire: func(context.Context, []float64) error { return nil }, Hooks: o,
	}
	mustStart(t, k.Start)
	if err := k.Add(context.Background(), math.NaN()); !errors.Is(err, muster.ErrInvalidKey) {
		t.Fatalf("Add(NaN): %v", err)
	}
	mustNil(t, k.Stop())
	collect(t, r).wantSum("muster.item.refused", kv("muster.batcher.name", "floats", "error.type", "invalid_key"), 1)
}

// Refused and a producer's Waited may run after a client's Stopped (the
// core's Hooks doc): they are still recorded, against the client's name,
// and neither brings back the gauges of the client that left nor counts
// its items added twice.
func TestMetricsHooksAfterStopped(t *testing.T) {
	mp, r := newMeterProvider()
	o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	info := muster.ClientInfo{ID: 1, Name: "late", MaxBatchSize: 10, PendingWorkCapacity: 10,
		Stats: func() muster.Stats { return muster.Stats{Added: 3, Queued: 2} }}
	h := o.Observe(info)
	name := kv("muster.batcher.name", "late")
	collect(t, r).wantSum("muster.queue.size", name, 2)
	ctx := context.Background()
	h.Stopped(ctx, info)
	h.Refused(ctx, muster.AddInfo{Err: muster.ErrDropped, Taken: true})
	h.Refused(ctx, muster.AddInfo{Err: muster.ErrStopped})
	h.Waited(ctx, muster.WaitInfo{Reason: muster.WaitBackpressure, Duration: 2 * time.Second})

	s := collect(t, r)
	s.wantSum("muster.item.dropped", kv("muster.batcher.name", "late", "error.type", "dropped"), 1)
	s.wantSum("muster.item.refused", kv("muster.batcher.name", "late", "error.type", "stopped"), 1)
	s.wantHist("muster.add.blocked.duration", name, 1, 2)
	s.wantSum("muster.item.added", name, 3)
	for _, n := range []string{"muster.queue.size", "muster.queue.capacity", "muster.item.pending"} {
		if s.points(n) != 0 {
			t.Errorf("%s observed again after Stopped", n)
		}
	}
}

// A ClientInfo without Stats (an Observe called by hand) joins no group:
// its Stopped leaves none, and its hooks still record.
func TestMetricsStoppedWithoutStats(t *testing.T) {
	mp, r := newMeterProvider()
	o, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	mustNil(t, err)
	info := muster.ClientInfo{ID: 1, Name: "bare"}
	h := o.Observe(info)
	ctx := context.Background()
	h.Stopped(ctx, info)
	h.Refused(ctx, muster.AddInfo{Err: muster.ErrStopped})
	s := collect(t, r)
	s.wantSum("muster.item.refused", kv("muster.batcher.name", "bare", "error.type", "stopped"), 1)
	if n := s.points("muster.item.added"); n != 0 {
		t.Errorf("%d muster.item.added series for a client without Stats", n)
	}
}
