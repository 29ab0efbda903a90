#!/usr/bin/env python3
"""bantamd end to end, as an operator runs it: a real config tree, a real
log file appended to, a recording shell action, the real ban database,
real signals, and the real logrotate.

Scenarios (each with its own temp tree):
  ban-unban     three failures ban at maxretry, the ban ends after bantime,
                SIGTERM lifts the remaining bans and runs actionstop
  kill9-restore a ban survives kill -9: the restart restores it (and
                re-runs actionban), and the old log lines are not counted
                again (the log resumes at its saved position)
  restart-no-ban-resume  failures but no ban, a stop that leaves the
                database as fail2ban's stop does (every jail disabled),
                then bantamd: the saved log position is kept (the start-up
                purge used to drop the disabled jail's row, and the log was
                re-read, counting its failures twice)
  logrotate     failures split across a logrotate 'create' rotation still
                add up to a ban; none is lost or counted twice
  ignorecommand an ignorecommand (run off the event loop) spares one
                address and lets another be banned
  bad-jail      a jail with a broken failregex and one with a Python
                action fail alone, with file:line errors; pbx still bans
  late-logfile  the jail's log does not exist at start; when it appears,
                its lines are read and ban
  copytruncate  the same with a logrotate 'copytruncate' rotation
  journal-backend  backend = systemd[journalfiles=...] on a real journal
                file, with the filter's journalmatch; a restart resumes
                after the last entry read (nothing counted twice)
  reload        SIGHUP with a changed jail (maxretry), a new jail and then
                a removed one and a changed action: bans and failures are
                kept, the new jail bans, the removed jail and the replaced
                action run actionstop
Ends with "N passed, M failed".
"""
import argparse
import os
import shutil
import signal
import sqlite3
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
LOGROTATE = '/usr/sbin/logrotate'
JOURNAL_REMOTE = '/lib/systemd/systemd-journal-remote'


