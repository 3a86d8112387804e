package benchmarks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/musterhq/muster/muster"
)

// The fairness benchmark (issue 17, "Tenants"): nine quiet keys and one
// loud key adding 100 times faster, into one muster.Keyed whose downstream
// cannot keep up with the loud key alone. It measures what the quiet keys
// meet: how long their Adds take (p99, against a run without the loud key),
// how many of their items are lost (an Add that fails, or does not return
// by its request deadline), and how long their items wait to fire.
//
// Each round runs three scenarios back to back, in an order rotated each
// round, so that the ratios compare runs seconds apart on a shared machine:
//
//   - quiet: the nine quiet keys alone (the reference);
//   - shared: with the loud key, default settings (PendingWorkCapacity
//     shared by all keys, batches admitted oldest first);
//   - fair: with the loud key and Keyed.MaxPendingPerKey.

// FairnessConfig is a fairness run.
type FairnessConfig struct {
	Rounds    int           // rounds recorded
	Duration  time.Duration // producers add for this long in each scenario
	QuietKeys int           // keys at QuietRate
	QuietRate int           // items/s of each quiet key
	Loud      int           // the loud key's rate, in multiples of QuietRate
	PerKey    uint          // MaxPendingPerKey of the fair scenario
	Overflow  muster.Overflow
	Deadline  time.Duration // a quiet Add's context deadline: blocked longer, its item is lost
	Progress  io.Writer     // a line per run; nil: none
}

// The client every scenario uses: batches of 100 or 20 ms, two slots, a
// shared capacity of 1,000 items; a downstream that takes 1 ms plus 200 us
// an item (two slots of it carry about 8,000 items/s in batches of 100).
const (
	fairBatch     = 100
	fairTimeout   = 20 * time.Millisecond
	fairSlots     = 2
	fairCapacity  = 1000
	fairFireFixed = time.Millisecond
	fairFireItem  = 200 * time.Microsecond
)

// FairnessScenarios are the scenarios' names, in the order of a report.
var FairnessScenarios = []string{"quiet", "shared", "fair"}

// FairnessSample is one scenario's run.
type FairnessSample struct {
	Scenario                  string
	QuietAdds                 int           // quiet Adds attempted
	QuietLost                 int           // refused, timed out, or never fired
	QuietP50, QuietP99        time.Duration // quiet Add latency
	QuietMax                  time.Duration
	QuietWaitP99              time.Duration // a quiet item's time from Add to its batch firing
	QuietBatches              int           // quiet batches that fired while producers added
	LoudAdds, LoudTaken       int
	LoudFired                 int // loud items whose batch fired while producers added
	LoudWaitP99               time.Duration
	MaxLoudPending, MaxQueued int // sampled every 10 ms
}

type fairItem struct {
	key int // 0: loud
	at  time.Time
}

