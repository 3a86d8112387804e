package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// AdaptiveConfig configures an [Adaptive] limiter. Only Max is required; every
// other zero field takes the default its comment gives. Rates are events per
// second, in the unit the limiter is used with (batches or items).
type AdaptiveConfig struct {
	// Max is the ceiling the rate recovers to and never exceeds. It must be
	// positive and finite ([rate.Inf] is refused: additive increase needs a
	// ceiling to stop at).
	Max rate.Limit

	// Min is the floor the rate never drops below. It must be positive:
	// at a rate of zero no attempt would succeed, so nothing would ever
	// raise it again. Zero means Max/100.
	Min rate.Limit

	// Initial is the rate to start at, within [Min, Max]. Zero means Max:
	// start optimistic and back off on the first overload.
	Initial rate.Limit

	// Burst is the bucket size, as for [NewLimiter]. Zero means 1, which
	// paces events evenly. For a per-item limit, a burst of one full batch
	// lets an idle limiter fire it at once.
	Burst int

	// Increase is added to the rate after every successful attempt (one
	// Observe with a nil error, whatever its N), up to Max. Attempts come
	// faster at higher rates, so recovery from Min to Max is quicker than
	// linear in time. Zero means Max/100: from the floor back to the
	// ceiling in at most 100 successes.
	Increase rate.Limit

	// Decrease multiplies the rate after an overload, down to Min. It
	// must be in (0, 1). Zero means 0.5, TCP's halving.
	Decrease float64

	// CoolDown is how long after a decrease further overloads are ignored
	// (successes still count). The attempts of one wave, already fired at
	// the old rate, tend to fail together: without a cool-down, a wave of k
	// concurrent batches failing multiplies the rate by Decrease^k and can
	// throw it to the floor at once. TCP likewise halves at most once per
	// round trip. Set it to about how long an attempt takes to fail (the
	// downstream's timeout or typical latency). Zero means no cool-down:
	// every overload decreases, which suits one batch in flight at a time.
	CoolDown time.Duration

	// IsOverload reports whether a non-nil error means the downstream is
	// overloaded, so the rate must decrease. Errors for which it reports
	// false leave the rate unchanged. Nil means every error except one
	// matching context.Canceled (the caller gave up; the downstream said
	// nothing), so timeouts (context.DeadlineExceeded) count. To react
	// only to errors marked as overload:
	//
	//	IsOverload: func(err error) bool { return errors.Is(err, ratelimit.ErrOverloaded) },
	IsOverload func(error) bool
}

// An Adaptive limiter finds the rate a downstream sustains by AIMD, as TCP
// congestion control does: every successful attempt raises the rate by a fixed
// step (additive increase) and every overload multiplies it by a factor below
// one (multiplicative decrease), within [Min, Max]. The attempts it learns
// from are reported through [Adaptive.Observe]; a middleware that finds the
// [Observer] interface on its [Waiter] does this after each batch attempt.
//
// Waiting is delegated to a [Limiter], so everything said there holds (n
// larger than the burst, first come first served, rescheduling when the rate
// changes, cancellation). Observing an overload therefore also slows the
// batches already waiting.
//
// Share one Adaptive among the clients that call the same downstream, so that
// they back off together. An Adaptive is safe for simultaneous use by multiple
// goroutines. Use [NewAdaptive] to make one.
type Adaptive struct {
	lim *Limiter
	cfg AdaptiveConfig // defaults applied

	mu           sync.Mutex
	current      rate.Limit
	lastDecrease time.Time
	decreased    bool // lastDecrease is set
}

// NewAdaptive returns an Adaptive limiter starting at cfg.Initial with a full
// bucket. It returns an error if cfg is invalid (see [AdaptiveConfig]).
func NewAdaptive(cfg AdaptiveConfig) (*Adaptive, error) {
	if err := cfg.Normalize(); err != nil {
		return nil, err
	}
	return &Adaptive{
		lim:     NewLimiter(cfg.Initial, cfg.Burst),
		cfg:     cfg,
		current: cfg.Initial,
	}, nil
}

