#!/usr/bin/env python3
"""Issue 18 end to end: the real bantamd counts and bans IPv6 (and IPv4)
failures by prefix, and the kernel blocks the whole network.

Two network namespaces, `def` (bantamd, a TCP listener) and `atk`, joined
by a veth pair: def has 2001:db8::1/32 and 198.51.0.1/16, so every address
below is on the link; atk holds 50 addresses of 2001:db8:1:2::/64 (nodad),
one of 2001:db8:1:3::/64, and 198.51.100.77 and 198.51.101.1. The jail reads
an asterisk log the test appends failed registrations to.

Cases (PFX_ONLY=name runs one):
  nft-prefix6       prefix6 = 64, prefix4 = 24, maxretry 5, native
                    nftables[type=allports, protocol=tcp]: one failure each
                    from 1,000 addresses of 2001:db8:1:2::/64 and from five
                    of 198.51.100.0/24 ban 2001:db8:1:2::/64 and
                    198.51.100.0/24, once each: in the log, `bantam banned`,
                    `bantam status pfx --json` and the kernel's interval set
                    (no single address of them there); a TCP connection from
                    2001:db8:1:2::beef (not among the 1,000) and from
                    198.51.100.77 is refused, one from 2001:db8:1:3::1 and
                    198.51.101.1 gets through
  iptables-prefix6  the same through iptables-allports[protocol=tcp]: the
                    shell action gets the CIDR text as <ip> (ip6tables -S
                    shows -s 2001:db8:1:2::/64)
  nft-aggregate6    aggregate6 = 64:3, maxretry 2: three addresses of the
                    /64 banned one by one, then the log says "Ban
                    2001:db8:1:2::/64 (aggregated 3 addresses)" and the
                    kernel set holds the /64 and none of the three

Needs root, ip, nft, iptables/ip6tables. Under CI (CI set) a missing tool is
a failure naming its Debian package; otherwise the test says SKIP.
"""
import argparse
import json
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

NET6 = '2001:db8:1:2::/64'
NET4 = '198.51.100.0/24'
PROBE_IN6 = '2001:db8:1:2::beef'   # in the /64, not one of the failing addresses
PROBE_OUT6 = '2001:db8:1:3::1'     # the next /64
PROBE_IN4 = '198.51.100.77'
PROBE_OUT4 = '198.51.101.1'
DEF6, DEF4 = '2001:db8::1', '198.51.0.1'
PORT = 5061


TOOLS = (('ip', 'Debian package iproute2'), ('nft', 'Debian package nftables'),
         ('iptables', 'Debian package iptables'), ('ip6tables', 'Debian package iptables'),
         (BANTAMD, 'build it first'), (BANTAM, 'build it first'))
NAMESPACES = Namespaces('btpfx')


# The listener in `def`: accepts, records the peer, closes.
LISTENER = r'''
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(('::', int(sys.argv[2])))
s.listen(64)
print('listening', flush=True)
while True:
    c, a = s.accept()
    h = a[0][7:] if a[0].startswith('::ffff:') else a[0]
    with open(sys.argv[1], 'a') as f:
        f.write(h + '\n')
    c.close()
'''

# One connection attempt from a given source address: ok, refused, timeout.
PROBE = r'''
import socket, sys
src, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_INET6 if ':' in dst else socket.AF_INET, socket.SOCK_STREAM)
s.settimeout(2.0)
try:
    s.bind((src, 0))
    s.connect((dst, port))
    print('ok')
except ConnectionRefusedError:
    print('refused')
except socket.timeout:
    print('timeout')
except OSError as e:
    print('error:%s' % e)
'''


