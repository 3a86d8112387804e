// Package otelmuster traces and measures muster batchers with OpenTelemetry.
// It produces [muster.Observer] values, the observation side of muster:
// install one on a muster.Batcher, muster.Keyed or muster.Client (the Hooks
// field) and every batch becomes a span and a set of measurements. It
// depends on the OpenTelemetry API only; the application brings the SDK and
// its exporters (package github.com/musterhq/muster/telemetry sets one up
// for a service).
//
//	hooks, err := otelmuster.NewHooks() // tracing and metrics, global providers
//	if err != nil {
//		return err
//	}
//	b := &muster.Batcher[Row]{Name: "rows", MaxBatchSize: 500, BatchTimeout: 50 * time.Millisecond,
//		Fire: insertRows, Hooks: hooks}
//
// [NewTracing] and [NewMetrics] give each half alone, to combine with other
// observers through muster.Compose; [NewHooks] is
// muster.Compose(NewTracing(...), NewMetrics(...)). Options
// ([WithTracerProvider], [WithMeterProvider], ...) default to
// otel.GetTracerProvider() and otel.GetMeterProvider(), read when the
// observer is built: the globals delegate, so an observer built before the
// SDK is installed still reaches it.
//
// One observer may serve many clients. Each client's Start asks it for
// hooks of that client's own (muster.Observer's Observe), which keep what
// they need (the name's attributes, the client's share of the gauges) until
// the client's Stopped hook, and nothing is guessed from a client's
// counters, so clients that share a name never mistake one another. One
// thing is kept by name, on purpose: the metrics observer groups the
// clients that share a Name under one callback for the asynchronous
// instruments (queue size, capacity, in-flight limit, keys, pending, items
// added), since they report one series per name; a client joins its
// name's group at Observe and leaves it at Stopped.
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
// parent) with a link per item to its request, as OpenTelemetry's
// specification recommends for batches: to the item's create span (below)
// when it was added under a sampled span, else to the span context of its
// Add context when that is valid (an unsampled request, a remote parent).
// Items without a valid span context (sent on a Client's Work, added with
// context.Background) have no link. The links are given when the span
// starts, so that samplers see them. They are deduplicated by trace and span
// id (without create spans, a request that adds 50 items is one link; runs
// of items added with the same context cost one comparison each), sampled
// span contexts come first, in item order, then the others, and there are at
// most 128 ([DefaultMaxLinks], [WithMaxLinks]): the SDK's own limit keeps the
// last links and drops the first at a cost per link, so the cap is applied
// here, first. How many were left out is the muster.batch.links.dropped
// attribute.
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
// form). It is a span attribute, and a metric attribute only of
// muster.key.pending and muster.key.waiting, which report the top few keys
// (WithTopKeys): spans carry one value each and cost nothing per distinct
// key, while a label on every metric would make a series per key. Keys are still indexed by trace backends, so
// keep them identifiers (tenant, region, destination), not secrets or
// free-form data; a batcher keyed by something unbounded (a user id) makes
// as many distinct attribute values, which some backends bill or limit.
// Metrics see a Keyed client as one batcher, with muster.batcher.keys the
// number of its live keys.
//
// Events, in the order they happen:
//
//	muster.ratelimit.wait  a wait reported with muster.ReportWait with Reason muster.WaitRateLimit, as
//	                       middleware/throttle does: muster.wait.duration (s), muster.wait.tokens,
//	                       muster.wait.reason ("ratelimit"), and error.type and error.message when the
//	                       wait failed
//	muster.wait            the same, for a wait reported with any other Reason
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
// A producer held in Add by backpressure gets a muster.wait event on its own
// span (the span of its Add context, not the batch's) once it is let in:
// muster.wait.reason "backpressure" and muster.wait.duration (s).
//
// A batch abandoned at a Shutdown deadline before it fired never had a span:
// one is started and ended when its Done hook runs, with its links and
// error.type shutdown_incomplete, so that the requests whose items were lost
// lead to a span that says so.
//
// # Create spans
//
// As the messaging conventions recommend for batching APIs, an item added
// under a sampled span gets a "create {name}" span of kind PRODUCER, a child
// of that span (in the request's trace), with the muster.batcher.name
// attribute. It starts when the client takes the item (in Add, under the
// client's lock, so that it always precedes the fire) and ends when the
// item's batch fires, with a link to the batch span, which links to it: from
// a slow request's trace, one click reaches the batch that carried its item,
// its waits and its retries, and back. An item dropped under
// OverflowDropOldest ends its create span at the drop, with status Error and
// error.type dropped, linked to no batch; an item of a batch abandoned at a
// Shutdown deadline ends it linked to that batch's span. Items under an
// unsampled span context get no create span (the batch span links to their
// span context directly), nor do items without one.
//
// A batch span is a new root: under a ratio sampler it is sampled by its
// own trace id, so the create span of a sampled request would often link to
// a batch that was not recorded. Wrap the sampler in telemetry.LinkedSampler
// (telemetry.Setup does), which samples every span linked to a sampled one.
//
// Create spans are on by default; they cost a span per sampled item.
// [WithItemSpans](false) turns them off: the batch span then links to the
// requests' spans directly. When composed with other observers through
// muster.Compose, an observer after this one whose Added hook returns a
// context should derive it from the one it is given, so that the create
// spans are still found.
//
// # Metrics
//
// [NewMetrics] records the instruments of the catalogue in
// github.com/musterhq/muster/telemetry/musterconv, created from it: names,
// units, descriptions and bucket boundaries cannot drift from the
// dashboard's. Every measurement carries muster.batcher.name.
//
//	muster.item.added               observable       Stats.Added: items taken (accepted), when taken
//	muster.item.refused             counter          items not taken, by error.type (full, dropped, stopped, timeout, ...)
//	muster.item.dropped             counter          items taken, then dropped under OverflowDropOldest; error.type dropped
//	                                                 (exported at 0 from Start, so that "no drops" is not "no data")
//	muster.item.processed           counter          items whose batch is done; error.type when it failed for good
//	muster.batch.items              histogram        items per batch, at fire, by muster.batch.trigger
//	muster.batch.utilization.ratio  histogram        items / MaxBatchSize, at fire, by trigger (not with MaxBatchSize 0)
//	muster.batch.wait.duration      histogram (s)    age of the first item at fire, by trigger
//	muster.batch.duration           histogram (s)    fire to done, waits and retries included; error.type
//	muster.batch.inflight           up-down counter  +1 at fire, -1 at done
//	muster.batch.inflight.limit     observable       MaxConcurrentBatches (absent when unlimited)
//	muster.queue.size               observable       Stats.Queued: items queued behind a batch waiting for a slot,
//	                                                 and a Client's items in Work
//	muster.queue.capacity           observable       PendingWorkCapacity (a Keyed's is shared by its keys)
//	muster.batcher.keys             observable       Stats.Keys: live keys of a muster.Keyed (Keyed clients only)
//	muster.item.pending             observable       Stats.Pending: items taken and not yet done (what a crash would lose)
//	muster.key.pending              observable gauge TopKeys: items taken and not fired of the top keys, by muster.batch.key
//	muster.key.waiting              observable gauge TopKeys: batches waiting for a slot of the same keys (Keyed only)
//	muster.add.blocked.duration     histogram (s)    time a producer was held by backpressure (taken or refused)
//	muster.ratelimit.wait.duration  histogram (s)    waits reported with Reason muster.WaitRateLimit
//	muster.batch.retries            counter          failed attempts reported with muster.ReportRetry; error.type
//
// Accepted items are counted by the client itself (Stats.Added, under the
// lock Add holds anyway) and read at collection, so that Add pays nothing
// for them and muster.item.added is current at every scrape, a backlog
// included: an item counts as added when it is taken, not when its batch
// fires. It is a counter that outlives clients: the items of a stopped
// client stay in its name's count, so that it never goes back. Refused
// items are never added; for a name's clients, added = processed + dropped
// + pending.
// The observable instruments are read at collection, through ClientInfo's
// Stats, from the clients started and not yet stopped: a client joins when
// it starts (Observe) and leaves at its Stopped hook. Clients that share a
// name add up, one callback per name, which each one's Stop leaves with
// only its own share removed; a client's gauges end with its Stop (its items added stay counted).
//
// A muster.Keyed (ClientInfo.MaxKeys > 0) reports muster.batcher.keys from
// its Start to its Stop, zero included (before its first key, or when all
// its keys have been evicted); a plain Batcher or Client never reports it.
// A Keyed's keys share its MaxConcurrentBatches slots and its
// PendingWorkCapacity, so muster.batch.inflight.limit and
// muster.queue.capacity are those, whatever the number of keys: the
// capacity reported is the one producers meet. The one per-key attribute is
// on muster.key.pending and muster.key.waiting, for the loud tenant: at each
// collection, ClientInfo.TopKeys gives each client's WithTopKeys(n) keys
// holding the most pending items (default 5), merged by key over the
// name's clients (a key outside one client's top counts only where it is
// in it), and the n first are reported, so a name has at most n series of
// each. A key that leaves the top is no longer reported and its series
// goes stale in Prometheus; a key holding nothing is never reported.
// Reading the top keys takes each client's locks and visits its live keys
// (13 to 14 µs over 1,024 keys, BENCHMARKS.md), once per collection. An abandoned batch counts as processed
// with error.type shutdown_incomplete: muster.item.processed with an
// error.type is what was lost or failed.
//
// # Journal
//
// A journaled batcher (package github.com/musterhq/muster/journal) adds the
// journal's instruments (musterconv.Journal) through [NewJournalMetrics]: the
// gauges and the store's own counters are read from its Stats at
// collection, append latency, replays and dead letters come from the
// journal.Hooks it returns.
//
//	jm, err := otelmuster.NewJournalMetrics("orders", store.Stats)
//	// give jm.Hooks() to the journal layer; jm.Close() when the store closes
//
//	muster.journal.items, .bytes, .bytes.limit  observable  StoreStats.Items, Bytes, MaxBytes (absent when 0)
//	muster.journal.oldest.age       observable (s)   now - StoreStats.Oldest; 0 when empty: the delivery SLO's signal
//	muster.journal.append.duration  histogram (s)    each Append, group commit included; error.type when it failed
//	muster.journal.syncs, .sync.time  observable     StoreStats.Syncs and SyncTime: their rates' ratio is the commit latency
//	muster.journal.recovered        counter          items replayed into the batcher (Hooks.Recovered)
//	muster.journal.deadlettered     counter          items dead-lettered, by error.type: expired, dropped, or the batch's
//	muster.journal.corrupt, .takeovers  observable   StoreStats.Corrupt and Takeovers
//
// # Error types
//
// [ErrorType] gives the error.type of spans and metrics: "panic",
// "shutdown_incomplete", an ErrorType() string method of the error's own,
// "stopped", "full", "dropped", "too_large", "too_many_keys", "invalid_key", "not_started",
// "expired", "journal_full", "journal_closed" (the journal's errors),
// "timeout" (context.DeadlineExceeded), "canceled", "partial" (some items of a
// batch failed: a *muster.ItemErrors),
// and otherwise the error's Go type, after fmt.Errorf wrappers, as
// OpenTelemetry's semconv.ErrorType names it (for example "*net.OpError").
//
// # Costs
//
// Per item, on the producer's goroutine, under the client's lock: tracing's
// Added hook reads the span context of the item's Add context. Without a
// valid one it keeps nothing and returns; for an unsampled one it keeps the
// context (one pointer store, for the link); for a sampled one it starts the
// item's create span, ended at the fire. A create span is by far the largest
// cost per item: with the SDK, a span started (under the client's lock) and
// ended, a few microseconds of CPU and about 1.9 KB in 8 allocations per
// sampled item (BenchmarkInstrumented, otel-linked against
// otel-linked-noitems, which allocates none per item); under a 1% sampler it is a hundredth of that on
// average, and [WithItemSpans](false) removes it. Metrics have no Added
// hook: accepted items are read from the client's Stats. Nothing else is recorded
// unless the producer was held by backpressure or the item refused.
//
// Per batch, on the batch's goroutine: with the OpenTelemetry SDK, a span
// (about 2-4 µs and 10-15 allocations, less when the span is not sampled), a
// pass over the items' contexts for the links, 7 metric measurements (about
// 1.5 µs at most: 8 took that) and two context values (the span's, and the
// tracing hooks' own); the metrics hooks allocate nothing. BenchmarkInstrumented measures the whole
// against a bare Batcher; at 100 items per batch the per-batch work is tens of
// nanoseconds per item. Larger batches make it proportionally cheaper.
//
// # Goroutines
//
// The package starts no goroutine. Its hooks run where the core calls them:
// Observe on Start's goroutine; Added on the producer's (a Client's worker
// for items sent on Work), under the client's lock; Refused, and Waited for
// backpressure, on the producer's (the worker's, for Work); Fired, Done,
// Retried, and Waited for a rate limit, on the batch's (Done of a batch
// abandoned at a Shutdown deadline on Shutdown's); Stopped where the client
// stopped. The observable instruments' callbacks run on the goroutine that
// collects metrics (a reader's), and read each client's Stats. All of them
// are safe for concurrent use.
package otelmuster
