# The two commands: `make run` and `make test`. See README.md.
SHELL := bash
GO    ?= go
HTTP_PORT ?= 8080
PAYSIM_PORT ?= 8090
FUZZTIME ?= 10s

.PHONY: run test services db build generate check-generated vet schema bench fuzz tidy

## run: start Postgres and Redis (installing them if needed), migrate, seed, and run the BFF and the payment simulator
run: services db build
	@bin/bff migrate && bin/bff seed
	@scripts/run.sh

## test: vet, check generated code, and run every test against the real Postgres and Redis
test: services vet check-generated
	$(GO) test -count=1 -timeout 30m ./...

services:
	@bash scripts/services.sh

# db creates the database of DATABASE_URL's default when it is missing.
db:
	@psql -h 127.0.0.1 -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'bff'" | grep -q 1 \
	  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE bff"

build:
	@mkdir -p bin
	$(GO) build -o bin/bff ./cmd/bff
	@if [ -d cmd/paysim ]; then $(GO) build -o bin/paysim ./cmd/paysim; fi

vet:
	$(GO) vet ./...
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

## schema: write the SDL the BFF serves to docs/schema.graphql (TestSchemaPublished checks it is current)
schema:
	SCHEMA_OUT=$(CURDIR)/docs/schema.graphql $(GO) test -count=1 -run '^TestSchemaPublished$$' ./internal/server/

tidy:
	$(GO) mod tidy
