#!/usr/bin/env python3
"""backend = ami end to end: bantamd on the bundled configuration, its
asterisk jail reading security events from a scripted AMI server
(tests/testing/ami_server.py) on the loopback, with a recording shell
action; bantam-regex on a saved AMI capture; bantam -t on bad AMI options.

Scenarios (each with its own temp tree and server):
  ban           Informational events (ChallengeSent, SuccessfulAuth) never
                ban; Error events ban their RemoteAddress, IPv4 and IPv6;
                `bantam status asterisk` counts them and shows the
                connection; after `bantam reload` the jail logs in again and
                still bans; `bantam stop asterisk` hangs up, `bantam reload
                asterisk` starts it again: it logs in and bans
  outage        no server at start: one WARNING however many retries, the
                retries back off (1 s, 2 s, 4 s: no busy loop); the server
                comes up: INFO, then events ban
  closes-at-once  a server that accepts and hangs up: one WARNING, backoff
  login-refused a wrong secret: one ERROR naming the user and the host,
                never the secret; the status says so
  mid-message   the server drops the connection in the middle of an event:
                that event is lost, bantamd reconnects, later events ban
  trickle       an event sent a byte every 50 ms while a file jail reads its
                log: the file jail bans at once, the trickled event counts
                when it is complete
  garbage       a 70 KiB message and an unframed one are dropped with a
                WARNING each; the next event bans
  secret-perms  a secret_file readable by every user: a WARNING at start
  config-test   bantam -t: an unknown AMI option is a file:line error, exit 1
  regex-capture bantam-regex reads a saved AMI capture with the bundled
                asterisk filter: the Error events match; Informational ones
                are skipped, as bantamd skips them
Ends with "N passed, M failed".
"""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
ap.add_argument('--keep', action='store_true')
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)
BIN = os.path.dirname(BANTAM)
BANTAMD = os.path.join(BIN, 'bantamd')
BANTAM_REGEX = os.path.join(BIN, 'bantam-regex')
SOURCE = os.path.abspath(args.source_dir)
sys.path.insert(0, os.path.join(SOURCE, 'tests', 'testing'))
from ami_server import AmiServer, security_event, BANNER  # noqa: E402

