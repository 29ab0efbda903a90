#!/usr/bin/env python3
"""The fleet's speed (issue 16): two bantamd, A and B, each in a network
namespace of its own with the stock asterisk jail on native nftables and
fleet = share, one redis-server on a unix socket in a temp dir.

  throughput  10,000 bans on A (`set asterisk banip`, 1,000 addresses a
              command) until all 10,000 are in B's kernel set
  latency     N single bans on A, one after the other: from A's log line
              "[asterisk] Ban ADDR" (its millisecond timestamp) to the
              moment `nft monitor` in B's namespace reports the element
              added to B's set; p50, p99, max
  failures    the cost of fleet_failures = yes: F failure lines (distinct
              addresses, so nothing is banned) appended to A's log for a
              jail without it, then for one with it; bantamd's CPU time
              (utime + stime) per failure on A (reading, counting and
              publishing) and on B (counting the fleet's failures)

Arrival in B's kernel is observed with `nft monitor`, so the figures do not
depend on a polling interval. Root; never touches the host's firewall.

usage: bench/fleet_bench.py --bantam build/bantam [--bans 10000] [--singles 200]
"""
import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
ap.add_argument('--bans', type=int, default=10000)
ap.add_argument('--singles', type=int, default=200)
ap.add_argument('--failures', type=int, default=20000)
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)
BANTAMD = os.path.join(os.path.dirname(BANTAM), 'bantamd')
SOURCE = os.path.abspath(args.source_dir)
KEY = 'bench-fleet-secret-0123456789abcdef'


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw).stdout.decode()


def poll(cond, timeout, step=0.02):
    end = time.time() + timeout
    while not cond():
        if time.time() > end:
            return False
        time.sleep(step)
    return True


