#!/usr/bin/env bash
# Configuration load, side by side: `fail2ban-client -d` and `bantam -d` on a
# copy of the stock Debian /etc/fail2ban with every jail enabled (logpaths
# pointed at empty temp files). Prints both timings and the ratio.
# Usage: bench/config_load.sh [path/to/bantam]   (needs hyperfine, fail2ban)
set -euo pipefail
bantam=$(realpath "${1:-build/bantam}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r /etc/fail2ban "$work/conf"
mkdir "$work/logs"
python3 - "$work" <<'PY'
import re, sys
work = sys.argv[1]
jails = [m.group(1) for m in (re.match(r'^\[([^\]]+)\]\s*$', l) for l in open(work + '/conf/jail.conf'))
         if m and m.group(1) not in ('INCLUDES', 'DEFAULT')]
with open(work + '/conf/jail.local', 'w') as f:
    for j in jails:
        open(f'{work}/logs/{j}.log', 'w').close()
        f.write(f'[{j}]\nenabled = true\nlogpath = {work}/logs/{j}.log\n\n')
print(f'{len(jails)} jails enabled')
PY
hyperfine -N --warmup 3 --runs 30 --export-json "$work/h.json" \
  "fail2ban-client -c $work/conf -d" "$bantam -c $work/conf -d" >/dev/null
python3 - "$work/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))['results']
f2b, ban = r[0]['mean'], r[1]['mean']
print(f'fail2ban-client -d: {f2b*1000:8.1f} ms  (+-{r[0]["stddev"]*1000:.1f})')
print(f'bantam -d:          {ban*1000:8.1f} ms  (+-{r[1]["stddev"]*1000:.1f})')
print(f'ratio:              {f2b/ban:8.1f}x faster')
PY
