package otelmuster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"unsafe"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/muster"
)

// Span attribute and event names. muster.batcher.name, muster.batch.trigger
// and error.type are the metric attributes of the catalogue.
const (
	batchMessageCountKey = attribute.Key("messaging.batch.message_count")
	batchIDKey           = attribute.Key("muster.batch.id")
	batchMaxSizeKey      = attribute.Key("muster.batch.max_size")
	batchFirstItemAgeKey = attribute.Key("muster.batch.first_item_age") // seconds
	batchSlotWaitKey     = attribute.Key("muster.batch.slot_wait")      // seconds
	batchLinksDroppedKey = attribute.Key("muster.batch.links.dropped")
	batchKeyKey          = attribute.Key("muster.batch.key") // a Keyed client's batch key

	waitReasonKey   = attribute.Key("muster.wait.reason")
	waitDurationKey = attribute.Key("muster.wait.duration") // seconds
	waitTokensKey   = attribute.Key("muster.wait.tokens")

	retryAttemptKey = attribute.Key("muster.retry.attempt")
	retryBackoffKey = attribute.Key("muster.retry.backoff") // seconds
	errorMessageKey = attribute.Key("error.message")

	exceptionTypeKey       = attribute.Key("exception.type")
	exceptionMessageKey    = attribute.Key("exception.message")
	exceptionStacktraceKey = attribute.Key("exception.stacktrace")

	eventRateLimitWait = "muster.ratelimit.wait"
	eventWait          = "muster.wait"
	eventRetry         = "muster.retry"
	eventException     = "exception"
)

// NewTracing returns hooks that trace batches: a span per fired batch, a new
// root linked to the spans of the items' Add contexts, with events for the
// waits and retries reported inside it and the batch's outcome as its
// status. Install them on a muster.Client or muster.Batcher (Hooks field),
// alone or combined with others by muster.Compose; [NewHooks] adds metrics.
// The package documentation describes the spans.
//
// It reads [WithTracerProvider], [WithMaxLinks], [WithSpanKind] and
// [WithItemSpans]. The hooks may be shared by any number of clients.
func NewTracing(opts ...Option) *muster.Hooks {
	c := newConfig(opts)
	t := &tracing{
		tracer:    c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version())),
		kind:      c.spanKind,
		maxLinks:  c.maxLinks,
		itemSpans: c.itemSpans,
	}
	return &muster.Hooks{
		Fired:            t.fired,
		Done:             t.done,
		Waited:           t.waited,
		Retried:          t.retried,
		KeepItemContexts: true,
		KeepItemTimes:    c.itemSpans,
	}
}

type tracing struct {
	tracer    trace.Tracer
	kind      trace.SpanKind
	maxLinks  int
	itemSpans bool
	names     sync.Map                  // client name -> *spanNames
	last      atomic.Pointer[spanNames] // the last one looked up
}

// spanNames holds what depends only on a client's name, built once.
type spanNames struct {
	key          string // the client's Name
	fire, create string
	attr         attribute.KeyValue // muster.batcher.name
}

// namesFor returns the names of a client. Most programs have one client, or
// batches of one client in a row: the last lookup is checked first, which
// spares hashing the name.
func (t *tracing) namesFor(name string) *spanNames {
	if n := t.last.Load(); n != nil && n.key == name {
		return n
	}
	v, ok := t.names.Load(name)
	if !ok {
		shown := name
		if shown == "" {
			shown = defaultName
		}
		v, _ = t.names.LoadOrStore(name, &spanNames{
			key: name, fire: "fire " + shown, create: "create " + shown, attr: batcherNameKey.String(shown),
		})
	}
	n := v.(*spanNames)
	t.last.Store(n)
	return n
}

// batchSpanKey marks the batch span in the context Fired returns, so that
// Done ends this package's span and no other (a span in BaseContext, say).
type batchSpanKey struct{}

func batchSpan(ctx context.Context) (trace.Span, bool) {
	s, ok := ctx.Value(batchSpanKey{}).(trace.Span)
	return s, ok
}

// fired starts the batch span; Fire and Done run with it in their context.
func (t *tracing) fired(ctx context.Context, info muster.FireInfo) context.Context {
	ctx, span := t.start(ctx, info)
	return context.WithValue(ctx, batchSpanKey{}, span)
}

