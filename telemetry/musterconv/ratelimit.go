package musterconv

import "go.opentelemetry.io/otel/attribute"

// Attribute keys of the shared rate limiter's instruments
// (github.com/musterhq/muster/ratelimit/redisrate).
const (
	// RateLimitNameKey names the shared quota a measurement belongs to (a
	// limiter is shared by batchers, so it has a name of its own instead
	// of [BatcherNameKey]). It is on every measurement of the instruments
	// listed by [SharedRateLimit]. Label: muster_ratelimit_name.
	RateLimitNameKey = attribute.Key("muster.ratelimit.name")

	// RateLimitModeKey says where a limiter takes its tokens from: one of
	// [ModeShared], [ModeLocal] or [ModeClosed]. Label:
	// muster_ratelimit_mode.
	RateLimitModeKey = attribute.Key("muster.ratelimit.mode")
)

// Values of [RateLimitModeKey].
const (
	// ModeShared: from the quota in the shared store, with every replica.
	ModeShared = "shared"
	// ModeLocal: the store failed; from a local limiter at this replica's
	// share of the quota (fail open).
	ModeLocal = "local"
	// ModeClosed: the store failed; callers are refused (fail closed).
	ModeClosed = "closed"
)

// The shared rate limiter's instruments. They are not in [All], which lists
// what a batcher's metrics middleware records; [SharedRateLimit] lists them.
var (
	// RateLimitStoreRequests counts round trips from a shared limiter to
	// its store (Redis). Attributes: [ErrorTypeKey] when the round trip
	// failed (timeout, unavailable, ...). Divided by the batches fired, it
	// is the round trips per batch.
	RateLimitStoreRequests = Int64CounterSpec{Spec{
		name:        "muster.ratelimit.store.requests",
		kind:        KindCounter,
		unit:        "{request}",
		description: "Round trips from a shared rate limiter to its store; error.type is set when one failed.",
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_ratelimit_store_requests_total",
		nameKey:     RateLimitNameKey,
	}}

	// RateLimitStoreDuration records, in seconds, how long each round trip
	// to the store took, failed ones included. Attributes: [ErrorTypeKey].
	RateLimitStoreDuration = Float64HistogramSpec{Spec{
		name:        "muster.ratelimit.store.duration",
		kind:        KindHistogram,
		unit:        "s",
		description: "Duration of the round trips from a shared rate limiter to its store.",
		buckets:     secondsBuckets,
		attrs:       []attribute.Key{ErrorTypeKey},
		promName:    "muster_ratelimit_store_duration_seconds",
		nameKey:     RateLimitNameKey,
	}}

	// RateLimitState is 1 for the mode a shared limiter is in and 0 for
	// the others, observed by a callback: sum by mode to see how many
	// replicas are on their fallback. Attributes: [RateLimitModeKey].
	RateLimitState = Int64ObservableUpDownCounterSpec{Spec{
		name:        "muster.ratelimit.state",
		kind:        KindObservableUpDownCounter,
		unit:        "{limiter}",
		description: "Shared rate limiters in each mode: 1 for the mode a limiter is in, 0 for the others.",
		attrs:       []attribute.Key{RateLimitModeKey},
		promName:    "muster_ratelimit_state",
		nameKey:     RateLimitNameKey,
	}}

	// RateLimitSwitches counts a shared limiter's changes of mode.
	// Attributes: [RateLimitModeKey], the mode it switched to.
	RateLimitSwitches = Int64CounterSpec{Spec{
		name:        "muster.ratelimit.switches",
		kind:        KindCounter,
		unit:        "{switch}",
		description: "Changes of mode of a shared rate limiter; muster.ratelimit.mode is the mode it switched to.",
		attrs:       []attribute.Key{RateLimitModeKey},
		promName:    "muster_ratelimit_switches_total",
		nameKey:     RateLimitNameKey,
	}}
)

// SharedRateLimit returns the specs of the shared rate limiter's
// instruments, in a fixed order. The slice is new on each call.
func SharedRateLimit() []Spec {
	return []Spec{
		RateLimitStoreRequests.Spec,
		RateLimitStoreDuration.Spec,
		RateLimitState.Spec,
		RateLimitSwitches.Spec,
	}
}
