// Package otelmuster traces and measures muster batchers with OpenTelemetry.
// It produces [muster.Hooks], the observation side of muster: install them on
// a muster.Batcher or muster.Client (the Hooks field) and every batch becomes
// a span and a set of measurements. It depends on the OpenTelemetry API only;
// the application brings the SDK and its exporters (package
// github.com/musterhq/muster/telemetry sets one up for a service).
//
//	hooks, err := otelmuster.NewHooks() // tracing and metrics, global providers
//	if err != nil {
//		return err
//	}
//	b := &muster.Batcher[Row]{Name: "rows", MaxBatchSize: 500, BatchTimeout: 50 * time.Millisecond,
//		Fire: insertRows, Hooks: hooks}
//
// [NewTracing] and [NewMetrics] give each half alone, to combine with other
// hooks through muster.Compose; [NewHooks] is muster.Compose(NewTracing(...),
// NewMetrics(...)). Options ([WithTracerProvider], [WithMeterProvider], ...)
// default to otel.GetTracerProvider() and otel.GetMeterProvider(), read when
// the hooks are built: the globals delegate, so hooks built before the SDK is
// installed still reach it. One set of hooks may serve many clients.
//
// # Spans
//
// Each fired batch is one span, named "fire {name}" after the client's Name
// ("fire muster" for a client without one). It starts when the batch fires
// and ends when it is done, so its duration is muster.batch.duration's: waits
// for a rate limiter and retries included. Its context is the one the batch's
// Fire (or FireFunc) runs with, so spans started inside Fire are its
// children.
//
// It is a new root (a batch carries items from many requests; a span has one
// parent) with a link to the span of each item's Add context, as
// OpenTelemetry's specification recommends for batches. The links are given
// when the span starts, so that samplers see them. They are deduplicated by
// trace and span id (a request that adds 50 items is one link; runs of items
// added with the same context cost one comparison each), items without a
// valid span context are skipped, sampled span contexts come first, in item
// order, then the others, and there are at most 128 ([DefaultMaxLinks],
// [WithMaxLinks]): the SDK's own limit keeps the last links and drops the
// first at a cost per link, so the cap is applied here, first. How many were
// left out is the muster.batch.links.dropped attribute.
//
// Its kind is INTERNAL: Fire usually calls an instrumented client (database
// driver, HTTP client) whose CLIENT span becomes a child, and a second CLIENT
// span around it would count one call twice in service graphs. [WithSpanKind]
// changes it.
//
// Attributes:
//
//	messaging.batch.message_count  int     items in the batch (borrowed from the messaging conventions)
//	muster.batcher.name            string  the client's Name ("muster" if empty)
//	muster.batch.trigger           string  size, timeout, flush, shutdown or bytes
//	muster.batch.key               string  a muster.Keyed client's batch key (only for Keyed clients)
//	muster.batch.max_size          int     the client's MaxBatchSize (0: no size trigger)
//	muster.batch.id                int     1, 2, 3... per client, in the order batches closed
//	muster.batch.first_item_age    double  seconds the first item had waited when the batch fired
//	muster.batch.slot_wait         double  seconds the full batch waited for an in-flight slot
//	muster.batch.links.dropped     int     link candidates left out by the cap (only when > 0)
//	error.type                     string  the failure's class (only on failure, see below)
//
// The first three, and muster.batch.key, are given at start, for samplers;
// the others are set only on a recording span. The first item's age and the slot wait are attributes
// rather than events: they are facts about the batch known when it fires,
// and as attributes a query can filter on them.
//
// muster.batch.key is FireInfo.Key: a string key as is, any other key
// formatted with fmt's %v (give a struct key a String method to choose its
// form). It is a span attribute only, never a metric attribute: spans carry
// one value each and cost nothing per distinct key, while a metric label
// would make a series per key. Keys are still indexed by trace backends, so
// keep them identifiers (tenant, region, destination), not secrets or
// free-form data; a batcher keyed by something unbounded (a user id) makes
// as many distinct attribute values, which some backends bill or limit.
// Metrics see a Keyed client as one batcher, with muster.batcher.keys the
// number of its live keys.
//
// Events, in the order they happen:
//
//	muster.ratelimit.wait  a wait reported with muster.ReportWait with Reason "ratelimit" (or none), as
//	                       middleware/throttle does: muster.wait.duration (s), muster.wait.tokens,
//	                       muster.wait.reason, and error.type and error.message when the wait failed
//	muster.wait            the same, for any other Reason
//	muster.retry           a failed attempt reported with muster.ReportRetry, as middleware/retry does:
//	                       muster.retry.attempt (1 for the first), muster.retry.backoff (s),
//	                       error.type, error.message
//	exception              a panic in Fire: exception.type (the panic value's type),
//	                       exception.message, exception.stacktrace (the recovered stack)
//
// A failed batch has status Error with the error's message and the error.type
// attribute. span.RecordError is not used for this, as OpenTelemetry's
// instrumentation guidelines ask; only a panic adds an exception event, since
// its stack would be lost otherwise.
//
// A batch abandoned at a Shutdown deadline before it fired never had a span:
// one is started and ended when its Done hook runs, with its links and
// error.type shutdown_incomplete, so that the requests whose items were lost
// lead to a span that says so.
//
// [WithItemSpans] adds, as the messaging conventions recommend for batching
// APIs, a "create {name}" PRODUCER span per item, child of the item's
// request, from its Add to its batch's fire, linked to the batch span (which
// then links to them). It costs a span per item; it is off by default.
//
// # Metrics
//
// [NewMetrics] records the instruments of the catalogue in
// github.com/musterhq/muster/telemetry/musterconv, created from it: names,
// units, descriptions and bucket boundaries cannot drift from the
// dashboard's. Every measurement carries muster.batcher.name.
//
//	muster.item.added               counter          accepted items: when their batch fires (or is abandoned);
//	                                                 refused items: at once, with error.type
//	muster.item.processed           counter          items whose batch is done; error.type when it failed for good
//	muster.batch.size               histogram        items per batch, at fire, by muster.batch.trigger
//	muster.batch.utilization        histogram        size / MaxBatchSize, at fire, by trigger (not with MaxBatchSize 0)
//	muster.batch.wait.duration      histogram (s)    age of the first item at fire, by trigger
//	muster.batch.duration           histogram (s)    fire to done, waits and retries included; error.type
//	muster.batch.inflight           up-down counter  +1 at fire, -1 at done
//	muster.batch.inflight.limit     observable       MaxConcurrentBatches (absent when unlimited)
//	muster.queue.size               observable       Stats.Queued: items queued behind a batch waiting for a slot,
//	                                                 and a Client's items in Work
//	muster.queue.capacity           observable       PendingWorkCapacity
//	muster.batcher.keys             observable       Stats.Keys: live keys of a muster.Keyed (Keyed clients only)
//	muster.add.blocked.duration     histogram (s)    time a producer was held by backpressure (taken or refused)
//	muster.ratelimit.wait.duration  histogram (s)    waits reported with Reason "ratelimit" (or none)
//	muster.batch.retries            counter          failed attempts reported with muster.ReportRetry; error.type
//
// Accepted items are counted per batch, not per item, so that Add pays
// nothing: muster.item.added lags the Add calls by the items not yet fired
// (the open batch, and batches waiting for an in-flight slot), and an item
// that is accepted is counted exactly once, when its batch fires or is
// abandoned.
// The observable instruments are read at collection from the client's Stats,
// through a callback registered by the Started hook and unregistered by the
// Stopped hook; clients that share a name add up.
//
// ClientInfo does not say whether a client is a muster.Keyed, so
// muster.batcher.keys is observed for a client from the first collection
// whose Stats report a live key (Stats.Keys > 0, which only a Keyed does) and
// at every collection after it, zero included when all its keys have been
// evicted, until it stops. A plain Batcher or Client never reports it, and a
// Keyed that has not yet seen an item does not either. There is no per-key
// attribute on any metric: keys multiply spans' attribute values
// (muster.batch.key), never series. An abandoned batch counts
// as processed with error.type shutdown_incomplete: muster.item.processed
// with an error.type is what was lost or failed.
//
// # Error types
//
// [ErrorType] gives the error.type of spans and metrics: "panic",
// "shutdown_incomplete", an ErrorType() string method of the error's own,
// "stopped", "full", "dropped", "too_large", "too_many_keys", "not_started",
// "timeout" (context.DeadlineExceeded), "canceled", "partial" (some items of a
// batch failed: a *muster.ItemErrors),
// and otherwise the error's Go type, after fmt.Errorf wrappers, as
// OpenTelemetry's semconv.ErrorType names it (for example "*net.OpError").
//
// # Costs
//
// Per item, on the producer's goroutine: the core keeps the item's context
// (one pointer store, for the links) and calls the Added hook, which returns
// at once unless the producer was blocked or the item refused. Nothing is
// recorded, nothing allocated.
//
// Per batch, on the batch's goroutine: with the OpenTelemetry SDK, a span
// (about 2-4 µs and 10-15 allocations, less when the span is not sampled), a
// pass over the items' contexts for the links, 8 metric measurements (about
// 1.5 µs) and three context values. BenchmarkInstrumented measures the whole
// against a bare Batcher; at 100 items per batch the per-batch work is tens of
// nanoseconds per item. Larger batches make it proportionally cheaper.
//
// # Goroutines
//
// The package starts no goroutine. Its hooks run where the core calls them:
// Added on the producer's goroutine, Fired, Done, Waited and Retried on the
// batch's, Started on Start's, Stopped where the client stopped. The
// observable instruments' callback runs on the goroutine that collects
// metrics (a reader's), and reads each client's Stats. All of them are safe
// for concurrent use.
package otelmuster
