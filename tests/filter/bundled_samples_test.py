#!/usr/bin/env python3
"""Golden corpus: every filter bantam ships, on its sample log.

tests/filter/samples/NAME.log holds lines written for filter.d/NAME.conf;
NAME.expected lists "<line number> <failure id>" for every failure, as
fail2ban-regex finds them (checked when the samples were written). This
runs bantam-regex --json with the bundled configuration (-c config) and
requires exactly those failures: no more, no fewer, same ids.

NAME.mode-MODE.expected (no log of its own) is the same for NAME.log read
with filter NAME[mode=MODE].
"""
import argparse
import glob
import json
import os
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
args = ap.parse_args()
REGEX = os.path.join(os.path.dirname(os.path.abspath(args.bantam)), 'bantam-regex')
SRC = os.path.abspath(args.source_dir)
SAMPLES = os.path.join(SRC, 'tests', 'filter', 'samples')

# (expected file, log, filter)
runs = []
for log in sorted(glob.glob(os.path.join(SAMPLES, '*.log'))):
    name = os.path.basename(log)[:-4]
    runs.append((os.path.join(SAMPLES, name + '.expected'), log, name))
for expected in sorted(glob.glob(os.path.join(SAMPLES, '*.mode-*.expected'))):
    name, mode = os.path.basename(expected)[:-len('.expected')].split('.mode-', 1)
    runs.append((expected, os.path.join(SAMPLES, name + '.log'), '%s[mode=%s]' % (name, mode)))
if not runs:
    print('FATAL: no samples in %s' % SAMPLES)
    sys.exit(1)
failed = 0
for expected, log, name in runs:
    with open(expected) as f:
        want = [tuple(l.split()) for l in f if l.strip()]
    p = subprocess.run([REGEX, '--json', '--raw', '-c', os.path.join(SRC, 'config'), log, name],
                       capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, TZ='UTC'))
    if p.returncode != 0:
        print('FAIL %s: exit %d\n%s%s' % (name, p.returncode, p.stdout, p.stderr))
        failed += 1
        continue
    got = [(str(o['lineno']), o['id']) for o in map(json.loads, p.stdout.splitlines())]
    if got != want:
        failed += 1
        print('FAIL %s:' % name)
        for w in sorted(set(want) - set(got), key=lambda x: int(x[0])):
            print('  missing  line %s %s' % w)
        for g in sorted(set(got) - set(want), key=lambda x: int(x[0])):
            print('  extra    line %s %s' % g)
    else:
        print('ok   %s: %d failures' % (name, len(got)))
print('%d of %d sample runs as expected' % (len(runs) - failed, len(runs)))
sys.exit(1 if failed else 0)
