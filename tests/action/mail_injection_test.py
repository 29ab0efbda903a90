#!/usr/bin/env python3
"""Ban mails end to end with the real bantamd: hostile text in a log line
and in a whois answer (shell substitutions, backticks, `;rm`, printf
escapes, a mailutils `~!` tilde escape, CVE-2021-32749) reaches the mail
as inert text and never runs.

A temp config tree with the bundled action.d, one jail whose log line
carries the hostile text, banned through sendmail-whois and
sendmail-whois-lines. Stub `whois` and `sendmail` come first on PATH
(bantamd inherits it; sendmail-common.local points mailcmd at the stub):
whois answers hostile text, sendmail stores argv and stdin. Needs nothing
beyond packaging/setup.sh (no real whois, mail or MTA).

Passes when the ban happened, each mail holds the whois answer and (for
-lines) the log line byte for byte, and no marker file exists.
"""
import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
ap.add_argument('--keep', action='store_true')
args = ap.parse_args()
BANTAMD = os.path.join(os.path.dirname(os.path.abspath(args.bantam)), 'bantamd')

d = tempfile.mkdtemp(prefix='bantam-mail-')
MARKS = os.path.join(d, 'marks')
os.makedirs(MARKS)


def write(rel, text, mode='w', exe=False):
    p = os.path.join(d, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, mode) as f:
        f.write(text)
    if exe:
        os.chmod(p, 0o755)


def read(rel):
    try:
        with open(os.path.join(d, rel), errors='surrogateescape') as f:
            return f.read()
    except FileNotFoundError:
        return ''


WHOIS = ('netname: EVIL $(touch %(m)s/w1)\n'
         'descr: `touch %(m)s/w2`;touch %(m)s/w3\n'
         'remarks: \\c %%s %%b \\n\n'
         '~! touch %(m)s/w4\n' % {'m': MARKS})
USER = '$(touch %(m)s/l1)`touch %(m)s/l2`;touch %(m)s/l3|\\c' % {'m': MARKS}
IP = '192.0.2.9'

write('fail2ban.conf', f'''[Definition]
loglevel = DEBUG
logtarget = {d}/bantam.log
pidfile = {d}/bantamd.pid
socket = {d}/bantam.sock
dbfile = {d}/db.sqlite3
''')
shutil.copytree(os.path.join(args.source_dir, 'action.d'), os.path.join(d, 'action.d'))
write('action.d/sendmail-common.local',
      f"[Init]\nmailcmd = {d}/bin/sendmail -i -f '<sender>' '<dest>'\n")
# Asterisk-like: the user name is free text from the attacker.
write('filter.d/pbx.conf',
      "[Definition]\nfailregex = ^\\s*NOTICE.* Registration from '.*' failed for '<HOST>' - Wrong password$\n")
write('jail.conf', f'''[DEFAULT]
ignoreself = false
[asterisk]
enabled = true
filter = pbx
logpath = {d}/pbx.log
maxretry = 2
findtime = 600
bantime = 600
action = sendmail-whois[name=ASTERISK, dest=root, sender=fail2ban@example.org]
         sendmail-whois-lines[name=ASTERISK, dest=root, sender=fail2ban@example.org, logpath="{d}/pbx.log"]
''')
write('pbx.log', '')
write('whois.txt', WHOIS)
write('bin/whois', f'#!/bin/sh\nprintf "%s\\n" "$@" > {d}/whois.argv\nexec /bin/cat {d}/whois.txt\n',
      exe=True)
write('bin/sendmail', f'#!/bin/sh\nf={d}/mail/$$\nprintf "%s\\n" "$@" > $f.argv\n'
      f'/bin/cat > $f.tmp\n/bin/mv $f.tmp $f.body\n', exe=True)
os.makedirs(os.path.join(d, 'mail'))

env = dict(os.environ)
env['PATH'] = os.path.join(d, 'bin') + ':' + env.get('PATH', '/usr/bin:/bin')
proc = None
failed = []


def check(cond, what):
    if not cond:
        failed.append(what)
        print('FAIL:', what)


def wait(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        if proc.poll() is not None:
            raise AssertionError('bantamd exited: %s' % proc.stdout.read().decode(errors='replace'))
        time.sleep(0.05)
    raise AssertionError('timed out: %s\n%s' % (what, read('bantam.log')))


def bodies():
    return [read('mail/' + n) for n in sorted(os.listdir(os.path.join(d, 'mail')))
            if n.endswith('.body')]


try:
    proc = subprocess.Popen([BANTAMD, '-f', '-c', d], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    wait(lambda: 'Server ready' in read('bantam.log'), 10, 'Server ready')
    now = time.strftime('%Y-%m-%d %H:%M:%S')
    line = "%s NOTICE[1] chan_sip.c: Registration from '\"%s\" <sip:x@h>' failed for '%s' - Wrong password" % (
        now, USER, IP)
    write('pbx.log', (line + '\n') * 2, 'a')
    wait(lambda: 'Ban %s' % IP in read('bantam.log'), 10, 'the ban')
    wait(lambda: len(bodies()) >= 2, 10, 'two mails')
    log = read('bantam.log')
    native = "' (mail)" in log
    print('mail actions run %s' % ('natively (MailAction)' if native else
                                   'through the shell (CreateAction does not pick MailAction yet)'))
    mails = bodies()
    check(read('whois.argv') == IP + '\n', 'whois argv: %r' % read('whois.argv'))
    for m in mails:
        check(WHOIS in m, 'whois answer verbatim in mail:\n%s' % m)
        check('Subject: [bantam] ASTERISK: banned %s on ' % IP in m, 'subject in:\n%s' % m)
    lines_mail = [m for m in mails if 'Log lines mentioning' in m]
    check(len(lines_mail) == 1, 'one -lines mail: %r' % mails)
    if lines_mail:
        check(line + '\n' + line + '\n' in lines_mail[0],
              'log lines verbatim in:\n%s' % lines_mail[0])
    argvs = [read('mail/' + n) for n in os.listdir(os.path.join(d, 'mail')) if n.endswith('.argv')]
    check(all(a == '-i\n-f\nfail2ban@example.org\nroot\n' for a in argvs), 'sendmail argv: %r' % argvs)
    os.kill(proc.pid, signal.SIGTERM)
    proc.communicate(timeout=30)
    check(proc.returncode == 0, 'bantamd exit %s' % proc.returncode)
    check(os.listdir(MARKS) == [], 'markers created: %r' % os.listdir(MARKS))
except AssertionError as e:
    failed.append(str(e))
    print('FAIL:', e)
finally:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()
    if args.keep:
        print('kept', d)
    else:
        shutil.rmtree(d, ignore_errors=True)

print('%d failed' % len(failed))
sys.exit(1 if failed else 0)
