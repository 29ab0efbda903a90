#!/usr/bin/env python3
"""The optional features' libraries are not loaded unless configured.

The metrics endpoint (libmicrohttpd, which brings GnuTLS and eight more
libraries) and the fleet (hiredis, libcrypto) are off by default and
loaded with dlopen when configured (include/bantam/shared_library.h).
Linked at build time they made every start load 31 shared objects instead
of 18 (bench/README.md). So is libsystemd, for a journal backend only
(READY=1 goes out without it, include/bantam/service_notify.h): linked, it
and the six libraries it brings were about a quarter of every start-up.
This test fails if one of them is linked into a program again, and checks
that a daemon with none configured has none of them mapped, while one with
`metrics =` set has libmicrohttpd mapped and answers a scrape, and one
with a `backend = systemd` jail has libsystemd mapped and runs the jail.

Run: python3 tests/base/optional_libraries_test.py --bantam build/bantam --source-dir REPO
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

OPTIONAL = ('libmicrohttpd', 'libhiredis', 'libcrypto', 'libgnutls',
            # libsystemd and what it brings
            'libsystemd', 'libcap', 'libgcrypt', 'libgpg-error', 'liblzma', 'libzstd', 'liblz4')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bantam', required=True)
    ap.add_argument('--source-dir', required=True)
    args = ap.parse_args()
    bindir = os.path.dirname(os.path.abspath(args.bantam))
    failures = []
    passed = 0

    def check(ok, what):
        nonlocal passed
        if ok:
            passed += 1
        else:
            failures.append(what)
            print('FAIL', what)

    for prog in ('bantamd', 'bantam', 'bantam-regex'):
        out = subprocess.run(['ldd', os.path.join(bindir, prog)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True).stdout
        linked = [lib for lib in OPTIONAL if lib in out]
        check(not linked, '%s links %s at build time' % (prog, ', '.join(linked)))

    work = tempfile.mkdtemp(prefix='bantam-optlib-')
    try:
        conf = os.path.join(work, 'conf')
        os.makedirs(os.path.join(conf, 'filter.d'))
        os.makedirs(os.path.join(conf, 'action.d'))
        log = os.path.join(work, 'app.log')
        open(log, 'w').close()
        with open(os.path.join(conf, 'filter.d', 'app.conf'), 'w') as f:
            f.write('[Definition]\nfailregex = ^fail from <HOST>$\n')
        def write_jails(extra=''):
            with open(os.path.join(conf, 'jail.conf'), 'w') as f:
                f.write('[app]\nenabled = true\nfilter = app\nlogpath = %s\nbackend = polling\n'
                        'action =\n%s' % (log, extra))

        write_jails()

        def run_daemon(extra):
            with open(os.path.join(conf, 'fail2ban.conf'), 'w') as f:
                f.write('[Definition]\nloglevel = INFO\nlogtarget = %s\nsocket = %s\n'
                        'pidfile = %s\ndbfile = %s\n%s' % (
                            os.path.join(work, 'bantam.log'), os.path.join(work, 'sock'),
                            os.path.join(work, 'pid'), os.path.join(work, 'db.sqlite3'), extra))
            p = subprocess.Popen([os.path.join(bindir, 'bantamd'), '-f', '-x', '-c', conf],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            deadline = time.time() + 30
            while time.time() < deadline:
                r = subprocess.run([args.bantam, '-s', os.path.join(work, 'sock'), 'ping'],
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                if 'pong' in r.stdout:
                    return p
                if p.poll() is not None:
                    break
                time.sleep(0.05)
            p.kill()
            p.wait()
            raise AssertionError('bantamd did not start:\n' +
                                 open(os.path.join(work, 'bantam.log')).read()[-2000:])

        def mapped(pid):
            with open('/proc/%d/maps' % pid) as f:
                text = f.read()
            return [lib for lib in OPTIONAL if lib in text]

        def stop(p):
            subprocess.run([args.bantam, '-s', os.path.join(work, 'sock'), 'stop'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

        p = run_daemon('')
        try:
            libs = mapped(p.pid)
            check(not libs, 'bantamd without metrics or fleet has %s mapped' % ', '.join(libs))
        finally:
            stop(p)

        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        p = run_daemon('metrics = 127.0.0.1:%d\n' % port)
        try:
            libs = mapped(p.pid)
            check('libmicrohttpd' in libs, 'bantamd with metrics = has no libmicrohttpd mapped')
            check('libhiredis' not in libs, 'bantamd without [Fleet] has libhiredis mapped')
            check('libsystemd' not in libs, 'bantamd without a journal jail has libsystemd mapped')
            body = urllib.request.urlopen('http://127.0.0.1:%d/metrics' % port, timeout=10).read()
            check(b'bantam_build_info' in body, 'the endpoint answers a scrape: %r' % body[:200])
        finally:
            stop(p)

        # A journal jail (an empty journal directory: nothing to read, but
        # opened) loads libsystemd, and only that.
        journal_dir = os.path.join(work, 'journal')
        os.makedirs(journal_dir)
        write_jails('\n[app-journal]\nenabled = true\nfilter = app\naction =\n'
                    'backend = systemd[journalpath=%s]\njournalmatch = _COMM=app\n' % journal_dir)
        p = run_daemon('')
        try:
            libs = mapped(p.pid)
            check('libsystemd' in libs, 'bantamd with a journal jail has no libsystemd mapped')
            check('libmicrohttpd' not in libs, 'bantamd without metrics has libmicrohttpd mapped')
            r = subprocess.run([args.bantam, '-s', os.path.join(work, 'sock'), 'status',
                                'app-journal'], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            check('Journal matches' in r.stdout and '_COMM=app' in r.stdout,
                  'the journal jail runs: %r' % r.stdout)
            with open(os.path.join(work, 'bantam.log')) as f:
                text = f.read()
            check('[app-journal] Jail is in operation now (process new journal entries)' in text,
                  'the journal jail opened its journal:\n' + text[-2000:])
        finally:
            stop(p)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print('%d passed, %d failed' % (passed, len(failures)))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
