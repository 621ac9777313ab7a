#!/usr/bin/env bash
# deps.sh installs the Debian packages the test suite or the demo needs, when
# they are missing: scripts/deps.sh test | demo. Without root it only says
# what is missing (tests that need a tool then skip outside CI and fail in it).
set -euo pipefail

need=()
want() { # want COMMAND PACKAGE
	command -v "$1" >/dev/null 2>&1 || need+=("$2")
}
case ${1:-} in
test)
	# Real shells for the completion scripts, a real systemd in nspawn,
	# rpm to inspect the .rpm, groff for the man pages, curl for the demo.
	want zsh zsh
	want fish fish
	want systemd-nspawn systemd-container
	want debootstrap debootstrap
	want rpm rpm
	want groff groff-base
	want curl curl
	;;
demo)
	want curl curl
	want setpriv util-linux
	;;
*)
	echo "usage: scripts/deps.sh test|demo" >&2
	exit 2
	;;
esac
[[ ${#need[@]} -eq 0 ]] && exit 0
if [[ $(id -u) != 0 ]]; then
	echo "deps.sh: missing Debian packages: ${need[*]} (run as root, or: sudo apt-get install ${need[*]})" >&2
	exit 0
fi
echo "deps.sh: installing ${need[*]}" >&2
# One installer at a time: parallel runs would fight over the dpkg lock.
exec 9>/tmp/exless-deps.lock
flock 9
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
