package telemetry

import (
	"fmt"
	"strconv"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// LinkedSampler returns a Sampler that samples every span linked to a
// sampled span, and asks root about every other span.
//
// A muster batch span is a new root linked to the spans of the requests
// whose items it carries (and to their create spans, which link back to
// it). Under a ratio sampler a new root is sampled by its own trace id, so
// most batches of sampled requests would be dropped and the requests'
// links would lead nowhere. Wrapped in LinkedSampler, a batch is sampled
// whenever it carries an item of a sampled request, and both ways of the
// link stay navigable:
//
//	sampler := telemetry.LinkedSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(0.01)))
//
// [Setup] uses it around the sampler [WithSampler] gives, and around the
// SDK's default (parent-based, always on) otherwise. The cost is a look at
// the links of each new span, which otelmuster gives sampled ones first.
func LinkedSampler(root sdktrace.Sampler) sdktrace.Sampler {
	return linkedSampler{root: root}
}

type linkedSampler struct{ root sdktrace.Sampler }

func (s linkedSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	for _, l := range p.Links {
		if l.SpanContext.IsSampled() {
			return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample,
				Tracestate: s.root.ShouldSample(p).Tracestate}
		}
	}
	return s.root.ShouldSample(p)
}

func (s linkedSampler) Description() string {
	return "LinkedSampler{" + s.root.Description() + "}"
}

// envSampler is the sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG
// name, as the SDK's environment specification spells them (unset:
// parentbased_always_on, the SDK's default). The SDK reads them too, but
// keeps the sampler it builds to itself, so it cannot be wrapped.
func envSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	name, arg := getenv("OTEL_TRACES_SAMPLER"), getenv("OTEL_TRACES_SAMPLER_ARG")
	ratio := func() (sdktrace.Sampler, error) {
		if arg == "" {
			return sdktrace.TraceIDRatioBased(1), nil
		}
		f, err := strconv.ParseFloat(arg, 64)
		if err != nil || f < 0 || f > 1 {
			return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER_ARG %q: want a ratio from 0 to 1", arg)
		}
		return sdktrace.TraceIDRatioBased(f), nil
	}
	switch name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio":
		return ratio()
	case "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		return sdktrace.ParentBased(r), nil
	}
	return nil, fmt.Errorf("telemetry: OTEL_TRACES_SAMPLER %q is not one this package knows (always_on, always_off, traceidratio and their parentbased_ forms)", name)
}
