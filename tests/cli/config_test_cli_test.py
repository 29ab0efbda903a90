#!/usr/bin/env python3
"""`bantam -t` and `bantam --dump` as an operator runs them.

Each case writes a small configuration tree of our own into a temp dir,
runs the real binary and checks the exit status and the exact error lines
(file:line: message) on stderr. Ends with "N passed, M failed".
"""
import argparse
import os
import subprocess
import sys
import tempfile

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)

BASE = {
    'fail2ban.conf': '[Definition]\nloglevel = INFO\n',
    'filter.d/pbx.conf': '[Definition]\nfailregex = ^auth failed from <HOST>$\n',
    'action.d/fw.conf': '[Definition]\nactionban = ban <ip>\nactionunban = unban <ip>\n',
}


def tree(files):
    d = tempfile.mkdtemp(prefix='bantam-cli-')
    for rel, text in {**BASE, **files}.items():
        p = os.path.join(d, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, 'w') as f:
            f.write(text)
    return d


def run(*argv):
    return subprocess.run([BANTAM, *argv], capture_output=True, text=True, timeout=60)


passed = failed = 0


def case(name, files, want_rc, want_errors, mode='-t'):
    """want_errors: exact error lines expected on stderr ({d} = the tree)."""
    global passed, failed
    d = tree(files)
    r = run('-c', d, mode)
    errors = [l for l in r.stderr.splitlines()
              if not l.startswith('warning: ') and not l.startswith('ERROR: test configuration')]
    want = [w.format(d=d) for w in want_errors]
    ok = r.returncode == want_rc and errors == want
    if mode == '-t' and want_rc == 0:
        ok = ok and r.stdout.strip() == 'OK: configuration test is successful'
    if mode == '-t' and want_rc != 0:
        ok = ok and 'ERROR: test configuration failed' in r.stderr
    if ok:
        passed += 1
        print(f'PASS {name}')
    else:
        failed += 1
        print(f'FAIL {name}: rc={r.returncode} (want {want_rc})')
        print('  stderr:', *r.stderr.splitlines(), sep='\n    ')
        print('  wanted:', *want, sep='\n    ')


JAIL = '[pbx]\nenabled = true\nfilter = pbx\naction = fw\nlogpath = /dev/null\n'

case('good tree', {'jail.conf': JAIL}, 0, [])
case('syntax error', {'jail.conf': JAIL, 'jail.local': '[pbx]\nmaxretry 3\n'}, 255,
     ["ERROR: {d}/jail.local:2: expected 'name = value' or '[section]', got 'maxretry 3'"])
case('duplicate option', {'jail.conf': JAIL + 'bantime = 1h\nBantime = 2h\n'}, 255,
     ["ERROR: {d}/jail.conf:7: option 'bantime' in section 'pbx' already exists"])
case('unknown filter', {'jail.conf': JAIL.replace('filter = pbx', 'filter = nosuch')}, 255,
     ["{d}/jail.conf:3: jail 'pbx': Unable to read the filter 'nosuch' "
      "(no filter.d/nosuch.conf or .local in {d})"])
case('unknown action', {'jail.conf': JAIL.replace('action = fw', 'action = fw\n  nope[x=1]')}, 255,
     ["{d}/jail.conf:4: jail 'pbx': Unable to read action 'nope' "
      "(no action.d/nope.conf or .local in {d})"])
case('bad time value', {'jail.conf': JAIL + 'bantime = 1 hour and a bit\n'}, 255,
     ["{d}/jail.conf:6: [pbx] bantime: invalid time value '1 hour and a bit'"])
case('bad integer', {'jail.conf': JAIL + 'maxretry = 3x\n'}, 255,
     ["{d}/jail.conf:6: [pbx] maxretry = '3x' is not an integer"])
case('bad usedns', {'jail.conf': JAIL + 'usedns = maybe\n'}, 255,
     ["{d}/jail.conf:6: [pbx] usedns = 'maybe' is not one of yes, no, warn, raw"])