// RunFairnessScenario runs one scenario: "quiet", "shared" or "fair".
func RunFairnessScenario(cfg FairnessConfig, scenario string) (FairnessSample, error) {
	s := FairnessSample{Scenario: scenario}
	loud := scenario != "quiet"
	var mu sync.Mutex
	var quietWaits, loudWaits []time.Duration
	quietFired := 0
	// The window producers add in; set before the first Add, which Fire
	// follows.
	var start, end time.Time
	k := &muster.Keyed[int, fairItem]{
		Key:                  func(it fairItem) int { return it.key },
		MaxBatchSize:         fairBatch,
		BatchTimeout:         fairTimeout,
		MaxConcurrentBatches: fairSlots,
		PendingWorkCapacity:  fairCapacity,
		Overflow:             cfg.Overflow,
		Fire: func(ctx context.Context, items []fairItem) error {
			now := time.Now()
			mu.Lock()
			if now.Before(end) {
				if items[0].key == 0 {
					s.LoudFired += len(items)
				} else {
					s.QuietBatches++
				}
			}
			for _, it := range items {
				if it.key == 0 {
					loudWaits = append(loudWaits, now.Sub(it.at))
				} else {
					quietWaits = append(quietWaits, now.Sub(it.at))
					quietFired++
				}
			}
			mu.Unlock()
			time.Sleep(fairFireFixed + time.Duration(len(items))*fairFireItem)
			return nil
		},
	}
	if scenario == "fair" {
		k.MaxPendingPerKey = cfg.PerKey
	}
	if err := k.Start(); err != nil {
		return s, err
	}
	ctx := context.Background()
	start = time.Now()
	end = start.Add(cfg.Duration)
	var wg sync.WaitGroup
	// Room for every sample up front: no allocation while producers run
	// but the contexts of quiet Adds.
	expect := int(cfg.Duration.Seconds()*float64(cfg.QuietRate)) + 16
	quietLat := make([][]time.Duration, cfg.QuietKeys)
	for q := range quietLat {
		quietLat[q] = make([]time.Duration, 0, expect)
	}
	quietWaits = make([]time.Duration, 0, expect*cfg.QuietKeys)
	loudWaits = make([]time.Duration, 0, expect*cfg.Loud)
	var quietLost atomic.Int64
	// Each producer adds, every tick, the items its rate owes since start.
	pace := func(rate int, tick time.Duration, add func(now time.Time)) {
		for n := 0; ; {
			now := time.Now()
			if !now.Before(end) {
				return
			}
			for owed := int(now.Sub(start).Seconds() * float64(rate)); n < owed && time.Now().Before(end); n++ {
				add(time.Now())
			}
			time.Sleep(tick)
		}
	}
	for q := range cfg.QuietKeys {
		wg.Go(func() {
			pace(cfg.QuietRate, time.Second/time.Duration(cfg.QuietRate), func(now time.Time) {
				actx, cancel := context.WithTimeout(ctx, cfg.Deadline)
				t0 := time.Now() // the Add alone, not the context's making
				err := k.Add(actx, fairItem{key: q + 1, at: now})
				quietLat[q] = append(quietLat[q], time.Since(t0))
				cancel()
				if err != nil {
					quietLost.Add(1)
				}
			})
		})
	}
	var loudAdds, loudTaken atomic.Int64
	if loud {
		wg.Go(func() {
			pace(cfg.Loud*cfg.QuietRate, time.Millisecond, func(now time.Time) {
				loudAdds.Add(1)
				if err := k.Add(ctx, fairItem{key: 0, at: now}); err == nil {
					loudTaken.Add(1)
				} else if !errors.Is(err, muster.ErrFull) {
					panic(err)
				}
			})
		})
	}
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() { // what an operator would see
		defer close(sampled)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopSampling:
				return
			case <-t.C:
				for _, ks := range k.TopKeys(16) { // every key holding something
					if ks.Key == 0 {
						s.MaxLoudPending = max(s.MaxLoudPending, ks.Pending)
					}
				}
				s.MaxQueued = max(s.MaxQueued, k.Stats().Queued)
			}
		}
	}()
	wg.Wait()
	close(stopSampling)
	<-sampled
	if err := k.Stop(); err != nil {
		return s, err
	}
	var lat []time.Duration
	for _, l := range quietLat {
		lat = append(lat, l...)
	}
	slices.Sort(lat)
	slices.Sort(quietWaits)
	slices.Sort(loudWaits)
	s.QuietAdds = len(lat)
	s.QuietLost = len(lat) - quietFired
	if lost := int(quietLost.Load()); lost > s.QuietLost {
		s.QuietLost = lost
	}
	s.QuietP50, s.QuietP99, s.QuietMax = quantile(lat, 0.5), quantile(lat, 0.99), quantile(lat, 1)
	s.QuietWaitP99, s.LoudWaitP99 = quantile(quietWaits, 0.99), quantile(loudWaits, 0.99)
	s.LoudAdds, s.LoudTaken = int(loudAdds.Load()), int(loudTaken.Load())
	return s, nil
}

// quantile returns the q-quantile of sorted (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// FairnessReport holds every round's samples, by scenario.
type FairnessReport struct {
	Config  FairnessConfig
	Samples map[string][]FairnessSample
}

