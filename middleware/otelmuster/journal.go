package otelmuster

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/journal"
	"github.com/musterhq/muster/telemetry/musterconv"
)

// JournalMetrics records the instruments of a journaled batcher's journal
// (musterconv.Journal: items and bytes kept, the byte bound, the oldest
// item's age, append and commit latency, replays, dead letters, corrupt
// records, takeovers). Give [JournalMetrics.Hooks] to the journal layer's
// configuration, and call [JournalMetrics.Close] when the journal is closed.
type JournalMetrics struct {
	hooks *journal.Hooks
	reg   metric.Registration
}

// NewJournalMetrics returns the metrics of one journal: name is the name of
// the batcher it serves (muster.batcher.name, "muster" if empty), so that
// the journal's series sit beside that batcher's; stats reads the store's
// counters (its Stats method), at each collection. The gauges and the
// store's own counters (items, bytes, the bound, the oldest item's age,
// commits and their time, corrupt records, takeovers) are read from stats;
// append latency, replays and dead letters are recorded by the returned
// hooks. Options are [NewMetrics]'s ([WithMeterProvider]). The error is that
// of creating an instrument, or of a nil stats.
func NewJournalMetrics(name string, stats func() journal.StoreStats, opts ...Option) (*JournalMetrics, error) {
	if stats == nil {
		return nil, errors.New("otelmuster: NewJournalMetrics: nil stats function")
	}
	c := newConfig(opts)
	meter := c.mp.Meter(ScopeName, metric.WithInstrumentationVersion(Version()))
	var errs []error
	try := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	items, err := musterconv.JournalItems.New(meter)
	try(err)
	bytes, err := musterconv.JournalBytes.New(meter)
	try(err)
	limit, err := musterconv.JournalBytesLimit.New(meter)
	try(err)
	oldest, err := musterconv.JournalOldestAge.New(meter)
	try(err)
	appendDur, err := musterconv.JournalAppendDuration.New(meter)
	try(err)
	syncs, err := musterconv.JournalSyncs.New(meter)
	try(err)
	syncTime, err := musterconv.JournalSyncTime.New(meter)
	try(err)
	recovered, err := musterconv.JournalRecovered.New(meter)
	try(err)
	deadLettered, err := musterconv.JournalDeadLettered.New(meter)
	try(err)
	corrupt, err := musterconv.JournalCorrupt.New(meter)
	try(err)
	takeovers, err := musterconv.JournalTakeovers.New(meter)
	try(err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	n := newNameAttrs(name)
	obs := n.base.obs
	reg, err := meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		st := stats()
		o.ObserveInt64(items, int64(st.Items), obs...)
		o.ObserveInt64(bytes, st.Bytes, obs...)
		if st.MaxBytes > 0 {
			o.ObserveInt64(limit, st.MaxBytes, obs...)
		}
		age := 0.0
		if !st.Oldest.IsZero() {
			age = max(time.Since(st.Oldest).Seconds(), 0)
		}
		o.ObserveFloat64(oldest, age, obs...)
		o.ObserveInt64(syncs, int64(st.Syncs), obs...)
		o.ObserveFloat64(syncTime, st.SyncTime.Seconds(), obs...)
		o.ObserveInt64(corrupt, int64(st.Corrupt), obs...)
		o.ObserveInt64(takeovers, int64(st.Takeovers), obs...)
		return nil
	}, items, bytes, limit, oldest, syncs, syncTime, corrupt, takeovers)
	if err != nil {
		return nil, err
	}

	ctx := context.Background() // the journal's hooks carry no context
	return &JournalMetrics{
		reg: reg,
		hooks: &journal.Hooks{
			Appended: func(d time.Duration, err error) {
				appendDur.Record(ctx, d.Seconds(), n.byError(err).rec...)
			},
			Recovered: func() { recovered.Add(ctx, 1, n.base.add...) },
			DeadLettered: func(count int, err error) {
				deadLettered.Add(ctx, int64(count), n.byError(err).add...)
			},
		},
	}, nil
}

// Hooks returns the hooks that record append latency, replays and dead
// letters: give them to the journal layer's configuration. They are safe
// for concurrent use.
func (j *JournalMetrics) Hooks() *journal.Hooks { return j.hooks }

// Close stops reading the store's Stats: the journal's gauges and the
// store's counters are no longer reported. Call it when the journal is
// closed. The hooks still record.
func (j *JournalMetrics) Close() error { return j.reg.Unregister() }
