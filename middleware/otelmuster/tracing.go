package otelmuster

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/muster"
)

// Span attribute and event names. muster.batcher.name, muster.batch.trigger,
// error.type and muster.batch.key are the metric attributes of the
// catalogue (keys.go).
const (
	batchMessageCountKey = attribute.Key("messaging.batch.message_count")
	batchIDKey           = attribute.Key("muster.batch.id")
	batchMaxSizeKey      = attribute.Key("muster.batch.max_size")
	batchFirstItemAgeKey = attribute.Key("muster.batch.first_item_age") // seconds
	batchSlotWaitKey     = attribute.Key("muster.batch.slot_wait")      // seconds
	batchLinksDroppedKey = attribute.Key("muster.batch.links.dropped")

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

// NewTracing returns an observer that traces batches: a span per fired
// batch, a new root linked to the spans of the items' Add contexts, with
// events for the waits and retries reported inside it and the batch's
// outcome as its status; and, for each item added under a sampled span, a
// short "create" span, child of the request's span, that ends when its
// batch fires and links to the batch span, so that a request's trace leads
// to its batch (turn them off with WithItemSpans(false)). Install it on a
// muster.Client, Batcher or Keyed (Hooks field), alone or combined with
// others by muster.Compose; [NewHooks] adds metrics. The package
// documentation describes the spans.
//
// It reads [WithTracerProvider], [WithMaxLinks], [WithSpanKind] and
// [WithItemSpans]. One observer may serve any number of clients.
func NewTracing(opts ...Option) muster.Observer {
	c := newConfig(opts)
	return &tracing{
		tracer:    c.tp.Tracer(ScopeName, trace.WithInstrumentationVersion(Version())),
		kind:      c.spanKind,
		maxLinks:  c.maxLinks,
		itemSpans: c.itemSpans,
	}
}

type tracing struct {
	tracer    trace.Tracer
	kind      trace.SpanKind
	maxLinks  int
	itemSpans bool
}

// Observe gives one client its hooks, with what depends on its name built
// once.
func (t *tracing) Observe(info muster.ClientInfo) *muster.Hooks {
	name := info.Name
	if name == "" {
		name = defaultName
	}
	attr := batcherNameKey.String(name)
	c := &clientTracing{t: t, fire: "fire " + name, create: "create " + name,
		attr: attr, maxSize: info.MaxBatchSize,
		createOpts: []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attr),
		}}
	return &muster.Hooks{
		Added:   c.added,
		Refused: c.refused,
		Fired:   c.fired,
		Done:    c.done,
		Waited:  c.waited,
		Retried: c.retried,
	}
}

// clientTracing is what the tracing observer keeps for one client.
type clientTracing struct {
	t            *tracing
	fire, create string             // span names
	attr         attribute.KeyValue // muster.batcher.name
	maxSize      int
	// createOpts are the options of every create span, built once: the
	// Added hook runs per item.
	createOpts []trace.SpanStartOption
}

// itemSpan is the context kept for an item added under a sampled span: the
// Add context, and the item's create span, which ends when the batch fires.
// Observers composed after this one may keep a context derived from it
// instead: its Value method lets its owner find it there (see itemSpanOf).
type itemSpan struct {
	context.Context
	span  trace.Span
	owner *clientTracing
}

// itemSpanKey finds, through Value, the itemSpan of one client's tracing.
type itemSpanKey struct{ c *clientTracing }

func (is *itemSpan) Value(key any) any {
	if k, ok := key.(itemSpanKey); ok && k.c == is.owner {
		return is
	}
	return is.Context.Value(key)
}

// itemSpanOf returns the itemSpan c made for a kept item context: ctx
// itself, or the one ctx derives from when an observer composed after this
// one kept a context of its own; nil if there is none.
func (c *clientTracing) itemSpanOf(ctx context.Context) *itemSpan {
	if is, ok := ctx.(*itemSpan); ok && is.owner == c {
		return is
	}
	is, _ := ctx.Value(itemSpanKey{c}).(*itemSpan)
	return is
}

// added keeps the contexts whose span the batch span will link to: for a
// sampled one, it starts the item's create span.
func (c *clientTracing) added(ctx context.Context, _ muster.AddInfo) context.Context {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return nil
	}
	if !c.t.itemSpans || !sc.IsSampled() {
		return ctx
	}
	_, span := c.t.tracer.Start(ctx, c.create, c.createOpts...)
	return &itemSpan{Context: ctx, span: span, owner: c}
}

// refused ends the create span of an item dropped after it was taken.
func (c *clientTracing) refused(ctx context.Context, info muster.AddInfo) {
	if !info.Taken {
		return // never taken (ErrDropped too, under OverflowDropNewest): no create span
	}
	if is := c.itemSpanOf(ctx); is != nil {
		is.span.SetStatus(codes.Error, info.Err.Error())
		is.span.SetAttributes(errorTypeKey.String(ErrorType(info.Err)))
		is.span.End()
	}
}

