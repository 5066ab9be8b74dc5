# The commands a developer and CI need. `make help` lists them.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

MODULES := cql pkg gateway collection-svc config-svc processing-svc report-svc deploy/validate
CMDS := ./gateway/cmd/... ./collection-svc/cmd/... ./config-svc/cmd/... \
        ./processing-svc/cmd/... ./report-svc/cmd/... ./pkg/cmd/...
# Ports of the stack that `make test` starts, apart from a running `make dev`.
CHECK_PORTS := -consul-port=18500 -kafka-port=19092 -cql-port=19042 -service-port-base=18080

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

.PHONY: dev
dev: consul build ## run the whole product locally (Ctrl-C stops it)
	./bin/devstack

.PHONY: build
build: ## build every binary into bin/
	go build -o bin/ $(CMDS)

.PHONY: consul
consul: ## build the real Consul agent once (cached outside the clone) and link bin/consul
	./deploy/tools/consul/build.sh

.PHONY: test
test: consul fmt-check tidy-check vet unit fuzz dev-check e2e-short ## everything CI runs

.PHONY: fmt-check
fmt-check: ## fail on files gofmt would change
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: tidy-check
tidy-check: ## fail if `go mod tidy` would change any module
	@for m in $(MODULES); do (cd $$m && GOWORK=off go mod tidy -diff) || { echo "run: (cd $$m && GOWORK=off go mod tidy)"; exit 1; }; done

.PHONY: vet
vet: ## go vet every module on its own (GOWORK=off)
	@for m in $(MODULES); do echo "vet $$m"; (cd $$m && GOWORK=off go vet ./...); done

.PHONY: unit
unit: ## go test -race every module on its own (GOWORK=off)
	@for m in $(MODULES); do echo "test $$m"; (cd $$m && GOWORK=off go test -race -count=1 -timeout=20m ./...); done

.PHONY: fuzz
fuzz: ## run the fuzz targets of the hit parsers, of the hit and visitor-state decoders and of the rollup dimension encoding for a fixed number of inputs (they must find nothing; a count, not a duration: a duration can end in a spurious 'context deadline exceeded')
	cd collection-svc && for f in FuzzParseQuery FuzzParseBatch FuzzParseMeasurement; do \
		GOWORK=off go test -run='^$$' -fuzz="^$$f\$$" -fuzztime=300000x ./internal/parse || exit 1; done
	cd collection-svc && for f in FuzzParseBatchAndBuild FuzzParseMeasurementAndBuild; do \
		GOWORK=off go test -run='^$$' -fuzz="^$$f\$$" -fuzztime=100000x ./internal/collect || exit 1; done
	cd pkg && GOWORK=off go test -run='^$$' -fuzz='^FuzzUnmarshal$$' -fuzztime=300000x ./hit
	cd pkg && GOWORK=off go test -run='^$$' -fuzz='^FuzzSplitRecord$$' -fuzztime=200000x ./hit
	cd pkg && for f in FuzzJoinSplit FuzzSplitOldValue; do \
		GOWORK=off go test -run='^$$' -fuzz="^$$f\$$" -fuzztime=300000x ./rollup || exit 1; done
	cd processing-svc && GOWORK=off go test -run='^$$' -fuzz='^FuzzUnmarshalState$$' -fuzztime=100000x ./internal/visitor

.PHONY: dev-check
dev-check: build ## start the local stack on spare ports, check every service through Consul, stop; check deploy/'s settings against the binaries' flags and their -check-config, and its Consul tokens against the agent
	./bin/devstack -check -demo=false -data-dir=$$(mktemp -d) $(CHECK_PORTS)
	cd deploy/validate && DEPLOY_VALIDATE_BIN=$(CURDIR)/bin GOWORK=off go test -count=1 -run 'TestEnvMatchesFlags|TestEnvValuesValid|TestConsulTokens' ./...

# E2E_FAILURES prints what the failed tests said (.ci/failures.awk tells how):
# make e2e-short shows only the tests' names and results otherwise, and a
# failure's reason must reach CI's log.
E2E_FAILURES = awk -f $(CURDIR)/.ci/failures.awk

