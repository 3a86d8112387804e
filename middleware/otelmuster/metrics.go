package otelmuster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// NewMetrics returns an observer that records muster's metric instruments,
// each created from its entry in the catalogue (package
// github.com/musterhq/muster/telemetry/musterconv: name, unit, description,
// bucket boundaries), on a meter of the provider [WithMeterProvider] gives.
// Install it on a muster.Client, Batcher or Keyed (Hooks field), alone or
// combined by muster.Compose; [NewHooks] adds tracing. The package
// documentation lists what is recorded, and when.
//
// One observer may serve any number of clients: it learns of each when it
// starts (muster.Observer) and keeps that client's attribute sets and
// gauges until it stops. Measurements carry the client's name as
// muster.batcher.name, and clients with the same name add up. The error is
// that of creating an instrument; the observer is then nil.
func NewMetrics(opts ...Option) (muster.Observer, error) {
	c := newConfig(opts)
	m := &metrics{
		meter:   c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version())),
		groups:  make(map[string]*group),
		topKeys: c.topKeys,
	}
	if err := m.init(); err != nil {
		return nil, err
	}
	return m, nil
}

type metrics struct {
	meter metric.Meter

	added                           metric.Int64ObservableCounter
	refused, dropped                metric.Int64Counter
	itemProcessed, retries          metric.Int64Counter
	size                            metric.Int64Histogram
	utilization, wait, duration     metric.Float64Histogram
	blocked, rateLimitWait          metric.Float64Histogram
	inflight                        metric.Int64UpDownCounter
	queueSize, queueCapacity, limit metric.Int64ObservableUpDownCounter
	keys, pending                   metric.Int64ObservableUpDownCounter
	keyPending, keyWaiting          metric.Int64ObservableGauge
	topKeys                         int // keys reported per name; 0: none

	mu     sync.Mutex        // guards groups; never taken by a callback
	groups map[string]*group // live clients by name
}

func (m *metrics) init() error {
	var errs []error
	try := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	m.added, err = musterconv.ItemAdded.New(m.meter)
	try(err)
	m.refused, err = musterconv.ItemRefused.New(m.meter)
	try(err)
	m.dropped, err = musterconv.ItemDropped.New(m.meter)
	try(err)
	m.itemProcessed, err = musterconv.ItemProcessed.New(m.meter)
	try(err)
	m.size, err = musterconv.BatchSize.New(m.meter)
	try(err)
	m.utilization, err = musterconv.BatchUtilization.New(m.meter)
	try(err)
	m.wait, err = musterconv.BatchWaitDuration.New(m.meter)
	try(err)
	m.duration, err = musterconv.BatchDuration.New(m.meter)
	try(err)
	m.inflight, err = musterconv.BatchInflight.New(m.meter)
	try(err)
	m.limit, err = musterconv.BatchInflightLimit.New(m.meter)
	try(err)
	m.queueSize, err = musterconv.QueueSize.New(m.meter)
	try(err)
	m.queueCapacity, err = musterconv.QueueCapacity.New(m.meter)
	try(err)
	m.keys, err = musterconv.BatcherKeys.New(m.meter)
	try(err)
	m.pending, err = musterconv.ItemPending.New(m.meter)
	try(err)
	m.keyPending, err = musterconv.KeyPending.New(m.meter)
	try(err)
	m.keyWaiting, err = musterconv.KeyWaiting.New(m.meter)
	try(err)
	m.blocked, err = musterconv.AddBlockedDuration.New(m.meter)
	try(err)
	m.rateLimitWait, err = musterconv.RateLimitWaitDuration.New(m.meter)
	try(err)
	m.retries, err = musterconv.BatchRetries.New(m.meter)
	try(err)
	return errors.Join(errs...)
}

// attrSet is one attribute set, wrapped once as the options each kind of
// measurement takes, so that recording allocates nothing.
type attrSet struct {
	add []metric.AddOption
	rec []metric.RecordOption
	obs []metric.ObserveOption
}

func newAttrSet(kvs ...attribute.KeyValue) *attrSet {
	o := metric.WithAttributeSet(attribute.NewSet(kvs...))
	return &attrSet{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}, obs: []metric.ObserveOption{o}}
}

// maxErrorSets bounds the error.type sets cached per client, in case an
// ErrorType method returns unbounded values; past it, sets are built per
// measurement (and the SDK's cardinality limit applies).
const maxErrorSets = 64

// nameAttrs holds the attribute sets of one client name.
type nameAttrs struct {
	name    attribute.KeyValue
	base    *attrSet    // muster.batcher.name
	trigger [5]*attrSet // + muster.batch.trigger, by muster.Trigger (0: "unknown")
	errs    sync.Map    // error.type -> *attrSet (+ error.type)
	nerrs   sync.Mutex  // guards count
	count   int
}