class Topology:
    def __init__(self, root, tag):
        self.defender = NAMESPACES.new(tag + 'd')
        self.attacker = NAMESPACES.new(tag + 'a')
        run(['ip', '-n', self.defender, 'link', 'add', 'veth0', 'type', 'veth',
             'peer', 'name', 'veth1', 'netns', self.attacker])
        run(['ip', '-n', self.defender, 'addr', 'add', DEF4 + '/16', 'dev', 'veth0'])
        run(['ip', '-n', self.defender, '-6', 'addr', 'add', DEF6 + '/32', 'dev', 'veth0', 'nodad'])
        run(['ip', '-n', self.attacker, 'addr', 'add', '198.51.0.2/16', 'dev', 'veth1'])
        run(['ip', '-n', self.attacker, '-6', 'addr', 'add', '2001:db8::2/32', 'dev', 'veth1', 'nodad'])
        self.attacker6 = ['2001:db8:1:2::%x' % (0xbe00 + i) for i in range(49)] + [PROBE_IN6, PROBE_OUT6]
        batch = os.path.join(root, 'addrs-%s.batch' % tag)
        with open(batch, 'w') as f:
            for a in self.attacker6:
                f.write('addr add %s/128 dev veth1 nodad\n' % a)
            for a in (PROBE_IN4, PROBE_OUT4):
                f.write('addr add %s/32 dev veth1\n' % a)
        run(['ip', '-n', self.attacker, '-batch', batch])
        for ns, dev in ((self.defender, 'veth0'), (self.attacker, 'veth1')):
            run(['ip', '-n', ns, 'link', 'set', dev, 'up'])
        # Permanent neighbour entries for the probes' sources: the answers go
        # back without neighbour discovery, which a ban must not be about.
        mac = json.loads(run(['ip', '-n', self.attacker, '-j', 'link', 'show', 'veth1']))[0]['address']
        for a in (PROBE_IN6, PROBE_OUT6, PROBE_IN4, PROBE_OUT4):
            run(['ip', '-n', self.defender, 'neigh', 'replace', a, 'lladdr', mac, 'dev', 'veth0',
                 'nud', 'permanent'])
        self.accepted = os.path.join(root, 'accepted-%s.txt' % tag)
        open(self.accepted, 'w').close()
        self.listener = subprocess.Popen(
            ['ip', 'netns', 'exec', self.defender, sys.executable, '-c', LISTENER, self.accepted, str(PORT)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if self.listener.stdout.readline().strip() != b'listening':
            raise AssertionError('the listener did not start')

    def probe(self, src):
        dst = DEF6 if ':' in src else DEF4
        return run(['ip', 'netns', 'exec', self.attacker, sys.executable, '-c', PROBE, src, dst,
                    str(PORT)]).strip()

    def accepted_from(self):
        """The peer of every connection accepted so far, in order."""
        with open(self.accepted) as f:
            return f.read().split()

    def close(self):
        self.listener.kill()
        self.listener.wait()


def fail_line(ip):
    host = '[%s]' % ip if ':' in ip else ip
    return ("[%s] NOTICE[2112] chan_sip.c: Registration from '\"100\" <sip:100@pbx.example.org>' "
            "failed for '%s:5060' - Wrong password\n" % (time.strftime('%b %e %H:%M:%S'), host))


class Daemon:
    """bantamd on a copy of the bundled config/ in namespace `ns`, one jail
    `pfx` reading {dir}/asterisk.log."""

    def __init__(self, root, tag, ns, jail):
        self.ns = ns
        self.dir = os.path.join(root, tag)
        os.makedirs(self.dir)
        self.conf = os.path.join(self.dir, 'conf')
        shutil.copytree(os.path.join(SOURCE, 'config'), self.conf)
        self.sock = os.path.join(self.dir, 'bantam.sock')
        self.log = os.path.join(self.dir, 'bantam.log')
        self.attack_log = os.path.join(self.dir, 'asterisk.log')
        open(self.attack_log, 'w').close()
        with open(os.path.join(self.conf, 'fail2ban.local'), 'w') as f:
            f.write('[Definition]\nloglevel = DEBUG\nlogtarget = %s\nsocket = %s\n'
                    'pidfile = %s/bantam.pid\ndbfile = %s/db.sqlite3\n'
                    % (self.log, self.sock, self.dir, self.dir))
        with open(os.path.join(self.conf, 'jail.local'), 'w') as f:
            f.write('[DEFAULT]\nignoreself = false\nignoreip =\n[sshd]\nenabled = false\n'
                    '[asterisk]\nenabled = false\n[asterisk-ami]\nenabled = false\n'
                    '[pfx]\nenabled = true\nfilter = asterisk\nlogpath = %s\nfindtime = 10m\n'
                    'bantime = 1h\n%s' % (self.attack_log, jail))
        self.proc = None

    def start(self):
        self.out = open(os.path.join(self.dir, 'stdout.txt'), 'ab')
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns, BANTAMD, '-f', '-x', '-c', self.conf],
                                     stdout=self.out, stderr=subprocess.STDOUT)
        if not poll(lambda: self.alive() and 'Server ready' in self.text(), 30):
            raise AssertionError('bantamd did not start:\n%s' % self.tail())

    def alive(self):
        if self.proc.poll() is not None:
            raise AssertionError('bantamd exited %s:\n%s' % (self.proc.returncode, self.tail()))
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
        self.out.close()

    def text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def tail(self, n=30):
        return '\n'.join(self.text().splitlines()[-n:])

    def client(self, *cmd):
        return run([BANTAM, '-c', self.conf, '-s', self.sock] + list(cmd), check=False)

    def fail(self, ips):
        with open(self.attack_log, 'a') as f:
            f.write(''.join(fail_line(ip) for ip in ips))

    def ban_lines(self, ident):
        return re.findall(r'\[pfx\] Ban %s(?: \(.*\))?$' % re.escape(ident), self.text(), re.M)

    def errors(self):
        return [l for l in self.text().splitlines() if ' ERROR ' in l or 'CRITICAL' in l]


