#!/usr/bin/env python3
"""bantam-regex against the real fail2ban-regex, report for report.

Each case runs both programs with the same arguments on fail2ban's own
sample logs (read where the Debian package installs them, never copied)
and compares stdout and the exit status. The only line allowed to differ
is "[processed in X sec]". Error cases compare the exit status and the
"ERROR:" prefix only: our messages say more than fail2ban's.
Ends with "N passed, M failed"; fail2ban missing is a failure, not a skip.
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
REGEX = os.path.join(os.path.dirname(os.path.abspath(args.bantam)), 'bantam-regex')
F2B = '/usr/bin/fail2ban-regex'
LOGS = '/usr/lib/python3/dist-packages/fail2ban/tests/files/logs'
ENV = dict(os.environ, TZ='CET-01CEST-02,M3.5.0,M10.5.0', LANG='C.UTF-8')

JOURNAL_REMOTE = '/lib/systemd/systemd-journal-remote'
F2B_PYTHON = '/usr/bin/python3'  # fail2ban-regex's #! line
if not os.path.exists(REGEX):
    print('FATAL: missing %s' % REGEX)
    sys.exit(1)
for need, package in ((F2B, 'fail2ban'), (LOGS, 'fail2ban'),
                      (JOURNAL_REMOTE, 'systemd-journal-remote')):
    if not os.path.exists(need):
        print('FATAL: needs %s (Debian package %s); set up with packaging/setup.sh'
              % (need, package))
        sys.exit(1)
# fail2ban-regex's systemd-journal backend needs python-systemd, a package of
# its own: without it the journal cases only show "systemd library not found".
if subprocess.run([F2B_PYTHON, '-c', 'import systemd.journal'],
                  capture_output=True).returncode != 0:
    print("FATAL: needs %s -c 'import systemd.journal' (Debian package python3-systemd); "
          'set up with packaging/setup.sh' % F2B_PYTHON)
    sys.exit(1)

L = lambda name: os.path.join(LOGS, name)


def make_journal():
    """A real journal file with sshd and other entries, written by
    systemd-journal-remote from export format."""
    d = tempfile.mkdtemp(prefix='bantam-journal-')
    entries = []
    t = 1700000000000000
    msgs = ['Failed password for root from 192.0.2.%d port 22 ssh2',
            'Invalid user admin from 192.0.2.%d port 4242',
            'Accepted publickey for bob from 192.0.2.%d port 22 ssh2',
            'Connection closed by 192.0.2.%d port 22 [preauth]']
    for i in range(120):
        t += 1000 + (i * 7919) % 3000000
        unit, comm = ('sshd.service', 'sshd') if i % 5 else ('cron.service', 'cron')
        entries.append('\n'.join([
            '__CURSOR=s=x;i=%d' % i, '__REALTIME_TIMESTAMP=%d' % t,
            '__MONOTONIC_TIMESTAMP=%d' % (t - 1600000000000000),
            '_BOOT_ID=0123456789abcdef0123456789abcdef', '_HOSTNAME=pbx',
            'SYSLOG_IDENTIFIER=%s' % comm, '_PID=%d' % (1000 + i), '_SYSTEMD_UNIT=' + unit,
            '_COMM=' + comm, 'PRIORITY=6', 'MESSAGE=' + msgs[i % 4] % (i % 50)]) + '\n')
    path = os.path.join(d, 'test.journal')
    subprocess.run([JOURNAL_REMOTE, '-o', path, '-'], input='\n'.join(entries), text=True,
                   check=True, capture_output=True)
    return path


JOURNAL = make_journal()

# Over 1 MiB: bantam-regex reads and date-parses it on a second thread.
BIG = os.path.join(os.path.dirname(JOURNAL), 'asterisk-big.log')
subprocess.run([sys.executable, os.path.join(args.source_dir, 'bench', 'gen_asterisk_log.py'),
                '--lines', '12000', '--seed', '3', '--date-style', 'mix', '--out', BIG],
               check=True, capture_output=True)
SSHD_LINE = 'Jan 1 00:00:01 host sshd[1]: Failed password for root from 192.0.2.4 port 22 ssh2'

# (name, argv, compare): compare "report" = whole stdout, "error" = status
# and the first word of the message.
CASES = [
    ('filter by name', [L('asterisk'), 'asterisk'], 'report'),
    ('filter with options', [L('sshd'), 'sshd[mode=aggressive]'], 'report'),
    ('all matched lines', [L('sshd'), 'sshd', '--print-all-matched'], 'report'),
    ('all missed lines', [L('apache-auth'), 'apache-auth', '--print-all-missed'], 'report'),
    ('no missed lines', [L('postfix'), 'postfix[mode=aggressive]', '--print-no-missed'], 'report'),
    ('verbose: prefregex groups and hits', [L('dovecot'), 'dovecot', '-v'], 'report'),
    ('verbose with mlfid', [L('sshd'), 'sshd[mode=extra]', '-v'], 'report'),
    ('maxlines from the command line', [L('sshd'), 'sshd', '-L', '3'], 'report'),
    ('datepattern from the command line', [L('sshd'), 'sshd', '-d', '^%b %d %H:%M:%S'], 'report'),
    ('single line, filter', [SSHD_LINE, 'sshd'], 'report'),
    ('single line, regex', ['Failed from 192.0.2.1', 'Failed from <HOST>'], 'report'),
    ('multi line argument', ['a 192.0.2.1\nb 192.0.2.2\nc', '^[ab] <HOST>$'], 'report'),
    ('ignoreregex', [L('sshd'), 'sshd', r'from 192\.0\.2\.'], 'report'),
    ('out id', [L('sshd'), 'sshd', '-o', 'id'], 'report'),
    ('out ip', [L('nginx-http-auth'), 'nginx-http-auth', '-o', 'ip'], 'report'),
    ('out msg', [L('asterisk'), 'asterisk', '-o', 'msg'], 'report'),
    ('out tag template', [L('sshd'), 'sshd', '-o', '<ip> at <time> user=<F-USER>'], 'report'),
    ('not a file: one line', ['/dev/null', 'sshd'], 'report'),
    ('systemd journal, filter journalmatch',
     ['systemd-journal[journalfiles=%s]' % JOURNAL, 'sshd'], 'report'),
    ('systemd journal, -m and --print-all-matched',
     ['systemd-journal[journalfiles=%s]' % JOURNAL, 'sshd', '-m', '_COMM=cron',
      '--print-all-missed'], 'report'),
    ('large file (two threads)', [BIG, 'asterisk', '--print-all-matched'], 'report'),
    ('large file, verbose', [BIG, 'asterisk', '-v'], 'report'),
    ('regex without host', [L('asterisk'), '^nothing here$'], 'error'),
    ('broken regex', [L('asterisk'), '^(unclosed <HOST>'], 'error'),
    ('one argument only', [L('asterisk')], 'error'),
]


def run(prog, argv):
    p = subprocess.run([prog, *argv], capture_output=True, text=True, env=ENV, timeout=120)
    out = [l for l in p.stdout.splitlines() if not l.startswith('[processed in ')]
    return p.returncode, out, p.stderr


passed = failed = 0
for name, argv, compare in CASES:
    rc_f, out_f, err_f = run(F2B, argv)
    rc_b, out_b, err_b = run(REGEX, argv)
    problems = []
    if rc_f != rc_b:
        problems.append('exit status %d, fail2ban-regex %d' % (rc_b, rc_f))
    if compare == 'report' and out_f != out_b:
        for i in range(max(len(out_f), len(out_b))):
            a = out_f[i] if i < len(out_f) else '<none>'
            b = out_b[i] if i < len(out_b) else '<none>'
            if a != b:
                problems.append('stdout line %d:\n    fail2ban-regex: %s\n    bantam-regex:   %s'
                                % (i + 1, a, b))
                break
    if compare == 'error':
        first = lambda out, err: (out + err.splitlines() + [''])[0].split(':')[0] \
            if rc_f == 255 else ''
        if rc_b != 255:
            problems.append('expected an error')
        if not any(l.startswith('ERROR') for l in out_b + err_b.splitlines()):
            problems.append('no ERROR line: %r' % (out_b + err_b.splitlines()))
    if problems:
        failed += 1
        print('FAIL %s: %s' % (name, argv))
        for p in problems:
            print('  ' + p)
    else:
        passed += 1
        print('ok   %s' % name)

import shutil
shutil.rmtree(os.path.dirname(JOURNAL), ignore_errors=True)
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
