package otelmuster_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// 300 items from 300 distinct sampled spans, fired by the timeout: one span,
// a new root, 128 links, 172 dropped, every attribute exact. With item
// spans, the links are to the first 128 items' create spans, each a child
// of its item's span; without, to the items' spans themselves.
func TestTracingBatchSpan(t *testing.T) {
	for _, itemSpans := range []bool{false, true} {
		t.Run(fmt.Sprint("itemSpans=", itemSpans), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { testTracingBatchSpan(t, itemSpans) })
		})
	}
}

func testTracingBatchSpan(t *testing.T, itemSpans bool) {
	tp, sr := newTracerProvider()
	b := &muster.Batcher[int]{
		Name:         "orders",
		MaxBatchSize: 1000,
		BatchTimeout: time.Second,
		Fire:         func(context.Context, []int) error { return nil },
		Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp), otelmuster.WithItemSpans(itemSpans)),
	}
	mustStart(t, b.Start)
	start := time.Now()
	for i := range 300 {
		mustNil(t, b.Add(remoteCtx(i, true), i))
	}
	time.Sleep(2 * time.Second)
	mustNil(t, b.Stop())

	spans := spansNamed(sr, "fire orders")
	if len(spans) != 1 {
		t.Fatalf("%d batch spans, want 1", len(spans))
	}
	creates := spansNamed(sr, "create orders")
	if want := map[bool]int{false: 0, true: 300}[itemSpans]; len(creates) != want || len(sr.Ended()) != 1+want {
		t.Fatalf("%d create spans, %d spans in all; want %d create spans", len(creates), len(sr.Ended()), want)
	}
	s := spans[0]
	if s.Name() != "fire orders" {
		t.Errorf("name %q", s.Name())
	}
	if s.SpanKind() != trace.SpanKindInternal {
		t.Errorf("kind %v", s.SpanKind())
	}
	if s.Parent().IsValid() {
		t.Errorf("parent %v, want a new root", s.Parent())
	}
	if got, want := s.StartTime(), start.Add(time.Second); !got.Equal(want) {
		t.Errorf("start %v, want %v", got, want)
	}
	if s.Status().Code != codes.Unset {
		t.Errorf("status %v", s.Status())
	}
	a := attrs(s.Attributes())
	wantAttr(t, a, "messaging.batch.message_count", int64(300))
	wantAttr(t, a, "muster.batcher.name", "orders")
	wantAttr(t, a, "muster.batch.trigger", "timeout")
	wantAttr(t, a, "muster.batch.max_size", int64(1000))
	wantAttr(t, a, "muster.batch.id", int64(1))
	wantAttr(t, a, "muster.batch.first_item_age", 1.0)
	wantAttr(t, a, "muster.batch.slot_wait", 0.0)
	wantAttr(t, a, "muster.batch.links.dropped", int64(172))
	if _, ok := a["error.type"]; ok {
		t.Error("error.type set on success")
	}
	if len(a) != 8 {
		t.Errorf("%d attributes, want 8: %v", len(a), s.Attributes())
	}
	links := s.Links()
	if len(links) != 128 || s.DroppedLinks() != 0 {
		t.Fatalf("%d links (%d dropped by the SDK), want 128 (0)", len(links), s.DroppedLinks())
	}
	for i, l := range links {
		item := trace.SpanContextFromContext(remoteCtx(i, true))
		want := item
		if itemSpans {
			c := creates[i] // create spans end at the fire, in item order
			if !c.Parent().Equal(item) {
				t.Fatalf("create span %d has parent %v, want item %d's span", i, c.Parent().SpanID(), i)
			}
			want = c.SpanContext()
		}
		if !l.SpanContext.Equal(want) {
			t.Fatalf("link %d = %v, want item %d's span", i, l.SpanContext.SpanID(), i)
		}
		if l.SpanContext.TraceID() == s.SpanContext().TraceID() {
			t.Fatalf("link %d shares the batch's trace", i)
		}
	}
	for i, c := range creates { // linked to the batch, even past the cap
		if l := c.Links(); len(l) != 1 || !l[0].SpanContext.Equal(s.SpanContext()) {
			t.Fatalf("create span %d links %v, want the batch span", i, l)
		}
	}
}

