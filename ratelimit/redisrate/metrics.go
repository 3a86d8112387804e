package redisrate

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// scope is the instrumentation scope of the limiter's metrics.
const scope = "github.com/musterhq/muster/ratelimit/redisrate"

// instruments records the catalogue's muster.ratelimit.* instruments for one
// limiter.
type instruments struct {
	requests metric.Int64Counter
	duration metric.Float64Histogram
	switches metric.Int64Counter
	reg      metric.Registration

	ok       metric.MeasurementOption // name only
	byMode   [3]metric.MeasurementOption
	errAttrs func(string) metric.MeasurementOption
}

func newInstruments(mp metric.MeterProvider, name string, l *Limiter) (*instruments, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := mp.Meter(scope)
	nameAttr := musterconv.RateLimitNameKey.String(name)
	in := &instruments{ok: metric.WithAttributeSet(attribute.NewSet(nameAttr))}
	for _, mode := range []Mode{ModeShared, ModeLocal, ModeClosed} {
		in.byMode[mode] = metric.WithAttributeSet(attribute.NewSet(nameAttr, musterconv.RateLimitModeKey.String(mode.String())))
	}
	in.errAttrs = func(t string) metric.MeasurementOption {
		return metric.WithAttributeSet(attribute.NewSet(nameAttr, musterconv.ErrorTypeKey.String(t)))
	}
	var err error
	if in.requests, err = musterconv.RateLimitStoreRequests.New(m); err != nil {
		return nil, err
	}
	if in.duration, err = musterconv.RateLimitStoreDuration.New(m); err != nil {
		return nil, err
	}
	if in.switches, err = musterconv.RateLimitSwitches.New(m); err != nil {
		return nil, err
	}
	state, err := musterconv.RateLimitState.New(m)
	if err != nil {
		return nil, err
	}
	in.reg, err = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		cur := l.Mode()
		for _, mode := range []Mode{ModeShared, ModeLocal, ModeClosed} {
			v := int64(0)
			if mode == cur {
				v = 1
			}
			o.ObserveInt64(state, v, in.byMode[mode].(metric.ObserveOption))
		}
		return nil
	}, state)
	if err != nil {
		return nil, err
	}
	return in, nil
}

// roundTrip records one round trip to Redis.
func (in *instruments) roundTrip(d time.Duration, err error) {
	ctx := context.Background()
	opt := in.ok
	if err != nil {
		opt = in.errAttrs(errorType(err))
	}
	in.requests.Add(ctx, 1, opt.(metric.AddOption))
	in.duration.Record(ctx, d.Seconds(), opt.(metric.RecordOption))
}

// switched records a change of mode.
func (in *instruments) switched(m Mode) {
	in.switches.Add(context.Background(), 1, in.byMode[m].(metric.AddOption))
}

// unregister stops observing the limiter's state.
func (in *instruments) unregister() {
	if in.reg != nil {
		_ = in.reg.Unregister()
	}
}