// Normalize applies the defaults of c's zero fields and checks the others,
// as NewAdaptive does; a limiter that keeps its AIMD state elsewhere (in
// Redis, for a quota shared by replicas) calls it to validate the same
// configuration the same way.
func (c *AdaptiveConfig) Normalize() error {
	finite := func(r rate.Limit) bool { return !math.IsNaN(float64(r)) && !math.IsInf(float64(r), 0) && r != rate.Inf }
	if !(c.Max > 0) || !finite(c.Max) {
		return fmt.Errorf("ratelimit: AdaptiveConfig.Max must be positive and finite, got %v", c.Max)
	}
	if c.Min == 0 {
		c.Min = c.Max / 100
	}
	if !(c.Min > 0) || c.Min > c.Max {
		return fmt.Errorf("ratelimit: AdaptiveConfig.Min must be in (0, Max=%v], got %v", c.Max, c.Min)
	}
	if c.Initial == 0 {
		c.Initial = c.Max
	}
	if !(c.Initial >= c.Min && c.Initial <= c.Max) {
		return fmt.Errorf("ratelimit: AdaptiveConfig.Initial must be in [Min=%v, Max=%v], got %v", c.Min, c.Max, c.Initial)
	}
	if c.Burst == 0 {
		c.Burst = 1
	}
	if c.Burst < 0 {
		return fmt.Errorf("ratelimit: AdaptiveConfig.Burst must not be negative, got %d", c.Burst)
	}
	if c.Increase == 0 {
		c.Increase = c.Max / 100
	}
	if !(c.Increase > 0) || !finite(c.Increase) {
		return fmt.Errorf("ratelimit: AdaptiveConfig.Increase must be positive and finite, got %v", c.Increase)
	}
	if c.Decrease == 0 {
		c.Decrease = 0.5
	}
	if !(c.Decrease > 0 && c.Decrease < 1) {
		return fmt.Errorf("ratelimit: AdaptiveConfig.Decrease must be in (0, 1), got %v", c.Decrease)
	}
	if c.CoolDown < 0 {
		return fmt.Errorf("ratelimit: AdaptiveConfig.CoolDown must not be negative, got %v", c.CoolDown)
	}
	if c.IsOverload == nil {
		c.IsOverload = isOverload
	}
	return nil
}

// isOverload is the default AdaptiveConfig.IsOverload.
func isOverload(err error) bool {
	return !errors.Is(err, context.Canceled)
}

// WaitN blocks until n events may happen at the current rate, or ctx is done;
// see [Limiter.WaitN].
func (a *Adaptive) WaitN(ctx context.Context, n int) error {
	return a.lim.WaitN(ctx, n)
}

func (a *Adaptive) wait(ctx context.Context, n int) (time.Duration, error) {
	return a.lim.wait(ctx, n)
}

// Observe adjusts the rate to the outcome of one attempt: a nil Err raises it
// by Increase, an error that IsOverload accepts lowers it by the factor
// Decrease (unless a decrease happened less than CoolDown ago), and any other
// error leaves it unchanged. The new rate applies at once, also to callers
// already waiting.
func (a *Adaptive) Observe(o Outcome) {
	overload := o.Err != nil
	if overload && !a.cfg.IsOverload(o.Err) { // outside a.mu: it is the user's code
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var next rate.Limit
	if overload {
		now := time.Now()
		if a.decreased && now.Sub(a.lastDecrease) < a.cfg.CoolDown {
			return
		}
		a.lastDecrease, a.decreased = now, true
		next = max(a.current*rate.Limit(a.cfg.Decrease), a.cfg.Min)
	} else {
		next = min(a.current+a.cfg.Increase, a.cfg.Max)
	}
	if next != a.current {
		a.current = next
		a.lim.SetLimit(next) // under a.mu, so that the limiter sees changes in order
	}
}

// Limit returns the current rate in events per second, for a gauge.
func (a *Adaptive) Limit() rate.Limit {
	return a.lim.Limit()
}