// Duplicates are dropped, invalid contexts skipped, sampled ones come first.
// (Without item spans: with them, each sampled item links its own create
// span.)
func TestTracingLinksDedupAndOrder(t *testing.T) {
	tp, sr := newTracerProvider()
	b := &muster.Batcher[int]{
		MaxBatchSize: 9,
		Fire:         func(context.Context, []int) error { return nil },
		Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp), otelmuster.WithItemSpans(false)),
	}
	mustStart(t, b.Start)
	unsampled, sampled := remoteCtx(1, false), remoteCtx(2, true)
	sampledCopy := remoteCtx(2, true) // same span, another context
	for _, ctx := range []context.Context{
		unsampled, unsampled, context.Background(), sampled, unsampled,
		sampledCopy, context.Background(), remoteCtx(3, true), sampled,
	} {
		mustNil(t, b.Add(ctx, 0))
	}
	mustNil(t, b.Stop())
	s := spansNamed(sr, "fire muster") // an unnamed batcher
	if len(s) != 1 {
		t.Fatalf("%d batch spans", len(s))
	}
	var got []string
	for _, l := range s[0].Links() {
		got = append(got, fmt.Sprintf("%s/%v", l.SpanContext.SpanID(), l.SpanContext.IsSampled()))
	}
	want := []string{"0000000000000003/true", "0000000000000004/true", "0000000000000002/false"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("links %v, want %v", got, want)
	}
	a := attrs(s[0].Attributes())
	if _, ok := a["muster.batch.links.dropped"]; ok {
		t.Error("links.dropped set with nothing dropped")
	}
	wantAttr(t, a, "muster.batcher.name", "muster")
	wantAttr(t, a, "messaging.batch.message_count", int64(9))
	wantAttr(t, a, "muster.batch.trigger", "size")
}

// With more candidates than the cap, every sampled one is kept before any
// unsampled one.
func TestTracingLinksCapSampledFirst(t *testing.T) {
	for _, tc := range []struct {
		max, links, dropped int
	}{
		{-1, 300, 0}, // no cap of ours; the SDK's is raised below
		{0, 0, 300},
		{128, 128, 172},
		{5, 5, 295},
	} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			sr := new(recorder)
			tp := sdktrace.NewTracerProvider(
				sdktrace.WithSpanProcessor(sr),
				sdktrace.WithRawSpanLimits(sdktrace.SpanLimits{
					LinkCountLimit: -1, AttributeCountLimit: -1, EventCountLimit: -1,
					AttributeValueLengthLimit: -1, AttributePerEventCountLimit: -1, AttributePerLinkCountLimit: -1,
				}),
			)
			b := &muster.Batcher[int]{
				MaxBatchSize: 300,
				Fire:         func(context.Context, []int) error { return nil },
				Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp), otelmuster.WithMaxLinks(tc.max), otelmuster.WithItemSpans(false)),
			}
			mustStart(t, b.Start)
			for i := range 300 {
				mustNil(t, b.Add(remoteCtx(i, i%3 == 2), i)) // 100 sampled
			}
			mustNil(t, b.Stop())
			s := sr.only(t)
			links := s.Links()
			if len(links) != tc.links {
				t.Fatalf("%d links, want %d", len(links), tc.links)
			}
			for i, l := range links {
				if want := i < 100; l.SpanContext.IsSampled() != want {
					t.Fatalf("link %d sampled=%v, want %v", i, !want, want)
				}
			}
			a := attrs(s.Attributes())
			if tc.dropped == 0 {
				if _, ok := a["muster.batch.links.dropped"]; ok {
					t.Error("links.dropped set")
				}
			} else {
				wantAttr(t, a, "muster.batch.links.dropped", int64(tc.dropped))
			}
		})
	}
}

