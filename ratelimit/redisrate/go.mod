module github.com/musterhq/muster/ratelimit/redisrate

go 1.26.0

// Inside this repository the library is the working tree; a user of this
// module gets the version required below (replace directives of a
// dependency are ignored), so that version must have every API this module
// uses: README.md, "Releases", says how the two are tagged.
replace github.com/musterhq/muster => ../..

require (
	github.com/go-redis/redis_rate/v10 v10.0.1
	github.com/musterhq/muster v0.0.0-20261206204624-f71d683619aa
	github.com/redis/go-redis/v9 v9.23.0
	go.opentelemetry.io/otel v1.47.0
	go.opentelemetry.io/otel/metric v1.47.0
	go.opentelemetry.io/otel/sdk v1.47.0
	go.opentelemetry.io/otel/sdk/metric v1.47.0
	go.opentelemetry.io/otel/trace v1.47.0
	go.uber.org/goleak v1.3.0
	golang.org/x/time v0.16.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/go-logr/logr v1.4.4 // indirect
	github.com/go-logr/stdr v1.2.2 // indirect
	github.com/google/uuid v1.6.0 // indirect
	go.opentelemetry.io/auto/sdk v1.2.1 // indirect
	go.opentelemetry.io/otel/log v1.47.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
