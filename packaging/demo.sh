#!/usr/bin/env bash
# The main job on the bundled configuration (config/): bantamd runs it
# unchanged except for where it keeps its files (a temp dir) and which log
# the asterisk jail reads. A simulated SIP brute force is appended to that
# log; bantamd bans the attackers through the bundled default ban action
# (nftables), `bantam status asterisk` and `bantam banned` show the result,
# and `bantam stop` lifts the bans.
#
# The firewall is a fresh network namespace's, never the host's: the daemon
# runs inside `ip netns exec`. Where namespaces are not available the jail
# uses the bundled `dummy` action instead, and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BANTAM_BUILD:-build}
tmp=$(mktemp -d /tmp/bantam-demo.XXXXXX)
ns=bantam-demo-$$
run=()
cleanup() {
  if [ -S "$tmp/bantam.sock" ]; then "$build/bantam" -c "$tmp/conf" stop >/dev/null 2>&1 || true; fi
  if [ -n "${run[*]}" ]; then ip netns delete "$ns" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

cp -rL config "$tmp/conf"
cat > "$tmp/conf/fail2ban.local" <<EOC
[Definition]
logtarget = $tmp/bantam.log
socket = $tmp/bantam.sock
pidfile = $tmp/bantamd.pid
dbfile = $tmp/bantam.sqlite3
EOC
: > "$tmp/messages"
jail_local="[asterisk]
logpath = $tmp/messages
[sshd]
enabled = false
[asterisk-ami]
enabled = false
"
if ip netns add "$ns" 2>/dev/null; then
  run=(ip netns exec "$ns")
  echo "demo: bantamd runs in network namespace $ns (its own nftables ruleset)"
else
  jail_local+="[DEFAULT]
banaction = dummy
banaction_allports = dummy
"
  echo "demo: no network namespaces here; the jail uses the dummy action"
fi
printf '%s' "$jail_local" > "$tmp/conf/jail.local"

"${run[@]}" "$build/bantamd" -b -c "$tmp/conf"
for _ in $(seq 100); do
  "$build/bantam" -c "$tmp/conf" ping >/dev/null 2>&1 && break
  sleep 0.05
done

# Three attackers, four failed registrations each (maxretry 4), and one
# phone that mistyped its password once.
now=$(date '+%b %e %H:%M:%S')
for ip in 203.0.113.5 198.51.100.23 192.0.2.77; do
  for ext in 100 101 102 103; do
    echo "[$now] NOTICE[2112] chan_sip.c: Registration from '\"$ext\" <sip:$ext@pbx.example.org>' failed for '$ip:5060' - Wrong password" >> "$tmp/messages"
  done
done
echo "[$now] NOTICE[2112] chan_sip.c: Registration from '\"200\" <sip:200@pbx.example.org>' failed for '10.0.0.20:5060' - Wrong password" >> "$tmp/messages"

for _ in $(seq 100); do
  [ "$(grep -c 'NOTICE  \[asterisk\] Ban' "$tmp/bantam.log" || true)" -ge 3 ] && break
  sleep 0.05
done
echo "== bantam status asterisk"
"$build/bantam" -c "$tmp/conf" status asterisk
echo "== bantam banned"
"$build/bantam" -c "$tmp/conf" banned
if [ -n "${run[*]}" ]; then
  # The ban decisions are made; the shell actions (one nft call per ban)
  # follow on bantamd's worker threads.
  for _ in $(seq 100); do
    set_text=$("${run[@]}" nft list set inet f2b-table addr-set-asterisk 2>/dev/null || true)
    n=0
    for ip in 203.0.113.5 198.51.100.23 192.0.2.77; do
      if grep -qF "$ip" <<<"$set_text"; then n=$((n + 1)); fi
    done
    [ "$n" -eq 3 ] && break
    sleep 0.05
  done
  echo "== nft list ruleset (in $ns)"
  "${run[@]}" nft list ruleset
fi
echo "== bantam stop"
"$build/bantam" -c "$tmp/conf" stop
echo "== bantam.log"
grep -E 'Ban|Unban|Found' "$tmp/bantam.log" | cut -c1-120
