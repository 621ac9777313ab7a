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

.PHONY: all build vault deps test unit lint fuzz vulncheck demo clean

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
# test server, peers of other uids) under the race detector.
test: deps vault lint
	$(GO) test -race -count=1 ./...
	@$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# Every fuzz target for FUZZTIME each (make test runs them briefly; run them
# longer with e.g. make fuzz FUZZTIME=10m). A crash is saved under the
# package's testdata/fuzz/ and then fails every later go test until fixed.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./daemon:FuzzParseConfig ./daemon:FuzzSocketAPI \
	./daemon/peer:FuzzParseCgroup ./daemon/peer:FuzzParseStat \
	./daemon/exceptionless:FuzzResponses ./daemon/credsock:FuzzParseAddr \
	./vaultstore:FuzzDecodeRecord ./cmd/exlessctl:FuzzMaskWriter
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null || \
			{ echo "fuzz $$name found a failure: rerun: go test -run '^$$' -fuzz '^$$name\$$' $$pkg"; exit 1; }; \
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
	rm -rf bin dist

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
