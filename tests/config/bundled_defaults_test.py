#!/usr/bin/env python3
"""The bundled configuration (config/) as a fresh PBX gets it.

A fresh install must ban a manager (AMI, TCP 5038) login brute force with
the jails jail.d/bantam-defaults.conf turns on, without the operator turning
on a second jail, and must count each failure in one jail only. Checked on
`bantam -c config -d` (the resolved command stream) and `bantam -t`:

  - the enabled jails are exactly asterisk and sshd (asterisk-ami, which
    would count the same manager lines again, stays off);
  - the asterisk jail's ban action covers 5060,5061,4569,5038 over tcp,udp;
  - its failregex holds the manager's "<HOST> failed to authenticate as"
    and the security events of every service, AMI included;
  - `bantam -t` accepts the tree;
  - fail2ban-client -d prints the same stream (bantam --dp), so fail2ban
    reads the tree the same way (fail2ban missing: FATAL under CI, naming
    the Debian package; SKIP of that part otherwise).
"""
import argparse
import ast
import json
import os
import shutil
import subprocess
import sys

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)
CONF = os.path.join(os.path.abspath(args.source_dir), 'config')

failed = 0


def check(ok, what, detail=''):
    global failed
    print('%s %s' % ('ok  ' if ok else 'FAIL', what))
    if not ok:
        failed += 1
        if detail:
            print('     ' + str(detail)[:2000])


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=dict(os.environ, TZ='UTC'))


p = run([BANTAM, '-c', CONF, '-d'])
check(p.returncode == 0, 'bantam -c config -d exits 0', p.stderr)
stream = [json.loads(l) for l in p.stdout.splitlines() if l.strip()]
jails = [c[1] for c in stream if c[0] == 'add']
check(sorted(jails) == ['asterisk', 'sshd'], 'enabled jails are asterisk and sshd', jails)

actions = [c for c in stream if c[:2] == ['multi-set', 'asterisk'] and c[2] == 'action']
props = dict(actions[0][4]) if actions else {}
check(props.get('port') == '5060,5061,4569,5038', 'asterisk bans 5060,5061,4569,5038', props.get('port'))
check(props.get('protocol') == 'tcp,udp', 'asterisk bans over tcp,udp', props.get('protocol'))

regexes = [r for c in stream if c[:3] == ['multi-set', 'asterisk', 'addfailregex'] for r in c[3]]
check("^<HOST> failed to authenticate as '<F-USER>.*</F-USER>'$" in regexes,
      'asterisk counts refused manager logins', regexes)
check(any(r.startswith('^SecurityEvent=') and 'Severity="Error",Service="[^"]*",' in r for r in regexes),
      'asterisk counts Error security events of every service', regexes)
check(not any('Severity="Informational"' in r for r in regexes), 'no Informational event counts')

p = run([BANTAM, '-c', CONF, '-t'])
check(p.returncode == 0 and 'OK: configuration test is successful' in p.stdout,
      'bantam -c config -t', p.stdout + p.stderr)

if shutil.which('fail2ban-client'):
    f = run(['fail2ban-client', '-c', CONF, '-d'])
    b = run([BANTAM, '-c', CONF, '--dp'])
    fs = [ast.literal_eval(l) for l in f.stdout.splitlines() if l.strip()]
    bs = [ast.literal_eval(l) for l in b.stdout.splitlines() if l.strip()]
    check(f.returncode == 0 and fs == bs and len(fs) > 0,
          'fail2ban-client -d and bantam --dp print the same stream (%d commands)' % len(fs),
          f.stderr + b.stderr)
elif os.environ.get('CI'):
    check(False, 'fail2ban-client missing (Debian package fail2ban); set up with packaging/setup.sh')
else:
    print('SKIP fail2ban comparison: fail2ban-client missing (Debian package fail2ban)')

print('%s' % ('all checks passed' if not failed else '%d checks failed' % failed))
sys.exit(1 if failed else 0)
