package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/musterhq/muster/middleware/otelmuster"
	"github.com/musterhq/muster/muster"
)

// Order is what the service batches: one line of a customer's order.
type Order struct {
	ID         uint64
	Region     string // the batcher's key: orders-db writes each region apart
	Customer   string
	SKU        string
	Quantity   int
	PriceCents int64
	Created    time.Time
}

// phase is a part of the load cycle.
type phase struct {
	name     string
	until    float64 // end of the phase, as a fraction of the cycle
	load     float64 // multiplies -rate
	brownout bool    // the downstream is slow, fails twice as often and sheds load
	outage   bool    // the downstream fails every write (-outage)
}

// cyclePhases is the load cycle, an hour by default (-cycle): long
// calm stretches and, between them, two incidents long enough for the alert
// rules of deploy/prometheus at their real scale (windows of minutes, "for"
// of 2 to 5 minutes, 5 minutes of keep_firing_for) to fire during each and
// resolve before the next. The steady and quiet phases meet the rules'
// objective (99.9% of items written): no alert fires in them.
//
//   - surge: three times the load, which the rate limit and backpressure
//     absorb (producers blocked, requests refused at their deadline, batches
//     waiting for a slot): the saturation alerts fit it, never a page
//     (refused requests are not failed items);
//   - brownout: the downstream eight times slower, failing twice as often,
//     mostly with 429s, so the adaptive limit drops and retries absorb the
//     failures: saturation alerts again, within the error budget.
//
// A page (MusterErrorBudgetBurn) takes an incident that loses items: the
// -outage flag stages one. The cycle cannot stage it every hour: an outage
// an hour is 17% of items failing, which no objective tolerates and every
// burn-rate alert would report for good.
var cyclePhases = []phase{
	{name: "steady", until: 0.05, load: 1},
	{name: "surge", until: 0.20, load: 3},
	{name: "steady", until: 0.45, load: 1},
	{name: "brownout", until: 0.60, load: 1, brownout: true},
	{name: "steady", until: 0.85, load: 1},
	{name: "quiet", until: 1.00, load: 0.3},
}

var steadyPhase = phase{name: "steady", until: 1, load: 1}

// profile says which phase of the load cycle a moment falls in, and
// whether the injected outage (-outage) covers it.
type profile struct {
	start  time.Time
	cycle  time.Duration // 0: always steady
	outage outage        // zero: none
}

func (p profile) at(t time.Time) phase {
	ph := p.cyclePhase(t)
	if p.outage.covers(t.Sub(p.start)) {
		ph.name, ph.outage, ph.brownout = "outage", true, false
	}
	return ph
}

func (p profile) cyclePhase(t time.Time) phase {
	if p.cycle <= 0 {
		return steadyPhase
	}
	f := float64(t.Sub(p.start)%p.cycle) / float64(p.cycle)
	for _, ph := range cyclePhases {
		if f < ph.until {
			return ph
		}
	}
	return cyclePhases[len(cyclePhases)-1]
}

func (p profile) now() phase { return p.at(time.Now()) }

// producer is one request loop: it handles "requests", each adding 1..n
// orders to the batcher under the request's span and deadline.
type producer struct {
	id      int
	cfg     config
	profile profile
	tracer  trace.Tracer
	batcher ordersBatcher
	tally   *tally
	ledger  *ledger // nil without -ledger
	ids     *atomic.Uint64
	rng     *rand.Rand
	late    *sync.WaitGroup // waits for the outcomes a request's deadline did not see
}

// run handles requests at the rate the load cycle asks for until stop is
// closed. Requests arrive as a Poisson process; a producer held back by
// backpressure does not try to catch up more than 100 ms of backlog (its
// clients would have given up).
//
// A request that awaits acknowledgements is handled on a goroutine of its
// own, as a server would, so that its wait does not slow the loop; run
// returns once they are all done.
func (p *producer) run(stop <-chan struct{}) {
	var acking sync.WaitGroup
	defer acking.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	next := time.Now()
	for {
		k := 1 + p.rng.IntN(p.cfg.itemsPerRequest)
		ph := p.profile.at(next)
		gap := time.Duration(p.rng.ExpFloat64() * float64(k) / (p.cfg.rate * ph.load) * float64(time.Second))
		next = next.Add(gap)
		if now := time.Now(); now.Sub(next) > 100*time.Millisecond {
			next = now
		}
		timer.Reset(time.Until(next))
		select {
		case <-stop:
			return
		case <-timer.C:
		}
		if ack := p.rng.Float64() < p.cfg.ackShare; ack {
			region := regions[p.rng.IntN(len(regions))]
			seed := p.rng.Uint64()
			acking.Go(func() { p.handle(k, region, true, rand.New(rand.NewPCG(seed, uint64(p.id)))) })
			continue
		}
		p.handle(k, regions[p.rng.IntN(len(regions))], false, p.rng)
	}
}

