// Package stress holds the end-to-end accounting stress test of muster:
// random configurations, concurrent producers, a misbehaving downstream,
// retries, shutdown deadlines, and a check that every item offered is
// accounted for exactly once, by the test's own bookkeeping, by the hooks
// and by the OpenTelemetry metrics.
package stress

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/middleware/retry"
	"github.com/musterhq/muster/muster"
)

const producers = 8

// item is what the producers offer: a unique id, a key (Keyed) and a size
// (MaxBatchBytes).
type item struct {
	id   int
	key  int
	size int
}

// idKey carries an item's id in the context it is added with, so that the
// hooks (Added, and Done through FireInfo.Contexts) can name the item.
type idKey struct{}

func idOf(ctx context.Context) (int, bool) {
	if ctx == nil {
		return 0, false
	}
	id, ok := ctx.Value(idKey{}).(int)
	return id, ok
}

// downErr is the downstream's failure, for a whole batch or one item.
type downErr struct{ n int }

func (e *downErr) Error() string { return "downstream failure " + strconv.Itoa(e.n) }

// config is one round's configuration, drawn from its seed.
type config struct {
	keyed       bool
	nkeys       int
	maxKeys     int
	keyIdle     time.Duration
	maxSize     uint
	timeout     time.Duration
	maxBytes    uint
	maxConc     uint
	capacity    uint
	overflow    muster.Overflow
	useRetry    bool
	tightBudget bool
	maxAttempts int
	pOK         int // percent of downstream calls that succeed
	pFail       int // ... that fail as a whole
	pPartial    int // ... that fail for some items
	pPanic      int // ... that panic (the rest: also succeed)
	pPermanent  int // percent of errors marked retry.Permanent
	latency     time.Duration
	ignoreCtx   bool
	shutdown    time.Duration // 0: Stop; otherwise Shutdown with this deadline
	stopAfter   time.Duration // when the shutdown begins
	perProducer int
	pTimeoutCtx int // percent of adds whose context has a short deadline
	pResult     int // percent of adds through AddResult
	pFlush      int // per mille of adds followed by a Flush
	pause       time.Duration
}

func drawConfig(r *rand.Rand) config {
	var c config
	c.keyed = r.IntN(3) == 0
	if c.keyed {
		c.nkeys = 1 + r.IntN(6)
		c.maxKeys = 1 + r.IntN(6)
		c.keyIdle = time.Duration(1+r.IntN(20)) * time.Millisecond
	}
	if r.IntN(6) != 0 {
		c.maxSize = uint(1 + r.IntN(20))
	}
	if c.maxSize == 0 || r.IntN(3) != 0 {
		c.timeout = time.Duration(1+r.IntN(10)) * time.Millisecond
	}
	if r.IntN(3) == 0 {
		c.maxBytes = uint(20 + r.IntN(80))
	}
	if r.IntN(5) != 0 {
		c.maxConc = uint(1 + r.IntN(4))
	}
	c.capacity = uint(r.IntN(12))
	c.overflow = muster.Overflow(r.IntN(4))
	c.useRetry = r.IntN(2) == 0
	c.maxAttempts = 2 + r.IntN(4)
	c.tightBudget = r.IntN(3) == 0
	c.pFail = r.IntN(25)
	c.pPartial = r.IntN(25)
	c.pPanic = r.IntN(8)
	c.pOK = 100 - c.pFail - c.pPartial - c.pPanic
	c.pPermanent = r.IntN(30)
	c.latency = time.Duration(r.IntN(30)) * time.Millisecond
	c.ignoreCtx = r.IntN(4) == 0
	if r.IntN(2) == 0 {
		c.shutdown = time.Duration(r.IntN(20)) * time.Millisecond
	}
	c.stopAfter = time.Duration(r.IntN(120)) * time.Millisecond
	c.perProducer = 20 + r.IntN(200)
	c.pTimeoutCtx = r.IntN(40)
	c.pResult = r.IntN(101)
	c.pFlush = r.IntN(10)
	c.pause = time.Duration(r.IntN(4)) * time.Millisecond
	return c
}

