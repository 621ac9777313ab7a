#!/usr/bin/env bash
# demo.sh runs exless end to end on this machine: a real Vault dev server, the
# project's Exceptionless test server, exlessd on a socket in a temp dir, and
# exlessctl fetching tokens. Run it with `make demo`, which builds first.
#
# Tokens are printed masked (first 4 characters); DEMO_SHOW_TOKENS=1 prints
# them whole. Everything started here is stopped on exit, Ctrl-C included.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=$PWD/bin
VAULT=${EXLESS_VAULT_BIN:-$(scripts/vault.sh path)}
for f in "$BIN/exlessd" "$BIN/exlessctl" "$BIN/exceptionless-testserver" "$VAULT"; do
	[[ -x $f ]] || { echo "demo: $f is missing; run 'make demo' (it builds everything)" >&2; exit 1; }
done

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
mask() { if [[ ${DEMO_SHOW_TOKENS:-0} == 1 ]]; then echo "$1"; else echo "${1:0:4}…(${#1} characters, masked)"; fi; }

DIR=$(mktemp -d /tmp/exless-demo.XXXXXX)
# Other users must be able to reach the socket in here (the refusal below
# must come from the policy, not from file permissions).
chmod 0755 "$DIR"
PIDS=()
cleanup() {
	local code=$?
	trap - EXIT INT TERM
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill "${PIDS[i]}" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$DIR"
	echo "demo: stopped everything and removed $DIR"
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback port that is free together with the next one
# (a Vault dev server also listens on PORT+1).
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$((p + 1)))") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "demo: no free port found" >&2
	return 1
}

wait_for() { # wait_for DESCRIPTION COMMAND...
	local what=$1
	shift
	for _ in $(seq 300); do
		if "$@" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "demo: $what did not come up; logs are in $DIR" >&2
	tail -n 20 "$DIR"/*.log >&2 || true
	return 1
}

say "Starting a real Vault dev server ($(basename "$VAULT"))"
VPORT=$(free_port)
VAULT_TOKEN_VALUE=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
umask 077
printf '%s' "$VAULT_TOKEN_VALUE" >"$DIR/vault-token"
# The root token goes in through the environment, never on argv.
VAULT_DEV_ROOT_TOKEN_ID=$VAULT_TOKEN_VALUE HOME=$DIR \
	"$VAULT" server -dev -dev-no-store-token -dev-listen-address="127.0.0.1:$VPORT" >"$DIR/vault.log" 2>&1 </dev/null &
PIDS+=($!)
wait_for "vault" curl -fsS -o /dev/null "http://127.0.0.1:$VPORT/v1/sys/health"
echo "vault: http://127.0.0.1:$VPORT (dev mode, in memory; KV v2 at secret/)"

say "Starting the Exceptionless test server with a seeded account"
"$BIN/exceptionless-testserver" -listen 127.0.0.1:0 -email ops@example.test \
	-write-password-file "$DIR/exceptionless-password" -ready-file "$DIR/exceptionless.json" \
	>"$DIR/exceptionless.log" 2>&1 </dev/null &
PIDS+=($!)
wait_for "the exceptionless test server" test -s "$DIR/exceptionless.json"
EX_URL=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$DIR/exceptionless.json")
PROJECT=$(grep -o '"id":"[^"]*"' "$DIR/exceptionless.json" | sed -n '1s/"id":"\([^"]*\)"/\1/p')
echo "exceptionless: $EX_URL (account ops@example.test, organization Acme, projects web and api)"
echo "project used below: $PROJECT"

umask 022
ME=$(id -un)
OTHER_UID=65534 OTHER_GID=65534
if [[ $(id -u) == 0 ]]; then GROUP_LINE="socket_group = \"$OTHER_GID\""; else GROUP_LINE=""; fi
cat >"$DIR/exlessd.hcl" <<HCL
socket      = "$DIR/exlessd.sock"
socket_mode = "0660"
$GROUP_LINE

exceptionless {
  url           = "$EX_URL"
  email         = "ops@example.test"
  password_file = "$DIR/exceptionless-password"
}

vault {
  address    = "http://127.0.0.1:$VPORT"
  token_file = "$DIR/vault-token"
  mount      = "secret"
  path       = "exless/demo"
}

rule "operator" {
  users    = ["$ME"]
  scopes   = ["user", "client"]
  projects = ["*"]
  actions  = ["token", "status", "reload"]
}
HCL
say "Config written to $DIR/exlessd.hcl"
sed 's/^/    /' "$DIR/exlessd.hcl"

say "Starting exlessd"
"$BIN/exlessd" --config "$DIR/exlessd.hcl" >"$DIR/exlessd.log" 2>&1 </dev/null &
PIDS+=($!)
wait_for "exlessd" test -S "$DIR/exlessd.sock"
export EXLESS_SOCKET=$DIR/exlessd.sock
CTL=$BIN/exlessctl

say "exlessctl whoami"
"$CTL" whoami

say "exlessctl token --scope user"
USER_TOKEN=$("$CTL" token --scope user)
echo "user token: $(mask "$USER_TOKEN")"

say "exlessctl token --scope client --project $PROJECT (minted on first request, stored in Vault)"
CLIENT_TOKEN=$("$CTL" token --scope client --project "$PROJECT")
echo "client token: $(mask "$CLIENT_TOKEN")"
AGAIN=$("$CTL" token --scope client --project "$PROJECT")
[[ $AGAIN == "$CLIENT_TOKEN" ]] && echo "asked again: the same client token, served from memory"

say "The same over plain HTTP: curl --unix-socket $EXLESS_SOCKET http://localhost/v1/status"
curl -sS --unix-socket "$EXLESS_SOCKET" http://localhost/v1/status
echo

say "exlessctl status"
"$CTL" status

if [[ $(id -u) == 0 ]]; then
	say "A process of another uid ($OTHER_UID) asks for the user token"
	cp "$CTL" "$DIR/exlessctl"
	chmod 0755 "$DIR/exlessctl"
	echo "socket: $(stat -c '%A %U:%G' "$EXLESS_SOCKET") (uid $OTHER_UID may connect; the policy decides)"
	set +e
	setpriv --reuid=$OTHER_UID --regid=$OTHER_GID --clear-groups "$DIR/exlessctl" token --scope user
	code=$?
	set -e
	echo "exit status: $code (3 = denied by policy)"
	[[ $code == 3 ]] || { echo "demo: expected exit 3" >&2; exit 1; }
else
	say "Skipping the other-uid refusal: it needs root to run a process as another user"
fi

say "Restart exlessd: it reuses the token in Vault instead of logging in again"
kill "${PIDS[-1]}"
wait "${PIDS[-1]}" 2>/dev/null || true
unset 'PIDS[-1]'
"$BIN/exlessd" --config "$DIR/exlessd.hcl" >>"$DIR/exlessd.log" 2>&1 </dev/null &
PIDS+=($!)
wait_for "exlessd" test -S "$DIR/exlessd.sock"
wait_for "exlessd" "$CTL" status >/dev/null
[[ $("$CTL" token --scope user) == "$USER_TOKEN" ]] && echo "same user token after restart"
echo "logins in the exlessd log: $(grep -c 'logged in to exceptionless' "$DIR/exlessd.log")"

say "exlessd log (note: no token values in it)"
sed 's/^/    /' "$DIR/exlessd.log"
if grep -qF -e "$USER_TOKEN" -e "$CLIENT_TOKEN" "$DIR/exlessd.log"; then
	echo "demo: a token appeared in the log" >&2
	exit 1
fi
say "Done"