var (
	producerKey    = attribute.Key("demo.producer")
	ordersKey      = attribute.Key("demo.orders")
	ordersAddedKey = attribute.Key("demo.orders.added")
	regionKey      = attribute.Key("demo.region")
	ackKey         = attribute.Key("demo.ack")
	errorTypeKey   = attribute.Key("error.type")
)

// regions are the keys of the batcher: few, so that each keeps its batches
// full (a key per customer would make batches of one).
var regions = []string{"eu", "us", "ap"}

// handle is one request: a server span, then k Adds with the request's
// context, so that the batch spans link back to it. The request validates
// its orders first: one malformed order (-poison-every) fails the request
// with a 400 and none of its orders is added. That is the client's error,
// not the service's, so it is no failed item for the objective; and a
// malformed order never reaches a batch, where orders-db would reject the
// whole batch, its well-formed neighbours with it. The request has a
// deadline: an Add held by backpressure past it is refused, and the request
// fails (the service would answer 503). A request that needs an
// acknowledgement (-ack-share) adds its orders with AddResult and waits,
// until the same deadline, for each order's outcome.
func (p *producer) handle(k int, region string, ack bool, rng *rand.Rand) {
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.requestTimeout)
	defer cancel()
	ctx, span := p.tracer.Start(ctx, "handle order",
		trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(producerKey.Int(p.id), ordersKey.Int(k), regionKey.String(region), ackKey.Bool(ack)))
	defer span.End()
	customer := fmt.Sprintf("cust-%04d", rng.IntN(5000))
	orders := make([]Order, k)
	invalid := false
	for i := range orders {
		orders[i] = Order{
			ID:         p.ids.Add(1),
			Region:     region,
			Customer:   customer,
			SKU:        fmt.Sprintf("sku-%03d", rng.IntN(400)),
			Quantity:   1 + rng.IntN(5),
			PriceCents: 199 + rng.Int64N(20000),
			Created:    time.Now(),
		}
		if n := uint64(p.cfg.poisonEvery); n > 0 && orders[i].ID%n == 0 {
			orders[i].Quantity = 0 // malformed
		}
		invalid = invalid || orders[i].Quantity <= 0
	}
	if invalid {
		span.SetAttributes(errorTypeKey.String(errInvalid), ordersAddedKey.Int(0))
		span.SetStatus(codes.Error, "400 invalid: an order's quantity must be positive")
		p.tally.invalidRequest(k)
		return
	}
	added := 0
	var results []muster.Result
	for _, o := range orders {
		var err error
		if ack {
			var r muster.Result
			if r, err = p.batcher.AddResult(ctx, o); err == nil {
				results = append(results, r)
			}
		} else {
			err = p.batcher.Add(ctx, o)
		}
		if err != nil {
			span.SetAttributes(errorTypeKey.String(otelmuster.ErrorType(err)))
			span.SetStatus(codes.Error, "order refused: "+err.Error())
			break
		}
		p.ledger.record("accepted", o.ID)
		added++
	}
	span.SetAttributes(ordersAddedKey.Int(added))
	if len(results) > 0 {
		p.await(ctx, span, results)
	}
}

// errInvalid is the error.type of a request refused for a malformed order.
const errInvalid = "invalid"

// await waits, until the request's deadline, for the outcome of each order
// the request added with AddResult, and records the outcomes in the tally.
// An order whose outcome is not known by then stays in its batch: the
// request answers "accepted, not yet confirmed" (202) instead of "written",
// and the outcome its Result reports later is counted apart, so that the
// summary says what became of those orders.
func (p *producer) await(ctx context.Context, span trace.Span, results []muster.Result) {
	var a acks
	for _, r := range results {
		_ = r.Wait(ctx)
		if !isDone(r) {
			a.pending++ // the deadline came first
			p.late.Go(func() {
				<-r.Done()
				if r.Err() == nil {
					p.tally.acked(acks{lateConfirmed: 1})
				} else {
					p.tally.acked(acks{lateFailed: 1})
				}
			})
			continue
		}
		switch err := r.Err(); {
		case err == nil:
			a.confirmed++
		default:
			a.failed++
			span.SetAttributes(errorTypeKey.String(otelmuster.ErrorType(err)))
			span.SetStatus(codes.Error, "order failed: "+err.Error())
		}
	}
	span.SetAttributes(ackConfirmedKey.Int64(int64(a.confirmed)), ackFailedKey.Int64(int64(a.failed)), ackPendingKey.Int64(int64(a.pending)))
	p.tally.acked(a)
}

var (
	ackConfirmedKey = attribute.Key("demo.ack.confirmed")
	ackFailedKey    = attribute.Key("demo.ack.failed")
	ackPendingKey   = attribute.Key("demo.ack.pending")
)

// isDone reports whether r's outcome is known.
func isDone(r muster.Result) bool {
	select {
	case <-r.Done():
		return true
	default:
		return false
	}
}
