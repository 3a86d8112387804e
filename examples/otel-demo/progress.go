package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// tally counts what the progress line and the summary show. Its hooks run on
// producers' and batches' goroutines; each takes a mutex for a few additions,
// which is cheap next to an item's trip (they must not block, and do not).
type tally struct {
	mu  sync.Mutex
	cur interval
	tot totals
}

// interval is what happened since the last progress line.
type interval struct {
	added, refused int
	batches        int
	fill           float64         // sum of size/MaxBatchSize
	ages           []time.Duration // first-item age at fire, per batch
	errors         int             // batches failed for good
	retries        int
}

// totals is what happened since the start.
type totals struct {
	added, refused               uint64
	invalid, invalidRequests     uint64            // orders of requests answered 400 (malformed), never added
	refusedBy                    map[string]uint64 // error.type -> items refused
	batches                      uint64
	byTrigger                    map[string]uint64
	delivered, failed, abandoned uint64 // items
	deliveredBatches             uint64
	failedBatches                uint64
	failedBy                     map[string]uint64 // error.type -> items failed
	abandonedBatches             uint64
	retries                      uint64
	acks                         acks // orders of requests that awaited their outcome
}

// acks counts the orders of requests that needed an acknowledgement, by
// what the request learned before its deadline, and, for those whose outcome
// was not known by then (the request answered 202 accepted), the outcome
// their Result reported later.
type acks struct {
	confirmed, failed, pending uint64 // written; failed for good; not known by the deadline
	lateConfirmed, lateFailed  uint64 // of pending: written later; failed (or left undone at shutdown) later
}

func (t *tally) acked(a acks) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tot.acks.confirmed += a.confirmed
	t.tot.acks.failed += a.failed
	t.tot.acks.pending += a.pending
	t.tot.acks.lateConfirmed += a.lateConfirmed
	t.tot.acks.lateFailed += a.lateFailed
}

// invalidRequest counts a request refused with a 400 for a malformed order:
// its k orders were never added.
func (t *tally) invalidRequest(k int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tot.invalid += uint64(k)
	t.tot.invalidRequests++
}

func newTally() *tally {
	return &tally{tot: totals{
		refusedBy: map[string]uint64{},
		byTrigger: map[string]uint64{},
		failedBy:  map[string]uint64{},
	}}
}

// firedKey marks the context of a batch that fired, so that Done tells a
// failed batch from one abandoned at the shutdown deadline (never fired).
type firedKey struct{}

// Observe makes the tally a muster.Observer of the demo's batcher.
func (t *tally) Observe(c muster.ClientInfo) *muster.Hooks {
	return &muster.Hooks{
		Added: func(context.Context, muster.AddInfo) context.Context {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.cur.added++
			t.tot.added++
			return nil
		},
		Refused: func(_ context.Context, info muster.AddInfo) {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.cur.refused++
			t.tot.refused++
			t.tot.refusedBy[otelmuster.ErrorType(info.Err)]++
		},
		Fired: func(ctx context.Context, info muster.FireInfo) context.Context {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.cur.batches++
			if c.MaxBatchSize > 0 {
				t.cur.fill += float64(info.Size) / float64(c.MaxBatchSize)
			}
			t.cur.ages = append(t.cur.ages, info.Age)
			t.tot.batches++
			t.tot.byTrigger[info.Trigger.String()]++
			return context.WithValue(ctx, firedKey{}, true)
		},
		Done: func(ctx context.Context, info muster.DoneInfo) {
			t.mu.Lock()
			defer t.mu.Unlock()
			n := uint64(info.Size)
			switch {
			case ctx.Value(firedKey{}) == nil:
				t.tot.abandoned += n
				t.tot.abandonedBatches++
			case info.Err == nil:
				t.tot.delivered += n
				t.tot.deliveredBatches++
			default:
				t.cur.errors++
				t.tot.failed += n
				t.tot.failedBatches++
				t.tot.failedBy[otelmuster.ErrorType(info.Err)] += n
			}
		},
		Retried: func(ctx context.Context, info muster.RetryInfo) {
			t.mu.Lock()
			defer t.mu.Unlock()
			t.cur.retries++
			t.tot.retries++
		},
	}
}