// recorder keeps ended spans (tracetest.SpanRecorder without OnStart).
type recorder struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (r *recorder) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (r *recorder) OnEnd(s sdktrace.ReadOnlySpan) {
	r.mu.Lock()
	r.spans = append(r.spans, s)
	r.mu.Unlock()
}
func (r *recorder) Shutdown(context.Context) error   { return nil }
func (r *recorder) ForceFlush(context.Context) error { return nil }

func (r *recorder) only(t *testing.T) sdktrace.ReadOnlySpan {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.spans) != 1 {
		t.Fatalf("%d spans, want 1", len(r.spans))
	}
	return r.spans[0]
}

// valueCtx is a context of a type that == cannot compare (it panics).
type valueCtx struct {
	context.Context
	tags []string
}

func TestTracingNonComparableContexts(t *testing.T) {
	tp, sr := newTracerProvider()
	b := &muster.Batcher[int]{
		MaxBatchSize: 4,
		Fire:         func(context.Context, []int) error { return nil },
		Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp), otelmuster.WithItemSpans(false)),
	}
	mustStart(t, b.Start)
	for i := range 4 {
		mustNil(t, b.Add(valueCtx{remoteCtx(i/2, true), nil}, i))
	}
	mustNil(t, b.Stop())
	s := spansNamed(sr, "fire muster")
	if len(s) != 1 || s[0].Status().Code != codes.Unset || len(s[0].Links()) != 2 {
		t.Fatalf("spans %d; want one, unset status, 2 links: %+v", len(s), s)
	}
}

// The user's spans inside Fire are children of the batch span; waits and
// retries reported inside it are its events.
func TestTracingFireContextAndEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, sr := newTracerProvider()
		errBusy := errors.New("busy")
		b := &muster.Batcher[int]{
			Name:         "orders",
			MaxBatchSize: 2,
			Fire: func(ctx context.Context, items []int) error {
				muster.ReportWait(ctx, muster.WaitInfo{Reason: muster.WaitRateLimit, Tokens: 2, Duration: 20 * time.Millisecond})
				for attempt := 1; attempt <= 2; attempt++ {
					time.Sleep(time.Second)
					muster.ReportRetry(ctx, muster.RetryInfo{Attempt: attempt, Err: errBusy, Backoff: time.Duration(attempt) * 100 * time.Millisecond})
				}
				_, span := tp.Tracer("user").Start(ctx, "insert")
				span.End()
				return nil
			},
			Hooks: otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)),
		}
		mustStart(t, b.Start)
		mustNil(t, b.Add(context.Background(), 1))
		mustNil(t, b.Add(context.Background(), 2))
		mustNil(t, b.Stop())

		batch, insert := spansNamed(sr, "fire orders"), spansNamed(sr, "insert")
		if len(batch) != 1 || len(insert) != 1 {
			t.Fatalf("%d batch spans, %d insert spans", len(batch), len(insert))
		}
		if got, want := insert[0].Parent().SpanID(), batch[0].SpanContext().SpanID(); got != want {
			t.Errorf("insert's parent %v, want the batch span %v", got, want)
		}
		if insert[0].SpanContext().TraceID() != batch[0].SpanContext().TraceID() {
			t.Error("insert is not in the batch's trace")
		}
		if len(batch[0].Links()) != 0 {
			t.Errorf("%d links for items without spans", len(batch[0].Links()))
		}
		if d := batch[0].EndTime().Sub(batch[0].StartTime()); d != 2*time.Second {
			t.Errorf("span lasted %v, want 2s", d)
		}
		ev := batch[0].Events()
		if len(ev) != 3 {
			t.Fatalf("%d events, want 3: %+v", len(ev), ev)
		}
		if ev[0].Name != "muster.ratelimit.wait" {
			t.Errorf("event 0 %q", ev[0].Name)
		}
		a := attrs(ev[0].Attributes)
		wantAttr(t, a, "muster.wait.duration", 0.02)
		wantAttr(t, a, "muster.wait.tokens", int64(2))
		wantAttr(t, a, "muster.wait.reason", "ratelimit")
		for i, e := range ev[1:] {
			if e.Name != "muster.retry" {
				t.Errorf("event %d %q", i+1, e.Name)
			}
			a := attrs(e.Attributes)
			wantAttr(t, a, "muster.retry.attempt", int64(i+1))
			wantAttr(t, a, "muster.retry.backoff", float64(i+1)*0.1)
			wantAttr(t, a, "error.type", "*errors.errorString")
			wantAttr(t, a, "error.message", "busy")
			if want := batch[0].StartTime().Add(time.Duration(i+1) * time.Second); !e.Time.Equal(want) {
				t.Errorf("event %d at %v, want %v", i+1, e.Time, want)
			}
		}
	})
}