func (c config) String() string {
	var b strings.Builder
	if c.keyed {
		fmt.Fprintf(&b, "Keyed(keys=%d MaxKeys=%d idle=%v) ", c.nkeys, c.maxKeys, c.keyIdle)
	} else {
		b.WriteString("Batcher ")
	}
	fmt.Fprintf(&b, "MaxBatchSize=%d BatchTimeout=%v MaxBatchBytes=%d MaxConcurrentBatches=%d PendingWorkCapacity=%d Overflow=%v ",
		c.maxSize, c.timeout, c.maxBytes, c.maxConc, c.capacity, c.overflow)
	if c.useRetry {
		fmt.Fprintf(&b, "retry(attempts=%d tightBudget=%v) ", c.maxAttempts, c.tightBudget)
	}
	fmt.Fprintf(&b, "downstream(ok=%d%% fail=%d%% partial=%d%% panic=%d%% permanent=%d%% latency<=%v ignoreCtx=%v) ",
		c.pOK, c.pFail, c.pPartial, c.pPanic, c.pPermanent, c.latency, c.ignoreCtx)
	if c.shutdown == 0 {
		fmt.Fprintf(&b, "Stop after %v ", c.stopAfter)
	} else {
		fmt.Fprintf(&b, "Shutdown(deadline %v) after %v ", c.shutdown, c.stopAfter)
	}
	fmt.Fprintf(&b, "items/producer=%d ctxTimeout=%d%% AddResult=%d%% flush=%d‰ pause<=%v",
		c.perProducer, c.pTimeoutCtx, c.pResult, c.pFlush, c.pause)
	return b.String()
}

// ledger is the test's own bookkeeping of one round.
type ledger struct {
	mu sync.Mutex

	// Per item, as the producers saw it.
	offered map[int]item
	addErr  map[int]error         // Add/AddResult returned an error
	results map[int]muster.Result // AddResult's Result
	// Per item, as the hooks saw it.
	addedOK  map[int]int     // Added hooks (the item was taken)
	addedErr map[int][]error // Refused hooks (not taken, or dropped)
	final    map[int]error   // the item's outcome from its batch's Done hook
	inDone   map[int]int     // Done hooks whose batch held the item
	// Per item, as the downstream saw it.
	seen      map[int]bool
	delivered map[int]int

	batches        int // Done hooks
	batchItems     int // items in them
	abandonedItems int
	fired          int // Fired hooks
	between        int // batches between their Fired and Done hooks
	maxBetween     int
	started        int // Observe calls
	stopped        int // Stopped hooks
	cutInFlight    int // fired batches failed by a Shutdown deadline
	violations     []string
}

func newLedger() *ledger {
	return &ledger{
		offered:   make(map[int]item),
		addErr:    make(map[int]error),
		results:   make(map[int]muster.Result),
		addedOK:   make(map[int]int),
		addedErr:  make(map[int][]error),
		final:     make(map[int]error),
		inDone:    make(map[int]int),
		seen:      make(map[int]bool),
		delivered: make(map[int]int),
	}
}

func (l *ledger) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violateLocked(format, args...)
}

func (l *ledger) violateLocked(format string, args ...any) {
	if len(l.violations) < 40 {
		l.violations = append(l.violations, fmt.Sprintf(format, args...))
	}
}

type firedMark struct{}

// observerFunc adapts a function to muster.Observer.
type observerFunc func(muster.ClientInfo) *muster.Hooks

func (f observerFunc) Observe(c muster.ClientInfo) *muster.Hooks { return f(c) }

// observer gives the test's counting hooks: they name every item through
// its context (Added keeps it, so that FireInfo.Contexts and the Refused
// hook of a dropped item carry it) and record each batch's outcome per item.
func (l *ledger) observer(c config) muster.Observer {
	return observerFunc(func(info muster.ClientInfo) *muster.Hooks {
		l.mu.Lock()
		l.started++
		if info.Name != "stress" || info.MaxBatchSize != int(c.maxSize) || info.MaxConcurrentBatches != int(c.maxConc) ||
			c.keyed && info.MaxKeys != c.maxKeys || !c.keyed && info.MaxKeys != 0 {
			l.violateLocked("Observe: ClientInfo %+v for %v", info, c)
		}
		l.mu.Unlock()
		return l.hooks(c)
	})
}