// take returns the interval so far and starts a new one.
func (t *tally) take() interval {
	t.mu.Lock()
	defer t.mu.Unlock()
	iv := t.cur
	t.cur = interval{ages: iv.ages[:0:0]}
	return iv
}

func (t *tally) totals() totals {
	t.mu.Lock()
	defer t.mu.Unlock()
	tot := t.tot
	tot.refusedBy = maps.Clone(t.tot.refusedBy)
	tot.byTrigger = maps.Clone(t.tot.byTrigger)
	tot.failedBy = maps.Clone(t.tot.failedBy)
	return tot
}

// gauges are the instantaneous values a progress line shows.
type gauges struct {
	stats     muster.Stats
	batchSize int     // MaxBatchSize (0: no size trigger, no fill ratio)
	maxIn     int     // MaxConcurrentBatches (0: no limit)
	capacity  int     // PendingWorkCapacity
	limit     float64 // current rate limit in orders/s (0: none)
	limitMode string  // a shared limit's mode when not shared ("local", "closed"); "" otherwise
	phase     string
	alerts    string // the alerts field ("" without -prometheus)
}

// progressLine formats one line: rates over the interval of length d, the
// fill and the p99 first-item age of the batches fired in it, and the
// gauges. For example:
//
//	7s steady   in  811/s refused   0  batches 19/s fill 84%  p99 wait  50ms  errors 0  retries  1  in-flight 1/4  queue   0/200  limit 1000/s
func progressLine(elapsed, d time.Duration, iv interval, g gauges) string {
	perSec := func(n int) float64 {
		if d <= 0 {
			return 0
		}
		return float64(n) / d.Seconds()
	}
	fill, p99 := "   -", "    -"
	if iv.batches > 0 {
		fill = fmt.Sprintf("%3.0f%%", 100*iv.fill/float64(iv.batches))
		p99 = fmtDur(percentile(iv.ages, 0.99))
	}
	if g.batchSize == 0 {
		fill = "   -" // no MaxBatchSize, no fill ratio
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%5s %-8s in %5.0f/s refused %3d  batches %3.0f/s fill %s  p99 wait %5s  errors %2d  retries %2d  in-flight %d",
		fmtElapsed(elapsed), g.phase, perSec(iv.added), iv.refused, perSec(iv.batches), fill, p99, iv.errors, iv.retries, g.stats.InFlight)
	if g.maxIn > 0 {
		fmt.Fprintf(&b, "/%d", g.maxIn)
	}
	fmt.Fprintf(&b, "  queue %3d/%d", g.stats.Queued, g.capacity)
	if g.limit > 0 {
		fmt.Fprintf(&b, "  limit %.0f/s", g.limit)
		if g.limitMode != "" {
			fmt.Fprintf(&b, " (%s: Redis failing)", g.limitMode)
		}
	}
	if g.alerts != "" {
		b.WriteString("  " + g.alerts)
	}
	return b.String()
}