type quotaError struct{}

func (quotaError) Error() string     { return "quota exceeded" }
func (quotaError) ErrorType() string { return "quota" }

// A failed batch: error status with the message, error.type, no
// exception event; a panicking one: error.type "panic" and the stack.
func TestTracingErrors(t *testing.T) {
	tp, sr := newTracerProvider()
	b := &muster.Batcher[int]{
		Name:                 "orders",
		MaxBatchSize:         1,
		MaxConcurrentBatches: 1,
		Fire: func(_ context.Context, items []int) error {
			switch items[0] {
			case 1:
				return fmt.Errorf("write: %w", quotaError{})
			case 2:
				var m map[string]int
				m["x"] = 1 // panics
			case 3:
				return fmt.Errorf("write: %w", context.DeadlineExceeded)
			}
			return nil
		},
		Hooks: otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)),
	}
	mustStart(t, b.Start)
	for i := 1; i <= 4; i++ {
		mustNil(t, b.Add(context.Background(), i))
	}
	mustNil(t, b.Stop())
	spans := spansNamed(sr, "fire orders")
	if len(spans) != 4 {
		t.Fatalf("%d spans", len(spans))
	}
	byID := map[int64]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[attrs(s.Attributes())["muster.batch.id"].AsInt64()] = s
	}
	for id, want := range map[int64]struct {
		typ, msg string
		events   int
	}{
		1: {"quota", "write: quota exceeded", 0},
		2: {"panic", "muster: panic: assignment to entry in nil map", 1},
		3: {"timeout", "write: context deadline exceeded", 0},
		4: {"", "", 0},
	} {
		s := byID[id]
		a := attrs(s.Attributes())
		if want.typ == "" {
			if s.Status().Code != codes.Unset || a["error.type"].Type() != attribute.INVALID {
				t.Errorf("batch %d: status %v, error.type %v", id, s.Status(), a["error.type"])
			}
			continue
		}
		if s.Status().Code != codes.Error || s.Status().Description != want.msg {
			t.Errorf("batch %d: status %+v, want error %q", id, s.Status(), want.msg)
		}
		wantAttr(t, a, "error.type", want.typ)
		if len(s.Events()) != want.events {
			t.Errorf("batch %d: %d events, want %d", id, len(s.Events()), want.events)
		}
		if want.events == 1 {
			e := s.Events()[0]
			ea := attrs(e.Attributes)
			if e.Name != "exception" || !strings.Contains(ea["exception.stacktrace"].AsString(), "TestTracingErrors") {
				t.Errorf("batch %d: event %q, stack %q", id, e.Name, ea["exception.stacktrace"].AsString())
			}
			wantAttr(t, ea, "exception.type", "runtime.plainError")
		}
	}
}

