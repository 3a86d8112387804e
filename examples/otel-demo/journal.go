package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/journal/redisjournal"
	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// journalMaxBytes bounds the embedded journal's files (-journal DIR).
const journalMaxBytes = 1 << 30

// ordersBatcher is what the demo needs of its batcher: a muster.Keyed of
// orders, or (-journal) the journal layer over a Keyed of journal items.
type ordersBatcher interface {
	Add(ctx context.Context, o Order) error
	AddResult(ctx context.Context, o Order) (muster.Result, error)
	Flush(ctx context.Context) error
	Shutdown(ctx context.Context) error
	Stats() muster.Stats
}

// journaled is the journal layer with the batcher's Stats, as the progress
// line and the summary read them.
type journaled struct {
	*journal.Batcher[Order]
	store   journal.Store
	where   string // for the banner and the summary
	metrics *otelmuster.JournalMetrics
	close   func() // closes the store (and its Redis client)

	deadLettered atomic.Uint64 // items DeadLetter received
}

func (j *journaled) Stats() muster.Stats { return j.Batcher.Stats().Stats }

// keyedParams are the settings of the Keyed batcher that the plain and the
// journaled demo share.
type keyedParams struct {
	cfg    config
	hooks  muster.Observer
	ledger *ledger // nil without -ledger
}

// newKeyed returns the demo's Keyed batcher of T, one batch per region (the
// batch span's muster.batch.key), with kp's settings; the plain demo's T is
// Order, the journaled one's journal.Item[Order].
func newKeyed[T any](kp keyedParams, region func(T) string, fire muster.FireFunc[T]) *muster.Keyed[string, T] {
	return &muster.Keyed[string, T]{
		Name:                 batcherName,
		Key:                  region,
		MaxBatchSize:         uint(kp.cfg.batchSize),
		BatchTimeout:         kp.cfg.batchTimeout,
		MaxConcurrentBatches: uint(kp.cfg.maxInflight),
		PendingWorkCapacity:  uint(kp.cfg.capacity),
		Hooks:                kp.hooks,
		Fire:                 fire,
	}
}

// newJournaled opens the journal that -journal names (a directory for the
// embedded Log at Synced, or "redis" for the Redis store at -redis-addr),
// wraps a Keyed of journal items with it, exports its metrics, and starts
// it: Start replays what an earlier run (or, in Redis, a dead replica) left.
func newJournaled(ctx context.Context, kp keyedParams, fire muster.FireFunc[journal.Item[Order]], mp metric.MeterProvider, stderr io.Writer) (*journaled, error) {
	cfg := kp.cfg
	j := &journaled{}
	if cfg.journal == "redis" {
		rdb := redisjournal.NewClient(&redis.Options{Addr: cfg.redisAddr, DialTimeout: 250 * time.Millisecond})
		s, err := redisjournal.Open(ctx, redisjournal.Options{Client: rdb, Name: serviceName + "-" + batcherName})
		if err != nil {
			rdb.Close()
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.store, j.where = s, "Redis at "+cfg.redisAddr+" (a dead replica's orders are taken over by a live one)"
		j.close = func() { s.Close(); rdb.Close() }
	} else {
		// Synced (the default level), with a bound on the disk it takes:
		// at the bound, Add blocks (the Keyed's Overflow) until orders
		// are written and their segments deleted.
		l, err := journal.Open(cfg.journal, journal.LogOptions{MaxBytes: journalMaxBytes})
		if err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		j.store, j.where = l, cfg.journal+" (synced: fsync'd before Add returns; at most 1 GiB)"
		j.close = func() { l.Close() }
	}
	jm, err := otelmuster.NewJournalMetrics(batcherName, j.store.Stats, otelmuster.WithMeterProvider(mp))
	if err != nil {
		j.close()
		return nil, err
	}
	j.metrics = jm
	var logMu sync.Mutex
	j.Batcher = journal.WrapKeyed(newKeyed(kp, func(it journal.Item[Order]) string { return it.Value.Region }, fire), journal.Config[Order]{
		Store: j.store,
		Codec: journal.JSON[Order](),
		// The orders whose outcome is not delivery: counted in the
		// summary, and logged, a line per dead-letter call.
		DeadLetter: func(_ context.Context, items []journal.Item[Order], err error) {
			j.deadLettered.Add(uint64(len(items)))
			for _, it := range items {
				kp.ledger.record("dead", it.Value.ID)
			}
			logMu.Lock()
			defer logMu.Unlock()
			first := ""
			if len(items) > 0 {
				first = fmt.Sprintf(" (first: order %d, journal ID %s)", items[0].Value.ID, items[0].ID)
			}
			fmt.Fprintf(stderr, "otel-demo: dead letter: %d orders%s: %v\n", len(items), first, err)
		},
		Hooks: jm.Hooks(),
	})
	if err := j.Batcher.Start(); err != nil {
		jm.Close()
		j.close()
		return nil, err
	}
	return j, nil
}

// closeAll closes the store and the metrics, once the batcher has shut down.
func (j *journaled) closeAll() {
	j.metrics.Close()
	j.close()
}

// summary is the journal's line of the summary.
func (j *journaled) summary() string {
	st := j.Batcher.Stats()
	return fmt.Sprintf("%s: replayed %d from an earlier run (upserted on their journal IDs: one that run had written too is one row), dead-lettered %d, left journaled %d for the next start",
		j.where, st.Replayed, j.deadLettered.Load(), st.Store.Items)
}

// ledger is the -ledger file: a line per order accepted (Add returned nil),
// written (orders-db stored it) or dead-lettered, each line one write(2) to
// a file opened with O_APPEND, unbuffered, so that a SIGKILL loses none of
// the lines whose write returned. A nil *ledger records nothing.
type ledger struct {
	f      *os.File
	failed atomic.Bool
	stderr io.Writer
}

func openLedger(path string, stderr io.Writer) (*ledger, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	return &ledger{f: f, stderr: stderr}, nil
}

// record appends "<what> <id>\n".
func (l *ledger) record(what string, id uint64) {
	if l == nil {
		return
	}
	line := make([]byte, 0, 32)
	line = append(line, what...)
	line = append(line, ' ')
	line = strconv.AppendUint(line, id, 10)
	line = append(line, '\n')
	if _, err := l.f.Write(line); err != nil && !l.failed.Swap(true) {
		fmt.Fprintf(l.stderr, "otel-demo: ledger: %v (further errors not shown)\n", err)
	}
}

func (l *ledger) close() error {
	if l == nil {
		return nil
	}
	return l.f.Close()
}

// errNoJournalRedis is -journal redis without -redis-addr.
var errNoJournalRedis = errors.New("-journal redis needs -redis-addr")