SECRET = 'n0t-in-the-log-7f3a'


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def poll(fn, timeout, interval=0.05):
    end = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() >= end:
            return v
        time.sleep(interval)


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Tree:
    """A copy of config/ with an AMI asterisk jail and a file jail `pbx`."""

    def __init__(self, port, secret=SECRET, mode=0o600, ami_opts=''):
        self.dir = tempfile.mkdtemp(prefix='bantam-ami-')
        d = self.dir
        self.conf = os.path.join(d, 'conf')
        shutil.copytree(os.path.join(SOURCE, 'config'), self.conf)
        self.sock = os.path.join(d, 'bantam.sock')
        self.write('conf/fail2ban.local', '[Definition]\nloglevel = DEBUG\nlogtarget = %s/bantam.log\n'
                   'socket = %s\npidfile = %s/bantamd.pid\ndbfile = %s/db.sqlite3\n'
                   % (d, self.sock, d, d))
        self.write('conf/action.d/record.conf', '''[Definition]
actionstart = echo start-<name> >> %(d)s/actions.log
actionstop = echo stop-<name> >> %(d)s/actions.log
actionban = echo ban-<name> <ip> >> %(d)s/actions.log
actionunban = echo unban-<name> <ip> >> %(d)s/actions.log
''' % {'d': d})
        self.write('conf/filter.d/pbx.conf', '[Definition]\nfailregex = ^\\s*auth failed from <HOST>$\n')
        self.secret_file = os.path.join(d, 'ami.secret')
        self.write('ami.secret', secret + '\n')
        os.chmod(self.secret_file, mode)
        self.port = port
        self.write_jails(ami_opts)
        self.write('pbx.log', '')
        self.proc = None

    def write_jails(self, ami_opts=''):
        self.write('conf/jail.local', '''[DEFAULT]
ignoreself = false
ignoreip =
[sshd]
enabled = false
[asterisk-ami]
enabled = false
[asterisk]
enabled = true
backend = ami[host=127.0.0.1, port=%d, username=bantam, secret_file=%s%s]
action = record
maxretry = 2
findtime = 10m
bantime = 1h
[pbx]
enabled = true
filter = pbx
logpath = %s/pbx.log
action = record
maxretry = 1
''' % (self.port, self.secret_file, ami_opts, self.dir))

    def write(self, rel, text, mode='w'):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, mode) as f:
            f.write(text)

    def read(self, rel):
        try:
            with open(os.path.join(self.dir, rel), errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def log(self):
        return self.read('bantam.log')

    def start(self):
        ready = self.log().count('Server ready')
        self.out = open(os.path.join(self.dir, 'stdout.txt'), 'ab')
        self.proc = subprocess.Popen([BANTAMD, '-f', '-x', '-c', self.conf],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        self.wait_log('Server ready', ready + 1)

    def wait_log(self, text, count=1, timeout=10):
        def seen():
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError('bantamd exited (%s):\n%s' % (self.proc.returncode, self.tail()))
            return self.log().count(text) >= count
        expect(poll(seen, timeout), 'timed out waiting for %r x%d:\n%s' % (text, count, self.tail()))

    def wait_action(self, line, timeout=10):
        expect(poll(lambda: line in self.actions(), timeout),
               'timed out waiting for action %r: %s\n%s' % (line, self.actions(), self.tail()))

    def actions(self):
        return self.read('actions.log').split('\n')[:-1]

    def client(self, *cmd, check=True):
        r = subprocess.run([BANTAM, '-c', self.conf, '-s', self.sock] + list(cmd),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        out = r.stdout.decode(errors='replace')
        expect(not check or r.returncode == 0, 'bantam %s: exit %d: %s' % (' '.join(cmd), r.returncode, out))
        return out

    def tail(self, n=30):
        return '\n'.join(self.log().splitlines()[-n:])

    def lines(self, pattern):
        return [l for l in self.log().splitlines() if re.search(pattern, l)]

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=20)
        finally:
            self.out.close()
        self.proc = None
        expect(rc == 0, 'bantamd exit %d:\n%s' % (rc, self.tail()))

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.out.close()
            self.proc = None
        if not args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def no_secret_anywhere(self):
        for rel in ('bantam.log', 'stdout.txt'):
            expect(SECRET not in self.read(rel), 'the secret is in %s' % rel)


def status(t):
    return t.client('status', 'asterisk')


def sc_ban(srv, t):
    t.start()
    expect(srv.wait('logins', 1), 'bantamd did not log in:\n' + t.tail())
    login = srv.login_fields[0]
    expect(login.get('Username') == 'bantam' and login.get('Secret') == SECRET and
           login.get('Events') == 'security', 'login action: %r' % {k: v for k, v in login.items() if k != 'Secret'})
    t.wait_log('logged in as')
    for _ in range(3):
        srv.send(security_event('ChallengeSent', 'IPV4/UDP/192.0.2.30/5060'))
        srv.send(security_event('SuccessfulAuth', 'IPV4/UDP/192.0.2.30/5060'))
    srv.send(security_event('InvalidPassword', 'IPV4/UDP/203.0.113.80/5064'))
    srv.send(security_event('ChallengeResponseFailed', 'IPV4/UDP/203.0.113.80/5064'))
    srv.send(security_event('InvalidAccountID', 'IPV6/UDP/2001:db8::1/5060'))
    srv.send(security_event('FailedACL', 'IPV6/UDP/2001:db8::1/5060'))
    t.wait_action('ban-asterisk 203.0.113.80')
    t.wait_action('ban-asterisk 2001:db8::1')
    st = status(t)
    expect('Total failed:\t4' in st, 'status counts the 4 Error events only:\n' + st)
    expect('ami://bantam@127.0.0.1:%d (connected)' % t.port in st, 'status shows the connection:\n' + st)
    expect(not any('192.0.2.30' in a for a in t.actions()), 'informational events banned: %s' % t.actions())
    expect(not t.lines(r'Found 192\.0\.2\.30'), 'informational events counted:\n' + t.tail())
    # reload: the jail is rebuilt (a changed option) and logs in again.
    t.write_jails(', events=security')
    t.client('reload')
    expect(srv.wait('logins', 2), 'no new login after reload:\n' + t.tail())
    t.wait_log('logged in as', 2)
    srv.send(security_event('InvalidPassword', 'IPV4/UDP/198.51.100.9/5060'))
    srv.send(security_event('InvalidAccountID', 'IPV4/UDP/198.51.100.9/5060'))
    t.wait_action('ban-asterisk 198.51.100.9')
    t.client('stop', 'asterisk')
    expect(poll(lambda: srv.conn is None, 5), 'the connection stayed open after stop asterisk')
    t.client('reload', 'asterisk')  # fail2ban's way back for a stopped jail
    expect(srv.wait('logins', 3), 'no new login after reload asterisk:\n' + t.tail())
    t.wait_log('logged in as', 3)
    srv.send(security_event('InvalidPassword', 'IPV4/UDP/198.51.100.10/5060') * 2)
    t.wait_action('ban-asterisk 198.51.100.10')
    errs = t.lines(r' ERROR ')
    expect(not errs, 'errors in the log:\n' + '\n'.join(errs))
    t.stop()
    t.no_secret_anywhere()
    return 'banned v4+v6, 4 counted, logged in again after reload, stop, reload JAIL'


def sc_outage(srv, t):
    # srv is None: nobody listens on t.port yet.
    t0 = time.time()
    t.start()
    t.wait_log('Connection refused')
    time.sleep(3.5)  # attempts at about 0, 1 and 3 s; the next one at 7 s
    warns = t.lines(r'WARNING .*\[asterisk\].*127\.0\.0\.1:%d' % t.port)
    expect(len(warns) == 1, 'one WARNING per outage, got:\n' + '\n'.join(warns))
    retries = t.lines(r'DEBUG .*\[asterisk\].*Connection refused; retrying in')
    expect(1 <= len(retries) <= 3, 'retries after 1 s and 2 s only (no busy loop):\n' + '\n'.join(retries))
    st = status(t)
    expect('(disconnected: connecting: Connection refused)' in st, st)
    srv = AmiServer('127.0.0.1', t.port, 'bantam', SECRET)
    try:
        expect(srv.wait('logins', 1, timeout=12), 'no login after the server came up:\n' + t.tail())
        t.wait_log('connection back')
        info = t.lines(r'INFO .*connection back')
        expect(len(info) == 1, '\n'.join(info))
        srv.send(security_event('InvalidPassword', 'IPV4/UDP/203.0.113.7/5060') * 2)
        t.wait_action('ban-asterisk 203.0.113.7')
        t.stop()
    finally:
        srv.close()
    return 'back after %.1fs' % (time.time() - t0)


def sc_closes_at_once(srv, t):
    srv.mode = 'close'
    t.start()
    t.wait_log('connection closed by Asterisk')
    time.sleep(3.5)
    expect(srv.connections <= 4, '%d connections in 3.5 s: no backoff' % srv.connections)
    warns = t.lines(r'WARNING .*\[asterisk\]')
    expect(len(warns) == 1, 'one WARNING per outage, got:\n' + '\n'.join(warns))
    t.stop()
    return '%d connections' % srv.connections


def sc_login_refused(srv, t):
    srv.mode = 'refuse'
    t.start()
    expect(srv.wait('refused', 2, timeout=8), 'bantamd did not retry the login:\n' + t.tail())
    errors = t.lines(r' ERROR ')
    expect(len(errors) == 1, 'one ERROR per outage:\n' + '\n'.join(errors))
    e = errors[0]
    expect("'bantam'" in e and '127.0.0.1:%d' % t.port in e and 'Authentication failed' in e,
           'the ERROR names user and host: ' + e)
    st = status(t)
    expect("login as 'bantam' refused" in st, st)
    t.stop()
    t.no_secret_anywhere()
    return ''


def sc_mid_message(srv, t):
    t.start()
    expect(srv.wait('logins', 1), t.tail())
    ev = security_event('InvalidPassword', 'IPV4/UDP/203.0.113.21/5060')
    srv.send(ev)
    srv.send(ev[:len(ev) // 2])
    srv.drop()
    t.wait_log('in the middle of a message')
    expect(srv.wait('logins', 2, timeout=5), 'no reconnect:\n' + t.tail())
    srv.send(security_event('InvalidPassword', 'IPV4/UDP/203.0.113.22/5060') * 2)
    t.wait_action('ban-asterisk 203.0.113.22')
    expect('ban-asterisk 203.0.113.21' not in t.actions(), 'the cut event counted: %s' % t.actions())
    t.stop()
    return ''


def sc_trickle(srv, t):
    import threading
    t.start()
    expect(srv.wait('logins', 1), t.tail())
    ev = security_event('InvalidPassword', 'IPV4/UDP/203.0.113.31/5060')
    sender = threading.Thread(target=srv.send, args=(ev * 2,), kwargs={'trickle': 0.01})
    sender.start()
    time.sleep(0.5)
    t0 = time.time()
    t.write('pbx.log', '%s auth failed from 198.51.100.40\n' % time.strftime('%Y-%m-%d %H:%M:%S'), 'a')
    t.wait_action('ban-pbx 198.51.100.40', timeout=5)
    took = time.time() - t0
    expect(sender.is_alive(), 'the trickle ended before the file jail was tested')
    expect(took < 1.5, 'the file jail waited %.2fs behind the trickling AMI peer' % took)
    sender.join()
    t.wait_action('ban-asterisk 203.0.113.31')
    t.stop()
    return 'file jail banned in %.0f ms during the trickle' % (took * 1000)


def sc_garbage(srv, t):
    t.start()
    expect(srv.wait('logins', 1), t.tail())
    big = b'Event: InvalidPassword\r\n' + b''.join(b'X-Fill: %s\r\n' % (b'f' * 200) for _ in range(350))
    srv.send(big + b'RemoteAddress: IPV4/UDP/203.0.113.41/5060\r\n\r\n')
    srv.send(b'Event: InvalidPassword\r\nthis line has no colon\r\n'
             b'RemoteAddress: IPV4/UDP/203.0.113.42/5060\r\n\r\n')
    srv.send(security_event('InvalidPassword', 'IPV4/UDP/203.0.113.43/5060') * 2)
    t.wait_action('ban-asterisk 203.0.113.43')
    warns = t.lines(r'WARNING .*dropped')
    expect(len(warns) == 2, 'one WARNING per dropped message:\n' + '\n'.join(warns))
    expect(not t.lines(r'Found 203\.0\.113\.4[12]'), 'a dropped message counted')
    expect(srv.logins == 1, 'dropping a message must not cost the connection')
    t.stop()
    return ''


def sc_secret_perms(srv, t):
    os.chmod(t.secret_file, 0o644)
    t.start()
    t.wait_log('readable by every user')
    expect(t.lines(r'WARNING .*%s.*readable by every user' % re.escape(t.secret_file)), t.tail())
    t.stop()
    t.no_secret_anywhere()
    return ''


def sc_config_test(srv, t):
    t.write('conf/jail.local', t.read('conf/jail.local').replace('username=bantam', 'username=bantam, prot=5038'))
    r = subprocess.run([BANTAM, '-c', t.conf, '-t'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode(errors='replace')
    expect(r.returncode != 0, 'bantam -t passed an unknown AMI option:\n' + out)
    want = re.compile(r"jail\.local:\d+: \[asterisk\] ami backend: unknown option 'prot'")
    expect(want.search(out), 'no file:line error for the option:\n' + out)
    # An inline secret: accepted with a warning that does not show it.
    t.write_jails()
    text = t.read('conf/jail.local').replace('secret_file=%s' % t.secret_file, 'secret=inline-pw-1234')
    t.write('conf/jail.local', text)
    r = subprocess.run([BANTAM, '-c', t.conf, '-t'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode(errors='replace')
    expect(r.returncode == 0, 'bantam -t refused an inline secret:\n' + out)
    expect('secret_file=' in out and 'inline-pw-1234' not in out, 'warning about the inline secret:\n' + out)
    return ''


def sc_regex_capture(srv, t):
    cap = os.path.join(t.dir, 'ami-capture.txt')
    with open(cap, 'wb') as f:
        f.write(BANNER.encode())
        f.write(b'Response: Success\r\nMessage: Authentication accepted\r\n\r\n')
        f.write(security_event('ChallengeSent', 'IPV4/UDP/192.0.2.30/5060'))
        f.write(security_event('InvalidPassword', 'IPV4/UDP/203.0.113.80/5064'))
        f.write(security_event('SuccessfulAuth', 'IPV4/UDP/192.0.2.30/5060'))
        f.write(security_event('InvalidAccountID', 'IPV6/UDP/2001:db8::1/5060'))
    r = subprocess.run([BANTAM_REGEX, '--print-all-matched', cap,
                        os.path.join(t.conf, 'filter.d', 'asterisk.conf')],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = r.stdout.decode(errors='replace')
    expect(r.returncode == 0, out)
    expect('AMI capture' in out, out)
    m = re.search(r'Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed', out)
    # The two Informational events are no lines at all, as in bantamd.
    expect(m and m.groups() == ('2', '0', '2', '0'), 'expected 2 lines, 2 matched:\n' + out)
    matched = out.split('Matched line(s):', 1)[-1].split('`-', 1)[0] if 'Matched line(s):' in out else ''
    expect('RemoteAddress="IPV4/UDP/203.0.113.80/5064"' in matched and
           'RemoteAddress="IPV6/UDP/2001:db8::1/5060"' in matched and '192.0.2.30' not in matched,
           'the Error events match, the others not:\n' + out)
    return ''


SCENARIOS = (
    ('ban', sc_ban, True), ('outage', sc_outage, False), ('closes-at-once', sc_closes_at_once, True),
    ('login-refused', sc_login_refused, True), ('mid-message', sc_mid_message, True),
    ('trickle', sc_trickle, True), ('garbage', sc_garbage, True),
    ('secret-perms', sc_secret_perms, True), ('config-test', sc_config_test, False),
    ('regex-capture', sc_regex_capture, False),
)


def main():
    for tool in (BANTAMD, BANTAM, BANTAM_REGEX):
        if not os.path.exists(tool):
            print('FATAL: %s missing' % tool)
            return 1
    only = os.environ.get('AMI_ONLY')
    passed = failed = 0
    for name, fn, with_server in SCENARIOS:
        if only and name != only:
            continue
        srv = AmiServer('127.0.0.1', 0, 'bantam', SECRET) if with_server else None
        t = Tree(srv.port if srv else free_port())
        t0 = time.time()
        try:
            note = fn(srv, t)
            passed += 1
            print('ok   %s (%.1fs)%s' % (name, time.time() - t0, ' ' + note if note else ''), flush=True)
        except AssertionError as e:
            failed += 1
            print('FAIL %s: %s' % (name, e), flush=True)
        finally:
            t.cleanup()
            if srv:
                srv.close()
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
