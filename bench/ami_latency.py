#!/usr/bin/env python3
"""Latency of backend = ami: one AMI security event received -> the
attacker's address an element of the kernel's nft set.

Run as root (a network namespace of its own and nft):

    sudo bench/ami_latency.py [--bantamd build/bantamd] [--count 300] [--dbfile memory|disk]

In a fresh network namespace: the scripted AMI server
(tests/testing/ami_server.py) on 127.0.0.1, bantamd on a copy of config/
with the bundled asterisk filter, `backend = ami[...]`, maxretry = 1 and the
stock nftables action (type=allports, native netlink unless it falls back),
and `nft monitor new elements` reporting each element as the kernel adds it.
One InvalidPassword event of a new address at a time (IPv4 and IPv6
alternately); latency = the event written to the AMI socket -> its
"add element" line from nft monitor, both on this script's monotonic clock.
Prints p50/p90/p99/max. fail2ban has no AMI reader, so there is nothing to
compare with. The namespace is deleted at the end.
"""
import argparse
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, 'tests', 'testing'))


def inner(a):
    from ami_server import AmiServer, security_event
    subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
    work = tempfile.mkdtemp(prefix='bantam-ami-bench-')
    conf = os.path.join(work, 'conf')
    shutil.copytree(os.path.join(SOURCE, 'config'), conf)
    db = ':memory:' if a.dbfile == 'memory' else os.path.join(work, 'db.sqlite3')
    with open(os.path.join(conf, 'fail2ban.local'), 'w') as f:
        f.write('[Definition]\nloglevel = INFO\nlogtarget = %s/bantam.log\nsocket = %s/bantam.sock\n'
                'pidfile = %s/bantamd.pid\ndbfile = %s\n' % (work, work, work, db))
    secret = 'bench-%d' % os.getpid()
    with open(os.path.join(work, 'ami.secret'), 'w') as f:
        f.write(secret + '\n')
    os.chmod(os.path.join(work, 'ami.secret'), 0o600)
    srv = AmiServer('127.0.0.1', 0, 'bantam', secret)
    with open(os.path.join(conf, 'jail.local'), 'w') as f:
        f.write('[DEFAULT]\nignoreself = false\nignoreip =\n[sshd]\nenabled = false\n'
                '[asterisk-ami]\nenabled = false\n[asterisk]\nenabled = true\n'
                'backend = ami[host=127.0.0.1, port=%d, username=bantam, secret_file=%s/ami.secret]\n'
                'action = nftables[type=allports, protocol="tcp,udp"]\nmaxretry = 1\n'
                'findtime = 10m\nbantime = 1h\n' % (srv.port, work))
    mon = subprocess.Popen(['stdbuf', '-oL', 'nft', 'monitor', 'new', 'elements'],
                           stdout=subprocess.PIPE, text=True)
    seen = {}
    cond = threading.Condition()
    pat = re.compile(r'^add element inet f2b-table addr6?-set-asterisk \{ (.*) \}$')

    def watch():
        for line in mon.stdout:
            t = time.perf_counter()
            m = pat.match(line.strip())
            if not m:
                continue
            with cond:
                for e in m.group(1).split(','):
                    try:
                        seen[str(ipaddress.ip_address(e.strip().split()[0]))] = t
                    except ValueError:
                        pass
                cond.notify_all()
    threading.Thread(target=watch, daemon=True).start()
    d = subprocess.Popen([a.bantamd, '-f', '-x', '-c', conf], stdout=subprocess.DEVNULL,
                         stderr=subprocess.STDOUT)
    lat = []
    try:
        if not srv.wait('logins', 1, timeout=15):
            raise SystemExit('bantamd did not log in to the AMI server')
        time.sleep(0.5)  # actionstart: the table and sets exist

        def one(i, warm=False):
            if i % 2 == 0:
                ip = '198.%d.%d.%d' % (19 if warm else 18, i // 250 % 256, i % 250 + 1)
            else:
                ip = str(ipaddress.ip_address('2001:db8:%x::%x' % (1 if warm else 0, i + 1)))
            fam = 'IPV6' if ':' in ip else 'IPV4'
            ev = security_event('InvalidPassword', '%s/UDP/%s/5060' % (fam, ip))
            t0 = time.perf_counter()
            srv.send(ev)
            with cond:
                if not cond.wait_for(lambda: ip in seen, timeout=5):
                    raise SystemExit('%s never reached the set' % ip)
                return seen[ip] - t0
        for i in range(a.warmup):
            one(i, warm=True)
        for i in range(a.count):
            lat.append(one(i) * 1000)
            time.sleep(a.gap)
    finally:
        d.send_signal(signal.SIGTERM)
        try:
            d.wait(timeout=20)
        except subprocess.TimeoutExpired:
            d.kill()
        mon.kill()
        srv.close()
        shutil.rmtree(work, ignore_errors=True)
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(round(p / 100.0 * (len(lat) - 1))))]
    print('AMI event -> kernel set element, %d events (IPv4/IPv6 alternating), dbfile %s:'
          % (len(lat), a.dbfile))
    print('  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  (target p99 < 5 ms: %s)'
          % (pct(50), pct(90), pct(99), lat[-1], 'yes' if pct(99) < 5 else 'NO'))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bantamd', default=os.path.join(SOURCE, 'build', 'bantamd'))
    ap.add_argument('--count', type=int, default=300)
    ap.add_argument('--warmup', type=int, default=10)
    ap.add_argument('--gap', type=float, default=0.01, help='seconds between events')
    ap.add_argument('--dbfile', choices=('memory', 'disk'), default='disk')
    ap.add_argument('--inner', action='store_true', help=argparse.SUPPRESS)
    a = ap.parse_args()
    a.bantamd = os.path.abspath(a.bantamd)
    if a.inner:
        return inner(a)
    if os.geteuid() != 0:
        raise SystemExit('needs root (a network namespace and nft)')
    ns = 'btamibench-%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    try:
        argv = [sys.executable, '-u', os.path.abspath(__file__), '--inner', '--bantamd', a.bantamd,
                '--count', str(a.count), '--warmup', str(a.warmup), '--gap', str(a.gap),
                '--dbfile', a.dbfile]
        return subprocess.run(['ip', 'netns', 'exec', ns] + argv).returncode
    finally:
        subprocess.run(['ip', 'netns', 'delete', ns])


if __name__ == '__main__':
    sys.exit(main())