def banned_json(d):
    try:
        return json.loads(d.client('banned', '--json')).get('banned', {}).get('pfx', [])
    except ValueError:
        return []


def status_json(d):
    try:
        return json.loads(d.client('status', 'pfx', '--json'))
    except ValueError:
        return {}


def prefix_case(c, root, name, action, kernel_check):
    topo = Topology(root, name[:3])
    d = Daemon(root, name, topo.defender, 'maxretry = 5\nprefix6 = 64\nprefix4 = 24\naction = %s\n' % action)
    try:
        d.start()
        c.check(topo.probe(PROBE_IN6) == 'ok' and topo.probe(PROBE_IN4) == 'ok',
                '%s: %s and %s connect before any ban' % (name, PROBE_IN6, PROBE_IN4))
        attackers = ['2001:db8:1:2::%x' % (i + 1) for i in range(1000)]
        d.fail(attackers + ['198.51.100.%d' % (i + 1) for i in range(5)])
        c.check(poll(lambda: d.ban_lines(NET6) and d.ban_lines(NET4), 20),
                '%s: the log says Ban %s and Ban %s' % (name, NET6, NET4))
        time.sleep(1.0)  # the other 995 failures are read too
        c.check(len(d.ban_lines(NET6)) == 1 and len(d.ban_lines(NET4)) == 1,
                '%s: one ban each, not one per address (%d, %d)'
                % (name, len(d.ban_lines(NET6)), len(d.ban_lines(NET4))))
        c.check(not re.search(r'\[pfx\] Ban 2001:db8:1:2::[0-9a-f]+$', d.text(), re.M),
                '%s: no single address of the /64 banned' % name)
        banned = banned_json(d)
        c.check(NET6 in banned and NET4 in banned, '%s: bantam banned --json lists both: %s' % (name, banned))
        st = json.dumps(status_json(d))
        c.check(NET6 in st and NET4 in st, '%s: bantam status pfx --json lists both' % name)
        c.check(kernel_check(topo.defender), '%s: the kernel holds the networks' % name)
        seen = len(topo.accepted_from())
        c.check(topo.probe(PROBE_IN6) != 'ok', '%s: %s (in the /64) is blocked' % (name, PROBE_IN6))
        c.check(topo.probe(PROBE_IN4) != 'ok', '%s: %s (in the /24) is blocked' % (name, PROBE_IN4))
        c.check(len(topo.accepted_from()) == seen, '%s: the listener accepted neither' % name)
        c.check(topo.probe(PROBE_OUT6) == 'ok', '%s: %s (next /64) connects' % (name, PROBE_OUT6))
        c.check(topo.probe(PROBE_OUT4) == 'ok', '%s: %s (next /24) connects' % (name, PROBE_OUT4))
        c.check(not d.errors(), '%s: no ERROR in the log: %s' % (name, d.errors()[:3]))
        if 'nftables' in action:
            c.check(re.search(r"Jail 'pfx': action 'nftables' \(nftables netlink\)", d.text()),
                    '%s: the action runs over netlink, not the shell' % name)
    finally:
        d.stop()
        topo.close()
        if c.failed:
            print(d.tail())


