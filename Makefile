# muster: the two promised commands are `make demo` and `make test`.
GO      ?= go
PKGS    ?= ./...
BENCH   ?= .
COUNT   ?= 6

.PHONY: test tidy vet race deploy-test redisrate-test redisjournal-test demo-test bench bench-peers bench-fairness bench-smoke lint fmt demo fuzz stress

## test: go mod tidy -diff in every module, vet, then every test with the race detector, then the deploy module
## (dashboard, alert rules, and the end-to-end test against a real Prometheus,
## which skips loudly when prometheus/promtool are missing), the shared-quota,
## Redis journal and demo modules, then a brief run of the benchmarks module. CI runs this.
test: tidy vet race deploy-test redisrate-test redisjournal-test demo-test bench-smoke

## tidy: every module's go.mod and go.sum are what `go mod tidy` makes.
tidy:
	@for mod in $$(git ls-files '*go.mod'); do dir=$$(dirname $$mod); \
		echo "go mod tidy -diff ($$dir)"; (cd $$dir && $(GO) mod tidy -diff) || exit 1; done

## (vet takes -race, so that it shares the race build of the dependencies
## with the race target: about half the cold build time.)
vet:
	$(GO) vet -race $(PKGS)

race:
	$(GO) test -race -count=1 -timeout 8m $(PKGS)

deploy-test:
	$(MAKE) -C deploy test

## demo-test: the demo (examples/otel-demo, a module of its own so that the
## library's module gains none of its dependencies).
demo-test:
	cd examples/otel-demo && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 5m ./...

## redisrate-test: the shared-quota module (its own go.mod) against real
## redis-servers it starts (skipped loudly without redis-server, required
## with MUSTER_REQUIRE_REDIS=1).
redisrate-test:
	cd ratelimit/redisrate && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 5m ./...
	@if [ -z "$$REDIS_SERVER" ] && ! command -v redis-server >/dev/null 2>&1; then \
		echo "!!! redisrate: redis-server not found: the tests against a real Redis were SKIPPED (apt-get install redis-server)"; fi

## redisjournal-test: the Redis Streams journal (its own go.mod) against
## real redis-servers it starts, killed and restarted (skipped loudly without
## redis-server, required with MUSTER_REQUIRE_REDIS=1).
redisjournal-test:
	cd journal/redisjournal && $(GO) vet ./... && $(GO) test -race -count=1 -timeout 5m ./...
	@if [ -z "$$REDIS_SERVER" ] && ! command -v redis-server >/dev/null 2>&1; then \
		echo "!!! redisjournal: redis-server not found: the tests against a real Redis were SKIPPED (apt-get install redis-server)"; fi

## bench: the benchmarks behind BENCHMARKS.md (compare runs with benchstat).
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(COUNT) -cpu 2 ./muster/ ./middleware/... ./ratelimit/...

## bench-peers: muster against its peers (facebookgo/muster, bundler, gocloud's
## batcher) and baselines, in interleaved rounds (benchmarks/, a module of its
## own); prints a markdown table for BENCHMARKS.md (progress on stderr). 2-4
## minutes on 2 cores.
PEERS_FLAGS ?= -rounds 11 -items 1000000
bench-peers:
	@cd benchmarks && $(GO) run ./cmd/peers $(PEERS_FLAGS)

## bench-fairness: nine quiet keys and one at 100x their rate, without and with
## Keyed.MaxPendingPerKey, against a run without the loud key, in interleaved
## rounds; prints a markdown table for BENCHMARKS.md ("Fairness"). About 2
## minutes.
FAIRNESS_FLAGS ?= -rounds 11 -duration 3s
bench-fairness:
	@cd benchmarks && $(GO) run ./cmd/fairness $(FAIRNESS_FLAGS)

## bench-smoke: the benchmarks module's gofmt, go.mod tidiness, vet, and its
## tests (a tiny interleaved run of every implementation) and every Benchmark
## at 100 items, with the race detector, so that they cannot rot (vet takes
## -race too, to share the race build of the dependencies with go test).
bench-smoke:
	@cd benchmarks && out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	cd benchmarks && $(GO) mod tidy -diff
	cd benchmarks && $(GO) vet -race ./...
	cd benchmarks && $(GO) test -race -count=1 -bench . -benchtime 100x -timeout 5m ./...

## lint: formatting and vet.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

## fuzz: a longer run of the core's invariant fuzzer.
fuzz:
	$(GO) test -run '^$$' -fuzz FuzzInvariants -fuzztime 60s ./muster/

## stress: the long form of the end-to-end accounting stress test (the
## short form runs in make test).
stress:
	MUSTER_STRESS=long $(GO) test -race -count=1 -timeout 20m -run Stress -v ./internal/stress/

## demo: the example service with embedded defaults.
demo:
	cd examples/otel-demo && $(GO) run .