// At a Shutdown deadline the in-flight batch fails with shutdown_incomplete
// and the batch that never fired gets a span of its own, ended at once.
func TestTracingShutdownIncomplete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, sr := newTracerProvider()
		b := &muster.Batcher[int]{
			Name:                 "orders",
			MaxBatchSize:         1,
			MaxConcurrentBatches: 1,
			PendingWorkCapacity:  10,
			Fire: func(ctx context.Context, _ []int) error {
				<-ctx.Done()
				return context.Cause(ctx)
			},
			Hooks: otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)),
		}
		mustStart(t, b.Start)
		mustNil(t, b.Add(remoteCtx(1, true), 1))
		mustNil(t, b.Add(remoteCtx(2, true), 2)) // waits for a slot
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); !errors.Is(err, muster.ErrIncomplete) {
			t.Fatalf("Shutdown: %v", err)
		}
		synctest.Wait()
		spans := spansNamed(sr, "fire orders")
		if len(spans) != 2 {
			t.Fatalf("%d spans, want 2", len(spans))
		}
		// Each item's create span (on by default) ended when its batch
		// fired or was abandoned, linked both ways with that batch's span.
		creates := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		for _, c := range spansNamed(sr, "create orders") {
			creates[c.SpanContext().SpanID()] = c
		}
		if len(creates) != 2 {
			t.Errorf("%d create spans, want 2", len(creates))
		}
		for _, s := range spans {
			a := attrs(s.Attributes())
			wantAttr(t, a, "error.type", "shutdown_incomplete")
			if s.Status().Code != codes.Error || len(s.Links()) != 1 {
				t.Fatalf("batch %v: status %v, %d links", a["muster.batch.id"].AsInt64(), s.Status(), len(s.Links()))
			}
			c, ok := creates[s.Links()[0].SpanContext.SpanID()]
			if !ok {
				t.Errorf("batch %v links %v, not a create span", a["muster.batch.id"].AsInt64(), s.Links()[0].SpanContext)
				continue
			}
			if l := c.Links(); len(l) != 1 || !l[0].SpanContext.Equal(s.SpanContext()) {
				t.Errorf("batch %v: its create span links %v", a["muster.batch.id"].AsInt64(), l)
			}
		}
	})
}

// By default, a create span per item that has a sampled span, from its Add
// to the fire, linked both ways with the batch span.
func TestTracingItemSpans(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tp, sr := newTracerProvider()
		b := &muster.Batcher[int]{
			Name:         "orders",
			BatchTimeout: time.Second,
			Fire:         func(context.Context, []int) error { return nil },
			Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp)), // item spans on by default
		}
		mustStart(t, b.Start)
		tr := tp.Tracer("user")
		r1, req1 := tr.Start(context.Background(), "request 1")
		r2, req2 := tr.Start(context.Background(), "request 2")
		t0 := time.Now()
		mustNil(t, b.Add(r1, 1))
		time.Sleep(100 * time.Millisecond)
		mustNil(t, b.Add(r2, 2))
		mustNil(t, b.Add(r1, 3))
		mustNil(t, b.Add(context.Background(), 4)) // no span: no create span
		req1.End()
		req2.End()
		time.Sleep(2 * time.Second)
		mustNil(t, b.Stop())

		batch := spansNamed(sr, "fire orders")
		creates := spansNamed(sr, "create orders")
		if len(batch) != 1 || len(creates) != 3 {
			t.Fatalf("%d batch spans, %d create spans", len(batch), len(creates))
		}
		fire := t0.Add(time.Second)
		parents := []trace.Span{req1, req2, req1}
		starts := []time.Time{t0, t0.Add(100 * time.Millisecond), t0.Add(100 * time.Millisecond)}
		links := batch[0].Links()
		if len(links) != 3 {
			t.Fatalf("%d batch links", len(links))
		}
		for i, c := range creates {
			if c.SpanKind() != trace.SpanKindProducer {
				t.Errorf("create %d kind %v", i, c.SpanKind())
			}
			if c.Parent().SpanID() != parents[i].SpanContext().SpanID() {
				t.Errorf("create %d parent %v", i, c.Parent().SpanID())
			}
			if !c.StartTime().Equal(starts[i]) || !c.EndTime().Equal(fire) {
				t.Errorf("create %d from %v to %v, want %v to %v", i, c.StartTime(), c.EndTime(), starts[i], fire)
			}
			if l := c.Links(); len(l) != 1 || !l[0].SpanContext.Equal(batch[0].SpanContext()) {
				t.Errorf("create %d links %v", i, l)
			}
			if !links[i].SpanContext.Equal(c.SpanContext()) {
				t.Errorf("batch link %d is not create span %d", i, i)
			}
			wantAttr(t, attrs(c.Attributes()), "muster.batcher.name", "orders")
		}
	})
}

