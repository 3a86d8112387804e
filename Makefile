# muster: the two promised commands are `make demo` and `make test`.
GO      ?= go
PKGS    ?= ./...
BENCH   ?= .
COUNT   ?= 6

.PHONY: test tidy vet race deploy-test bench lint fmt demo fuzz stress

## test: go mod tidy -diff in every module, vet, then every test with the race detector, then the deploy module
## (dashboard, alert rules, and the end-to-end test against a real Prometheus,
## which skips loudly when prometheus/promtool are missing). CI runs this.
test: tidy vet race deploy-test

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

## bench: the benchmarks behind BENCHMARKS.md (compare runs with benchstat).
bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchmem -count $(COUNT) -cpu 2 ./muster/ ./middleware/... ./ratelimit/...

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
	$(GO) run ./examples/otel-demo
