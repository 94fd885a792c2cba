# The two commands: `make run` and `make test`. See README.md.
SHELL := bash
GO    ?= go
HTTP_PORT ?= 8080
PAYSIM_PORT ?= 8090
FUZZTIME ?= 10s

.PHONY: check-alerts ci-concurrent drill drill-partition manifest run test services db build generate check-generated vet check-tidy schema bench fuzz tidy

# TOOL_MODULES are the modules of their own beside the service's (the load
# tool's plotting libraries and the deployment test's Kubernetes API types
# are not requirements of the service).
TOOL_MODULES := tools/bffload deploy

## run: start Postgres and Redis (installing them if needed), migrate, seed, and run the BFF and the payment simulator (APP_ENV=development)
run: export APP_ENV ?= development
run: services db build
	@bin/bff migrate && bin/bff seed
	@scripts/run.sh

## ci-concurrent: run the whole test suite twice at once (ROUNDS=n rounds), as on a busy CI runner; reports each copy
ci-concurrent: services
	@ROUNDS=$(or $(ROUNDS),1) bash scripts/ci-concurrent.sh

## test: vet, check generated code and the alert rules, and run every test against the real Postgres and Redis
test: services vet check-generated check-alerts
	$(GO) test -count=1 -timeout 30m ./...
	@for m in $(TOOL_MODULES); do (cd $$m && $(GO) test -count=1 ./...) || exit 1; done

services:
	@bash scripts/services.sh

# PROMTOOL is Debian's promtool, on the PATH or unpacked by scripts/services.sh.
PROMTOOL ?= $(shell command -v promtool || echo $${XDG_CACHE_HOME:-$$HOME/.cache}/bff/bin/promtool)

## check-alerts: promtool check and unit-test the Prometheus rules of deploy/observability
check-alerts:
	$(PROMTOOL) check rules deploy/observability/alerts.yml
	cd deploy/observability && $(PROMTOOL) test rules alerts_test.yml

# db creates the database of DATABASE_URL's default when it is missing.
db:
	@psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'bff'" | grep -q 1 \
	  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE bff"

build:
	@mkdir -p bin
	$(GO) build -o bin/bff ./cmd/bff
	@if [ -d cmd/paysim ]; then $(GO) build -o bin/paysim ./cmd/paysim; fi
	@if [ -d cmd/hooksim ]; then $(GO) build -o bin/hooksim ./cmd/hooksim; fi

vet: check-tidy
	$(GO) vet ./...
	@for m in $(TOOL_MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }

## generate: regenerate the GraphQL executor and models from schema/*.graphqls
generate:
	$(GO) tool gqlgen generate

## check-generated: fail when graph/ is not what `make generate` produces
check-generated:
	@tmp=$$(mktemp -d); cp -r graph "$$tmp/"; \
	$(GO) tool gqlgen generate; \
	if ! diff -r "$$tmp/graph" graph >/dev/null; then \
	  diff -r "$$tmp/graph" graph | head -40; rm -rf graph; cp -r "$$tmp/graph" graph; rm -rf "$$tmp"; \
	  echo "generated code is stale: run 'make generate' and commit graph/"; exit 1; fi; \
	rm -rf "$$tmp"; echo "generated code is up to date"

## manifest: write the web app's persisted-operation manifest (internal/persisted/manifests/web/1.json) from web/static/js/queries.js
manifest:
	node web/testdata/manifest.mjs > internal/persisted/manifests/web/1.json

## schema: write the SDL the BFF serves to docs/schema.graphql (TestSchemaPublished checks it is current)
schema:
	SCHEMA_OUT=$(CURDIR)/docs/schema.graphql $(GO) test -count=1 -run '^TestSchemaPublished$$' ./internal/server/

## fuzz: run every fuzz target for FUZZTIME each (default 10s), e.g. `make fuzz FUZZTIME=30s`; seed corpora live in testdata/fuzz
fuzz: services
	$(GO) test -run '^$$' -fuzz '^FuzzParseKey$$' -fuzztime $(FUZZTIME) ./internal/idempotency
	$(GO) test -run '^$$' -fuzz '^FuzzFingerprint$$' -fuzztime $(FUZZTIME) ./internal/idempotency
	$(GO) test -run '^$$' -fuzz '^FuzzOrderCursor$$' -fuzztime $(FUZZTIME) ./internal/shop
	$(GO) test -run '^$$' -fuzz '^FuzzOrderCursorEncode$$' -fuzztime $(FUZZTIME) ./internal/shop
	$(GO) test -run '^$$' -fuzz '^FuzzProductCursor$$' -fuzztime $(FUZZTIME) ./internal/shop
	$(GO) test -run '^$$' -fuzz '^FuzzParseStream$$' -fuzztime $(FUZZTIME) ./internal/stream
	$(GO) test -run '^$$' -fuzz '^FuzzResumePoint$$' -fuzztime $(FUZZTIME) -parallel 2 ./internal/stream
	$(GO) test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/payments
	$(GO) test -run '^$$' -fuzz '^FuzzSignVerify$$' -fuzztime $(FUZZTIME) ./internal/payments
	$(GO) test -run '^$$' -fuzz '^FuzzVerifyToken$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run '^$$' -fuzz '^FuzzIssueVerify$$' -fuzztime $(FUZZTIME) ./internal/auth
	$(GO) test -run '^$$' -fuzz '^FuzzRequestID$$' -fuzztime $(FUZZTIME) ./internal/httpx
	$(GO) test -run '^$$' -fuzz '^FuzzGraphQLHandler$$' -fuzztime $(FUZZTIME) -timeout 0 -parallel 1 ./internal/server

