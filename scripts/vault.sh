#!/usr/bin/env bash
# vault.sh builds the HashiCorp Vault server from its Go module and caches the
# binary outside the repository, for the test suite and the demo.
#
#   scripts/vault.sh path     print where the cached binary lives (built or not)
#   scripts/vault.sh build    build it unless cached; print its path
#
# Vault is a test fixture only: its source and binary are never committed.
# Env: EXLESS_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/exless)
#      EXLESS_VAULT_KEEP_CACHES=1 keeps the ~8 GB of Go caches the build used.
#
# Why the patches: vault's go.mod replaces its sdk with ./sdk, a directive that
# is ignored when vault is built as a dependency, so the published sdk v0.21.0
# is used and three call sites of the v1.21.4 tree no longer compile against
# it. We copy the checksum-verified module out of the module cache, fix those
# three lines and build with a replace pointing at the copy.
set -euo pipefail

readonly VAULT_VERSION=v1.21.4
CACHE_DIR=${EXLESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/exless}
BIN=$CACHE_DIR/vault-$VAULT_VERSION

fail() { echo "vault.sh: $*" >&2; exit 1; }

# patch FILE SED-EXPR: apply one fix, refusing to go on when it no longer matches.
patch_src() {
	local file=vault-src/$1 expr=$2
	cp "$file" "$file.before"
	sed -i -e "$expr" "$file"
	if cmp -s "$file" "$file.before"; then
		fail "the fix for $1 no longer applies; update scripts/vault.sh for $VAULT_VERSION"
	fi
	rm -f "$file.before"
}

build() {
	if [[ -x $BIN ]]; then
		echo "$BIN"
		return
	fi
	command -v go >/dev/null || fail "go is not on PATH; install Go 1.26"
	mkdir -p "$CACHE_DIR"
	# One builder at a time: parallel test runs would otherwise race here.
	exec 9>"$CACHE_DIR/vault-build.lock"
	flock 9
	if [[ -x $BIN ]]; then
		echo "$BIN"
		return
	fi
	local work=$CACHE_DIR/vault-build
	export GOMODCACHE=$CACHE_DIR/vault-gomod GOCACHE=$CACHE_DIR/vault-gocache
	export GOFLAGS="-mod=mod -buildvcs=false" GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0
	rm -rf "$work"
	mkdir -p "$work"
	cd "$work"
	printf 'module exlessvaultbuild\n\ngo 1.25.3\n' >go.mod
	echo "vault.sh: fetching github.com/hashicorp/vault@$VAULT_VERSION" >&2
	local src
	src=$(go mod download -json "github.com/hashicorp/vault@$VAULT_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[[ -d $src ]] || fail "go mod download of vault $VAULT_VERSION failed"
	cp -r "$src" vault-src
	chmod -R u+w vault-src
	rm -rf vault-src/ui vault-src/website vault-src/enos

	patch_src vault/identity_store.go \
		's|ActivationFunc: iStore.activateDeduplication,|ActivationFunc: func(ctx context.Context, req *logical.Request, _ string) error { return iStore.activateDeduplication(ctx, req) },|'
	patch_src vault/logical_system_activation_flags.go \
		's|b.idStoreBackend.ActivationFunc(ctx, nil)|b.idStoreBackend.ActivationFunc(ctx, nil, "")|'
	patch_src builtin/logical/transit/path_restore.go \
		's|restoredKeyName, err := b.lm.RestorePolicy(|restoredKeyName, err := keyName, b.lm.RestorePolicy(|'

	cat >go.mod <<MOD
module exlessvaultbuild

go 1.25.3

require github.com/hashicorp/vault $VAULT_VERSION

replace github.com/hashicorp/vault => ./vault-src

// vault's own non-local replaces, which a dependency's go.mod cannot carry over
replace github.com/99designs/keyring => github.com/Jeffail/keyring v1.2.3

replace github.com/ma314smith/signedxml v1.1.1 => github.com/moov-io/signedxml v1.1.1
MOD
	cat >main.go <<'MAIN'
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() { os.Exit(command.Run(os.Args[1:])) }
MAIN
	echo "vault.sh: resolving dependencies (about 700 MB to download, once)" >&2
	go mod tidy >&2
	echo "vault.sh: compiling vault (about 8 minutes cold on 2 cores)" >&2
	go build -trimpath -ldflags='-s -w' -o "$BIN.partial" . >&2
	mv "$BIN.partial" "$BIN"
	cd /
	rm -rf "$work"
	if [[ ${EXLESS_VAULT_KEEP_CACHES:-0} != 1 ]]; then
		chmod -R u+w "$GOMODCACHE" 2>/dev/null || true
		rm -rf "$GOMODCACHE" "$GOCACHE"
	fi
	echo "$BIN"
}

case ${1:-} in
path) echo "$BIN" ;;
build) build ;;
*)
	echo "usage: scripts/vault.sh path|build" >&2
	exit 2
	;;
esac
