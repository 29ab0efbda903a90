#!/usr/bin/env bash
# The bash completion of bantam and bantam-regex
# (packaging/bash-completion/bantam), exercised the way bash calls it: in a
# clean `bash --norc` with bash-completion loaded, COMP_WORDS/COMP_CWORD/
# COMP_LINE/COMP_POINT set, the completion function called, COMPREPLY
# compared. Jail and action names come from a real bantamd started from
# the build directory on a copy of the bundled configuration (dummy
# actions: no firewall is touched).
#
# Usage: completion_test.sh [BUILD_DIR]   (default: build, under the source tree)
set -uo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
if [[ $build != /* ]]; then
  if [[ -d $build ]]; then build=$(cd "$build" && pwd); else build=$src/$build; fi
fi
completion=$src/packaging/bash-completion/bantam
bash_completion=/usr/share/bash-completion/bash_completion

if [[ ! -r $bash_completion ]]; then
  if [[ -n ${CI-} ]]; then
    echo "FAIL: $bash_completion not found: install the Debian package bash-completion"
    echo "0 passed, 1 failed"
    exit 1
  fi
  echo "SKIP: $bash_completion not found (Debian package bash-completion)"
  exit 0
fi
for prog in bantamd bantam; do
  if [[ ! -x $build/$prog ]]; then
    echo "FAIL: $build/$prog not built"
    echo "0 passed, 1 failed"
    exit 1
  fi
done

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1"; }

tmp=$(mktemp -d /tmp/bantam-completion.XXXXXX)
hung_pid=
cleanup() {
  if [[ -n $hung_pid ]]; then kill "$hung_pid" 2>/dev/null; fi
  if [[ -S $tmp/bantam.sock ]]; then "$build/bantam" -c "$tmp/conf" stop >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

# Prints COMPREPLY, one a line, for the command line LINE (COMP_LINE)
# split into the words that follow it (COMP_WORDS; the last one is being
# completed, the cursor at its end). FN is the completion function.
# DEFAULTS_FILE in the environment replaces /etc/default/bantam.
complete_line() {
  local fn=$1 line=$2
  shift 2
  # From the temp dir, so that file names in the caller's directory never
  # join the expected completions.
  cd "$tmp" || return
  bash --norc --noprofile -c '
    source "$1" || exit 90
    source "$2" || exit 91
    [[ -n ${DEFAULTS_FILE-} ]] && _bantam_defaults_file=$DEFAULTS_FILE
    fn=$3 COMP_LINE=$4
    shift 4
    COMP_WORDS=("$@")
    COMP_CWORD=$(($# - 1))
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    "$fn"
    ((${#COMPREPLY[@]})) && printf "%s\n" "${COMPREPLY[@]}"
    exit 0' _ "$bash_completion" "$completion" "$fn" "$line" "$@"
}

# The same with COMP_LINE made of the words joined by spaces.
complete_words() {
  local fn=$1
  shift
  complete_line "$fn" "$*" "$@"
}

# expect NAME WANT GOT: WANT and GOT are word lists, compared as sorted sets.
expect() {
  local name=$1 want got
  want=$(tr ' ' '\n' <<<"$2" | sed '/^$/d' | sort -u | tr '\n' ' ')
  got=$(sed '/^$/d' <<<"$3" | sort -u | tr '\n' ' ')
  if [[ $want == "$got" ]]; then pass "$name"; else fail "$name: want [$want] got [$got]"; fi
}

# expect_has NAME WORD GOT: WORD is among the completions.
expect_has() {
  if grep -qxF -- "$2" <<<"$3"; then pass "$1"; else fail "$1: [$2] not in [$(tr '\n' ' ' <<<"$3")]"; fi
}

# --- the configuration and the daemon (as packaging/demo.sh does) -----------
cp -rL "$src/config" "$tmp/conf"
cat >"$tmp/conf/fail2ban.local" <<EOC
[Definition]
logtarget = $tmp/bantam.log
socket = $tmp/bantam.sock
pidfile = $tmp/bantamd.pid
dbfile = $tmp/bantam.sqlite3
EOC
: >"$tmp/messages"
cat >"$tmp/conf/jail.local" <<EOC
[DEFAULT]
banaction = dummy
banaction_allports = dummy

[asterisk]
enabled = true
logpath = $tmp/messages

[sshd]
enabled = false
EOC

B=$build/bantam
R=bantam-regex
C=$tmp/conf

# --- bantam: options, commands, sub-words (no daemon needed) ----------------
expect "option: --con" "--conf" "$(complete_words _bantam "$B" --con)"
expect "option after -c DIR: --sock" "--socket" "$(complete_words _bantam "$B" -c "$C" --sock)"
expect "option: --dump" "--dump --dump-pretty" "$(complete_words _bantam "$B" --dum)"
expect "option value: --loglevel DE" "DEBUG" "$(complete_words _bantam "$B" --loglevel DE)"
expect "option value: --logtarget=SYS (split at =)" "SYSLOG SYSTEMD-JOURNAL" \
  "$(complete_line _bantam "$B --logtarget=SYS" "$B" --logtarget = SYS)"
expect "option value: -c completes directories" "$tmp/conf" \
  "$(complete_words _bantam "$B" -c "$tmp/co")"
expect "top-level command: sta" "start status" "$(complete_words _bantam "$B" sta)"
expect "top-level command: re" "restart reload" "$(complete_words _bantam "$B" -c "$C" re)"
expect "top-level command after -vq: fl" "flushlogs" "$(complete_words _bantam "$B" -vq fl)"
expect "top-level commands: all" \
  "start restart reload stop status ping version echo flushlogs server-status banned unban set get add" \
  "$(complete_words _bantam "$B" "")"
expect "set sub-word: set JAIL unb" "unbanip" "$(complete_words _bantam "$B" set asterisk unb)"
expect "set sub-word: set JAIL maxr" "maxretry" "$(complete_words _bantam "$B" set asterisk maxr)"
expect "set sub-word: set JAIL bantime." \
  "bantime.increment bantime.factor bantime.formula bantime.multipliers bantime.maxtime bantime.rndtime bantime.overalljails" \
  "$(complete_words _bantam "$B" set asterisk bantime.)"
expect "set value: set JAIL idle" "on off" "$(complete_words _bantam "$B" set asterisk idle "")"
expect "set value: set JAIL unbanip --" "--report-absent" \
  "$(complete_words _bantam "$B" set asterisk unbanip --)"
expect "set server setting: set loglevel N" "NOTICE" "$(complete_words _bantam "$B" set loglevel N)"
expect "get sub-word: get JAIL ignore" \
  "ignoreself ignoreip ignorecommand ignorecache ignoreregex" \
  "$(complete_words _bantam "$B" get asterisk ignore)"
expect "get value: get JAIL banip --" "--with-time" "$(complete_words _bantam "$B" get asterisk banip --)"
expect "status flavor" "basic short cymru" "$(complete_words _bantam "$B" status asterisk "")"
expect "status --all flavor: st" "stats" "$(complete_words _bantam "$B" status --all st)"
expect "reload switches: --" "--restart --unban --if-exists --all" \
  "$(complete_words _bantam "$B" -c /nonexistent reload --)"
expect "unban --" "--all" "$(complete_words _bantam "$B" unban --)"

# --- bantam: jail and action names from a running bantamd -------------------
if ! "$build/bantamd" -b -c "$C"; then
  fail "bantamd -b -c $C did not start"
else
  for _ in $(seq 100); do
    "$B" -c "$C" ping >/dev/null 2>&1 && break
    sleep 0.05
  done
  # The jails the daemon runs (the bundled jail.d may enable more than
  # asterisk), as `bantam status` lists them; `starting PREFIX` filters them.
  jails=$("$B" -c "$C" status 2>/dev/null | sed -n 's/^.*Jail list:[[:space:]]*//p' | tr -d ' ' | tr ',' ' ')
  starting() { tr ' ' '\n' <<<"$jails" | grep "^$1" | tr '\n' ' '; }
  expect_has "the daemon runs asterisk" asterisk "$(tr ' ' '\n' <<<"$jails")"
  expect "jail names: status (daemon via -c)" "--all $jails" "$(complete_words _bantam "$B" -c "$C" status "")"
  expect "jail names: status ast (daemon via --conf)" "$(starting ast)" \
    "$(complete_words _bantam "$B" --conf "$C" status ast)"
  expect "jail names: --conf=DIR (split at =)" "$(starting ast)" \
    "$(complete_line _bantam "$B --conf=$C status ast" "$B" --conf = "$C" status ast)"
  expect "jail names: -cDIR attached" "$(starting a)" "$(complete_words _bantam "$B" "-c$C" status a)"
  expect "jail names: -c DIR -s SOCKET" "$(starting a)" \
    "$(complete_words _bantam "$B" -c "$C" -s "$tmp/bantam.sock" stop a)"
  expect "jail names: wrong -s gives none" "" \
    "$(complete_words _bantam "$B" -c "$C" -s "$tmp/none.sock" status a)"
  got=$(complete_words _bantam "$B" -c "$C" get "")
  expect_has "jail names: get (jail)" asterisk "$got"
  expect_has "jail names: get (server setting)" dbpurgeage "$got"
  expect "jail names: set JAIL (set a)" "$(starting a)" "$(complete_words _bantam "$B" -c "$C" set a)"
  expect "jail names: reload --unban a" "$(starting a)" \
    "$(complete_words _bantam "$B" -c "$C" reload --unban a)"
  expect "action names: get JAIL action" "dummy" "$(complete_words _bantam "$B" -c "$C" get asterisk action "")"
  "$B" -c "$C" stop >/dev/null 2>&1
  for _ in $(seq 100); do
    [[ -S $tmp/bantam.sock ]] || break
    sleep 0.05
  done
fi

# The daemon is down: no jails, and no waiting.
start=$(date +%s%N)
expect "daemon down: status offers --all only" "--all" "$(complete_words _bantam "$B" -c "$C" status "")"
elapsed_ms=$((($(date +%s%N) - start) / 1000000))
if ((elapsed_ms < 2500)); then
  pass "daemon down: completion returned in ${elapsed_ms} ms"
else
  fail "daemon down: completion took ${elapsed_ms} ms"
fi

# A daemon that accepts and never answers: completion gives up after its
# 2 s timeout instead of hanging the shell.
if command -v python3 >/dev/null; then
  python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(8)
conns = []
while True:
    conns.append(s.accept()[0])
' "$tmp/hung.sock" &
  hung_pid=$!
  for _ in $(seq 100); do
    [[ -S $tmp/hung.sock ]] && break
    sleep 0.05
  done
  start=$(date +%s%N)
  expect "hung daemon: status offers --all only" "--all" \
    "$(complete_words _bantam "$B" -c "$C" -s "$tmp/hung.sock" status "")"
  elapsed_ms=$((($(date +%s%N) - start) / 1000000))
  if ((elapsed_ms < 4000)); then
    pass "hung daemon: completion returned in ${elapsed_ms} ms"
  else
    fail "hung daemon: completion took ${elapsed_ms} ms"
  fi
  kill "$hung_pid" 2>/dev/null
  wait "$hung_pid" 2>/dev/null
  hung_pid=
else
  echo "# no python3: the hung-daemon case is not run"
fi

# --- bantam-regex ------------------------------------------------------------
expect "bantam-regex option: --print-all-m" "--print-all-matched --print-all-missed" \
  "$(complete_words _bantam_regex "$R" --print-all-m)"
expect "bantam-regex option value: --usedns" "yes warn no raw" \
  "$(complete_words _bantam_regex "$R" --usedns "")"
expect "bantam-regex option value: -o" "id ip msg row" "$(complete_words _bantam_regex "$R" -o "")"
expect "bantam-regex filters from -c DIR" "asterisk asterisk-ami asterisk-common" \
  "$(complete_words _bantam_regex "$R" -c "$C" "$tmp/messages" aster)"
expect "bantam-regex filters from --config=DIR (split at =)" "sshd" \
  "$(complete_line _bantam_regex "$R --config=$C $tmp/messages ss" "$R" --config = "$C" "$tmp/messages" ss)"
expect "bantam-regex filters after options with values" "recidive" \
  "$(complete_words _bantam_regex "$R" -c "$C" -L 2 --usedns no -v "$tmp/messages" rec)"
printf '# written by the package\nBANTAM_CONFDIR="%s"\n' "$C" >"$tmp/default-bantam"
expect "bantam-regex filters from BANTAM_CONFDIR" "freeswitch" \
  "$(DEFAULTS_FILE=$tmp/default-bantam complete_words _bantam_regex "$R" "$tmp/messages" free)"
expect "bantam-regex LOG: files and the journal" "systemd-journal" \
  "$(complete_words _bantam_regex "$R" "syst")"
expect "bantam-regex LOG: a file" "$tmp/messages" "$(complete_words _bantam_regex "$R" "$tmp/mess")"
expect "bantam-regex: nothing after IGNOREREGEX" "" \
  "$(complete_words _bantam_regex "$R" -c "$C" "$tmp/messages" asterisk x y)"

echo "$passed passed, $failed failed"
((failed == 0))
