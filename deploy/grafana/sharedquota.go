package grafana

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/units"

	"github.com/musterhq/muster/telemetry/musterconv"
)

// The shared rate limiter's series (ratelimit/redisrate). A quota is shared
// by batchers, so its series carry muster_ratelimit_name, not the client
// label: they are selected by job and instance only.
var (
	labelQuota      = musterconv.PrometheusLabel(musterconv.RateLimitNameKey) // muster_ratelimit_name
	labelQuotaMode  = musterconv.PrometheusLabel(musterconv.RateLimitModeKey) // muster_ratelimit_mode
	quotaState      = name(musterconv.RateLimitState.Spec)
	quotaRequests   = name(musterconv.RateLimitStoreRequests.Spec)
	quotaRoundTrips = histogram(musterconv.RateLimitStoreDuration.Spec)
)

// quotaSel is a selector of a shared rate limiter's series.
func quotaSel(m promSeries) string {
	return string(m) + "{" + strings.Join(runtimeMatchers, ", ") + "}"
}

// sharedQuotaPanel shows a quota shared by replicas through Redis: how many
// replicas are on the shared quota or on their fallback, the round trips per
// second to Redis (failed ones by error.type), and their p99 duration.
func sharedQuotaPanel() panel {
	return panel{title: "Shared quota (Redis): mode, round trips, errors", unit: units.Short, width: 24,
		desc: "For each quota shared by replicas through Redis (ratelimit/redisrate): replicas in each mode " +
			"(shared: tokens from Redis; local: Redis failed and the replica runs on its share of the quota, fail open; " +
			"closed: Redis failed and batches are refused, fail closed), round trips to Redis per second by error.type " +
			"(an empty error type is a success; timeout, unavailable: Redis is down, slow or failing over) and the p99 " +
			"round-trip time in seconds. Replicas off shared, or failed round trips, mean Redis is unhealthy: the quota " +
			"is then enforced per replica only. Empty when no process uses a shared quota.",
		targets: []target{
			{expr: sumBy(quotaSel(quotaState), labelQuota, labelQuotaMode), legend: legend("replicas", labelQuota, labelQuotaMode)},
			{expr: sumBy(rate(quotaSel(quotaRequests)), labelQuota, labelError), legend: legend("round trips/s", labelQuota, labelError)},
			{expr: "histogram_quantile(0.99, " + sumBy(rate(quotaSel(quotaRoundTrips.bucket)), "le", labelQuota) + ")",
				legend: legend("p99 s", labelQuota)},
		}}
}