tidy:
	$(GO) mod tidy
	@for m in $(TOOL_MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

## check-tidy: fail when go.mod or go.sum of any module is not what `go mod tidy` writes
check-tidy:
	@for m in . $(TOOL_MODULES); do 	  d=$$(cd $$m && $(GO) mod tidy -diff) || { echo "$$m: go.mod/go.sum not tidy: run 'make tidy'"; echo "$$d" | head -40; exit 1; }; 	done

## drill: the fault drill (about 2 minutes; DRILL_SHORT=1: each fault once, under a minute): two bff instances on a
## private database and redis-server, a keyed workload with readers and event subscribers, Redis killed/paused, an
## instance killed, Postgres cut; the history is checked (README, "Guarantees through faults"); logs in bin/drill-logs
DRILL_SHORT ?=
drill: services build
	$(GO) run ./cmd/drill $(if $(filter 1 true yes,$(DRILL_SHORT)),-short,)

## drill-partition: measure the staleness bound of an instance cut off from Redis while another reaches it (about
## 80 s): instance A behind a TCP proxy that is cut (refused, blackholed; B also cut off from Postgres for a while),
## a mutation through A, reads on B; fails when a read breaks the bound (CACHE_TTL*1.1 after the answer) or the writer
## serves an old screen (README, "Guarantees through faults"). PARTITION_TTL sets CACHE_TTL (default 5s),
## PARTITION_ROUNDS the rounds per case (default 2)
PARTITION_TTL    ?= 5s
PARTITION_ROUNDS ?= 2
drill-partition: services build
	$(GO) run ./cmd/drill -partition -ttl $(PARTITION_TTL) -rounds $(PARTITION_ROUNDS)

## bench: start a BFF on a fresh database (bff_bench) and its own Redis, run the load tool's scenarios (tools/bffload, a module of its own), write docs/benchmarks.md
## (BENCH_SHORT=1: a few seconds per scenario on the existing bff_bench, report in bin/, fails only on errors, stale reads or lost events)
BENCH_PORT       ?= 18080
BENCH_REDIS_PORT ?= 16379
BENCH_DB         ?= bff_bench
BENCH_FLAGS      ?=
bench: export APP_ENV ?= development
bench: services build
	@set -euo pipefail; \
	ulimit -n 65536 2>/dev/null || ulimit -n "$$(ulimit -Hn)" 2>/dev/null || true; \
	(cd tools/bffload && $(GO) build -o $(CURDIR)/bin/bffload .); \
	export DATABASE_URL="postgres://postgres@127.0.0.1:5432/$(BENCH_DB)?sslmode=disable" REDIS_URL="redis://127.0.0.1:$(BENCH_REDIS_PORT)/0"; \
	if [ -z "$(BENCH_SHORT)" ]; then psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS $(BENCH_DB) WITH (FORCE)"; fi; \
	psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$(BENCH_DB)'" | grep -q 1 \
	  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $(BENCH_DB)"; \
	redis-server --bind 127.0.0.1 --port $(BENCH_REDIS_PORT) --save "" --appendonly no --loglevel warning >bin/bench-redis.log 2>&1 & rpid=$$!; \
	trap 'kill $$spid $$rpid 2>/dev/null; wait 2>/dev/null || true' EXIT; spid=""; \
	for _ in $$(seq 1 40); do redis-cli -p $(BENCH_REDIS_PORT) ping 2>/dev/null | grep -q PONG && break; sleep 0.25; done; \
	bin/bff migrate; \
	bin/bff seed --customers 100; \
	RATE_LIMIT_QUERIES_PER_SECOND=0 RATE_LIMIT_MUTATIONS_PER_SECOND=0 STREAM_MAX_OPEN=100000 STREAM_OPENS_PER_MINUTE=1000000 PAYMENT_WORKERS=0 LOG_LEVEL=warn STREAM_REPLAY_WINDOW=1m STREAM_PRUNE_INTERVAL=5s \
	  HTTP_ADDR=127.0.0.1:$(BENCH_PORT) bin/bff serve >bin/bench-bff.log 2>&1 & spid=$$!; \
	for _ in $$(seq 1 100); do curl -sf http://127.0.0.1:$(BENCH_PORT)/readyz >/dev/null && break; sleep 0.1; done; \
	if [ -n "$(BENCH_SHORT)" ]; then short="-short -out bin/benchmarks-short.md"; cmd="make bench BENCH_SHORT=1"; else short=""; cmd="make bench"; fi; \
	bin/bffload -target http://127.0.0.1:$(BENCH_PORT) -pid $$spid -bff bin/bff -command "$$cmd" -replay-window 1m $$short $(BENCH_FLAGS)

## cluster: 3 instances behind HAProxy, a Redis Cluster (3 masters + 3 replicas), PgBouncer (transaction mode) on a
## private database, and the payment simulator, all on free loopback ports; prints the one URL (see scripts/cluster.sh)
cluster: services
	@bash scripts/cluster.sh up

## cluster-down: stop what `make cluster` started, by PID
cluster-down:
	@bash scripts/cluster.sh down

## cluster-test: test the running cluster (read-your-writes across instances, rolling restart under 200 streams and a
## keyed write load, a Redis master SIGKILLed, PgBouncer restarted); `make cluster` first
cluster-test:
	$(GO) test -count=1 -tags cluster -timeout 15m -v -run . ./internal/clustertest/