func (l *ledger) hooks(c config) *muster.Hooks {
	return &muster.Hooks{
		Stopped: func(ctx context.Context, info muster.ClientInfo) {
			l.mu.Lock()
			l.stopped++
			if l.between != 0 {
				l.violateLocked("Stopped with %d batches between Fired and Done", l.between)
			}
			l.mu.Unlock()
		},
		Added: func(ctx context.Context, info muster.AddInfo) context.Context {
			id, ok := idOf(ctx)
			l.mu.Lock()
			defer l.mu.Unlock()
			if !ok {
				l.violateLocked("Added hook with a context that names no item")
				return nil
			}
			if info.Err != nil || info.Taken {
				l.violateLocked("item %d: Added with %+v", id, info)
			}
			l.addedOK[id]++
			return ctx
		},
		Refused: func(ctx context.Context, info muster.AddInfo) {
			id, ok := idOf(ctx)
			l.mu.Lock()
			defer l.mu.Unlock()
			if !ok {
				l.violateLocked("Refused hook with a context that names no item (err %v)", info.Err)
				return
			}
			if info.Err == nil {
				l.violateLocked("item %d: Refused with no error", id)
			}
			l.addedErr[id] = append(l.addedErr[id], info.Err)
		},
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.fired++
			l.between++
			l.maxBetween = max(l.maxBetween, l.between)
			if c.maxConc > 0 && (l.between > int(c.maxConc) || info.InFlight > int(c.maxConc)) {
				l.violateLocked("%d batches between Fired and Done (InFlight %d), MaxConcurrentBatches %d", l.between, info.InFlight, c.maxConc)
			}
			if len(info.Contexts) != info.Size {
				l.violateLocked("Fired: %d contexts for %d items: an Added hook had not run", len(info.Contexts), info.Size)
			}
			return context.WithValue(ctx, firedMark{}, true)
		},
		Done: func(ctx context.Context, info muster.DoneInfo) {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.batches++
			l.batchItems += info.Size
			if ctx.Value(firedMark{}) != nil {
				l.between--
			}
			if ctx.Value(firedMark{}) == nil {
				if !errors.Is(info.Err, muster.ErrIncomplete) {
					l.violateLocked("batch done without firing, with %v (not ErrIncomplete)", info.Err)
				}
				l.abandonedItems += info.Size
			} else if errors.Is(info.Err, muster.ErrIncomplete) {
				l.cutInFlight++
			}
			if len(info.Contexts) != info.Size {
				l.violateLocked("Done: %d contexts for %d items", len(info.Contexts), info.Size)
				return
			}
			if c.maxSize > 0 && info.Size > int(c.maxSize) {
				l.violateLocked("batch of %d items, MaxBatchSize %d", info.Size, c.maxSize)
			}
			ie, _ := errors.AsType[*muster.ItemErrors](info.Err)
			if ie != nil && len(ie.Errs) != info.Size {
				ie = nil
			}
			bytes, key := 0, -1
			for i, ictx := range info.Contexts {
				id, ok := idOf(ictx)
				if !ok {
					l.violateLocked("Done: item %d of batch %d has no id", i, info.BatchID)
					continue
				}
				it := l.offered[id]
				bytes += it.size
				if c.keyed {
					if info.Key != it.key {
						l.violateLocked("item %d (key %d) in a batch of key %v", id, it.key, info.Key)
					}
					if i == 0 {
						key = it.key
					} else if key != it.key {
						l.violateLocked("batch %d mixes keys %d and %d", info.BatchID, key, it.key)
					}
				}
				l.inDone[id]++
				err := info.Err
				if ie != nil {
					err = ie.Errs[i]
				}
				l.final[id] = err
			}
			if c.maxBytes > 0 && bytes > int(c.maxBytes) {
				l.violateLocked("batch of %d bytes, MaxBatchBytes %d", bytes, c.maxBytes)
			}
		},
	}
}

// downstream is the FireFunc at the bottom: it delivers, fails, fails some
// items or panics, at random, and records deliveries by item id.
type downstream struct {
	c   config
	l   *ledger
	mu  sync.Mutex
	rng *rand.Rand
	n   int
}

