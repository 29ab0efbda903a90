#!/usr/bin/env python3
"""The fleet (issue 16, docs/fleet.md) end to end: real bantamd nodes, each
in a network namespace of its own with the stock asterisk jail on native
nftables, sharing one real redis-server started here on a unix socket in a
temp dir (a unix socket reaches across network namespaces). Node C has the
first attacker in its ignoreip. Every jail has fleet = share.

Cases, in order, on the same fleet:
  brute-force     4 failures on A: the address is in B's kernel set with
                  "Ban ADDR (fleet: pbxa)" in B's log, not in C's (ignoreip),
                  and A does not see its own ban come back
  status          `bantam status` shows the fleet; `get asterisk fleet`
  operator-unban  a ban from A reaches B and C; `set asterisk unbanip` on B
                  lifts it on A and C
  redis-outage    redis-server killed -9, A bans 100 addresses meanwhile
                  (locally at once, one WARNING), redis restarted: all 100
                  reach B and C, each applied once
  kill9-resume    B killed -9, A bans 50 more, B restarted: B applies the
                  50 it missed, each once, and none of the earlier ones again
  forged          entries written with redis-cli with a wrong mac and with
                  none are dropped with a warning; their addresses stay out
  flood           100,000 malformed entries: the reader goes on (a ban made
                  after them arrives), warnings stay rate-limited, B's
                  memory does not grow with them
  late-starter    a ban whose time is over before node D starts is not
                  applied by D; a live one is, and an unbanned one is not

Needs root, ip, nft, redis-server, redis-cli. Under CI (CI set) a missing
tool is a failure naming its Debian package; otherwise the test says SKIP.
"""
import argparse
import os
import re
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
BANTAM = os.path.abspath(args.bantam)
BANTAMD = os.path.join(os.path.dirname(BANTAM), 'bantamd')
SOURCE = os.path.abspath(args.source_dir)
sys.path.insert(0, os.path.join(SOURCE, 'tests', 'testing'))
from nft_sets import set_elements  # noqa: E402
from netns_script import Checks, Namespaces, poll, require, run  # noqa: E402
REDIS_SERVER = '/usr/bin/redis-server'
REDIS_CLI = '/usr/bin/redis-cli'
KEY = 'test-fleet-secret-0123456789abcdef'
STREAM = 'bantam:bans'
REDIS_PASSWORD = 'test-redis-password-42'


TOOLS = ((REDIS_SERVER, 'Debian package redis-server'), (REDIS_CLI, 'Debian package redis-tools'),
         ('ip', 'Debian package iproute2'), ('nft', 'Debian package nftables'))
NAMESPACES = Namespaces('btfleet')


