package otelmuster

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/muster"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// NewMetrics returns hooks that record muster's metric instruments, each
// created from its entry in the catalogue (package
// github.com/musterhq/muster/telemetry/musterconv: name, unit, description,
// bucket boundaries), on a meter of the provider [WithMeterProvider] gives.
// Install them on a muster.Client or muster.Batcher (Hooks field), alone or
// combined by muster.Compose; [NewHooks] adds tracing. The package
// documentation lists what is recorded, and when.
//
// The hooks may be shared by any number of clients: measurements carry the
// client's name as muster.batcher.name, and clients with the same name add
// up. The error is that of creating an instrument or registering a callback;
// the hooks are then nil.
func NewMetrics(opts ...Option) (*muster.Hooks, error) {
	c := newConfig(opts)
	m := &metrics{
		meter:  c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version())),
		groups: make(map[string]*group),
	}
	if err := m.init(); err != nil {
		return nil, err
	}
	return &muster.Hooks{
		Started: m.started,
		Stopped: m.stopped,
		Added:   m.added,
		Fired:   m.fired,
		Done:    m.done,
		Waited:  m.waited,
		Retried: m.retried,
	}, nil
}

type metrics struct {
	meter metric.Meter

	itemAdded, itemProcessed, retries metric.Int64Counter
	size                              metric.Int64Histogram
	utilization, wait, duration       metric.Float64Histogram
	blocked, rateLimitWait            metric.Float64Histogram
	inflight                          metric.Int64UpDownCounter
	queueSize, queueCapacity, limit   metric.Int64ObservableUpDownCounter
	keys                              metric.Int64ObservableUpDownCounter

	names sync.Map                  // client name -> *nameAttrs
	last  atomic.Pointer[nameAttrs] // the last one looked up

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
	m.itemAdded, err = musterconv.ItemAdded.New(m.meter)
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

// maxErrorSets bounds the error.type sets cached per name, in case an
// ErrorType method returns unbounded values; past it, sets are built per
// measurement (and the SDK's cardinality limit applies).
const maxErrorSets = 64

// nameAttrs holds the attribute sets of one client name.
type nameAttrs struct {
	key     string // the client's Name
	name    attribute.KeyValue
	base    *attrSet    // muster.batcher.name
	trigger [5]*attrSet // + muster.batch.trigger, by muster.Trigger (0: "unknown")
	errs    sync.Map    // error.type -> *attrSet (+ error.type)
	nerrs   sync.Mutex  // guards count
	count   int
}

// attrsFor returns the attribute sets of a client, the last one looked up
// first (see tracing.namesFor).
func (m *metrics) attrsFor(name string) *nameAttrs {
	if n := m.last.Load(); n != nil && n.key == name {
		return n
	}
	v, ok := m.names.Load(name)
	if !ok {
		shown := name
		if shown == "" {
			shown = defaultName
		}
		n := &nameAttrs{key: name, name: musterconv.BatcherName(shown)}
		n.base = newAttrSet(n.name)
		for t := range n.trigger {
			n.trigger[t] = newAttrSet(n.name, musterconv.BatchTrigger(muster.Trigger(t).String()))
		}
		v, _ = m.names.LoadOrStore(name, n)
	}
	n := v.(*nameAttrs)
	m.last.Store(n)
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

// firedKey marks the context of a batch whose Fired hook ran, so that Done
// tells it from a batch abandoned before it fired.
type firedKey struct{}

// added runs for every item: it records nothing unless the producer was
// held by backpressure or the item was refused. Accepted items are counted
// per batch, when it fires.
func (m *metrics) added(info muster.AddInfo) {
	if info.Err == nil && info.Blocked == 0 {
		return
	}
	n := m.attrsFor(info.Name)
	ctx := info.Ctx
	if ctx == nil {
		ctx = context.Background()
	}
	if info.Blocked > 0 {
		m.blocked.Record(ctx, info.Blocked.Seconds(), n.base.rec...)
	}
	if info.Err != nil {
		m.itemAdded.Add(ctx, 1, n.byError(info.Err).add...)
	}
}

func (m *metrics) fired(ctx context.Context, info muster.FireInfo) context.Context {
	n := m.attrsFor(info.Name)
	t := n.byTrigger(info.Trigger)
	m.itemAdded.Add(ctx, int64(info.Size), n.base.add...)
	m.size.Record(ctx, int64(info.Size), t.rec...)
	if info.MaxBatchSize > 0 {
		m.utilization.Record(ctx, float64(info.Size)/float64(info.MaxBatchSize), t.rec...)
	}
	m.wait.Record(ctx, info.Age.Seconds(), t.rec...)
	m.inflight.Add(ctx, 1, n.base.add...)
	return context.WithValue(ctx, firedKey{}, true)
}

func (m *metrics) done(ctx context.Context, info muster.DoneInfo) {
	n := m.attrsFor(info.Name)
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
		m.itemProcessed.Add(ctx, int64(info.Size-failed), n.byError(nil).add...)
	} else {
		m.itemProcessed.Add(ctx, int64(info.Size), out.add...)
	}
	if ctx.Value(firedKey{}) == nil {
		// Abandoned at a Shutdown deadline (or a Fired hook before ours
		// panicked): its items were never counted as added.
		m.itemAdded.Add(ctx, int64(info.Size), n.base.add...)
		return
	}
	m.duration.Record(ctx, info.Duration.Seconds(), out.rec...)
	m.inflight.Add(ctx, -1, n.base.add...)
}

func (m *metrics) waited(ctx context.Context, info muster.WaitInfo) {
	if info.Reason != ReasonRateLimit && info.Reason != "" {
		return
	}
	m.rateLimitWait.Record(ctx, info.Duration.Seconds(), m.attrsFor(info.Name).base.rec...)
}

func (m *metrics) retried(ctx context.Context, info muster.RetryInfo) {
	m.retries.Add(ctx, 1, m.attrsFor(info.Name).byError(info.Err).add...)
}

// group is the live clients of one name, observed by one callback: the
// queue sizes, capacities, in-flight limits and live keys of clients that
// share a name add up, as up-down counters do.
type group struct {
	reg     metric.Registration
	mu      sync.Mutex // guards clients; taken by the callback
	clients []client
}

type client struct {
	stats    func() muster.Stats
	capacity int64
	limit    int64
	// keyed: the client's Stats have reported a live key, so it is a
	// muster.Keyed (ClientInfo does not say). From then on its live keys
	// are observed, zero included.
	keyed bool
}

func (m *metrics) started(info muster.ClientInfo) {
	if info.Stats == nil {
		return
	}
	c := client{stats: info.Stats, capacity: int64(info.PendingWorkCapacity), limit: int64(info.MaxConcurrentBatches)}
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.groups[info.Name]
	if g == nil {
		g = &group{}
		attrs := m.attrsFor(info.Name).base.obs
		reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
			return g.observe(o, m, attrs)
		}, m.queueSize, m.queueCapacity, m.limit, m.keys)
		if err != nil {
			otel.Handle(err)
			return
		}
		g.reg = reg
		m.groups[info.Name] = g
	}
	g.mu.Lock()
	g.clients = append(g.clients, c)
	g.mu.Unlock()
}

