#!/usr/bin/env python3
"""Issue 18, memory: a flood of 1,000,000 IPv6 addresses from 1,000 /64s,
one failure each, read by the real bantamd with prefix6 = 64.

The failure table holds one entry per prefix, never one per address: the
jail's "Currently failed" never passes 1,000, memory does not grow over the
last 500,000 addresses of the flood, and all 1,000 prefixes end up
banned (and nothing else). No firewall: the jail has no action, so this
runs in the host namespace without touching any ruleset.
"""
import argparse
import ipaddress
import json
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
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)
BANTAMD = os.path.join(os.path.dirname(BANTAM), 'bantamd')
NETS = 1000
HOSTS_PER_HALF = 500

failed = 0


def check(cond, what):
    global failed
    print(('ok   ' if cond else 'FAIL ') + what, flush=True)
    if not cond:
        failed += 1
    return cond


def poll(cond, timeout, step=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(step)
    return cond()


def kib(pid, field):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    return 0


def sanitized(pid):
    with open('/proc/%d/maps' % pid) as f:
        return 'libasan' in f.read()


def write_half(path, first_host):
    stamp = time.strftime('%b %e %H:%M:%S')
    with open(path, 'a') as f:
        for host in range(first_host, first_host + HOSTS_PER_HALF):
            f.write(''.join(
                "[%s] NOTICE[2112] chan_sip.c: Registration from '\"100\" <sip:100@pbx>' failed "
                "for '[2001:db8:%x:%x::%x]:5060' - Wrong password\n"
                % (stamp, net >> 8, net & 0xff, host + 1) for net in range(NETS)))


def main():
    root = tempfile.mkdtemp(prefix='bantam-flood-')
    conf = os.path.join(root, 'conf')
    shutil.copytree(os.path.join(args.source_dir, 'config'), conf)
    sock = os.path.join(root, 'bantam.sock')
    log = os.path.join(root, 'bantam.log')
    attack = os.path.join(root, 'asterisk.log')
    open(attack, 'w').close()
    with open(os.path.join(conf, 'fail2ban.local'), 'w') as f:
        f.write('[Definition]\nloglevel = NOTICE\nlogtarget = %s\nsocket = %s\n'
                'pidfile = %s/bantam.pid\ndbfile = %s/db.sqlite3\n' % (log, sock, root, root))
    with open(os.path.join(conf, 'jail.local'), 'w') as f:
        f.write('[DEFAULT]\nignoreself = false\nignoreip =\n[sshd]\nenabled = false\n'
                '[asterisk]\nenabled = false\n[asterisk-ami]\nenabled = false\n'
                '[flood]\nenabled = true\nfilter = asterisk\nlogpath = %s\naction =\n'
                'maxretry = 5\nfindtime = 1h\nbantime = 1h\nprefix6 = 64\n' % attack)
    out = open(os.path.join(root, 'stdout.txt'), 'wb')
    # Under AddressSanitizer freed blocks wait in a quarantine of up to 256 MiB,
    # which would read as growth: this test measures the table, not that.
    env = dict(os.environ)
    env['ASAN_OPTIONS'] = ':'.join(filter(None, [env.get('ASAN_OPTIONS', ''),
                                                 'quarantine_size_mb=0',
                                                 'thread_local_quarantine_size_kb=0']))
    proc = subprocess.Popen([BANTAMD, '-f', '-x', '-c', conf], stdout=out, stderr=subprocess.STDOUT,
                            env=env)

    def text():
        try:
            with open(log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def status():
        p = subprocess.run([BANTAM, '-c', conf, '-s', sock, 'status', 'flood', '--json'],
                           capture_output=True, text=True, timeout=30)
        try:
            return json.loads(p.stdout)
        except ValueError:
            return {}

    def counter(s, key):
        # {"version": 1, "jail": {"filter": {"currently_failed": N, ...}, "actions": {...}}}
        if isinstance(s, dict):
            if key in s:
                return s[key]
            for part in s.values():
                found = counter(part, key)
                if found is not None:
                    return found
        return None

    try:
        # loglevel NOTICE: no "Server ready" line; the socket answering says it.
        if not check(poll(lambda: proc.poll() is None and status(), 60), 'bantamd started'):
            print(text()[-3000:])
            return 1
        asan = sanitized(proc.pid)
        most_failing = [0]

        def read_up_to(total):
            def done():
                s = status()
                cf = counter(s, 'currently_failed')
                if cf is not None:
                    most_failing[0] = max(most_failing[0], cf)
                return counter(s, 'total_failed') == total and s
            return poll(done, 600, step=0.5)

        rss = []
        for half in range(2):
            write_half(attack, half * HOSTS_PER_HALF)
            s = read_up_to((half + 1) * NETS * HOSTS_PER_HALF)
            check(bool(s), 'failures %d to %d read (currently failed %s)'
                  % (half * NETS * HOSTS_PER_HALF + 1, (half + 1) * NETS * HOSTS_PER_HALF,
                     counter(s, 'currently_failed')))
            rss.append(kib(proc.pid, 'VmRSS'))
        peak = kib(proc.pid, 'VmHWM')
        print('RSS after each 500k: %s KiB, peak %d KiB%s'
              % (', '.join(str(r) for r in rss), peak, ' (ASan build)' if asan else ''))
        check(most_failing[0] <= NETS,
              'the failure table never held more than one entry per prefix (most seen: %d)'
              % most_failing[0])
        check(counter(s, 'currently_banned') == NETS,
              'all %d prefixes banned: %s' % (NETS, counter(s, 'currently_banned')))
        check(counter(s, 'total_banned') == NETS,
              'each banned once: %s' % counter(s, 'total_banned'))
        bans = [l.split(' Ban ')[1] for l in text().splitlines() if '[flood] Ban ' in l]
        want = {str(ipaddress.ip_network('2001:db8:%x:%x::/64' % (n >> 8, n & 0xff)))
                for n in range(NETS)}
        check(set(bans) == want and len(bans) == NETS,
              'the Ban lines name exactly the 1,000 /64s (%d lines, %d unexpected)'
              % (len(bans), len(set(bans) - want)))
        # The last half (500,000 new addresses) must not grow memory: a table
        # per address would add ~45 MiB there.
        grow = rss[-1] - rss[-2]
        if asan:
            # Under AddressSanitizer RSS measures its allocator and shadow, not
            # the table: they warm up until ~1.5M addresses (measured, four
            # halves: +17.6, +7.6, +0.05, +0.02 MiB), and running that long
            # under ASan took up to 575 s on a loaded machine. The plain
            # build's run of this test checks both bounds.
            print('RSS not checked under ASan: grew %d KiB over the last 500,000' % grow)
        else:
            check(grow < 8 * 1024, 'RSS grew %d KiB over the last 500,000 addresses (< 8 MiB)' % grow)
            check(peak < 64 * 1024, 'peak RSS %d KiB < 64 MiB' % peak)
        check(proc.poll() is None, 'bantamd still running')
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out.close()
        shutil.rmtree(root, ignore_errors=True)
    print('%s' % ('FAILED: %d checks' % failed if failed else 'all checks passed'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