class Redis:
    def __init__(self, root):
        self.dir = os.path.join(root, 'redis')
        os.makedirs(self.dir)
        self.sock = os.path.join(self.dir, 'redis.sock')
        self.proc = None
        # The nodes log in as the ACL user docs/fleet.md sets up (the
        # bantam keys and the commands bantam sends, nothing else); the
        # test's redis-cli, as the default user, plays whoever else can
        # write to Redis.
        self.acl = os.path.join(self.dir, 'users.acl')
        with open(self.acl, 'w') as f:
            f.write('user default on nopass ~* &* +@all\n'
                    'user bantam on >%s ~bantam:* resetchannels -@all +xadd +xread +xrange +select +auth\n'
                    % REDIS_PASSWORD)

    def start(self):
        # Its data survives a kill -9 (appendfsync always), as a production
        # Redis with AOF does; port 0: no TCP at all.
        self.proc = subprocess.Popen(
            [REDIS_SERVER, '--port', '0', '--unixsocket', self.sock, '--unixsocketperm', '700',
             '--dir', self.dir, '--aclfile', self.acl, '--appendonly', 'yes', '--appendfsync', 'always', '--save', '',
             '--daemonize', 'no', '--logfile', os.path.join(self.dir, 'redis.log')],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not poll(lambda: self.cli('PING', check=False).strip() == 'PONG', 10):
            raise AssertionError('redis-server did not start')

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def cli(self, *argv, check=True):
        return run([REDIS_CLI, '-s', self.sock] + list(argv), check=check)


class Node:
    def __init__(self, root, name, redis, ignoreip=''):
        self.name = name
        self.node = 'pbx' + name.lower()
        self.ns = NAMESPACES.new(name.lower())
        self.dir = os.path.join(root, name)
        self.conf = os.path.join(self.dir, 'conf')
        shutil.copytree(os.path.join(SOURCE, 'config'), self.conf)
        self.log = os.path.join(self.dir, 'bantam.log')
        self.attack_log = os.path.join(self.dir, 'asterisk.log')
        open(self.attack_log, 'w').close()
        key = os.path.join(self.dir, 'fleet.key')
        with open(key, 'w') as f:
            f.write(KEY + '\n')
        os.chmod(key, 0o600)
        password = os.path.join(self.dir, 'redis.pass')
        with open(password, 'w') as f:
            f.write(REDIS_PASSWORD + '\n')
        os.chmod(password, 0o600)
        with open(os.path.join(self.conf, 'fail2ban.local'), 'w') as f:
            f.write('[Definition]\nloglevel = INFO\nlogtarget = %s\nsocket = %s/bantam.sock\n'
                    'pidfile = %s/bantam.pid\ndbfile = %s/db.sqlite3\n\n'
                    '[Fleet]\nredis = unix:%s\nnode = %s\nkey_file = %s\nmaxlen = 1000000\n'
                    'username = bantam\npassword_file = %s\n'
                    % (self.log, self.dir, self.dir, self.dir, redis.sock, self.node, key, password))
        self.spread_log = os.path.join(self.dir, 'spread.log')
        open(self.spread_log, 'w').close()
        with open(os.path.join(self.conf, 'jail.local'), 'w') as f:
            f.write('[DEFAULT]\nignoreself = false\nignoreip = %s\n[sshd]\nenabled = false\n'
                    '[asterisk]\nenabled = true\nlogpath = %s\nbantime = 3600\nfleet = share\n'
                    '[spread]\nenabled = true\nfilter = asterisk\nport = 5060\nlogpath = %s\n'
                    'maxretry = 4\nbantime = 3600\nfleet = share\nfleet_failures = yes\n'
                    % (ignoreip, self.attack_log, self.spread_log))
        self.proc = None

    def start(self):
        ready = self.text().count('Server ready')
        self.out = open(os.path.join(self.dir, 'stdout.txt'), 'ab')
        # Under AddressSanitizer (tests/run.sh's second pass) freed memory
        # waits in a 256 MB quarantine, which the flood's RSS check would
        # count as growth; a small one keeps the check meaningful there
        # (and changes nothing for a plain build).
        env = dict(os.environ)
        env['ASAN_OPTIONS'] = ':'.join(filter(None, [env.get('ASAN_OPTIONS'), 'quarantine_size_mb=4']))
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns, BANTAMD, '-f', '-x', '-c', self.conf],
                                     stdout=self.out, stderr=subprocess.STDOUT, env=env)
        if not poll(lambda: self.alive() and self.text().count('Server ready') > ready, 30):
            raise AssertionError('%s did not start:\n%s' % (self.name, self.tail()))

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError('%s exited %s:\n%s' % (self.name, self.proc.returncode, self.tail()))
        return True

    def stop(self):
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def tail(self, n=25):
        return '\n'.join(self.text().splitlines()[-n:])

    def client(self, *cmd, check=True):
        return run([BANTAM, '-c', self.conf] + list(cmd), check=check)

    def fail(self, ip, n=4, log=None):
        stamp = time.strftime('%b %e %H:%M:%S')
        with open(log or self.attack_log, 'a') as f:
            for _ in range(n):
                f.write("[%s] NOTICE[2112] chan_sip.c: Registration from '\"100\" "
                        "<sip:100@pbx.example.org>' failed for '%s:5060' - Wrong password\n"
                        % (stamp, ip))

    def bans(self):
        return set_elements(self.ns)

    def fleet_bans(self, ip):
        """How many times the log says the fleet banned `ip` here."""
        return len(re.findall(r'\[asterisk\] Ban %s \(fleet: pbx\w\)$' % re.escape(ip), self.text(), re.M))

    def rss_kib(self):
        pid = int(open(os.path.join(self.dir, 'bantam.pid')).read().split()[0])
        for line in open('/proc/%d/status' % pid):
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
        return 0