func (g *group) observe(o metric.Observer, m *metrics, attrs []metric.ObserveOption) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.clients) == 0 {
		return nil
	}
	var queued, capacity, limit, keys int64
	limited, keyed := false, false
	for i := range g.clients {
		c := &g.clients[i]
		st := c.stats()
		queued += int64(st.Queued)
		if c.limit > 0 {
			limit += c.limit
			limited = true
		}
		if st.Keys > 0 {
			c.keyed = true
		}
		if c.keyed {
			keys += int64(st.Keys)
			keyed = true
			// A Keyed's PendingWorkCapacity is per key, and Queued sums
			// its keys: the capacity to compare it with is the sum too.
			capacity += c.capacity * int64(st.Keys)
		} else {
			capacity += c.capacity
		}
	}
	o.ObserveInt64(m.queueSize, queued, attrs...)
	o.ObserveInt64(m.queueCapacity, capacity, attrs...)
	if limited {
		o.ObserveInt64(m.limit, limit, attrs...)
	}
	if keyed {
		o.ObserveInt64(m.keys, keys, attrs...)
	}
	return nil
}

// stopped forgets the client, and unregisters its name's callback when it
// was the last client of that name.
//
// ClientInfo carries no identity, so the client is recognised by its
// configuration and its final counters (a stopped client's counters no
// longer move, Refused aside). Two live clients of one name with identical
// configuration and counters are indistinguishable; either may be dropped,
// which only matters if the other one later queues items.
func (m *metrics) stopped(info muster.ClientInfo) {
	m.mu.Lock()
	g := m.groups[info.Name]
	if g == nil {
		m.mu.Unlock()
		return
	}
	var final muster.Stats
	if info.Stats != nil {
		final = info.Stats()
	}
	g.mu.Lock()
	pick := -1
	for i, c := range g.clients {
		if c.capacity != int64(info.PendingWorkCapacity) || c.limit != int64(info.MaxConcurrentBatches) {
			continue
		}
		if pick < 0 {
			pick = i
		}
		if sameCounters(c.stats(), final) {
			pick = i
			break
		}
	}
	if pick >= 0 {
		g.clients = append(g.clients[:pick], g.clients[pick+1:]...)
	}
	empty := len(g.clients) == 0
	g.mu.Unlock()
	if !empty {
		m.mu.Unlock()
		return
	}
	delete(m.groups, info.Name)
	m.mu.Unlock()
	if err := g.reg.Unregister(); err != nil {
		otel.Handle(err)
	}
}

func sameCounters(a, b muster.Stats) bool {
	return a.Added == b.Added && a.Fired == b.Fired && a.Done == b.Done &&
		a.Failed == b.Failed && a.Abandoned == b.Abandoned
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
