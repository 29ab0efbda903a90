#!/usr/bin/env bash
# Filter throughput: one generated Asterisk log through the stock asterisk
# filter (-c /etc/fail2ban), side by side:
#
#   fail2ban-regex -c CONF LOG asterisk
#   bantam-regex   -c CONF LOG asterisk
#   grep -P -c -f PATTERN LOG        (LC_ALL=C; a lower bound for any matcher)
#
# The grep pattern is built at run time from the stock filter, by fail2ban's
# own FilterReader (so it follows the installed asterisk.conf): the expanded
# prefregex with its leading "(?:\[\])?" (what fail2ban leaves of the
# bracketed date) replaced by "\[[^\]]+\]" (the bracketed date itself), its
# "<F-CONTENT>.+</F-CONTENT>$" replaced by one alternation of all failregexes
# (leading ^ dropped), <HOST> replaced by "\[?[0-9A-Fa-f.:]+\]?" (the log
# holds addresses only), F- tags and group names dropped. Its match count is
# checked against fail2ban-regex's.
#
# Times come from hyperfine (few runs of fail2ban-regex: ~40 s per 1M lines;
# more of the fast ones); without hyperfine a plain loop measures wall time.
# bantam-regex's "Lines: ... matched" must equal fail2ban-regex's: the script
# exits 1 if not, after printing the figures.
#
# usage: bench/filter_throughput.sh [--lines N] [--seed S] [--bantam-regex PATH]
#            [--f2b-runs N] [--fast-runs N] [--log FILE] [--config DIR] [--keep]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
lines=1000000
seed=1
f2b_runs=1
fast_runs=5
bantam_regex=${BANTAM_REGEX:-$here/../build/bantam-regex}
conf=/etc/fail2ban
log=""
keep=0
f2b_python=/usr/bin/python3
python=$(command -v python3 || echo "$f2b_python")

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --bantam-regex) bantam_regex=$2; shift 2 ;;
    --f2b-runs) f2b_runs=$2; shift 2 ;;
    --fast-runs) fast_runs=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --config) conf=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage 0 ;;
    *) echo "unknown argument: $1" >&2; usage 2 >&2 ;;
  esac
done

die() { echo "filter_throughput: $*" >&2; exit 1; }
[ -x "$bantam_regex" ] || die "bantam-regex not found: $bantam_regex (use --bantam-regex)"
command -v fail2ban-regex >/dev/null || die "fail2ban-regex not found"
"$f2b_python" -c 'import fail2ban' 2>/dev/null || die "$f2b_python cannot import fail2ban"
[ -f "$conf/filter.d/asterisk.conf" ] || die "no $conf/filter.d/asterisk.conf"

work=$(mktemp -d /tmp/bantam-throughput.XXXXXX)
cleanup() { if [ "$keep" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi; }
trap cleanup EXIT
export TZ=UTC

if [ -z "$log" ]; then
  log=$work/asterisk.log
  echo "generating $lines lines (seed $seed) ..." >&2
  "$python" "$here/gen_asterisk_log.py" --lines "$lines" --seed "$seed" --out "$log"
elif [ ! -f "$log" ]; then
  die "no such log: $log"
fi
nlines=$(wc -l < "$log")

# The grep equivalent of the stock filter (see the header).
"$f2b_python" - "$conf" > "$work/asterisk.grep" <<'EOF'
import re, sys
from fail2ban.client.filterreader import FilterReader
r = FilterReader("asterisk", "bench", {}, basedir=sys.argv[1])
if not r.read():
    sys.exit("cannot read the asterisk filter")
r.applyAutoOptions("auto")
r.getOptions(None)
pref, fails = None, []
for opt in r.convert():
    if opt[2] == "prefregex":
        pref = opt[3]
    elif opt[2] == "addfailregex":
        fails += opt[3] if opt[0] == "multi-set" else [opt[3]]
head, tail = "^(?:\\[\\])?", "<F-CONTENT>.+</F-CONTENT>$"
if not (pref and pref.startswith(head) and pref.endswith(tail)):
    sys.exit("unexpected prefregex shape: %r" % pref)
alt = "|".join(f[1:] if f.startswith("^") else f for f in fails)
pat = r"^\[[^\]]+\]" + pref[len(head):-len(tail)] + "(?:" + alt + ")"
pat = pat.replace("<HOST>", r"\[?[0-9A-Fa-f.:]+\]?")
pat = re.sub(r"</?F-[A-Za-z0-9_-]+>", "", pat)
pat = re.sub(r"\(\?P<\w+>", "(?:", pat)
print(pat)
EOF

q() { printf '%q' "$1"; }
cmd_f2b="fail2ban-regex -c $(q "$conf") $(q "$log") asterisk > $(q "$work/f2b.out")"
cmd_bantam="$(q "$bantam_regex") -c $(q "$conf") $(q "$log") asterisk > $(q "$work/bantam.out")"
cmd_grep="LC_ALL=C grep -P -c -f $(q "$work/asterisk.grep") $(q "$log") > $(q "$work/grep.out")"

# measure NAME RUNS WARMUP CMD: writes $work/NAME.json {mean, stddev, min, runs}
measure() {
  local name=$1 runs=$2 warmup=$3 cmd=$4
  echo "timing $name ($runs run(s)) ..." >&2
  if command -v hyperfine >/dev/null; then
    hyperfine --style basic --runs "$runs" --warmup "$warmup" --export-json "$work/$name.hf.json" \
      "$cmd" >&2
    "$python" - "$work/$name.hf.json" > "$work/$name.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(json.dumps({"mean": r["mean"], "stddev": r.get("stddev") or 0.0, "min": r["min"],
                  "runs": len(r["times"])}))