// batchSpanKey marks the batch span in the context Fired returns, so that
// Done ends this client's span of this observer and no other (a span in
// BaseContext, or another tracing observer's, composed with this one).
type batchSpanKey struct{ c *clientTracing }

func (c *clientTracing) batchSpan(ctx context.Context) (trace.Span, bool) {
	s, ok := ctx.Value(batchSpanKey{c}).(trace.Span)
	return s, ok
}

// fired starts the batch span; Fire and Done run with it in their context.
func (c *clientTracing) fired(ctx context.Context, info muster.FireInfo) context.Context {
	ctx, span := c.start(ctx, info)
	return context.WithValue(ctx, batchSpanKey{c}, span)
}

// start starts a batch span at info.Start: a new root, linked to the items'
// span contexts (or their create spans, which it ends with a link back),
// with the batch's attributes.
func (c *clientTracing) start(ctx context.Context, info muster.FireInfo) (context.Context, trace.Span) {
	s := getScratch()
	defer s.release()
	s.collect(c, info.Contexts)
	links, dropped := s.links(c.t.maxLinks)
	// Samplers see the name, the links and what a sampler might key on; the
	// rest is set only on a recording span, so that an unsampled batch
	// costs less.
	var opts [5]trace.SpanStartOption
	var startAttrs [4]attribute.KeyValue
	sa := append(startAttrs[:0],
		c.attr,
		batchTriggerKey.String(info.Trigger.String()),
		batchMessageCountKey.Int(info.Size),
	)
	if info.Key != nil {
		sa = append(sa, batchKeyKey.String(keyString(info.Key)))
	}
	o := append(opts[:0],
		trace.WithNewRoot(),
		trace.WithSpanKind(c.t.kind),
		trace.WithTimestamp(info.Start),
		trace.WithAttributes(sa...),
	)
	if len(links) > 0 {
		o = append(o, trace.WithLinks(links...))
	}
	ctx, span := c.t.tracer.Start(ctx, c.fire, o...)
	if span.IsRecording() {
		attrs := append(s.attrs[:0],
			batchMaxSizeKey.Int(c.maxSize),
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
		end := []trace.SpanEndOption{trace.WithTimestamp(info.Start)} // one per batch, not per item
		for _, cs := range s.creates {
			cs.AddLink(back)
			cs.End(end...)
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

// spanFor finds the span a wait or a retry belongs to: the batch span when
// ctx descends from the batch's context, else whatever span ctx carries.
func (c *clientTracing) spanFor(ctx context.Context) trace.Span {
	if s, ok := c.batchSpan(ctx); ok {
		return s
	}
	return trace.SpanFromContext(ctx)
}

// waited adds an event for a wait: a rate limiter's (reported with
// muster.ReportWait) on the batch span, backpressure on the producer's span.
func (c *clientTracing) waited(ctx context.Context, info muster.WaitInfo) {
	span := c.spanFor(ctx)
	if !span.IsRecording() {
		return
	}
	name := eventWait
	if info.Reason == muster.WaitRateLimit {
		name = eventRateLimitWait
	}
	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, waitDurationKey.Float64(info.Duration.Seconds()), waitReasonKey.String(info.Reason.String()))
	if info.Tokens != 0 {
		attrs = append(attrs, waitTokensKey.Int(info.Tokens))
	}
	if info.Err != nil {
		attrs = append(attrs, errorTypeKey.String(ErrorType(info.Err)), errorMessageKey.String(info.Err.Error()))
	}
	span.AddEvent(name, trace.WithAttributes(attrs...))
}

// retried adds an event for a failed attempt reported with muster.ReportRetry.
func (c *clientTracing) retried(ctx context.Context, info muster.RetryInfo) {
	span := c.spanFor(ctx)
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
func (c *clientTracing) done(ctx context.Context, info muster.DoneInfo) {
	span, ok := c.batchSpan(ctx)
	if !ok {
		_, span = c.start(ctx, info.FireInfo)
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
	if info.Abandoned {
		span.End()
		return
	}
	span.End(trace.WithTimestamp(info.Start.Add(info.Duration)))
}

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

// collect adds the span context of each kept item context, and gathers
// the items' create spans (ct's own only).
func (s *scratch) collect(ct *clientTracing, ctxs []context.Context) {
	for _, c := range ctxs {
		if c == nil {
			continue
		}
		if is, ok := c.(*itemSpan); ok && is.owner == ct {
			s.creates = append(s.creates, is.span)
			s.add(is.span.SpanContext())
			continue
		}
		sc := trace.SpanContextFromContext(c)
		if sc.IsSampled() && ct.t.itemSpans {
			// Kept by an observer composed after this one: the item's
			// create span, if it has one, is found in its context.
			if is, _ := c.Value(itemSpanKey{ct}).(*itemSpan); is != nil {
				s.creates = append(s.creates, is.span)
				s.add(is.span.SpanContext())
				continue
			}
		}
		s.add(sc)
	}
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