// percentile returns the q-quantile of ds (nearest rank); ds is sorted in place.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*q+0.999999) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// fmtDur prints a duration briefly: 850µs, 51ms, 1.2s.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Second:
		if d < time.Second {
			return fmt.Sprintf("%dms", d.Milliseconds())
		}
		return fmt.Sprintf("%.1fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

func fmtElapsed(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s < 60 {
		return fmt.Sprintf("%ds", s)
	}
	return fmt.Sprintf("%dm%02ds", s/60, s%60)
}

// report is what the summary prints.
type report struct {
	ran         time.Duration
	reason      string // why it stopped
	stats       muster.Stats
	tot         totals
	shutdownErr *muster.ShutdownError
	inFlight    int // batches still in flight at exit (after the grace period)
	checkpoints int
	metrics     string // where metrics went
	traces      string // where traces went
	spans       int64  // spans written to the trace file, -1 if none
	journal     string // the journal's account ("": no -journal)
}

// writeSummary prints the final account. Its first check is the one that
// matters: every item taken was delivered, failed, or abandoned.
func writeSummary(w io.Writer, r report) {
	t := r.tot
	fmt.Fprintf(w, "\nsummary: ran %s, stopped (%s)\n", r.ran.Round(100*time.Millisecond), r.reason)
	fmt.Fprintf(w, "  items     added %d  delivered %d  failed %d  abandoned %d  refused %d (not taken)\n",
		r.stats.Added, t.delivered, t.failed, t.abandoned, r.stats.Refused)
	if len(t.failedBy) > 0 {
		fmt.Fprintf(w, "            failed by error.type: %s\n", byType(t.failedBy))
	}
	if len(t.refusedBy) > 0 {
		fmt.Fprintf(w, "            refused by error.type: %s\n", byType(t.refusedBy))
	}
	if t.invalidRequests > 0 {
		fmt.Fprintf(w, "            invalid: %d requests (%d orders) answered 400 for a malformed order, never added\n", t.invalidRequests, t.invalid)
	}
	fmt.Fprintf(w, "  batches   fired %d  delivered %d  failed %d  abandoned %d  (triggers:%s)\n",
		t.batches, t.deliveredBatches, t.failedBatches, t.abandonedBatches, triggers(t.byTrigger))
	fmt.Fprintf(w, "  retries   %d  checkpoints %d  keys %d live at exit\n", t.retries, r.checkpoints, r.stats.Keys)
	a := t.acks
	fmt.Fprintf(w, "  acks      %d orders awaited (AddResult): confirmed %d  failed %d  not known by the request deadline %d (answered 202; later written %d, failed %d)\n",
		a.confirmed+a.failed+a.pending, a.confirmed, a.failed, a.pending, a.lateConfirmed, a.lateFailed)
	sum := t.delivered + t.failed + t.abandoned + r.stats.Dropped
	dropped := ""
	if r.stats.Dropped > 0 {
		dropped = fmt.Sprintf(" + dropped %d", r.stats.Dropped)
	}
	left := ""
	if r.stats.Added != sum {
		left = fmt.Sprintf(" + %d still in flight", int64(r.stats.Added)-int64(sum))
	}
	check := "ok"
	if r.stats.Added != sum && r.inFlight == 0 {
		check = "MISMATCH"
	}
	fmt.Fprintf(w, "  check     added %d = delivered %d + failed %d + abandoned %d%s%s: %s\n",
		r.stats.Added, t.delivered, t.failed, t.abandoned, dropped, left, check)
	if e := r.shutdownErr; e != nil {
		fmt.Fprintf(w, "  shutdown  INCOMPLETE: the deadline left %d batches (%d items) not done: in flight (canceled, counted as failed) or abandoned before firing\n",
			e.Batches, e.Items)
		if e.Kept > 0 {
			fmt.Fprintf(w, "            kept in the journal for the next start: %d orders\n", e.Kept)
		}
	} else {
		fmt.Fprintf(w, "  shutdown  clean: nothing left behind\n")
	}
	if r.journal != "" {
		fmt.Fprintf(w, "  journal   %s\n", r.journal)
	}
	fmt.Fprintf(w, "  metrics   %s\n", r.metrics)
	traces := r.traces
	if r.spans >= 0 {
		traces = fmt.Sprintf("%s (%d spans)", traces, r.spans)
	}
	fmt.Fprintf(w, "  traces    %s\n", traces)
}

func byType(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func triggers(m map[string]uint64) string {
	var b strings.Builder
	for _, k := range []string{"size", "bytes", "timeout", "flush", "shutdown"} {
		fmt.Fprintf(&b, " %s %d", k, m[k])
	}
	return b.String()
}