def nft_holds_networks(ns):
    elems = set_elements(ns)
    singles = [e for e in elems if e.startswith('2001:db8:1:2::') and '/' not in e]
    return NET6 in elems and NET4 in elems and not singles


def iptables_hold_networks(ns):
    v6 = run(['ip', 'netns', 'exec', ns, 'ip6tables', '-w', '-S'])
    v4 = run(['ip', 'netns', 'exec', ns, 'iptables', '-w', '-S'])
    return '-s %s ' % NET6 in v6 and '-s %s ' % NET4 in v4


def aggregate_case(c, root):
    name = 'nft-aggregate6'
    topo = Topology(root, 'agg')
    d = Daemon(root, name, topo.defender,
               'maxretry = 2\naggregate6 = 64:3\naction = nftables[type=allports, protocol=tcp]\n')
    try:
        d.start()
        three = ['2001:db8:1:2::a', '2001:db8:1:2::b', '2001:db8:1:2::c']
        for ip in three[:2]:
            d.fail([ip, ip])
            c.check(poll(lambda: d.ban_lines(ip), 10), '%s: %s banned singly' % (name, ip))
        c.check(poll(lambda: set(three[:2]) <= set_elements(topo.defender), 10),
                '%s: the first two are in the kernel set' % name)
        d.fail([three[2], three[2]])
        c.check(poll(lambda: d.ban_lines(three[2]), 10), '%s: %s banned singly' % (name, three[2]))
        c.check(poll(lambda: '[pfx] Ban %s (aggregated 3 addresses)' % NET6 in d.text(), 10),
                '%s: the log says Ban %s (aggregated 3 addresses)' % (name, NET6))
        ok = poll(lambda: NET6 in set_elements(topo.defender)
                  and not set(three) & set_elements(topo.defender), 10)
        c.check(ok, '%s: the kernel set holds the /64 and none of the three: %s'
                % (name, sorted(set_elements(topo.defender))))
        c.check(topo.probe(PROBE_IN6) != 'ok', '%s: %s is blocked' % (name, PROBE_IN6))
        c.check(topo.probe(PROBE_OUT6) == 'ok', '%s: %s connects' % (name, PROBE_OUT6))
        c.check(not d.errors(), '%s: no ERROR in the log: %s' % (name, d.errors()[:3]))
    finally:
        d.stop()
        topo.close()
        if c.failed:
            print(d.tail())


def main():
    rc = require(TOOLS)
    if rc is not None:
        return rc
    NAMESPACES.delete_stale()
    root = tempfile.mkdtemp(prefix='bantam-prefix-')
    c = Checks()
    cases = (
        ('nft-prefix6', lambda: prefix_case(c, root, 'nft-prefix6', 'nftables[type=allports, protocol=tcp]',
                                            nft_holds_networks)),
        ('iptables-prefix6', lambda: prefix_case(c, root, 'iptables-prefix6',
                                                 'iptables-allports[name=PFX, protocol=tcp]',
                                                 iptables_hold_networks)),
        ('nft-aggregate6', lambda: aggregate_case(c, root)),
    )
    only = os.environ.get('PFX_ONLY')
    try:
        for name, fn in cases:
            if only and name != only:
                continue
            print('-- ' + name, flush=True)
            try:
                fn()
            except (AssertionError, subprocess.TimeoutExpired) as e:
                c.check(False, '%s: %s' % (name, e))
    finally:
        NAMESPACES.delete_all()
        if args.keep:
            print('kept ' + root)
        else:
            shutil.rmtree(root, ignore_errors=True)
    print('%d passed, %d failed' % (c.passed, c.failed))
    return 1 if c.failed else 0


if __name__ == '__main__':
    sys.exit(main())
