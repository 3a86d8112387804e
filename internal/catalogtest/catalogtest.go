// Package catalogtest records every instrument of the metric catalogue
// (telemetry/musterconv) with sample values, for the tests that check what
// an exporter or a dashboard makes of the whole catalogue. It uses the
// OpenTelemetry metric API only.
package catalogtest

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// Catalogue returns the specs [Record] records: the batchers' instruments
// (musterconv.All) and the journal's (musterconv.Journal). The slice is new
// on each call.
func Catalogue() []musterconv.Spec {
	return append(musterconv.All(), musterconv.Journal()...)
}

// Record creates every instrument of [Catalogue] on m and records sample
// values, each with muster.batcher.name "orders" and the instrument's other
// attributes: error.type on a failed measurement beside a successful one, a
// batch trigger, a batch key. The batch wait is 20 ms (bucket (0.01,
// 0.025]); the journal holds 4 KiB of a 1 MiB limit, far from filling.
//
// It returns an error naming a catalogue instrument it has no recorder for
// (a new instrument must be added here), a recorder for an instrument no
// longer in the catalogue, or an instrument it could not create.
func Record(ctx context.Context, m metric.Meter) error {
	return record(ctx, m, Catalogue())
}

// record records the instruments of specs, each of which must have a
// recorder, and fails when a recorder's instrument is not among specs.
func record(ctx context.Context, m metric.Meter, specs []musterconv.Spec) error {
	name := musterconv.BatcherName("orders")
	with := func(kv ...attribute.KeyValue) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(append([]attribute.KeyValue{name}, kv...)...))
	}
	failed := musterconv.ErrorTypeKey.String("canceled")
	bySize := musterconv.BatchTrigger(musterconv.TriggerSize)
	byTimeout := musterconv.BatchTrigger(musterconv.TriggerTimeout)
	eu := musterconv.BatchKeyKey.String("eu")
	observe := func(v int64, kv ...attribute.KeyValue) metric.Int64ObservableOption {
		return metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(v, with(kv...))
			return nil
		})
	}
	observeFloat := func(v float64) metric.Float64ObservableOption {
		return metric.WithFloat64Callback(func(_ context.Context, o metric.Float64Observer) error {
			o.Observe(v, with())
			return nil
		})
	}
	// add returns a recorder that adds each value with its attributes.
	type sample struct {
		v  int64
		kv []attribute.KeyValue
	}
	add := func(s musterconv.Int64CounterSpec, samples ...sample) func() error {
		return func() error {
			c, err := s.New(m)
			if err != nil {
				return err
			}
			for _, x := range samples {
				c.Add(ctx, x.v, with(x.kv...))
			}
			return nil
		}
	}
	hist := func(s musterconv.Float64HistogramSpec, v float64, kv ...attribute.KeyValue) func() error {
		return func() error {
			h, err := s.New(m)
			if err != nil {
				return err
			}
			h.Record(ctx, v, with(kv...))
			return nil
		}
	}
	recorders := map[string]func() error{
		musterconv.ItemAdded.Name(): func() error {
			_, err := musterconv.ItemAdded.New(m, observe(100))
			return err
		},
		musterconv.ItemRefused.Name():   add(musterconv.ItemRefused, sample{1, []attribute.KeyValue{failed}}),
		musterconv.ItemDropped.Name():   add(musterconv.ItemDropped, sample{2, []attribute.KeyValue{musterconv.ErrorTypeKey.String("dropped")}}),
		musterconv.ItemProcessed.Name(): add(musterconv.ItemProcessed, sample{90, nil}, sample{10, []attribute.KeyValue{failed}}),
		musterconv.BatchRetries.Name():  add(musterconv.BatchRetries, sample{3, []attribute.KeyValue{failed}}),
		musterconv.BatchSize.Name(): func() error {
			h, err := musterconv.BatchSize.New(m)
			if err != nil {
				return err
			}
			h.Record(ctx, 100, with(bySize))
			return nil
		},
		musterconv.BatchUtilization.Name():  hist(musterconv.BatchUtilization, 1, bySize),
		musterconv.BatchWaitDuration.Name(): hist(musterconv.BatchWaitDuration, 0.02, byTimeout),
		musterconv.BatchDuration.Name(): func() error {
			h, err := musterconv.BatchDuration.New(m)
			if err != nil {
				return err
			}
			h.Record(ctx, 0.15, with())
			h.Record(ctx, 2, with(failed))
			return nil
		},
		musterconv.AddBlockedDuration.Name():    hist(musterconv.AddBlockedDuration, 0.0003),
		musterconv.RateLimitWaitDuration.Name(): hist(musterconv.RateLimitWaitDuration, 0.5),
		musterconv.BatchInflight.Name(): func() error {
			c, err := musterconv.BatchInflight.New(m)
			if err != nil {
				return err
			}
			c.Add(ctx, 2, with())
			return nil
		},
		musterconv.BatchInflightLimit.Name(): func() error {
			_, err := musterconv.BatchInflightLimit.New(m, observe(4))
			return err
		},
		musterconv.QueueSize.Name(): func() error {
			_, err := musterconv.QueueSize.New(m, observe(7))
			return err
		},
		musterconv.QueueCapacity.Name(): func() error {
			_, err := musterconv.QueueCapacity.New(m, observe(1000))
			return err
		},
		musterconv.BatcherKeys.Name(): func() error {
			_, err := musterconv.BatcherKeys.New(m, observe(3))
			return err
		},
		musterconv.ItemPending.Name(): func() error {
			_, err := musterconv.ItemPending.New(m, observe(560))
			return err
		},
		musterconv.KeyPending.Name(): func() error {
			_, err := musterconv.KeyPending.New(m, observe(400, eu))
			return err
		},
		musterconv.KeyWaiting.Name(): func() error {
			_, err := musterconv.KeyWaiting.New(m, observe(3, eu))
			return err
		},
		musterconv.JournalItems.Name(): func() error {
			_, err := musterconv.JournalItems.New(m, observe(12))
			return err
		},
		musterconv.JournalBytes.Name(): func() error {
			_, err := musterconv.JournalBytes.New(m, observe(4096))
			return err
		},
		musterconv.JournalBytesLimit.Name(): func() error {
			_, err := musterconv.JournalBytesLimit.New(m, observe(1<<20))
			return err
		},
		musterconv.JournalOldestAge.Name(): func() error {
			_, err := musterconv.JournalOldestAge.New(m, observeFloat(1.5))
			return err
		},
		musterconv.JournalAppendDuration.Name(): func() error {
			h, err := musterconv.JournalAppendDuration.New(m)
			if err != nil {
				return err
			}
			h.Record(ctx, 0.002, with())
			h.Record(ctx, 0.5, with(musterconv.ErrorTypeKey.String("journal_full")))
			return nil
		},
		musterconv.JournalSyncs.Name(): func() error {
			_, err := musterconv.JournalSyncs.New(m, observe(40))
			return err
		},
		musterconv.JournalSyncTime.Name(): func() error {
			_, err := musterconv.JournalSyncTime.New(m, observeFloat(0.08))
			return err
		},
		musterconv.JournalRecovered.Name():    add(musterconv.JournalRecovered, sample{5, nil}),
		musterconv.JournalDeadLettered.Name(): add(musterconv.JournalDeadLettered, sample{2, []attribute.KeyValue{musterconv.ErrorTypeKey.String("expired")}}),
		musterconv.JournalCorrupt.Name(): func() error {
			_, err := musterconv.JournalCorrupt.New(m, observe(1))
			return err
		},
		musterconv.JournalTakeovers.Name(): func() error {
			_, err := musterconv.JournalTakeovers.New(m, observe(1))
			return err
		},
	}
	for _, s := range specs {
		f, ok := recorders[s.Name()]
		if !ok {
			return fmt.Errorf("catalogtest: no recorder for %s, new in the catalogue: add one to catalogtest.Record (and to the dashboard)", s.Name())
		}
		delete(recorders, s.Name())
		if err := f(); err != nil {
			return fmt.Errorf("catalogtest: create %s: %w", s.Name(), err)
		}
	}
	for n := range recorders {
		return fmt.Errorf("catalogtest: a recorder for %s, which is not in the catalogue", n)
	}
	return nil
}