func newNameAttrs(name string) *nameAttrs {
	if name == "" {
		name = defaultName
	}
	n := &nameAttrs{name: musterconv.BatcherName(name)}
	n.base = newAttrSet(n.name)
	for t := range n.trigger {
		n.trigger[t] = newAttrSet(n.name, musterconv.BatchTrigger(muster.Trigger(t).String()))
	}
	return n
}

func (n *nameAttrs) byTrigger(t muster.Trigger) *attrSet {
	if int(t) < len(n.trigger) {
		return n.trigger[t]
	}
	return n.trigger[0]
}

// byError returns the set for err: the base set when err is nil.
func (n *nameAttrs) byError(err error) *attrSet {
	if err == nil {
		return n.base
	}
	et := ErrorType(err)
	if v, ok := n.errs.Load(et); ok {
		return v.(*attrSet)
	}
	s := newAttrSet(n.name, musterconv.ErrorTypeKey.String(et))
	n.nerrs.Lock()
	if n.count < maxErrorSets {
		n.count++
		n.errs.Store(et, s)
	}
	n.nerrs.Unlock()
	return s
}

// Observe gives one client its hooks: its attribute sets, computed once,
// and its place among the clients of its name for the observable
// instruments.
func (m *metrics) Observe(info muster.ClientInfo) *muster.Hooks {
	c := &clientMetrics{m: m, n: newNameAttrs(info.Name), info: info}
	m.join(c)
	// Drops have one reason: export their series at 0 from the start (as
	// Prometheus's practices ask of known series), so that a dashboard reads
	// "no drops" rather than "no data".
	m.dropped.Add(context.Background(), 0, c.n.byError(muster.ErrDropped).add...)
	return &muster.Hooks{
		Refused: c.refused,
		Waited:  c.waited,
		Fired:   c.fired,
		Retried: c.retried,
		Done:    c.done,
		Stopped: c.stopped,
	}
}

// clientMetrics is what the metrics observer keeps for one client.
type clientMetrics struct {
	m    *metrics
	n    *nameAttrs
	info muster.ClientInfo
}

// refused counts an item not taken (muster.item.refused), or taken and
// then dropped (muster.item.dropped), by its error.type.
func (c *clientMetrics) refused(ctx context.Context, info muster.AddInfo) {
	if info.Taken {
		c.m.dropped.Add(ctx, 1, c.n.byError(info.Err).add...)
		return
	}
	c.m.refused.Add(ctx, 1, c.n.byError(info.Err).add...)
}

func (c *clientMetrics) waited(ctx context.Context, info muster.WaitInfo) {
	switch info.Reason {
	case muster.WaitBackpressure:
		c.m.blocked.Record(ctx, info.Duration.Seconds(), c.n.base.rec...)
	case muster.WaitRateLimit:
		c.m.rateLimitWait.Record(ctx, info.Duration.Seconds(), c.n.base.rec...)
	}
}

// fired records the batch's size, fill and wait.
func (c *clientMetrics) fired(ctx context.Context, info muster.FireInfo) context.Context {
	m, t := c.m, c.n.byTrigger(info.Trigger)
	m.size.Record(ctx, int64(info.Size), t.rec...)
	if c.info.MaxBatchSize > 0 {
		m.utilization.Record(ctx, float64(info.Size)/float64(c.info.MaxBatchSize), t.rec...)
	}
	m.wait.Record(ctx, info.Age.Seconds(), t.rec...)
	m.inflight.Add(ctx, 1, c.n.base.add...)
	return nil
}

func (c *clientMetrics) done(ctx context.Context, info muster.DoneInfo) {
	m, n := c.m, c.n
	out := n.byError(info.Err)
	if ie := itemErrors(info.Err); ie != nil && len(ie.Errs) == info.Size {
		// Only some items failed: each is counted with its own error.type.
		failed := 0
		for _, err := range ie.Errs {
			if err != nil {
				failed++
				m.itemProcessed.Add(ctx, 1, n.byError(err).add...)
			}
		}
		m.itemProcessed.Add(ctx, int64(info.Size-failed), n.base.add...)
	} else {
		m.itemProcessed.Add(ctx, int64(info.Size), out.add...)
	}
	if info.Abandoned {
		return // abandoned at a Shutdown deadline: it never fired
	}
	m.duration.Record(ctx, info.Duration.Seconds(), out.rec...)
	m.inflight.Add(ctx, -1, n.base.add...)
}

func (c *clientMetrics) retried(ctx context.Context, info muster.RetryInfo) {
	c.m.retries.Add(ctx, 1, c.n.byError(info.Err).add...)
}

func (c *clientMetrics) stopped(context.Context, muster.ClientInfo) { c.m.leave(c) }