// The seed's Client with items on Work: one span per batch, no links.
func TestTracingClient(t *testing.T) {
	tp, sr := newTracerProvider()
	c := &muster.Client{
		Name:         "seed",
		MaxBatchSize: 2,
		BatchMaker:   func() muster.Batch { return &seedBatch{} },
		Hooks:        otelmuster.NewTracing(otelmuster.WithTracerProvider(tp), otelmuster.WithSpanKind(trace.SpanKindClient)),
	}
	mustStart(t, c.Start)
	for i := range 4 {
		c.Work <- i
	}
	mustNil(t, c.Stop())
	spans := spansNamed(sr, "fire seed")
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	for _, s := range spans {
		if s.SpanKind() != trace.SpanKindClient || len(s.Links()) != 0 {
			t.Errorf("kind %v, %d links", s.SpanKind(), len(s.Links()))
		}
	}
}

type seedBatch struct{ n int }

func (b *seedBatch) Add(any)                { b.n++ }
func (b *seedBatch) Fire(n muster.Notifier) { n.Done() }

// Hooks without a recording span, and hooks called without a batch, do not
// panic; Added keeps nothing for an item without a span.
func TestTracingNoSpan(t *testing.T) {
	h := otelmuster.NewTracing(otelmuster.WithTracerProvider(noop.NewTracerProvider())).Observe(muster.ClientInfo{ID: 1})
	if h == nil || h.Added == nil {
		t.Fatalf("no Added hook: item contexts would not be kept: %+v", h)
	}
	ctx := context.Background()
	if kept := h.Added(ctx, muster.AddInfo{}); kept != nil {
		t.Errorf("Added kept %v for an item without a span", kept)
	}
	h.Refused(ctx, muster.AddInfo{Err: muster.ErrDropped})
	h.Waited(ctx, muster.WaitInfo{Duration: time.Second})
	h.Waited(ctx, muster.WaitInfo{Reason: muster.WaitBackpressure, Duration: time.Second})
	h.Retried(ctx, muster.RetryInfo{Attempt: 1, Err: errors.New("x")})
	h.Done(ctx, muster.DoneInfo{})
	h.Done(ctx, muster.DoneInfo{Err: muster.ErrIncomplete})
	// A sampled item on a provider that records nothing: its create span is
	// a no-op, ended at the fire all the same.
	kept := h.Added(remoteCtx(1, true), muster.AddInfo{})
	if kept == nil {
		t.Error("Added kept nothing for an item with a sampled span")
	}
	ctx = h.Fired(ctx, muster.FireInfo{Size: 2, Contexts: []context.Context{nil, kept}})
	h.Done(ctx, muster.DoneInfo{Err: errors.New("x")})
}

// What the tracing hooks allocate of their own, on a provider that
// allocates nothing for a span: per sampled item, Added keeps its context
// (one allocation, and one for the context the tracer returns), and a
// batch's hooks do no per-item work beyond the tracer's, however many
// create spans they end.
func TestTracingAllocations(t *testing.T) {
	h := otelmuster.NewTracing(otelmuster.WithTracerProvider(noop.NewTracerProvider())).Observe(muster.ClientInfo{ID: 1, Name: "orders"})
	item := remoteCtx(1, true)
	if n := testing.AllocsPerRun(1000, func() { h.Added(item, muster.AddInfo{}) }); n > 2 {
		t.Errorf("Added for a sampled item: %v allocations, want at most 2", n)
	}
	kept := make([]context.Context, 100)
	for i := range kept {
		kept[i] = h.Added(remoteCtx(i, true), muster.AddInfo{})
	}
	fire := muster.FireInfo{Size: len(kept), Trigger: muster.TriggerSize, Contexts: kept}
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() {
		h.Done(h.Fired(ctx, fire), muster.DoneInfo{FireInfo: fire})
	}); n >= float64(len(kept)) {
		t.Errorf("Fired+Done of a batch of %d create spans: %v allocations, want fewer than one per item", len(kept), n)
	}
}
