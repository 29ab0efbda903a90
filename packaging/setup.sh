#!/usr/bin/env bash
# Quick start, step 1: install what bantam needs on Debian 12, build it, and
# run it on the bundled default configuration (config/). Safe to re-run.
#
# Nothing here touches the host firewall. fail2ban is installed as a test
# oracle only (its fail2ban-client -d and fail2ban-regex are compared with
# ours); its service is kept from ever starting.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

packages=(
  # build
  build-essential cmake pkg-config python3
  # libraries (Debian 12 packages, never vendored)
  libpcre2-dev libinih-dev libnftnl-dev libmnl-dev libspdlog-dev libsqlite3-dev
  libsystemd-dev googletest libgtest-dev libmicrohttpd-dev
  # the fleet (docs/fleet.md): Redis client and HMAC-SHA256
  libhiredis-dev libssl-dev
  # fuzzing and sanitizers
  clang libclang-rt-14-dev
  # test-time oracles and the real tools end-to-end tests drive
  fail2ban python3-systemd nftables iptables iproute2 logrotate systemd-journal-remote
  sqlite3 redis-server redis-tools
  # the metrics test: promtool, and a Prometheus it starts on a loopback
  # port of its own (the package's service is kept from ever starting)
  prometheus
  # the Debian package (dpkg-buildpackage, lintian) and its man pages and
  # bash completion
  debhelper dpkg-dev fakeroot lintian man-db groff-base bash-completion
  # the booted Debian 12 container the system test installs the package in
  debootstrap systemd-container
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  # Refuse service starts while installing, so fail2ban's postinst cannot
  # start fail2ban-server (it would rewrite the host firewall).
  created_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}"
  if [ "$created_policy" -eq 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi

# Keep the oracle's service off for good, whatever started it; the same
# for Prometheus, which the tests run themselves.
if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  for unit in fail2ban.service prometheus.service; do
    as_root systemctl disable --now "$unit" >/dev/null 2>&1 || true
    as_root systemctl mask "$unit" >/dev/null 2>&1 || true
  done
  # The fleet tests start a redis-server of their own on a socket in a temp
  # dir; the system one (installed with service starts refused) stays off.
  if [ "${created_policy:-0}" -eq 1 ]; then
    as_root systemctl disable redis-server.service >/dev/null 2>&1 || true
  fi
fi
as_root update-rc.d fail2ban disable >/dev/null 2>&1 || true
as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
if pgrep -f fail2ban-server >/dev/null; then
  echo "setup: stopping a running fail2ban-server (a test oracle must not run)" >&2
  as_root pkill -f fail2ban-server || true
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBANTAM_BUILD_TESTS=ON -DBANTAM_WERROR=ON >/dev/null
cmake --build build -j"$(nproc)"

# The main job on the bundled configuration: validate it, then run bantamd
# on it against a simulated SIP brute force (packaging/demo.sh: in a fresh
# network namespace, never on the host firewall), and test its asterisk
# filter on the bundled sample log as an operator tests a filter with
# fail2ban-regex.
echo "== bantam -c config -t"
build/bantam -c config -t
echo "== bantamd on the bundled configuration (packaging/demo.sh)"
bash packaging/demo.sh
echo "== bantam-regex -c config tests/filter/samples/asterisk.log asterisk"
build/bantam-regex -c config tests/filter/samples/asterisk.log asterisk