func (d *downstream) fire(ctx context.Context, items []item) error {
	d.mu.Lock()
	roll := d.rng.IntN(100)
	lat := time.Duration(0)
	if d.c.latency > 0 {
		lat = time.Duration(d.rng.Int64N(int64(d.c.latency) + 1))
	}
	fails := make([]bool, len(items))
	perm := make([]bool, len(items))
	for i := range items {
		fails[i] = d.rng.IntN(3) == 0
		perm[i] = d.rng.IntN(100) < d.c.pPermanent
	}
	wrap := d.rng.IntN(4) == 0
	wholePerm := d.rng.IntN(100) < d.c.pPermanent
	d.n++
	n := d.n
	d.mu.Unlock()

	// A call may panic whether or not an earlier attempt delivered some of
	// the batch's items: retry charges a panic to that attempt's items only
	// (see TestRetryPanicAfterPartial).
	d.l.mu.Lock()
	for _, it := range items {
		d.l.seen[it.id] = true
	}
	d.l.mu.Unlock()

	if lat > 0 {
		if d.c.ignoreCtx {
			time.Sleep(lat)
		} else {
			t := time.NewTimer(lat)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("downstream: %w", context.Cause(ctx))
			}
		}
	}
	c := d.c
	switch {
	case roll < c.pOK:
		d.deliver(items, nil)
		return nil
	case roll < c.pOK+c.pFail:
		var err error = &downErr{n}
		if wholePerm {
			err = retry.Permanent(err)
		}
		return err
	case roll < c.pOK+c.pFail+c.pPartial:
		errs := make([]error, len(items))
		for i := range items {
			if fails[i] {
				errs[i] = &downErr{n}
				if perm[i] {
					errs[i] = retry.Permanent(errs[i])
				}
			}
		}
		d.deliver(items, errs)
		var err error = &muster.ItemErrors{Errs: errs}
		if wrap {
			err = fmt.Errorf("bulk: %w", err)
		}
		return err
	default:
		panic(fmt.Sprintf("downstream panic %d", n))
	}
}

func (d *downstream) deliver(items []item, errs []error) {
	d.l.mu.Lock()
	defer d.l.mu.Unlock()
	for i, it := range items {
		if errs == nil || errs[i] == nil {
			d.l.delivered[it.id]++
			if d.l.delivered[it.id] > 1 {
				d.l.violateLocked("item %d delivered %d times", it.id, d.l.delivered[it.id])
			}
		}
	}
}

// client is what the producers see of a Batcher or a Keyed.
type client interface {
	Add(context.Context, item) error
	AddResult(context.Context, item) (muster.Result, error)
	Flush(context.Context) error
	Stop() error
	Shutdown(context.Context) error
	Stats() muster.Stats
}

// tally counts, over all rounds, what the rounds exercised, so that the
// log shows the test reaches the paths it means to (it is no assertion).
var tally struct {
	sync.Mutex
	m map[string]int
}

func count(what string, n int) {
	if n == 0 {
		return
	}
	tally.Lock()
	defer tally.Unlock()
	if tally.m == nil {
		tally.m = map[string]int{}
	}
	tally.m[what] += n
}

func rounds() int {
	if s := os.Getenv("MUSTER_STRESS_ROUNDS"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n > 0 {
			return n
		}
	}
	if os.Getenv("MUSTER_STRESS") == "long" {
		return 500
	}
	return 20
}

// TestStress runs rounds of random configurations and checks, per round,
// that every item offered is accounted for exactly once. Each round logs
// its seed; MUSTER_STRESS_SEED=<seed> MUSTER_STRESS_ROUNDS=1 replays it
// (goroutine interleavings aside).
func TestStress(t *testing.T) {
	base := uint64(time.Now().UnixNano())
	if s := os.Getenv("MUSTER_STRESS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("MUSTER_STRESS_SEED: %v", err)
		}
		base = v
	}
	n := rounds()
	tally.Lock()
	tally.m = nil
	tally.Unlock()
	t.Logf("base seed %d, %d rounds (replay one: MUSTER_STRESS_SEED=<round seed> MUSTER_STRESS_ROUNDS=1)", base, n)
	for r := range n {
		seed := base + uint64(r)
		t.Run(fmt.Sprintf("round%03d", r), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runRound(t, seed) })
		})
	}
	tally.Lock()
	defer tally.Unlock()
	keys := make([]string, 0, len(tally.m))
	for k := range tally.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %-45s %d", k, tally.m[k])
	}
	t.Logf("coverage over %d rounds:%s", n, b.String())
}