.PHONY: e2e-short
e2e-short: build ## the acceptance test (with and without faults) at a reduced size
	@log=$$(mktemp); rc=0; \
	cd pkg && E2E_BIN_DIR=$(CURDIR)/bin GOWORK=off go test -count=1 -timeout=15m -v -run 'TestAcceptance' ./e2e/ 2>&1 | tee $$log | \
		grep -E '^(=== RUN|--- |PASS|FAIL|ok|\s+acceptance_test)' || rc=$$?; \
	if [ $$rc -ne 0 ]; then echo "--- what the failed tests said (the whole output: $$log)"; $(E2E_FAILURES) $$log; fi; exit $$rc

.PHONY: e2e
e2e: build ## the acceptance test at full size
	cd pkg && E2E_BIN_DIR=$(CURDIR)/bin E2E_VISITORS=400 E2E_DURATION=3m GOWORK=off go test -count=1 -timeout=30m -v -run 'TestAcceptance' ./e2e/

.PHONY: bench
bench: ## run the benchmarks and print their figures
	cd pkg && GOWORK=off go test -run='^$$' -bench=. -benchtime=2s ./...
	cd gateway && GOWORK=off go test -run='^$$' -bench=. ./internal/gateway/
	$(MAKE) bench-processing
	cd collection-svc && GOWORK=off go test -run='^$$' -bench=BenchmarkHandle ./internal/collect
	cd collection-svc && GOWORK=off go test -run='^$$' -bench=BenchmarkLoad -benchtime=100000x ./internal/collection
	cd report-svc && GOWORK=off go test -run='^$$' -bench=Reports -benchtime=3s ./internal/api/
	$(MAKE) build
	cd pkg && E2E_BIN_DIR=$(CURDIR)/bin GOWORK=off go test -run='^$$' -bench=System -benchtime=1x -timeout=30m ./e2e/

.PHONY: bench-processing
bench-processing: build ## the processing benchmark, against the CQL server in its own process (as Cassandra is in production), so its CPU figure is the processor's alone; GOGC as deployed
	@port=$$((20000 + RANDOM % 12000)); ./bin/cqlserver -addr=127.0.0.1:$$port -log-level=warn & pid=$$!; \
	trap "kill $$pid" EXIT; sleep 1; \
	cd processing-svc && GOGC=400 CASSANDRA_HOSTS=127.0.0.1:$$port GOWORK=off go test -run='^$$' -bench='Processing|ApplyHit|Reprocess' -benchtime=100000x ./internal/engine/ && \
		CASSANDRA_HOSTS=127.0.0.1:$$port GOWORK=off go test -run='^$$' -bench=FlushCadence -benchtime=1x ./internal/engine/ && \
		GOWORK=off go test -run='^$$' -bench=Rebalance -benchtime=3x ./internal/consumer/

.PHONY: clean
clean: ## remove built binaries and local stack data
	rm -rf bin .dev

.PHONY: geoip
geoip: ## install the CC0 IP-to-country database (npm @ip-location-db/geo-whois-asn-country-mmdb) into collection-svc/.geoip (git-ignored)
	mkdir -p collection-svc/.geoip
	cd collection-svc/.geoip && npm install --no-save --no-audit --no-fund --silent @ip-location-db/geo-whois-asn-country-mmdb
	@echo "run collection with -geoip-db=$$(pwd)/collection-svc/.geoip/node_modules/@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb"

.PHONY: crawlers
crawlers: ## regenerate collection's crawler list from the npm package crawler-user-agents (MIT)
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && npm install --no-save --no-audit --no-fund --silent crawler-user-agents) && \
	version=$$(node -p "require('$$tmp/node_modules/crawler-user-agents/package.json').version") && \
	cp "$$tmp/node_modules/crawler-user-agents/LICENSE" collection-svc/internal/crawlers/LICENSE.crawler-user-agents && \
	cd collection-svc/internal/crawlers && GOWORK=off go run ./gen -in "$$tmp/node_modules/crawler-user-agents/crawler-user-agents.json" -version "$$version" -out patterns.go -instances testdata/instances.txt