class Node:
    def __init__(self, root, name, sock):
        self.ns = 'btfleetbench-%d-%s' % (os.getpid(), name)
        run(['ip', 'netns', 'add', self.ns])
        run(['ip', '-n', self.ns, 'link', 'set', 'lo', 'up'])
        self.dir = os.path.join(root, name)
        self.conf = os.path.join(self.dir, 'conf')
        shutil.copytree(os.path.join(SOURCE, 'config'), self.conf)
        self.log = os.path.join(self.dir, 'bantam.log')
        key = os.path.join(self.dir, 'fleet.key')
        with open(key, 'w') as f:
            f.write(KEY + '\n')
        os.chmod(key, 0o600)
        open(os.path.join(self.dir, 'asterisk.log'), 'w').close()
        with open(os.path.join(self.conf, 'fail2ban.local'), 'w') as f:
            f.write('[Definition]\nlogtarget = %s\nsocket = %s/bantam.sock\npidfile = %s/bantam.pid\n'
                    'dbfile = %s/db.sqlite3\n[Fleet]\nredis = unix:%s\nnode = %s\nkey_file = %s\n'
                    % (self.log, self.dir, self.dir, self.dir, sock, name, key))
        with open(os.path.join(self.conf, 'jail.local'), 'w') as f:
            f.write('[DEFAULT]\nignoreself = false\n[sshd]\nenabled = false\n[asterisk]\nenabled = true\n'
                    'logpath = %s/asterisk.log\nbantime = 3600\nfleet = share\n'
                    '[spread]\nenabled = true\nfilter = asterisk\nport = 5060\nlogpath = %s/spread.log\n'
                    'bantime = 3600\nfleet = share\nfleet_failures = yes\n' % (self.dir, self.dir))
        open(os.path.join(self.dir, 'spread.log'), 'w').close()
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', self.ns, BANTAMD, '-f', '-x', '-c', self.conf],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not poll(lambda: 'Server ready' in self.text(), 30):
            raise SystemExit('%s did not start' % name)

    def text(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def cpu(self):
        pid = int(open(os.path.join(self.dir, 'bantam.pid')).read().split()[0])
        fields = open('/proc/%d/stat' % pid).read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')

    def client(self, *cmd):
        return run([BANTAM, '-c', self.conf] + list(cmd))

    def close(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        subprocess.run(['ip', 'netns', 'delete', self.ns], stderr=subprocess.DEVNULL)


class Monitor:
    """`nft monitor` in a namespace: when each address was added to a set."""

    def __init__(self, ns):
        self.added = {}
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', ns, 'nft', 'monitor', 'elements'],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()

    def read(self):
        for raw in self.proc.stdout:
            now = time.time()
            line = raw.decode(errors='replace')
            if not line.startswith('add element'):
                continue
            body = line[line.find('{') + 1:line.rfind('}')]
            for item in body.split(','):
                ip = item.strip().split(' ')[0]
                if ip:
                    self.added.setdefault(ip, now)

    def close(self):
        self.proc.kill()


def log_time(text, ip):
    m = re.search(r'^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*\[asterisk\] Ban %s$' % re.escape(ip), text, re.M)
    if not m:
        return None
    return datetime.datetime.strptime(m.group(1), '%Y-%m-%d %H:%M:%S,%f').timestamp()


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    if os.geteuid() != 0:
        raise SystemExit('needs root (network namespaces)')
    root = tempfile.mkdtemp(prefix='bantam-fleet-bench-')
    sock = os.path.join(root, 'redis.sock')
    redis = subprocess.Popen(['redis-server', '--port', '0', '--unixsocket', sock, '--unixsocketperm', '700',
                              '--dir', root, '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = []
    mon = None
    try:
        poll(lambda: os.path.exists(sock), 10)
        a = Node(root, 'pbxa', sock)
        b = Node(root, 'pbxb', sock)
        nodes = [a, b]
        mon = Monitor(b.ns)
        time.sleep(0.5)

        # Throughput.
        ips = ['10.%d.%d.%d' % (1 + i // 65536, (i // 256) % 256, i % 256) for i in range(args.bans)]
        t0 = time.time()
        for k in range(0, len(ips), 1000):
            a.client('set', 'asterisk', 'banip', *ips[k:k + 1000])
        t_a = time.time()
        ok = poll(lambda: all(ip in mon.added for ip in ips), 120)
        t1 = max(mon.added[ip] for ip in ips if ip in mon.added)
        print('throughput: %d bans on A (the client done after %.2f s); in B\'s kernel set after %.2f s%s'
              % (len(ips), t_a - t0, t1 - t0, '' if ok else ' (NOT ALL: %d)' % sum(ip in mon.added for ip in ips)))

        # Latency.
        lat = []
        for i in range(args.singles):
            ip = '172.16.%d.%d' % (i // 256, i % 256)
            a.client('set', 'asterisk', 'banip', ip)
            if not poll(lambda: ip in mon.added, 10, 0.005):
                print('latency: %s never reached B' % ip)
                continue
            t_log = None
            poll(lambda: log_time(a.text(), ip) is not None, 5, 0.01)
            t_log = log_time(a.text(), ip)
            lat.append((mon.added[ip] - t_log) * 1000)
            time.sleep(0.02)
        if lat:
            print('latency: %d single bans, A\'s log line to B\'s kernel set: p50 %.1f ms, p99 %.1f ms, max %.1f ms'
                  ' (log timestamps have 1 ms resolution)' % (len(lat), pct(lat, 50), pct(lat, 99), max(lat)))

        # fleet_failures: CPU per failure.
        def failures(jail, base):
            lines = ''.join("[%s] NOTICE[2112] chan_sip.c: Registration from '\"100\" <sip:100@pbx.example.org>' "
                            "failed for '10.%d.%d.%d:5060' - Wrong password\n"
                            % (time.strftime('%b %e %H:%M:%S'), base, i // 256, i % 256)
                            for i in range(args.failures))
            before = a.text().count('[%s] Found 10.%d.' % (jail, base))
            ca, cb = a.cpu(), b.cpu()
            with open(os.path.join(a.dir, jail + '.log' if jail == 'spread' else 'asterisk.log'), 'a') as f:
                f.write(lines)
            poll(lambda: a.text().count('[%s] Found 10.%d.' % (jail, base)) - before >= args.failures, 300, 0.2)
            if jail == 'spread':
                poll(lambda: b.text().count('[spread] Found 10.%d.' % base) >= args.failures, 300, 0.2)
            time.sleep(1)  # the last publishes and the idle turn after them
            return a.cpu() - ca, b.cpu() - cb
        plain_a, plain_b = failures('asterisk', 200)
        shared_a, shared_b = failures('spread', 201)
        n = args.failures
        print('failures: %d failure lines on A; CPU per failure without fleet_failures: A %.1f us; '
              'with: A %.1f us (+%.1f us to publish), B %.1f us to count it (B idle baseline %.1f us)'
              % (n, plain_a / n * 1e6, shared_a / n * 1e6, (shared_a - plain_a) / n * 1e6,
                 shared_b / n * 1e6, plain_b / n * 1e6))
    finally:
        if mon:
            mon.close()
        for n in nodes:
            n.close()
        redis.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