func runRound(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	c := drawConfig(rng)
	t.Logf("seed %d: %v", seed, c)
	defer func() {
		if t.Failed() {
			t.Logf("FAILED: replay with MUSTER_STRESS_SEED=%d MUSTER_STRESS_ROUNDS=1", seed)
		}
	}()

	l := newLedger()
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	metricsHooks, err := otelmuster.NewMetrics(otelmuster.WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	hooks := muster.Compose(metricsHooks, l.observer(c))

	ds := &downstream{c: c, l: l, rng: rand.New(rand.NewPCG(seed, 0xd0))}
	fire := muster.FireFunc[item](ds.fire)
	if c.useRetry {
		budget := retry.NewBudget(0.5, 50)
		if c.tightBudget {
			budget = retry.NewBudget(0.05, 0.5)
		}
		fire = retry.New[item](
			retry.WithMaxAttempts(c.maxAttempts),
			retry.WithBackoff(retry.Backoff{Initial: time.Millisecond, Max: 4 * time.Millisecond}),
			retry.WithBudget(budget),
		)(fire)
	}
	var sizer func(item) int
	if c.maxBytes > 0 {
		sizer = func(it item) int { return it.size }
	}

	var cl client
	if c.keyed {
		k := &muster.Keyed[int, item]{
			Key: func(it item) int { return it.key },
			Fire: func(ctx context.Context, items []item) error {
				for _, it := range items {
					if it.key != items[0].key {
						l.violate("Fire for key %d got item %d of key %d", items[0].key, it.id, it.key)
					}
				}
				return fire(ctx, items)
			},
			MaxBatchSize:         c.maxSize,
			BatchTimeout:         c.timeout,
			MaxBatchBytes:        c.maxBytes,
			Sizer:                sizer,
			MaxConcurrentBatches: c.maxConc,
			PendingWorkCapacity:  c.capacity,
			Overflow:             c.overflow,
			MaxKeys:              c.maxKeys,
			KeyIdleTimeout:       c.keyIdle,
			Name:                 "stress",
			Hooks:                hooks,
		}
		if err := k.Start(); err != nil {
			t.Fatal(err)
		}
		cl = k
	} else {
		b := &muster.Batcher[item]{
			MaxBatchSize:         c.maxSize,
			BatchTimeout:         c.timeout,
			MaxBatchBytes:        c.maxBytes,
			Sizer:                sizer,
			MaxConcurrentBatches: c.maxConc,
			PendingWorkCapacity:  c.capacity,
			Overflow:             c.overflow,
			Fire:                 fire,
			Name:                 "stress",
			Hooks:                hooks,
		}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		cl = b
	}

	// Producers.
	var wg sync.WaitGroup
	for p := range producers {
		prng := rand.New(rand.NewPCG(seed, uint64(p)+1))
		wg.Go(func() {
			for i := range c.perProducer {
				id := p*1_000_000 + i
				it := item{id: id, size: 1 + prng.IntN(20)}
				if c.maxBytes > 0 && prng.IntN(50) == 0 {
					it.size = int(c.maxBytes) + 1 + prng.IntN(5) // too large
				}
				if c.keyed {
					it.key = prng.IntN(c.nkeys)
				}
				ctx := context.WithValue(context.Background(), idKey{}, id)
				cancel := context.CancelFunc(func() {})
				if prng.IntN(100) < c.pTimeoutCtx {
					ctx, cancel = context.WithTimeout(ctx, time.Duration(prng.IntN(3000))*time.Microsecond)
				}
				useResult := prng.IntN(100) < c.pResult
				l.mu.Lock()
				l.offered[id] = it
				l.mu.Unlock()
				var res muster.Result
				var err error
				if useResult {
					res, err = cl.AddResult(ctx, it)
				} else {
					err = cl.Add(ctx, it)
				}
				cancel()
				l.mu.Lock()
				if err != nil {
					l.addErr[id] = err
					if res != (muster.Result{}) {
						l.violateLocked("item %d: AddResult returned a Result and error %v", id, err)
					}
				} else if useResult {
					if res == (muster.Result{}) {
						l.violateLocked("item %d: AddResult returned neither Result nor error", id)
					} else {
						l.results[id] = res
					}
				}
				l.mu.Unlock()
				if c.pause > 0 && prng.IntN(2) == 0 {
					time.Sleep(time.Duration(prng.Int64N(int64(c.pause))))
				}
				if prng.IntN(1000) < c.pFlush {
					fctx, fcancel := context.WithTimeout(context.Background(), time.Duration(prng.IntN(5))*time.Millisecond)
					err := cl.Flush(fctx)
					fcancel()
					if err != nil && !errors.Is(err, muster.ErrStopped) && !errors.Is(err, context.DeadlineExceeded) &&
						!errors.Is(err, muster.ErrIncomplete) {
						l.violate("Flush: unexpected error %v", err)
					}
				}
			}
		})
	}

	// Shutdown, while producers may still be adding.
	time.Sleep(c.stopAfter)
	var serr error
	if c.shutdown == 0 {
		serr = cl.Stop()
		if serr != nil {
			t.Errorf("Stop: %v", serr)
		}
	} else {
		ctx, cancel := context.WithTimeout(context.Background(), c.shutdown)
		serr = cl.Shutdown(ctx)
		cancel()
		var se *muster.ShutdownError
		if serr != nil && !errors.As(serr, &se) {
			t.Errorf("Shutdown: %v is not a *ShutdownError", serr)
		}
	}
	wg.Wait()
	synctest.Wait() // batches left in flight by a deadline finish, hooks run

	// A second Stop waits for the same end and returns nil.
	if err := cl.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	synctest.Wait()
	check(t, c, l, cl.Stats(), reader, serr)
}

// outcome of one item.
type outcome uint8

const (
	refused   outcome = iota + 1 // not taken: error from Add, or dropped newest
	dropped                      // taken, then dropped under OverflowDropOldest
	delivered                    // its batch (or its own entry) succeeded
	failed                       // its batch failed, or its own entry did
)

func (o outcome) String() string {
	switch o {
	case refused:
		return "refused"
	case dropped:
		return "dropped"
	case delivered:
		return "delivered"
	case failed:
		return "failed"
	}
	return "unknown"
}

func check(t *testing.T, c config, l *ledger, st muster.Stats, reader *sdkmetric.ManualReader, serr error) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()

	var (
		counts      = map[outcome]int{}
		wantAdded   = map[string]int64{} // muster.item.added: items taken (key "")
		wantRefused = map[string]int64{} // muster.item.refused by error.type
		wantDropped = map[string]int64{} // muster.item.dropped by error.type
		wantProc    = map[string]int64{} // muster.item.processed by error.type
		refusedN    uint64
		droppedN    uint64
		takenN      uint64
		abandonedOK int
	)
	bad := func(format string, args ...any) { l.violateLocked(format, args...) }

	ids := make([]int, 0, len(l.offered))
	for id := range l.offered {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		aerr, hasAddErr := l.addErr[id]
		ok := l.addedOK[id]
		errs := l.addedErr[id]
		res, hasRes := l.results[id]
		var resErr error
		if hasRes {
			select {
			case <-res.Done():
				resErr = res.Err()
			default:
				bad("item %d: Result never done", id)
			}
		}
		takenN += uint64(ok)
		var o outcome
		switch {
		case hasAddErr:
			o = refused
			if ok != 0 || len(errs) != 1 || !sameErr(errs[0], aerr) {
				bad("item %d: Add returned %v; Added hooks: %d, Refused hooks: %v", id, aerr, ok, errs)
			}
			// Every refusal has an error.type of its own, not a Go type
			// shared with any errors.New error (ErrTooManyKeys had none).
			if et := otelmuster.ErrorType(aerr); strings.ContainsAny(et, "*.") {
				bad("item %d: refused with %v, error.type %q: no class of its own", id, aerr, et)
			}
			refusedN++
			wantRefused[otelmuster.ErrorType(aerr)]++
		case ok == 0:
			// Refused without an error from Add: dropped as the newest.
			o = refused
			if len(errs) != 1 || !errors.Is(errs[0], muster.ErrDropped) {
				bad("item %d: Add returned nil; no Added hook, Refused hooks %v", id, errs)
			} else if c.overflow != muster.OverflowDropNewest && c.overflow != muster.OverflowDropOldest {
				bad("item %d: dropped under Overflow %v", id, c.overflow)
			}
			if hasRes && !errors.Is(resErr, muster.ErrDropped) {
				bad("item %d: dropped, its Result says %v", id, resErr)
			}
			refusedN++
			wantRefused[otelmuster.ErrorType(muster.ErrDropped)]++
		case ok > 1:
			bad("item %d: %d Added hooks with a nil error", id, ok)
		case len(errs) > 0:
			o = dropped
			if len(errs) != 1 || !errors.Is(errs[0], muster.ErrDropped) || c.overflow != muster.OverflowDropOldest {
				bad("item %d: taken, then Refused hooks %v (Overflow %v)", id, errs, c.overflow)
			}
			if l.inDone[id] != 0 {
				bad("item %d: dropped, and in %d done batches", id, l.inDone[id])
			}
			if hasRes && !errors.Is(resErr, muster.ErrDropped) {
				bad("item %d: dropped, its Result says %v", id, resErr)
			}
			droppedN++
			wantAdded[""]++ // taken, then dropped
			wantDropped[otelmuster.ErrorType(muster.ErrDropped)]++
		default:
			if l.inDone[id] != 1 {
				bad("item %d: taken, in %d done batches", id, l.inDone[id])
				continue
			}
			err := l.final[id]
			if err == nil {
				o = delivered
			} else {
				o = failed
			}
			wantAdded[""]++
			wantProc[otelmuster.ErrorType(err)]++
			if hasRes && !sameErr(resErr, err) {
				bad("item %d: its batch says %v, its Result %v", id, err, resErr)
			}
			if errors.Is(err, muster.ErrIncomplete) {
				abandonedOK++
			}
		}
		if o != refused && o != dropped && o != delivered && o != failed {
			continue
		}
		counts[o]++
		switch d := l.delivered[id]; {
		case o == delivered && d != 1:
			bad("item %d: succeeded, delivered %d times", id, d)
		case o != delivered && d != 0:
			bad("item %d: outcome %v (final error %v), yet delivered %d times", id, o, l.final[id], d)
		}
		if o == refused || o == dropped {
			if l.inDone[id] != 0 {
				bad("item %d: refused, and in %d done batches", id, l.inDone[id])
			}
		}
	}
	for id := range l.delivered {
		if _, ok := l.offered[id]; !ok {
			bad("item %d delivered, never offered", id)
		}
	}
	total := counts[refused] + counts[dropped] + counts[delivered] + counts[failed]
	if total != len(l.offered) {
		bad("%d items offered, %d accounted for", len(l.offered), total)
	}
	if counts[delivered]+counts[failed] != l.batchItems {
		bad("%d items delivered or failed, %d in done batches", counts[delivered]+counts[failed], l.batchItems)
	}

	// Stats agree.
	if st.Added != takenN {
		bad("Stats.Added %d, Added hooks ok %d", st.Added, takenN)
	}
	if st.Refused != refusedN {
		bad("Stats.Refused %d, refused %d", st.Refused, refusedN)
	}
	if st.Dropped != droppedN {
		bad("Stats.Dropped %d, dropped %d", st.Dropped, droppedN)
	}
	if st.Abandoned != uint64(l.abandonedItems) {
		bad("Stats.Abandoned %d, abandoned items in Done hooks %d", st.Abandoned, l.abandonedItems)
	}
	if st.Fired != uint64(l.fired) {
		bad("Stats.Fired %d, Fired hooks %d", st.Fired, l.fired)
	}
	if st.InFlight != 0 || st.Waiting != 0 || st.Pending != 0 || st.Queued != 0 || st.Fired != st.Done {
		bad("after the end: Stats %+v", st)
	}
	if l.started != 1 || l.stopped != 1 {
		bad("Observe ran %d times, Stopped %d", l.started, l.stopped)
	}
	if l.between != 0 {
		bad("%d batches Fired without Done", l.between)
	}
	if c.keyed && st.Keys > c.maxKeys || st.Keys < 0 {
		bad("Stats.Keys %d, MaxKeys %d", st.Keys, c.maxKeys)
	}
	if c.shutdown == 0 && l.abandonedItems != 0 {
		bad("Stop abandoned %d items", l.abandonedItems)
	}

	// Metrics agree.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	gotAdded := sumByErrorType(rm, "muster.item.added")
	gotRefused := sumByErrorType(rm, "muster.item.refused")
	gotDropped := sumByErrorType(rm, "muster.item.dropped")
	gotProc := sumByErrorType(rm, "muster.item.processed")
	if !reflect.DeepEqual(nonZero(gotAdded), nonZero(wantAdded)) {
		bad("muster.item.added: metrics %v, test %v", gotAdded, wantAdded)
	}
	if !reflect.DeepEqual(nonZero(gotRefused), nonZero(wantRefused)) {
		bad("muster.item.refused by error.type: metrics %v, test %v", gotRefused, wantRefused)
	}
	if !reflect.DeepEqual(nonZero(gotDropped), nonZero(wantDropped)) {
		bad("muster.item.dropped by error.type: metrics %v, test %v", gotDropped, wantDropped)
	}
	if !reflect.DeepEqual(nonZero(gotProc), nonZero(wantProc)) {
		bad("muster.item.processed by error.type: metrics %v, test %v", gotProc, wantProc)
	}
	if c.maxSize > 0 {
		for _, dp := range histogram(rm, "muster.batch.items") {
			if m, ok := dp.Max.Value(); ok && m > int64(c.maxSize) {
				bad("muster.batch.items point with max %d > MaxBatchSize %d (%v)", m, c.maxSize, dp.Attributes)
			}
		}
	}
	var batchCount uint64
	for _, dp := range histogram(rm, "muster.batch.items") {
		batchCount += dp.Count
	}
	if batchCount != uint64(l.fired) {
		bad("muster.batch.items counts %d batches, %d fired", batchCount, l.fired)
	}

	for k, v := range wantRefused {
		count("refused: "+k, int(v))
	}
	for k, v := range wantDropped {
		count("dropped: "+k, int(v))
	}
	for k, v := range wantProc {
		if k == "" {
			k = "ok"
		}
		count("processed: "+k, int(v))
	}
	var se *muster.ShutdownError
	if errors.As(serr, &se) {
		count("rounds: Shutdown deadline cut work off", 1)
	}
	if c.keyed {
		count("rounds: Keyed", 1)
	}
	count("items: delivered", counts[delivered])
	count("items: abandoned at a deadline", l.abandonedItems)
	count("batches: fired, cut off by a deadline", l.cutInFlight)
	count("batches", l.batches)
	t.Logf("offered %d: delivered %d, failed %d (abandoned %d), refused %d, dropped oldest %d; %d batches; shutdown: %v",
		len(l.offered), counts[delivered], counts[failed], abandonedOK, counts[refused], counts[dropped], l.batches, serr)
	for _, v := range l.violations {
		t.Error(v)
	}
}