class Tree:
    def __init__(self, bantime=3600, maxretry=3):
        self.dir = tempfile.mkdtemp(prefix='bantamd-e2e-')
        d = self.dir
        self.write('fail2ban.conf', f'''[Definition]
loglevel = INFO
logtarget = {d}/bantam.log
pidfile = {d}/bantamd.pid
socket = {d}/bantam.sock
dbfile = {d}/db.sqlite3
''')
        self.write('filter.d/pbx.conf', '[Definition]\nfailregex = ^\\s*auth failed from <HOST>$\n')
        self.write('action.d/record.conf', f'''[Definition]
actionstart = echo start >> {d}/actions.log
actionstop = echo stop >> {d}/actions.log
actionban = echo ban <ip> >> {d}/actions.log
actionunban = echo unban <ip> >> {d}/actions.log
''')
        self.write('jail.conf', f'''[DEFAULT]
ignoreself = false
[pbx]
enabled = true
filter = pbx
action = record
logpath = {d}/pbx.log
maxretry = {maxretry}
findtime = 600
bantime = {bantime}
''')
        self.write('pbx.log', '')
        self.proc = None

    def write(self, rel, text, mode='w'):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, mode) as f:
            f.write(text)

    def read(self, rel):
        try:
            with open(os.path.join(self.dir, rel)) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def fail(self, ip, n=1):
        now = time.strftime('%Y-%m-%d %H:%M:%S')
        self.write('pbx.log', ''.join('%s auth failed from %s\n' % (now, ip) for _ in range(n)), 'a')

    def start(self):
        self.proc = subprocess.Popen([BANTAMD, '-f', '-c', self.dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.wait_for('bantam.log', 'Server ready', count=self.read('bantam.log').count('Server ready') + 1)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=30)
        rc = self.proc.returncode
        self.proc = None
        return rc, out.decode(errors='replace')

    def wait_for(self, rel, text, count=1, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if self.read(rel).count(text) >= count:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError('bantamd exited (%s): %s' % (self.proc.returncode,
                                     self.proc.stdout.read().decode(errors='replace')))
            time.sleep(0.05)
        raise AssertionError('timed out waiting for %r x%d in %s:\n%s' % (text, count, rel, self.read(rel)))

    def wait_action(self, line, count=1, timeout=10):
        """Waits until actions.log holds `line` (a whole line) `count` times."""
        end = time.time() + timeout
        while time.time() < end:
            if self.actions().count(line) >= count:
                return
            time.sleep(0.05)
        raise AssertionError('timed out waiting for %r x%d: %s' % (line, count, self.actions()))

    def actions(self):
        return self.read('actions.log').split('\n')[:-1]

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        if not args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def ban_unban(t):
    t.cleanup()
    t = Tree(bantime=2)
    try:
        t.start()
        t.fail('192.0.2.1', 2)
        t.fail('198.51.100.7', 3)
        t.wait_for('actions.log', 'ban 198.51.100.7')
        time.sleep(0.5)
        expect('ban 192.0.2.1' not in t.actions(), 'two failures must not ban: %s' % t.actions())
        t.wait_for('actions.log', 'unban 198.51.100.7', timeout=6)
        t.fail('192.0.2.1')
        t.wait_for('actions.log', 'ban 192.0.2.1')
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
        acts = t.actions()
        expect(acts[0] == 'start' and acts[-1] == 'stop', acts)
        expect('unban 192.0.2.1' in acts, 'SIGTERM lifts bans: %s' % acts)
        log = t.read('bantam.log')
        for line in ('fail2ban.actions        [%d]: NOTICE  [pbx] Ban 198.51.100.7',
                     'fail2ban.actions        [%d]: NOTICE  [pbx] Unban 198.51.100.7'):
            pids = [l for l in log.splitlines() if 'Ban 198' in l or 'Unban 198' in l]
            expect(any(line.split('[%d]')[0] in l and line.split(': ')[1] in l for l in pids),
                   'log line like %r in:\n%s' % (line, log))
    finally:
        t.cleanup()


def kill9_restore(t):
    try:
        t.start()
        t.fail('203.0.113.9', 3)
        t.wait_for('actions.log', 'ban 203.0.113.9')
        time.sleep(11)  # log positions are saved every 10 s
        t.stop(signal.SIGKILL)
        before = t.read('bantam.log').count('Found 203.0.113.9')
        t.start()
        t.wait_for('bantam.log', 'Restore Ban 203.0.113.9')
        t.wait_for('actions.log', 'ban 203.0.113.9', count=2)
        time.sleep(0.5)
        expect(t.read('bantam.log').count('Found 203.0.113.9') == before,
               'old lines counted again after restart:\n' + t.read('bantam.log'))
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def restart_no_ban_resume(t):
    try:
        t.start()
        t.fail('203.0.113.20', 2)  # maxretry 3: no ban
        t.wait_for('bantam.log', 'Found 203.0.113.20', count=2)
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
        # fail2ban's stop marks every jail disabled (delAllJails); a switch
        # from fail2ban starts from that database.
        db = sqlite3.connect(os.path.join(t.dir, 'db.sqlite3'))
        db.execute('UPDATE jails SET enabled = 0')
        db.commit()
        db.close()
        t.start()
        t.fail('203.0.113.21', 1)
        t.wait_for('bantam.log', 'Found 203.0.113.21')
        time.sleep(0.3)
        expect(t.read('bantam.log').count('Found 203.0.113.20') == 2,
               'old lines counted again after a clean restart:\n' + t.read('bantam.log'))
        expect('ban 203.0.113.20' not in t.actions(), 'banned on lines read twice')
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def logrotate(t):
    try:
        t.start()
        t.fail('192.0.2.50', 2)
        t.wait_for('bantam.log', 'Found 192.0.2.50', count=2)
        conf = os.path.join(t.dir, 'logrotate.conf')
        t.write('logrotate.conf', '%s/pbx.log {\n  create\n  rotate 2\n}\n' % t.dir)
        subprocess.run([LOGROTATE, '-f', '-s', os.path.join(t.dir, 'lr.state'), conf], check=True)
        expect(os.path.exists(os.path.join(t.dir, 'pbx.log.1')), 'logrotate did not rotate')
        t.fail('192.0.2.50', 1)
        t.wait_for('actions.log', 'ban 192.0.2.50')
        expect(t.read('bantam.log').count('Found 192.0.2.50') == 3,
               'each failure counted once:\n' + t.read('bantam.log'))
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def copytruncate(t):
    try:
        t.start()
        t.fail('192.0.2.51', 2)
        t.wait_for('bantam.log', 'Found 192.0.2.51', count=2)
        conf = os.path.join(t.dir, 'logrotate.conf')
        t.write('logrotate.conf', '%s/pbx.log {\n  copytruncate\n  rotate 2\n}\n' % t.dir)
        subprocess.run([LOGROTATE, '-f', '-s', os.path.join(t.dir, 'lr.state'), conf], check=True)
        expect(os.path.getsize(os.path.join(t.dir, 'pbx.log')) == 0, 'logrotate did not truncate')
        t.fail('192.0.2.51', 1)
        t.wait_for('actions.log', 'ban 192.0.2.51')
        expect(t.read('bantam.log').count('Found 192.0.2.51') == 3,
               'each failure counted once:\n' + t.read('bantam.log'))
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def reload(t):
    try:
        t.start()
        t.fail('198.51.100.1', 3)
        t.wait_for('actions.log', 'ban 198.51.100.1')
        t.fail('203.0.113.1', 2)
        t.wait_for('bantam.log', 'Found 203.0.113.1', count=2)
        # maxretry 3 -> 4 and a second jail on its own log and action.
        t.write('action.d/record2.conf', '[Definition]\nactionstart = echo start2 >> %s/actions.log\n'
                'actionstop = echo stop2 >> %s/actions.log\nactionban = echo ban2 <ip> >> %s/actions.log\n'
                'actionunban = echo unban2 <ip> >> %s/actions.log\n' % ((t.dir,) * 4))
        t.write('jail.local', '[pbx]\nmaxretry = 4\n[pbx2]\nenabled = true\nfilter = pbx\n'
                'action = record2\nlogpath = %s/pbx2.log\nmaxretry = 1\n' % t.dir)
        t.write('pbx2.log', '%s auth failed from 192.0.2.2\n' % time.strftime('%Y-%m-%d %H:%M:%S'))
        t.proc.send_signal(signal.SIGHUP)
        t.wait_for('bantam.log', 'Reload finished.')
        t.wait_for('actions.log', 'ban2 192.0.2.2')
        t.fail('203.0.113.1', 1)  # 3 failures: below the new maxretry
        t.wait_for('bantam.log', 'Found 203.0.113.1', count=3)
        time.sleep(0.3)
        expect('ban 203.0.113.1' not in t.actions(), 'new maxretry not applied: %s' % t.actions())
        t.fail('203.0.113.1', 1)
        t.wait_for('actions.log', 'ban 203.0.113.1')
        expect(t.actions().count('ban 198.51.100.1') == 1 and t.actions().count('start') == 1,
               'an unchanged action keeps running, not restarted or re-banned: %s' % t.actions())
        # pbx2 removed, pbx's action changed (new options): old one lifts
        # its bans and stops, the new one starts and bans them again.
        t.write('jail.local', '[pbx]\nmaxretry = 4\naction = record[x=1]\n')
        t.proc.send_signal(signal.SIGHUP)
        t.wait_for('bantam.log', 'Reload finished.', count=2)
        t.wait_action('stop2')
        t.wait_action('ban 198.51.100.1', count=2)
        t.wait_action('ban 203.0.113.1', count=2)
        acts = t.actions()
        expect('unban2 192.0.2.2' in acts, 'removed jail lifts its bans: %s' % acts)
        expect(acts.count('stop') == 1 and acts.count('start') == 2, acts)
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
        acts = t.actions()
        expect('unban 198.51.100.1' in acts and 'unban 203.0.113.1' in acts, acts)
    finally:
        t.cleanup()


def ignorecommand(t):
    try:
        t.write('jail.local', '[pbx]\nignorecommand = sleep 0.3; [ "<ip>" = 192.0.2.200 ]\n')
        t.start()
        t.fail('192.0.2.200', 3)
        t.fail('192.0.2.201', 3)
        t.wait_action('ban 192.0.2.201')
        t.wait_for('bantam.log', 'Ignore 192.0.2.200 by command', count=3)
        expect('ban 192.0.2.200' not in t.actions(), t.actions())
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def bad_jail(t):
    try:
        t.write('filter.d/broken.conf', '[Definition]\nfailregex = ^oops ( <HOST>\n')
        t.write('action.d/pyact.py', 'class Action: pass\n')
        t.write('jail.local', '[broken]\nenabled = true\nfilter = broken\nlogpath = %s/pbx.log\n'
                '[py]\nenabled = true\nfilter = pbx\naction = pyact.py\nlogpath = %s/pbx.log\n'
                % (t.dir, t.dir))
        t.start()
        t.fail('192.0.2.60', 3)
        t.wait_action('ban 192.0.2.60')
        log = t.read('bantam.log')
        expect('ERROR   %s/filter.d/broken.conf:2: [broken] cannot compile failregex' % t.dir in log, log)
        expect('ERROR   %s/jail.local:8: [py] action \'pyact\' is a Python action' % t.dir in log, log)
        expect("Jail 'broken' started" not in log and "Jail 'py' started" not in log, log)
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def late_logfile(t):
    try:
        os.unlink(os.path.join(t.dir, 'pbx.log'))
        t.start()
        time.sleep(0.3)
        t.fail('192.0.2.77', 3)  # creates the file
        t.wait_for('actions.log', 'ban 192.0.2.77')
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


def journal_backend(t):
    """backend = systemd[journalfiles=...] on a real journal file (written by
    systemd-journal-remote) with entries from the last minute."""
    try:
        now_us = int(time.time() * 1e6)
        entries = []
        for i, (unit, ip) in enumerate([('pbx.service', '192.0.2.88')] * 3 +
                                       [('other.service', '192.0.2.99')] * 3):
            ts = now_us - (30 - i) * 1000000
            entries.append('\n'.join([
                '__CURSOR=s=x;i=%d' % i, '__REALTIME_TIMESTAMP=%d' % ts,
                '__MONOTONIC_TIMESTAMP=%d' % (ts // 2), '_BOOT_ID=0123456789abcdef0123456789abcdef',
                '_HOSTNAME=pbx', 'SYSLOG_IDENTIFIER=pbxd', '_PID=%d' % (100 + i),
                '_SYSTEMD_UNIT=' + unit, 'MESSAGE=auth failed from ' + ip]) + '\n')
        journal = os.path.join(t.dir, 'test.journal')
        subprocess.run([JOURNAL_REMOTE, '-o', journal, '-'],
                       input='\n'.join(entries), text=True, check=True, capture_output=True)
        t.write('filter.d/pbx.conf', '[Definition]\nfailregex = ^\\S+ \\S+: auth failed from <HOST>$\n'
                'journalmatch = _SYSTEMD_UNIT=pbx.service\n')
        t.write('jail.local', '[pbx]\nbackend = systemd[journalfiles=%s]\n' % journal)
        t.start()
        t.wait_for('actions.log', 'ban 192.0.2.88')
        time.sleep(0.5)
        expect('192.0.2.99' not in t.read('bantam.log'), 'journalmatch not applied:\n' + t.read('bantam.log'))
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
        # The restart resumes after the last entry read: the ban comes back
        # from the database, the entries are not counted again.
        found = t.read('bantam.log').count('Found 192.0.2.88')
        expect(found == 3, 'three entries found: %d' % found)
        t.start()
        t.wait_for('bantam.log', 'Restore Ban 192.0.2.88')
        time.sleep(0.5)
        expect(t.read('bantam.log').count('Found 192.0.2.88') == found,
               'journal entries read again after restart:\n' + t.read('bantam.log'))
        rc, out = t.stop()
        expect(rc == 0, 'exit %d: %s' % (rc, out))
    finally:
        t.cleanup()


if not os.path.exists(BANTAMD):
    print('FATAL: %s missing' % BANTAMD)
    sys.exit(1)
for tool, package in ((LOGROTATE, 'logrotate'), (JOURNAL_REMOTE, 'systemd-journal-remote')):
    if not os.access(tool, os.X_OK):
        print('FATAL: needs %s (Debian package %s); set up with packaging/setup.sh'
              % (tool, package))
        sys.exit(1)
passed = failed = 0
only = os.environ.get("E2E_ONLY")
for name, fn in (('ban-unban', ban_unban), ('kill9-restore', kill9_restore),
                 ('restart-no-ban-resume', restart_no_ban_resume),
                 ('logrotate', logrotate), ('copytruncate', copytruncate),
                 ('reload', reload), ('ignorecommand', ignorecommand),
                 ('bad-jail', bad_jail), ('late-logfile', late_logfile),
                 ('journal-backend', journal_backend)):
    if only and name != only:
        continue
    try:
        fn(Tree())
        passed += 1
        print('ok   %s' % name)
    except AssertionError as e:
        failed += 1
        print('FAIL %s: %s' % (name, e))
print('%d passed, %d failed' % (passed, failed))
sys.exit(1 if failed else 0)