// start starts a batch span at info.Start: a new root, linked to the items'
// span contexts (or their create spans), with the batch's attributes.
func (t *tracing) start(ctx context.Context, info muster.FireInfo) (context.Context, trace.Span) {
	n := t.namesFor(info.Name)
	s := getScratch()
	defer s.release()
	if t.itemSpans {
		t.startItemSpans(s, n, info)
	} else {
		s.collect(info.Contexts)
	}
	links, dropped := s.links(t.maxLinks)
	// Samplers see the name, the links and what a sampler might key on; the
	// rest is set only on a recording span, so that an unsampled batch
	// costs less.
	var opts [5]trace.SpanStartOption
	var startAttrs [4]attribute.KeyValue
	sa := append(startAttrs[:0],
		n.attr,
		batchTriggerKey.String(info.Trigger.String()),
		batchMessageCountKey.Int(info.Size),
	)
	if info.Key != nil {
		sa = append(sa, batchKeyKey.String(keyString(info.Key)))
	}
	o := append(opts[:0],
		trace.WithNewRoot(),
		trace.WithSpanKind(t.kind),
		trace.WithTimestamp(info.Start),
		trace.WithAttributes(sa...),
	)
	if len(links) > 0 {
		o = append(o, trace.WithLinks(links...))
	}
	ctx, span := t.tracer.Start(ctx, n.fire, o...)
	if span.IsRecording() {
		attrs := append(s.attrs[:0],
			batchMaxSizeKey.Int(info.MaxBatchSize),
			batchIDKey.Int64(int64(info.BatchID)),
			batchFirstItemAgeKey.Float64(info.Age.Seconds()),
			batchSlotWaitKey.Float64(info.SlotWait.Seconds()),
		)
		if dropped > 0 {
			attrs = append(attrs, batchLinksDroppedKey.Int(dropped))
		}
		span.SetAttributes(attrs...)
		s.attrs = attrs // the SDK copies attributes and links: s can be reused
	}
	if len(s.creates) > 0 {
		back := trace.Link{SpanContext: span.SpanContext()}
		for _, c := range s.creates {
			c.AddLink(back)
			c.End(trace.WithTimestamp(info.Start))
		}
	}
	return ctx, span
}

// keyString is the muster.batch.key value of a Keyed client's key: a
// string key as is, any other key in fmt's %v form.
func keyString(k any) string {
	if s, ok := k.(string); ok {
		return s
	}
	return fmt.Sprint(k)
}

// startItemSpans starts a create span per item whose context carries a span,
// from the item's enqueue time, and collects their span contexts as the
// batch span's link candidates. start ends them.
func (t *tracing) startItemSpans(s *scratch, n *spanNames, info muster.FireInfo) {
	attrs := trace.WithAttributes(n.attr, batchIDKey.Int64(int64(info.BatchID)))
	kind := trace.WithSpanKind(trace.SpanKindProducer)
	for i, c := range info.Contexts {
		if !trace.SpanContextFromContext(c).IsValid() {
			continue
		}
		at := info.Start
		if i < len(info.Enqueued) {
			at = info.Enqueued[i]
		}
		_, cs := t.tracer.Start(c, n.create, kind, attrs, trace.WithTimestamp(at))
		s.creates = append(s.creates, cs)
		s.add(cs.SpanContext())
	}
}

// spanFor finds the span a wait or a retry belongs to: the batch span when
// ctx descends from the batch's context, else whatever span ctx carries.
func spanFor(ctx context.Context) trace.Span {
	if s, ok := batchSpan(ctx); ok {
		return s
	}
	return trace.SpanFromContext(ctx)
}

// waited adds an event for a wait reported with muster.ReportWait.
func (t *tracing) waited(ctx context.Context, info muster.WaitInfo) {
	span := spanFor(ctx)
	if !span.IsRecording() {
		return
	}
	name := eventWait
	if info.Reason == ReasonRateLimit || info.Reason == "" {
		name = eventRateLimitWait
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, waitDurationKey.Float64(info.Duration.Seconds()))
	if info.Reason != "" {
		attrs = append(attrs, waitReasonKey.String(info.Reason))
	}
	if info.Tokens != 0 {
		attrs = append(attrs, waitTokensKey.Int(info.Tokens))
	}
	if info.Err != nil {
		attrs = append(attrs, errorTypeKey.String(ErrorType(info.Err)), errorMessageKey.String(info.Err.Error()))
	}
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// retried adds an event for a failed attempt reported with muster.ReportRetry.
func (t *tracing) retried(ctx context.Context, info muster.RetryInfo) {
	span := spanFor(ctx)
	if !span.IsRecording() {
		return
	}
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs,
		retryAttemptKey.Int(info.Attempt),
		retryBackoffKey.Float64(info.Backoff.Seconds()),
	)
	if info.Err != nil {
		attrs = append(attrs, errorTypeKey.String(ErrorType(info.Err)), errorMessageKey.String(info.Err.Error()))
	}
	span.AddEvent(eventRetry, trace.WithAttributes(attrs...))
}