EOF
  else
    local i t0 t1 ts=()
    for ((i = 0; i < warmup; i++)); do bash -c "$cmd"; done
    for ((i = 0; i < runs; i++)); do
      t0=$(date +%s.%N); bash -c "$cmd"; t1=$(date +%s.%N)
      ts+=("$(echo "$t1 - $t0" | bc -l)")
    done
    "$python" -c '
import json, statistics, sys
t = [float(x) for x in sys.argv[1:]]
print(json.dumps({"mean": statistics.mean(t), "stddev": statistics.stdev(t) if len(t) > 1 else 0.0,
                  "min": min(t), "runs": len(t)}))' "${ts[@]}" > "$work/$name.json"
  fi
}

measure grep "$fast_runs" 1 "$cmd_grep"
measure bantam "$fast_runs" 1 "$cmd_bantam"
measure f2b "$f2b_runs" 0 "$cmd_f2b"

matched() { sed -n 's/^Lines: [0-9]* lines, [0-9]* ignored, \([0-9]*\) matched.*/\1/p' "$1" | tail -1; }
m_f2b=$(matched "$work/f2b.out")
m_bantam=$(matched "$work/bantam.out")
m_grep=$(tr -d '[:space:]' < "$work/grep.out")

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -1)
"$python" - "$work" "$nlines" "$m_f2b" "$m_bantam" "$m_grep" \
  "$(fail2ban-regex --version 2>&1 | head -1)" "$(grep --version | head -1)" \
  "${cpu:-unknown CPU}, $(nproc) CPU(s)" "$(basename "$log")" <<'EOF'
import json, sys
work, n, m_f2b, m_bantam, m_grep, v_f2b, v_grep, cpu, logname = sys.argv[1:]
n = int(n)
rows = [("fail2ban-regex (%s)" % v_f2b, "f2b", m_f2b),
        ("bantam-regex", "bantam", m_bantam),
        ("grep -P -c (%s, LC_ALL=C)" % v_grep, "grep", m_grep)]
res = {k: json.load(open("%s/%s.json" % (work, k))) for _, k, _ in rows}
print("Log: %d lines (%s), stock asterisk filter; %s; TZ=UTC." % (n, logname, cpu))
print()
print("| program | runs | wall time, mean ± sd | lines/s | matched lines |")
print("|---|---:|---:|---:|---:|")
for label, k, m in rows:
    r = res[k]
    print("| %s | %d | %.3f s ± %.3f | %s | %s |" % (
        label, r["runs"], r["mean"], r["stddev"], "{:,.0f}".format(n / r["mean"]), m or "?"))
print()
print("bantam-regex vs fail2ban-regex: %.1fx faster; bantam-regex vs grep -P: %.2fx grep's time." % (
    res["f2b"]["mean"] / res["bantam"]["mean"], res["bantam"]["mean"] / res["grep"]["mean"]))
ok = m_f2b != "" and m_f2b == m_bantam
print("matched lines: fail2ban-regex %s, bantam-regex %s: %s; grep %s: %s." % (
    m_f2b or "?", m_bantam or "?", "identical" if ok else "DIFFERENT",
    m_grep or "?", "identical" if m_grep == m_f2b else "DIFFERENT"))
sys.exit(0 if ok else 1)
EOF