case('bad backend', {'jail.conf': JAIL + 'backend = gamin2\n'}, 255,
     ["{d}/jail.conf:6: [pbx] backend = 'gamin2' is not one of auto, pyinotify, inotify, "
      "polling, systemd, ami"])
# fail2ban lowercases the backend's name: any case is good.
case('backend in capitals', {'jail.conf': JAIL + 'backend = Polling\n'}, 0, [])
case('bad ami option', {'jail.conf': JAIL + 'backend = ami[username=u, secret_file=/f, prot=1]\n'},
     255, ["{d}/jail.conf:6: [pbx] ami backend: unknown option 'prot' (known: host, port, "
           "username, secret, secret_file, events)"])
JAIL_PORT = ('[pbx]\nenabled = true\nfilter = pbx\nlogpath = /dev/null\n'
             'action = fw[port="%(port)s"]\n')
case('interpolation loop', {'jail.conf': JAIL_PORT + 'a = %(b)s\nb = %(a)s\nport = %(a)s\n'},
     255, ["ERROR: {d}/jail.conf:5: option 'action' in [pbx]: interpolation nested deeper than "
           "10 levels (a %(...)s loop?)"])
case('undefined reference', {'jail.conf': JAIL_PORT + 'port = %(sip_port)s\n'}, 255,
     ["ERROR: {d}/jail.conf:5: option 'action' in [pbx] refers to %(sip_port)s, which is not "
      "defined"])
# fail2ban never reads an option no jail setting uses, and neither do we.
case('unused broken option', {'jail.conf': JAIL + 'port = %(sip_port)s\n'}, 0, [])
case('bad dbpurgeage', {'jail.conf': JAIL,
                        'fail2ban.local': '[Definition]\ndbpurgeage = soon\n'}, 255,
     ["{d}/fail2ban.local:2: dbpurgeage: invalid time value 'soon'"])
case('regex does not compile',
     {'jail.conf': JAIL, 'filter.d/pbx.local': '[Definition]\nfailregex = ^bad (<HOST>$\n'}, 255,
     ["{d}/filter.d/pbx.local:2: [pbx] cannot compile failregex '^bad (<HOST>$': "
      "missing ), unterminated subpattern at offset 5"])
case('dump of a broken tree', {'jail.conf': '[pbx]\nenabled\n'}, 255,
     ["ERROR: {d}/jail.conf:2: expected 'name = value' or '[section]', got 'enabled'"],
     mode='--dump')

# Robustness: binary junk as jail.local never crashes or hangs.
junk = bytes(range(256)) * 64
d = tree({'jail.conf': JAIL})
with open(os.path.join(d, 'jail.local'), 'wb') as f:
    f.write(junk)
r = run('-c', d, '-t')
if r.returncode == 255 and 'invalid UTF-8' in r.stderr:
    passed += 1
    print('PASS binary jail.local')
else:
    failed += 1
    print(f'FAIL binary jail.local: rc={r.returncode}', r.stderr[:500])

# --str2sec prints what fail2ban-client --str2sec prints.
for value, want in (('1h 30m', '5400'), ('1mo', '2629800.0'), ('-1', '-1')):
    r = run('--str2sec', value)
    if r.returncode == 0 and r.stdout == want + '\n':
        passed += 1
        print(f'PASS --str2sec {value!r}')
    else:
        failed += 1
        print(f'FAIL --str2sec {value!r}: rc={r.returncode} out={r.stdout!r} err={r.stderr!r}')
r = run('--str2sec', 'soon')
if r.returncode == 255 and r.stderr == "ERROR: invalid time value 'soon'\n":
    passed += 1
    print('PASS --str2sec rejects junk')
else:
    failed += 1
    print(f'FAIL --str2sec junk: rc={r.returncode} err={r.stderr!r}')

print(f'{passed} passed, {failed} failed')
sys.exit(1 if failed else 0)