// group is the clients of one name, observed by one callback: the queue
// sizes, capacities, in-flight limits, live keys and items added of the
// clients that share a name add up. A group lives as long as its observer
// (names are few): muster.item.added is a counter, so it goes on counting
// the items of the name's stopped clients (retired), and the series does
// not go back when one of two clients stops, nor vanish with its last
// counts when the last one does.
type group struct {
	mu      sync.Mutex // guards clients and retired; taken by the callback
	clients []*clientMetrics
	retired int64 // Stats.Added of the name's stopped clients
}

// join adds a client to its name's group, registering the group's
// callback when it is the first.
func (m *metrics) join(c *clientMetrics) {
	if c.info.Stats == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[c.info.Name]
	if g == nil {
		g = &group{}
		name := c.n.name
		attrs := c.n.base.obs
		_, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			return g.observe(o, m, name, attrs)
		}, m.added, m.queueSize, m.queueCapacity, m.limit, m.keys, m.pending, m.keyPending, m.keyWaiting)
		if err != nil {
			otel.Handle(err)
			return
		}
		m.groups[c.info.Name] = g
	}
	g.mu.Lock()
	g.clients = append(g.clients, c)
	g.mu.Unlock()
}

// leave removes a stopped client from its group, keeping its items added.
// A client without Stats never joined one (join).
func (m *metrics) leave(c *clientMetrics) {
	if c.info.Stats == nil {
		return
	}
	added := int64(c.info.Stats().Added) // final: the client has stopped
	m.mu.Lock()
	g := m.groups[c.info.Name]
	m.mu.Unlock()
	if g == nil {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	n := len(g.clients)
	g.clients = slices.DeleteFunc(g.clients, func(x *clientMetrics) bool { return x == c })
	if len(g.clients) < n {
		g.retired += added
	}
}

func (g *group) observe(o metric.Observer, m *metrics, name attribute.KeyValue, attrs []metric.ObserveOption) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.clients) == 0 {
		o.ObserveInt64(m.added, g.retired, attrs...)
		return nil
	}
	added := g.retired
	var queued, capacity, limit, keys, pending int64
	limited, keyed := false, false
	for _, c := range g.clients {
		st := c.info.Stats()
		added += int64(st.Added)
		queued += int64(st.Queued)
		pending += int64(st.Pending)
		capacity += int64(c.info.PendingWorkCapacity)
		if c.info.MaxConcurrentBatches > 0 {
			limit += int64(c.info.MaxConcurrentBatches)
			limited = true
		}
		if c.info.MaxKeys > 0 {
			keys += int64(st.Keys)
			keyed = true
		}
	}
	o.ObserveInt64(m.added, added, attrs...)
	o.ObserveInt64(m.queueSize, queued, attrs...)
	o.ObserveInt64(m.queueCapacity, capacity, attrs...)
	o.ObserveInt64(m.pending, pending, attrs...)
	if limited {
		o.ObserveInt64(m.limit, limit, attrs...)
	}
	if keyed {
		o.ObserveInt64(m.keys, keys, attrs...)
		g.observeTopKeys(o, m, name)
	}
	return nil
}

// keyShare is one reported key's pending items and waiting batches, summed
// over the clients of a name.
type keyShare struct {
	key              string
	pending, waiting int
}

// observeTopKeys reports the m.topKeys keys holding the most pending items
// across the group's clients: each client's top keys, merged by key label.
// Called with g.mu held, never under a client's lock.
func (g *group) observeTopKeys(o metric.Observer, m *metrics, name attribute.KeyValue) {
	if m.topKeys == 0 {
		return
	}
	var shares []keyShare
	for _, c := range g.clients {
		if c.info.TopKeys == nil {
			continue
		}
		for _, ks := range c.info.TopKeys(m.topKeys) {
			label := keyLabel(ks.Key)
			i := slices.IndexFunc(shares, func(s keyShare) bool { return s.key == label })
			if i < 0 {
				shares = append(shares, keyShare{key: label})
				i = len(shares) - 1
			}
			shares[i].pending += ks.Pending
			shares[i].waiting += ks.Waiting
		}
	}
	slices.SortFunc(shares, func(a, b keyShare) int {
		if a.pending != b.pending {
			return b.pending - a.pending
		}
		if a.waiting != b.waiting {
			return b.waiting - a.waiting
		}
		return strings.Compare(a.key, b.key)
	})
	for _, s := range shares[:min(len(shares), m.topKeys)] {
		set := metric.WithAttributeSet(attribute.NewSet(name, batchKeyKey.String(s.key)))
		o.ObserveInt64(m.keyPending, int64(s.pending), set)
		o.ObserveInt64(m.keyWaiting, int64(s.waiting), set)
	}
}

// itemErrors returns err's *muster.ItemErrors, if any, without allocating
// when err is nil.
func itemErrors(err error) *muster.ItemErrors {
	if err == nil {
		return nil
	}
	var ie *muster.ItemErrors
	if errors.As(err, &ie) {
		return ie
	}
	return nil
}