// done records the outcome and ends the batch span. A batch with no span of
// ours (abandoned at a Shutdown deadline before it fired, or one whose Fired
// hooks panicked before ours ran) gets a span started and ended here, so
// that its failure and the items it carried stay visible.
func (t *tracing) done(ctx context.Context, info muster.DoneInfo) {
	span, ok := batchSpan(ctx)
	if !ok {
		if info.Err == nil {
			return
		}
		_, span = t.start(ctx, info.FireInfo)
	}
	if err := info.Err; err != nil {
		span.SetAttributes(errorTypeKey.String(ErrorType(err)))
		span.SetStatus(codes.Error, err.Error())
		if pe := (*muster.PanicError)(nil); errors.As(err, &pe) {
			typ := "<nil>"
			if pe.Value != nil {
				typ = reflect.TypeOf(pe.Value).String()
			}
			span.AddEvent(eventException, trace.WithAttributes(
				exceptionTypeKey.String(typ),
				exceptionMessageKey.String(pe.Error()),
				exceptionStacktraceKey.String(string(pe.Stack)),
			))
		}
	}
	if info.Start.IsZero() {
		span.End()
		return
	}
	span.End(trace.WithTimestamp(info.Start.Add(info.Duration)))
}

// ReasonRateLimit is the muster.WaitInfo.Reason of a rate limiter's wait. A
// wait with this reason, or none, becomes a muster.ratelimit.wait span event
// and a muster.ratelimit.wait.duration measurement; other reasons become a
// muster.wait event and no measurement.
const ReasonRateLimit = "ratelimit"

// scratch holds the per-batch working memory of start, pooled so that a
// steady stream of batches allocates none of it.
type scratch struct {
	seen    map[spanKey]struct{}
	sampled []trace.SpanContext
	other   []trace.SpanContext
	out     []trace.Link
	creates []trace.Span
	attrs   []attribute.KeyValue
}

type spanKey struct {
	t trace.TraceID
	s trace.SpanID
}

// linearSeen is how many span contexts add deduplicates by scanning before
// it switches to the map.
const linearSeen = 8

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func (s *scratch) release() {
	if cap(s.sampled)+cap(s.other) > 1<<14 {
		return // a huge batch: let the GC have it
	}
	clear(s.seen)
	clear(s.sampled)
	clear(s.other)
	clear(s.out)
	clear(s.creates)
	clear(s.attrs)
	s.sampled, s.other, s.out, s.creates, s.attrs = s.sampled[:0], s.other[:0], s.out[:0], s.creates[:0], s.attrs[:0]
	scratchPool.Put(s)
}

// collect adds the span context of each item context. Runs of the same
// context (a producer adding many items under one request) cost one
// two-word comparison per item.
func (s *scratch) collect(ctxs []context.Context) {
	var prev context.Context
	for i, c := range ctxs {
		if i > 0 && sameContext(c, prev) {
			continue
		}
		prev = c
		s.add(trace.SpanContextFromContext(c))
	}
}

// sameContext reports whether a and b hold the same dynamic type and the
// same data word: the same context. It compares the interface values'
// words instead of using ==, which calls the type's equality function (a
// few nanoseconds per item) and panics on a context of a non-comparable
// type. Equal contexts in different words only cost a lookup.
func sameContext(a, b context.Context) bool {
	type iface struct{ tab, data unsafe.Pointer }
	return *(*iface)(unsafe.Pointer(&a)) == *(*iface)(unsafe.Pointer(&b))
}

// add keeps sc as a link candidate if it is valid and new.
func (s *scratch) add(sc trace.SpanContext) {
	if !sc.IsValid() {
		return
	}
	k := spanKey{sc.TraceID(), sc.SpanID()}
	n := len(s.sampled) + len(s.other)
	if n <= linearSeen {
		for _, l := range [2][]trace.SpanContext{s.sampled, s.other} {
			for i := range l {
				if l[i].SpanID() == k.s && l[i].TraceID() == k.t {
					return
				}
			}
		}
		if n == linearSeen {
			if s.seen == nil {
				s.seen = make(map[spanKey]struct{})
			}
			for _, l := range [2][]trace.SpanContext{s.sampled, s.other} {
				for i := range l {
					s.seen[spanKey{l[i].TraceID(), l[i].SpanID()}] = struct{}{}
				}
			}
			s.seen[k] = struct{}{}
		}
	} else {
		if _, dup := s.seen[k]; dup {
			return
		}
		s.seen[k] = struct{}{}
	}
	if sc.IsSampled() {
		s.sampled = append(s.sampled, sc)
	} else {
		s.other = append(s.other, sc)
	}
}

// links returns at most max links (max < 0: all), sampled span contexts
// first, each group in item order, and how many candidates were left out.
func (s *scratch) links(max int) ([]trace.Link, int) {
	total := len(s.sampled) + len(s.other)
	keep := total
	if max >= 0 && keep > max {
		keep = max
	}
	for _, l := range [2][]trace.SpanContext{s.sampled, s.other} {
		for i := range l {
			if len(s.out) == keep {
				return s.out, total - keep
			}
			s.out = append(s.out, trace.Link{SpanContext: l[i]})
		}
	}
	return s.out, total - keep
}