def wait_in(node, ips, timeout=15):
    ips = set(ips)
    return poll(lambda: ips <= node.bans(), timeout, 0.1)


def wait_out(node, ips, timeout=15):
    ips = set(ips)
    return poll(lambda: not (ips & node.bans()), timeout, 0.1)


def main():
    rc = require(TOOLS)
    if rc is not None:
        return rc
    NAMESPACES.delete_stale()
    root = tempfile.mkdtemp(prefix='bantam-fleet-')
    c = Checks()
    redis = Redis(root)
    nodes = []
    try:
        redis.start()
        a = Node(root, 'A', redis)
        b = Node(root, 'B', redis)
        cc = Node(root, 'C', redis, ignoreip='198.51.100.7')
        nodes += [a, b, cc]
        print('-- config-check')
        ok = run([BANTAM, '-c', a.conf, '-t'], check=False)
        c.check('OK: configuration test is successful' in ok, 'bantam -t accepts the fleet configuration')
        edits = (('jail.local', 'fleet_failures = yes\n', 'fleet_failures = maybe\n'),
                 ('fail2ban.local', 'maxlen = ', 'db = zero\nmaxlen = '))
        for name, good, wrong in edits:
            path = os.path.join(a.conf, name)
            text = open(path).read()
            with open(path, 'w') as f:
                f.write(text.replace(good, wrong))
        bad = run([BANTAM, '-c', a.conf, '-t'], check=False)
        c.check(re.search(r'jail\.local:\d+: fleet_failures = maybe: expected yes or no', bad) is not None
                and re.search(r'fail2ban\.local:\d+: \[Fleet\] db zero: expected a database number', bad)
                is not None and 'ERROR: test configuration failed' in bad,
                'bantam -t reports bad fleet values with file:line: %r' % bad.splitlines()[-3:])
        for name, good, wrong in edits:
            path = os.path.join(a.conf, name)
            text = open(path).read()
            with open(path, 'w') as f:
                f.write(text.replace(wrong, good))
        for n in (a, b, cc):
            n.start()
        t0 = time.time()

        print('-- brute-force')
        a.fail('198.51.100.7')
        c.check(wait_in(a, ['198.51.100.7'], 10), 'A bans 198.51.100.7 after 4 failures')
        c.check(wait_in(b, ['198.51.100.7'], 10), "198.51.100.7 reaches B's kernel set")
        c.check(poll(lambda: b.fleet_bans('198.51.100.7') == 1, 5),
                "B logs '[asterisk] Ban 198.51.100.7 (fleet: pbxa)'")
        c.check(poll(lambda: 'Ignore 198.51.100.7 by ip' in cc.text(), 10),
                "C ignores it by its ignoreip")
        time.sleep(0.5)
        c.check('198.51.100.7' not in cc.bans(), "198.51.100.7 stays out of C's kernel set")
        c.check(a.text().count('Ban 198.51.100.7') == 1 and a.fleet_bans('198.51.100.7') == 0,
                'A sees its own ban once: no echo from the stream')
        c.check(b.text().count('Ban 198.51.100.7') == 1, 'B does not publish it again (one Ban line)')

        print('-- fleet-failures')
        # 2 + 1 + 1 guesses on three nodes: maxretry 4 is reached only by
        # counting the fleet's failures.
        spread = '198.51.100.77'
        a.fail(spread, 2, a.spread_log)
        c.check(poll(lambda: b.text().count('[spread] Found %s (fleet: pbxa)' % spread) == 2
                     and cc.text().count('[spread] Found %s (fleet: pbxa)' % spread) == 2, 10),
                "A's 2 failures are counted on B and C")
        b.fail(spread, 1, b.spread_log)
        c.check(poll(lambda: cc.text().count('[spread] Found %s (fleet: pbxb)' % spread) == 1, 10),
                "B's failure is counted on C")
        cc.fail(spread, 1, cc.spread_log)
        c.check(all(wait_in(n, [spread], 10) for n in (a, b, cc)),
                '4 failures spread over 3 nodes ban the address on all three')
        c.check(a.text().count('Found %s -' % spread) == 2 and b.text().count('Found %s -' % spread) == 1,
                'no node saw more than 2 of them in its own log')
        # The same spread without fleet_failures (the asterisk jail) bans nothing.
        control = '198.51.100.78'
        a.fail(control, 2)
        b.fail(control, 1)
        cc.fail(control, 1)
        c.check(poll(lambda: 'Found %s' % control in cc.text(), 10), 'C counts its own failure')
        time.sleep(1)
        c.check(not any(control in n.bans() for n in (a, b, cc)),
                'without fleet_failures the same spread bans nothing')
        st = a.client('status')
        c.check(re.search(r'Fleet failures:\s+sent 2, counted 2', st) is not None,
                'status on A counts the failures sent and counted: %r' % st.splitlines()[-1])

        print('-- status')
        st = b.client('status')
        c.check(re.search(r'Fleet:\s+connected to unix:\S+ as pbxb', st) is not None,
                'status on B shows the fleet connected: %r' % st.splitlines()[-5:])
        c.check(re.search(r'Fleet entries behind:\s+0', st) is not None, 'status: 0 entries behind')
        c.check(re.search(r'Fleet last applied:\s+\d+-\d+', st) is not None, 'status: last entry applied')
        c.check(b.client('get', 'asterisk', 'fleet').strip() == 'share', 'get asterisk fleet: share')

        print('-- operator-unban')
        a.client('set', 'asterisk', 'banip', '203.0.113.20')
        c.check(wait_in(b, ['203.0.113.20']) and wait_in(cc, ['203.0.113.20']),
                'an operator ban on A reaches B and C')
        b.client('set', 'asterisk', 'unbanip', '203.0.113.20')
        c.check(wait_out(b, ['203.0.113.20'], 5), 'unbanip on B lifts it on B')
        c.check(wait_out(a, ['203.0.113.20']), 'and on A')
        c.check(wait_out(cc, ['203.0.113.20']), 'and on C')

        print('-- redis-outage')
        redis.kill()
        outage = ['10.1.0.%d' % i for i in range(1, 101)]
        a.client('set', 'asterisk', 'banip', *outage)
        c.check(wait_in(a, outage, 10), 'A bans 100 addresses while Redis is down')
        c.check(poll(lambda: a.text().count('unreachable') >= 1, 10), 'A warns that Redis is unreachable')
        time.sleep(1.5)  # some reconnect attempts fail meanwhile
        redis.start()
        c.check(wait_in(b, outage, 30), 'all 100 reach B once Redis is back')
        c.check(wait_in(cc, outage, 30), 'all 100 reach C')
        c.check(all(b.fleet_bans(ip) == 1 for ip in outage), 'B applied each once')
        c.check(all(cc.fleet_bans(ip) == 1 for ip in outage), 'C applied each once')
        warn = [l for l in a.text().splitlines() if 'WARNING' in l and 'unreachable' in l]
        c.check(len(warn) == 1, 'one WARNING for the outage on A (%d)' % len(warn))
        c.check('connected to Redis unix:%s again' % redis.sock in a.text(), 'A says when it is back')

        print('-- kill9-resume')
        b.kill9()
        missed = ['10.2.0.%d' % i for i in range(1, 51)]
        a.client('set', 'asterisk', 'banip', *missed)
        c.check(wait_in(cc, missed), 'C gets the 50 while B is down')
        b.start()
        c.check(wait_in(b, missed, 20), 'B, restarted, applies the 50 it missed')
        time.sleep(1)
        c.check(all(b.fleet_bans(ip) == 1 for ip in missed), 'each once')
        c.check(all(b.fleet_bans(ip) == 1 for ip in outage) and b.fleet_bans('198.51.100.7') == 1,
                'and none of those it had applied before again')
        c.check(set(outage) <= b.bans(), 'its earlier bans are in force (restored from its database)')

        print('-- forged')
        now = '%.3f' % time.time()
        fields = ['v', '1', 'op', 'ban', 'node', 'pbxa', 'jail', 'asterisk', 'ip', '192.0.2.66',
                  'left', '3600', 'count', '1', 'time', now]
        redis.cli('XADD', STREAM, '*', *(fields + ['mac', '0' * 64]))
        unsigned = list(fields)
        unsigned[9] = '192.0.2.67'
        redis.cli('XADD', STREAM, '*', *unsigned)
        c.check(poll(lambda: re.search(r'WARNING .*Fleet: dropped entry \S+: bad mac', b.text()) is not None, 10),
                'B drops the entry with a wrong mac, with a warning')
        c.check(poll(lambda: re.search(r'WARNING .*Fleet: dropped entry \S+: unsigned', cc.text()) is not None, 10),
                'C drops the unsigned one, with a warning')
        time.sleep(0.5)
        c.check(not ({'192.0.2.66', '192.0.2.67'} & (b.bans() | cc.bans() | a.bans())),
                'neither address is banned anywhere')

        print('-- flood')
        rss0 = b.rss_kib()
        resp = bytearray()
        for i in range(100000):
            v = str(i).encode()
            resp += b'*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$4\r\njunk\r\n$%d\r\n%s\r\n' % (
                len(STREAM), STREAM.encode(), len(v), v)
        p = subprocess.run([REDIS_CLI, '-s', redis.sock, '--pipe'], input=bytes(resp),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        c.check(p.returncode == 0 and b'errors: 0' in p.stdout, '100,000 malformed entries written')
        a.client('set', 'asterisk', 'banip', '192.0.2.99')
        c.check(wait_in(b, ['192.0.2.99'], 30) and wait_in(cc, ['192.0.2.99'], 30),
                'a ban made after the flood still reaches B and C')
        malformed = [l for l in b.text().splitlines() if 'WARNING' in l and 'malformed' in l]
        c.check(1 <= len(malformed) <= 2, 'B warns about them rate-limited (%d lines)' % len(malformed))
        rss1 = b.rss_kib()
        c.check(rss1 - rss0 < 20 * 1024, "B's memory: %d -> %d KiB" % (rss0, rss1))
        st = b.client('status')
        m = re.search(r'Fleet applied:.*dropped (\d+)', st)
        c.check(m is not None and int(m.group(1)) >= 100000, 'status counts the dropped entries: %r'
                % (m.group(0) if m else st))

        print('-- late-starter')
        a.client('set', 'asterisk', 'bantime', '2')
        a.client('set', 'asterisk', 'banip', '198.51.100.50')
        a.client('set', 'asterisk', 'bantime', '3600')
        a.client('set', 'asterisk', 'banip', '198.51.100.51')
        c.check(wait_in(b, ['198.51.100.51']), 'B gets the live ban')
        time.sleep(2.5)
        d = Node(root, 'D', redis)
        nodes.append(d)
        d.start()
        c.check(wait_in(d, ['198.51.100.51', '10.2.0.50', '198.51.100.7'], 30),
                'D, started late, applies the bans still in force')
        c.check('198.51.100.50' not in d.bans() and 'Ban 198.51.100.50' not in d.text(),
                'but not the one whose time was over')
        c.check('203.0.113.20' not in d.bans(), 'nor the one the operator lifted')
        print('fleet cases took %.1f s' % (time.time() - t0))
    except AssertionError as e:
        c.check(False, str(e))
    finally:
        for n in nodes:
            try:
                n.stop()
            except Exception as e:  # cleanup goes on
                print('stop %s: %s' % (n.name, e))
        if redis.proc:
            redis.kill()
        NAMESPACES.delete_all()
        if args.keep:
            print('kept ' + root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print('%d passed, %d failed' % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == '__main__':
    sys.exit(main())