// sameErr reports whether a and b are the same error value.
func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	if reflect.TypeOf(a).Comparable() && reflect.TypeOf(b).Comparable() {
		return a == b
	}
	return errors.Is(a, b)
}

func nonZero(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}

func sumByErrorType(rm metricdata.ResourceMetrics, name string) map[string]int64 {
	out := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			sum, ok := m.Data.(metricdata.Sum[int64])
			if !ok {
				continue
			}
			for _, dp := range sum.DataPoints {
				v, _ := dp.Attributes.Value("error.type")
				out[v.AsString()] += dp.Value
			}
		}
	}
	return out
}

func histogram(rm metricdata.ResourceMetrics, name string) []metricdata.HistogramDataPoint[int64] {
	var out []metricdata.HistogramDataPoint[int64]
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			if h, ok := m.Data.(metricdata.Histogram[int64]); ok {
				out = append(out, h.DataPoints...)
			}
		}
	}
	return out
}

// A FireFunc wrapped by retry.New delivers item 0 and fails item 1 (a
// *muster.ItemErrors), then panics on the retry of item 1. The panic used to
// escape the middleware, so that the core failed the whole batch and item 0's
// Result said it failed though it was delivered. retry recovers a panic per
// attempt and charges it to that attempt's items only. TestStress's
// downstream panics on retries too; this is the smallest case.
func TestRetryPanicAfterPartial(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		fire := retry.New[int](retry.WithBackoff(retry.Backoff{Initial: time.Millisecond}))(
			func(ctx context.Context, items []int) error {
				calls++
				if calls == 1 {
					return &muster.ItemErrors{Errs: []error{nil, errors.New("busy")}}
				}
				panic("downstream panic")
			})
		b := &muster.Batcher[int]{MaxBatchSize: 2, Fire: fire}
		if err := b.Start(); err != nil {
			t.Fatal(err)
		}
		r0, _ := b.AddResult(context.Background(), 0)
		r1, _ := b.AddResult(context.Background(), 1)
		if err := b.Stop(); err != nil {
			t.Fatal(err)
		}
		if err := r0.Err(); err != nil {
			t.Errorf("item 0 was delivered by the first attempt; its Result says %v", err)
		}
		if err := r1.Err(); !func() bool { _, ok := errors.AsType[*muster.PanicError](err); return ok }() {
			t.Errorf("item 1: %v, want a panic", err)
		}
	})
}

// Every refusal muster reports has an error.type class of its own: none is
// named by its Go type, which muster's sentinel errors share with any
// errors.New error (ErrTooManyKeys once had none). TestStress checks the
// refusals it meets; this checks them all.
func TestErrorTypeOfRefusals(t *testing.T) {
	for _, err := range []error{muster.ErrStopped, muster.ErrFull, muster.ErrDropped, muster.ErrTooLarge,
		muster.ErrTooManyKeys, muster.ErrInvalidKey, muster.ErrNotStarted, muster.ErrIncomplete,
		context.Canceled, context.DeadlineExceeded, &muster.PanicError{Value: "x"}} {
		if et := otelmuster.ErrorType(err); et == "" || strings.ContainsAny(et, "*.") {
			t.Errorf("ErrorType(%v) = %q, want a class of its own", err, et)
		}
	}
}
