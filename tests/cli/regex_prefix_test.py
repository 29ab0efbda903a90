#!/usr/bin/env python3
"""bantam-regex --prefix4/--prefix6 (issue 18): failures are reported by the
prefix a jail with those options counts them under, and the report lists
the failures per prefix. Also: a bad length is refused, exit 2."""
import argparse
import os
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
args = ap.parse_args()
REGEX = os.path.join(os.path.dirname(os.path.abspath(args.bantam)), 'bantam-regex')
failed = 0


def check(cond, what, detail=''):
    global failed
    print(('ok   ' if cond else 'FAIL ') + what + ('' if cond else '\n' + detail), flush=True)
    failed += not cond


with tempfile.NamedTemporaryFile('w', suffix='.log', delete=False) as f:
    for host in range(1, 6):
        f.write('auth failed from 2001:db8:1:2::%x\n' % host)
    for host in range(1, 3):
        f.write('auth failed from 2001:db8:1:3::%x\n' % host)
    f.write('auth failed from 198.51.100.7\nauth failed from 198.51.100.9\n')
    f.write('auth failed from 192.0.2.1\n')
    log = f.name
regex = '^auth failed from <HOST>$'
try:
    p = subprocess.run([REGEX, '--prefix6', '64', '--prefix4', '24', log, regex],
                       capture_output=True, text=True)
    check(p.returncode == 0, 'exit 0', p.stderr)
    want = ['Failures by prefix (prefix4 = 24, prefix6 = 64): 4 ids',
            '|- [# of failures] id',
            '|  [5] 2001:db8:1:2::/64',
            '|  [2] 198.51.100.0/24',
            '|  [2] 2001:db8:1:3::/64',
            '|  [1] 192.0.2.0/24']
    lines = p.stdout.splitlines()
    at = lines.index(want[0]) if want[0] in lines else -1
    check(at >= 0 and lines[at:at + len(want)] == want, 'per-prefix report', p.stdout)
    check('Lines: 10 lines, 0 ignored, 10 matched, 0 missed' in p.stdout, 'every line matched',
          p.stdout)

    p = subprocess.run([REGEX, '--prefix6', '64', '-o', 'id', log, regex],
                       capture_output=True, text=True)
    ids = p.stdout.split()
    check(ids == ['2001:db8:1:2::/64'] * 5 + ['2001:db8:1:3::/64'] * 2 +
          ['198.51.100.7', '198.51.100.9', '192.0.2.1'], '-o id gives the counting ids', p.stdout)
    # Without the options: no such section, ids are addresses.
    p = subprocess.run([REGEX, log, regex], capture_output=True, text=True)
    check('Failures by prefix' not in p.stdout, 'no prefix report by default', p.stdout)

    p = subprocess.run([REGEX, '--prefix6', '129', log, regex], capture_output=True, text=True)
    check(p.returncode == 2 and 'prefix6 = 129: expected a prefix length from 1 to 128' in p.stderr,
          'a bad length is refused', p.stderr)
finally:
    os.unlink(log)
print('FAILED: %d' % failed if failed else 'all checks passed')
sys.exit(1 if failed else 0)