// RunFairness runs cfg.Rounds rounds of the three scenarios, the order
// rotated each round.
func RunFairness(cfg FairnessConfig) (*FairnessReport, error) {
	r := &FairnessReport{Config: cfg, Samples: map[string][]FairnessSample{}}
	n := len(FairnessScenarios)
	for round := range cfg.Rounds {
		for j := range n {
			sc := FairnessScenarios[(round+j)%n]
			s, err := RunFairnessScenario(cfg, sc)
			if err != nil {
				return r, fmt.Errorf("round %d, %s: %w", round, sc, err)
			}
			r.Samples[sc] = append(r.Samples[sc], s)
			if cfg.Progress != nil {
				fmt.Fprintf(cfg.Progress, "round %d %-6s quiet add p99 %v (max %v), lost %d of %d; quiet wait p99 %v; loud taken %d of %d, max pending %d\n",
					round, sc, s.QuietP99, s.QuietMax, s.QuietLost, s.QuietAdds, s.QuietWaitP99, s.LoudTaken, s.LoudAdds, s.MaxLoudPending)
			}
		}
	}
	return r, nil
}

// Ratio returns the median over rounds of the paired ratio of a scenario's
// value to the quiet scenario's of the same round.
func (r *FairnessReport) Ratio(scenario string, f func(FairnessSample) time.Duration) float64 {
	var ratios []float64
	for i, s := range r.Samples[scenario] {
		if ref := f(r.Samples["quiet"][i]); ref > 0 {
			ratios = append(ratios, float64(f(s))/float64(ref))
		}
	}
	return medianOf(ratios)
}

// Markdown writes a table of the medians over rounds, and the paired ratios.
func (r *FairnessReport) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "```sh\n%s\n```\n\n", command)
	fmt.Fprintln(w, "| scenario | quiet Add p50 | quiet Add p99 | p99 / quiet-only (paired) | quiet Add max | quiet items lost | quiet item to fire p99 | quiet batches/s | loud items fired/s | loud key's max pending |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	med := func(ss []FairnessSample, f func(FairnessSample) time.Duration) time.Duration {
		vs := make([]float64, len(ss))
		for i, s := range ss {
			vs[i] = float64(f(s))
		}
		return time.Duration(medianOf(vs))
	}
	for _, sc := range FairnessScenarios {
		ss := r.Samples[sc]
		lost, adds, taken, batches, maxPending := 0, 0, 0, 0, 0
		for _, s := range ss {
			lost += s.QuietLost
			adds += s.QuietAdds
			taken += s.LoudFired
			batches += s.QuietBatches
			maxPending = max(maxPending, s.MaxLoudPending)
		}
		ratio := "1"
		if sc != "quiet" {
			ratio = fmt.Sprintf("%.3g", r.Ratio(sc, func(s FairnessSample) time.Duration { return s.QuietP99 }))
			if len(ratio) > 5 { // 1e+03 and above
				ratio = fmt.Sprintf("%.0f", r.Ratio(sc, func(s FairnessSample) time.Duration { return s.QuietP99 }))
			}
		}
		perSec := func(n int) float64 { return float64(n) / (float64(len(ss)) * r.Config.Duration.Seconds()) }
		loudRate := "-"
		if sc != "quiet" {
			loudRate = fmt.Sprintf("%.0f", perSec(taken))
		}
		fmt.Fprintf(w, "| %s | %v | %v | %s | %v | %d of %d | %v | %.0f | %s | %d |\n", sc,
			short(med(ss, func(s FairnessSample) time.Duration { return s.QuietP50 })),
			short(med(ss, func(s FairnessSample) time.Duration { return s.QuietP99 })), ratio,
			short(med(ss, func(s FairnessSample) time.Duration { return s.QuietMax })),
			lost, adds,
			short(med(ss, func(s FairnessSample) time.Duration { return s.QuietWaitP99 })),
			perSec(batches), loudRate, maxPending)
	}
}

// short rounds d to about three significant digits.
func short(d time.Duration) time.Duration {
	switch {
	case d >= 100*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= time.Microsecond:
		return d.Round(100 * time.Nanosecond)
	}
	return d
}
