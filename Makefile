# exless — the two commands that matter are `make demo` and `make test`.
# Both build what they need on first use and reuse caches after.

GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X main.version=$(VERSION)
BINS        := bin/exlessd bin/exlessctl bin/exceptionless-testserver

# The Vault server used by tests and the demo, built once and cached outside
# the repository (see scripts/vault.sh).
export EXLESS_VAULT_BIN := $(shell scripts/vault.sh path)

.PHONY: all build vault deps test unit lint fuzz soak vulncheck demo clean

all: build

# As shipped (internal/buildflags, which the packages, the benchmarks and
# the e2e tests use): without urfave/cli's doc generators, and exlessctl
# static (no cgo), since it starts once per token.
TAGS        := urfave_cli_no_docs
build:
	@mkdir -p bin
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/ ./cmd/exlessd ./cmd/exceptionless-testserver
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o bin/ ./cmd/exlessctl

vault:
	@scripts/vault.sh build >/dev/null

deps:
	@scripts/deps.sh test

# The whole suite: lint, then every test (unit, real Vault, the Exceptionless
# test server, peers of other uids) under the race detector, then a scan of
# every log the tests saved for every secret they created (see
# internal/testrun): tests list secrets and save logs in TESTRUN, and the
# output of go test itself is saved there too. Any secret found fails the run.
TESTRUN := $(CURDIR)/.testrun
test: deps vault lint
	@rm -rf $(TESTRUN) && mkdir -m 0700 $(TESTRUN) && mkdir -m 0700 $(TESTRUN)/logs
	@rc=$$(mktemp); \
	{ EXLESS_TEST_RUNDIR=$(TESTRUN) $(GO) test -race -count=1 $$($(GO) list ./... | grep -v '/soak$$') 2>&1; echo $$? >$$rc; } | tee $(TESTRUN)/logs/go-test.log; \
	st=$$(cat $$rc); rm -f $$rc; exit $$st
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s
	@EXLESS_TEST_RUNDIR=$(TESTRUN) $(MAKE) --no-print-directory soak
	$(GO) run ./internal/testrun/cmd/secretscan -dir $(TESTRUN)

# The bounded soak (soak/doc.go): SOAK_DURATION of several hundred peers,
# rotations, reloads, injected faults and a Vault restart, then leak checks.
# Without the race detector, whose overhead would be what it measures.
SOAK_DURATION ?= 2m
soak: vault
	@echo "soak for $(SOAK_DURATION)"
	@log=$$(mktemp); EXLESS_SOAK_DURATION=$(SOAK_DURATION) $(GO) test -count=1 -timeout 0 -v -run '^TestSoak$$' ./soak >$$log 2>&1; rc=$$?; \
		grep -E '^ +soak_test.go|^(--- |ok |FAIL)' $$log; [ $$rc = 0 ] || tail -n 60 $$log; rm -f $$log; exit $$rc

# Every fuzz target for FUZZTIME each (make test runs them briefly; run them
# longer with e.g. make fuzz FUZZTIME=10m). A crash is saved under the
# package's testdata/fuzz/ and then fails every later go test until fixed.
# A bare "context deadline exceeded" with no input saved is a race in Go's
# fuzz coordinator at the end of FUZZTIME (seen with go1.26), not a finding.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./daemon:FuzzParseConfig ./daemon:FuzzSocketAPI \
	./daemon/peer:FuzzParseCgroup ./daemon/peer:FuzzParseStat \
	./daemon/exceptionless:FuzzResponses ./daemon/credsock:FuzzParseAddr \
	./vaultstore:FuzzDecodeRecord ./cmd/exlessctl:FuzzMaskWriter
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		before=$$(ls $$pkg/testdata/fuzz/$$name 2>/dev/null | wc -l); \
		out=$$($(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg 2>&1) && continue; \
		after=$$(ls $$pkg/testdata/fuzz/$$name 2>/dev/null | wc -l); \
		if [ "$$after" = "$$before" ] && echo "$$out" | grep -q '^    context deadline exceeded$$'; then \
			echo "fuzz $$name: stopped with Go's fuzz-coordinator deadline race and saved no failing input: not a finding"; \
			continue; \
		fi; \
		echo "$$out" | tail -20; \
		echo "fuzz $$name found a failure: rerun: go test -run '^$$' -fuzz '^$$name\$$' $$pkg"; exit 1; \
	done

# Known vulnerabilities in dependencies. govulncheck needs its database
# online, which CI here cannot reach; run it where the network allows.
vulncheck:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@latest ./...

# Fast tests only: no race detector (still needs Vault for storage tests).
unit: vault
	$(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) mod verify
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

demo: build vault
	@scripts/deps.sh demo
	scripts/demo.sh

clean:
	rm -rf bin dist .testrun

# .deb and .rpm in dist/ (nfpm used as a Go module; binaries built with cgo
# so names resolve through NSS; version from git, see packaging.Version).
.PHONY: package
package:
	$(GO) run ./packaging/build -out dist

# Benchmarks (issue 6; see bench/README.md): exlessd's cached fetch side by
# side with a direct Vault read and a bare-socket floor, whole-process CLI
# timings, daemon memory and policy cost, checked against the targets. The
# default is a short smoke run; numbers worth keeping come from e.g.
#   make bench BENCHFLAGS='-duration 5s -warmup 1s -rounds 3 -cli-runs 200 -out bench/results'
BENCHFLAGS ?=
.PHONY: bench
bench: vault
	@mkdir -p bin
	$(GO) build -o bin/exless-bench ./bench/cmd/exless-bench
	bin/exless-bench $(BENCHFLAGS)
