#!/usr/bin/env bash
# nspawn.sh prepares the Debian root filesystem that the systemd tests boot
# with systemd-nspawn (packaging/systemd_test.go), and caches it outside the
# repository.
#
#   scripts/nspawn.sh path      print where the cached rootfs lives (built or not)
#   scripts/nspawn.sh rootfs    build it unless cached; print its path
#   scripts/nspawn.sh deps      install the host tools (systemd-container, debootstrap)
#
# Env: EXLESS_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/exless)
#      EXLESS_DEBIAN_MIRROR (default: the first Debian mirror in this host's apt sources)
#
# The tree is built in a temporary directory and renamed into place, under a
# lock, so parallel test runs never see half a rootfs. Tests boot it with
# --volatile=overlay and never change it, so runs can share it.
set -euo pipefail

readonly SUITE=bookworm
# procps: /bin/kill for ExecReload=; the rest is what a booted minbase needs.
readonly INCLUDE=systemd,systemd-sysv,dbus,procps
# Bump when the recipe changes so caches are rebuilt.
readonly STAMP="$SUITE $INCLUDE v1"
CACHE_DIR=${EXLESS_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/exless}
ROOT=$CACHE_DIR/rootfs-$SUITE

fail() { echo "nspawn.sh: $*" >&2; exit 1; }

# mirror prints the first Debian archive URI of the host's apt sources (deb822
# or one-line format), skipping security and ports archives. Never hard-coded:
# each machine uses the mirror it is configured for.
mirror() {
	if [[ -n ${EXLESS_DEBIAN_MIRROR:-} ]]; then
		echo "$EXLESS_DEBIAN_MIRROR"
		return
	fi
	local u
	u=$(grep -hsE '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		awk '{for (i = 2; i <= NF; i++) print $i}' | grep -vE -- '-security|-ports' |
		grep -E '/debian/?$' | head -n1 || true)
	if [[ -z $u ]]; then
		u=$(grep -hsE '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
			sed -E 's/\[[^]]*\]//' | awk '{print $2}' | grep -vE -- '-security' |
			grep -E '/debian/?$' | head -n1 || true)
	fi
	[[ -n $u ]] || fail "no Debian mirror in /etc/apt/sources.list*; set EXLESS_DEBIAN_MIRROR"
	echo "$u"
}

deps() {
	[[ $(id -u) == 0 ]] || fail "installing host tools needs root"
	if command -v systemd-nspawn >/dev/null && command -v debootstrap >/dev/null; then
		return
	fi
	# Wait for a concurrent apt-get (another test installing its tools)
	# instead of failing on the dpkg lock.
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -qq systemd-container debootstrap >&2
}

built() { [[ -x $ROOT/lib/systemd/systemd && $(cat "$ROOT.stamp" 2>/dev/null) == "$STAMP" ]]; }

rootfs() {
	[[ $(id -u) == 0 ]] || fail "debootstrap needs root"
	command -v debootstrap >/dev/null || fail "debootstrap is missing; run scripts/nspawn.sh deps"
	mkdir -p "$CACHE_DIR"
	if built; then
		echo "$ROOT"
		return
	fi
	exec 9>"$CACHE_DIR/rootfs.lock"
	flock 9
	if built; then
		echo "$ROOT"
		return
	fi
	local tmp log m
	m=$(mirror)
	tmp=$(mktemp -d "$CACHE_DIR/rootfs-build.XXXXXX")
	log=$CACHE_DIR/debootstrap.log
	echo "nspawn.sh: building a $SUITE rootfs from $m (about a minute, once)" >&2
	if ! debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$tmp/root" "$m" >"$log" 2>&1; then
		tail -n 30 "$log" >&2
		rm -rf "$tmp"
		fail "debootstrap failed (full log: $log)"
	fi
	local r=$tmp/root
	rm -f "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin
	echo exless-test >"$r/etc/hostname"
	# Units that only slow a container's boot down or fail in it.
	for u in console-getty.service getty@tty1.service apt-daily.timer apt-daily-upgrade.timer \
		dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service fstrim.timer systemd-pstore.service; do
		ln -sfn /dev/null "$r/etc/systemd/system/$u"
	done
	rm -rf "$ROOT" "$ROOT.stamp"
	mv "$r" "$ROOT"
	rmdir "$tmp"
	echo "$STAMP" >"$ROOT.stamp"
	echo "$ROOT"
}

case ${1:-} in
path) echo "$ROOT" ;;
rootfs) rootfs ;;
deps) deps ;;
*)
	echo "usage: scripts/nspawn.sh path|rootfs|deps" >&2
	exit 2
	;;
esac
