#!/usr/bin/env python3
"""The Debian package in a real booted Debian 12 with systemd (issue 13, 5).

A Debian 12 root made by debootstrap (cached between runs, see Cache) is
booted with systemd-nspawn, without network (--private-network: the
container's nftables ruleset is its own, never the host's). Inside it the
package is installed with apt from the root's apt cache, as a user would,
and driven through systemctl, the client and a simulated SIP brute force:

  fresh   the package alone (with exim4 as the MTA): /etc/default/bantam
          names /etc/bantam; the service is enabled and running even
          though the asterisk log is missing (a warning in its log);
          systemd-analyze verify is silent (--man=no: minbase has no
          man(1); the unit's man pages are checked as files) and the
          security exposure is printed; the client answers on
          /run/bantam/bantam.sock; an operator's
          jail.d/mail.local (action_mw) and the log file, then a restart;
          three attackers reach the kernel set, a single failure does not;
          a ban mail per attacker arrives in root's mailbox through the
          real exim; reload and restart keep the bans; after a reboot the
          service runs again and every ban is back in the (empty at boot)
          kernel set with the same end time.
  switch  fail2ban first, on /etc/fail2ban with an operator's pbx.local,
          bans two attackers; the package installs without starting (or
          stopping fail2ban) and picks /etc/fail2ban; fail2ban off, bantam
          on (on fail2ban's socket): the same bans, same end times, in the
          kernel sets; a third ban under bantam; bantam off, fail2ban on:
          all three with consistent end times, no ban made twice.

Options: --deb PATH (else $BANTAM_TEST_DEB, else packaging/build-deb.sh
builds one in a temp dir, which takes minutes), --case fresh|switch|all, --cache-dir DIR (default
$BANTAM_TEST_CACHE or /var/cache/bantam-tests), --findings FILE (append
every failure with its diagnostics there too). --bantam and --source-dir
are accepted as tests/CMakeLists.txt passes them to every script test.

Needs root, debootstrap and systemd-nspawn (systemd-container); without
them it prints SKIP and exits 0, or fails naming the package when $CI is
set. Teardown always runs (also on SIGINT/SIGTERM/SIGHUP): containers are
powered off (killed after a timeout), mounts undone, working copies
deleted. Prints the time of each phase; the last line is
"N passed, M failed"; exit status 1 when anything failed.
"""
import argparse
import contextlib
import datetime
import fcntl
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUITE = 'bookworm'
INCLUDE = ['systemd', 'systemd-sysv', 'dbus']
# Bumped when what the cache holds changes shape.
CACHE_FORMAT = 1
# What each install in the container asks apt for, beside the .deb ('DEB').
FRESH_INSTALL = ['DEB', 'exim4-daemon-light', 'nftables']
F2B_INSTALL = ['fail2ban', 'python3-systemd', 'nftables']
SWITCH_INSTALL = ['DEB']
# The downloads made into the cached root: each install above, in the
# order the container runs them, so that apt's choices (Recommends,
# alternatives) in the container find their packages.
DOWNLOAD_SETS = [FRESH_INSTALL, F2B_INSTALL, F2B_INSTALL + SWITCH_INSTALL]
DEB_IN_ROOT = '/opt/bantam-system-test'
ENV_INSIDE = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
              'HOME=/root', 'LANG=C.UTF-8', 'TERM=dumb',
              'DEBIAN_FRONTEND=noninteractive', 'SYSTEMD_PAGER=', 'PAGER=cat']
ASTERISK_LOG = '/var/log/asterisk/messages'


class Interrupted(BaseException):
    """A signal asked the test to stop; teardown still runs."""


def on_signal(signum, _frame):
    # Teardown must not be interrupted by a second signal.
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise Interrupted(f'signal {signal.Signals(signum).name}')


def log(msg=''):
    print(msg, flush=True)


def indent(text, limit=4000):
    text = text if len(text) <= limit else '...\n' + text[-limit:]
    return '\n'.join('    ' + line for line in text.rstrip('\n').split('\n'))


class Report:
    """Counts checks; each failure is printed with its detail and, if
    --findings names a file, appended there with the case's diagnostics."""

    def __init__(self, findings):
        self.passed = 0
        self.failed = 0
        self.findings = findings
        self.case = ''
        self.diagnose = None  # () -> str, the current case's diagnostics

    def check(self, name, ok, detail=''):
        if ok:
            self.passed += 1
            log(f'ok   {self.case}: {name}')
            return True
        self.failed += 1
        log(f'FAIL {self.case}: {name}')
        if detail:
            log(indent(detail))
        if self.findings:
            extra = ''
            if self.diagnose:
                try:
                    extra = self.diagnose()
                except Exception as e:  # diagnostics must not end the run
                    extra = f'(diagnostics failed: {e})'
            with open(self.findings, 'a') as f:
                f.write(f'=== {datetime.datetime.now():%Y-%m-%d %H:%M:%S} '
                        f'package_system_test {self.case}: FAIL {name}\n')
                if detail:
                    f.write(detail.rstrip('\n') + '\n')
                if extra:
                    f.write('--- diagnostics\n' + extra.rstrip('\n') + '\n')
                f.write('\n')
        return False

    @contextlib.contextmanager
    def phase(self, name):
        start = time.monotonic()
        log(f'--- {name}')
        try:
            yield
        finally:
            log(f'--- {name}: {time.monotonic() - start:.1f} s')


def run(cmd, timeout=600, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors='replace', timeout=timeout, **kw)


def digest(obj):
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# --- host mounts and deletion ---------------------------------------------

MOUNTS = []  # mount points this process mounted, undone in reverse order


def mounts_under(path):
    path = os.path.realpath(path)
    found = []
    with open('/proc/self/mountinfo') as f:
        for line in f:
            point = line.split()[4].replace('\\040', ' ')
            if point == path or point.startswith(path + '/'):
                found.append(point)
    return found


def mount(args, point):
    subprocess.run(['mount'] + args + [point], check=True)
    MOUNTS.append(point)


def umount(point):
    if run(['umount', point]).returncode != 0:
        run(['umount', '-l', point])
    if point in MOUNTS:
        MOUNTS.remove(point)


def remove_tree(path):
    """Deletes a root directory, never across a mount point."""
    if not os.path.lexists(path):
        return
    for point in sorted(mounts_under(path), reverse=True):
        umount(point)
    left = mounts_under(path)
    if left:
        raise RuntimeError(f'not deleting {path}: still mounted: {left}')
    run(['rm', '-rf', '--one-file-system', path])


# --- the apt sources and the cache ------------------------------------------

def host_sources():
    """The host's Debian entries for SUITE (and -updates, -security), as
    (uri, suite, components, signed_by), from sources.list(.d)."""
    entries = []
    files = ['/etc/apt/sources.list'] + sorted(
        glob.glob('/etc/apt/sources.list.d/*.list') +
        glob.glob('/etc/apt/sources.list.d/*.sources'))
    for path in files:
        try:
            text = open(path).read()
        except OSError:
            continue
        if path.endswith('.sources'):
            for stanza in re.split(r'\n\s*\n', text):
                fields = {}
                key = None
                for line in stanza.split('\n'):
                    if not line.strip() or line.startswith('#'):
                        continue
                    if line[0] in ' \t' and key:
                        fields[key] += '\n' + line.strip()
                        continue
                    key, _, value = line.partition(':')
                    key = key.strip().lower()
                    fields[key] = value.strip()
                if 'deb' not in fields.get('types', '').split():
                    continue
                if fields.get('enabled', 'yes').lower() == 'no':
                    continue
                for uri in fields.get('uris', '').split():
                    for suite in fields.get('suites', '').split():
                        entries.append((uri, suite, fields.get('components', 'main'),
                                        fields.get('signed-by', '')))
        else:
            for line in text.split('\n'):
                line = line.split('#', 1)[0].strip()
                m = re.match(r'deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)', line)
                if not m:
                    continue
                opts = dict(o.split('=', 1) for o in (m.group(1) or '').split() if '=' in o)
                entries.append((m.group(2), m.group(3), m.group(4) or 'main',
                                opts.get('signed-by', '')))
    return [e for e in entries
            if e[1] in (SUITE, SUITE + '-updates', SUITE + '-security')
            and e[0].startswith(('http://', 'https://', 'file:/'))]


def sources_list(entries):
    lines = []
    for uri, suite, components, signed_by in entries:
        opt = ''
        # Only a keyring path; the container has debian-archive-keyring.
        if signed_by.startswith('/usr/share/keyrings/debian-archive-keyring'):
            opt = f'[signed-by={signed_by}] '
        lines.append(f'deb {opt}{uri} {suite} {components}')
    return '\n'.join(lines) + '\n'


class Cache:
    """Debian roots kept between runs under DIR:
      base-KEY/root   debootstrap's result (KEY: suite, variant, packages,
                      mirror);
      prep-KEY/root   base + the host's apt sources, apt lists and the
                      packages every install of this test downloads (KEY:
                      base, sources, the .deb's Depends, Pre-Depends and
                      Recommends, the install lists).
    A directory counts once its 'complete' stamp exists (made in a temp
    directory, then renamed). DIR/lock serialises builders and copiers.
    The two most recently used entries of each kind are kept."""

    KEEP = 2

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.lock_file = open(os.path.join(directory, 'lock'), 'w')

    def __enter__(self):
        fcntl.flock(self.lock_file, fcntl.LOCK_EX)
        for stale in glob.glob(os.path.join(self.dir, '*.tmp*')):
            remove_tree(stale)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.lock_file, fcntl.LOCK_UN)

    def _ready(self, name):
        path = os.path.join(self.dir, name)
        stamp = os.path.join(path, 'complete')
        if os.path.exists(stamp):
            os.utime(stamp)
            return os.path.join(path, 'root')
        return None

    def _prune(self, prefix):
        stamps = sorted(glob.glob(os.path.join(self.dir, prefix + '-*', 'complete')),
                        key=os.path.getmtime, reverse=True)
        for stamp in stamps[self.KEEP:]:
            remove_tree(os.path.dirname(stamp))

    def base(self, mirror):
        key = digest({'format': CACHE_FORMAT, 'suite': SUITE, 'variant': 'minbase',
                      'include': INCLUDE, 'mirror': mirror})
        name = f'base-{key}'
        root = self._ready(name)
        if root:
            log(f'cache: debootstrap root {name} (cached)')
            return key, root
        tmp = os.path.join(self.dir, f'{name}.tmp{os.getpid()}')
        os.makedirs(tmp)
        with self._removed_on_error(tmp):
            self._debootstrap(tmp, mirror)
        os.rename(tmp, os.path.join(self.dir, name))
        self._prune('base')
        return key, os.path.join(self.dir, name, 'root')

    @staticmethod
    @contextlib.contextmanager
    def _removed_on_error(tmp):
        try:
            yield
        except BaseException:
            remove_tree(tmp)  # unmounts what is mounted inside first
            raise

    @staticmethod
    def _debootstrap(tmp, mirror):
        cmd = ['debootstrap', '--variant=minbase', '--include=' + ','.join(INCLUDE),
               SUITE, os.path.join(tmp, 'root'), mirror]
        log('cache: ' + ' '.join(cmd))
        p = run(cmd, timeout=1200)
        if p.returncode != 0:
            raise RuntimeError(f'debootstrap failed ({p.returncode}):\n{p.stdout[-3000:]}')
        open(os.path.join(tmp, 'complete'), 'w').close()

    def prepared(self, base_key, base_root, sources, deb, deb_fields):
        key = digest({'format': CACHE_FORMAT, 'base': base_key, 'sources': sources,
                      'deb': deb_fields, 'downloads': DOWNLOAD_SETS})
        name = f'prep-{key}'
        root = self._ready(name)
        if root:
            log(f'cache: root with downloaded packages {name} (cached)')
            return root
        log(f'cache: making {name}: apt-get update and downloads in a chroot')
        tmp = os.path.join(self.dir, f'{name}.tmp{os.getpid()}')
        os.makedirs(tmp)
        with self._removed_on_error(tmp):
            self._download(base_root, tmp, sources, deb)
        os.rename(tmp, os.path.join(self.dir, name))
        self._prune('prep')
        return os.path.join(self.dir, name, 'root')

    @staticmethod
    def _download(base_root, tmp, sources, deb):
        root = os.path.join(tmp, 'root')
        copy_tree(base_root, root)
        with open(os.path.join(root, 'etc/apt/sources.list'), 'w') as f:
            f.write(sources)
        deb_inside = place_deb(root, deb)
        proc = os.path.join(root, 'proc')
        mount(['-t', 'proc', 'proc'], proc)
        try:
            chroot = ['chroot', root, 'env', '-i'] + ENV_INSIDE
            p = run(chroot + ['apt-get', 'update'], timeout=900)
            if p.returncode != 0:
                raise RuntimeError(f'apt-get update in the chroot failed:\n{p.stdout[-3000:]}')
            for packages in DOWNLOAD_SETS:
                names = [deb_inside if n == 'DEB' else n for n in packages]
                p = run(chroot + ['apt-get', 'install', '--download-only', '-y'] + names,
                        timeout=900)
                if p.returncode != 0:
                    raise RuntimeError(f'apt-get install --download-only {" ".join(names)} '
                                       f'in the chroot failed:\n{p.stdout[-3000:]}')
        finally:
            umount(proc)
        shutil.rmtree(os.path.join(root, DEB_IN_ROOT.lstrip('/')))
        open(os.path.join(tmp, 'complete'), 'w').close()


def copy_tree(src, dst):
    p = run(['cp', '-a', '--reflink=auto', src, dst], timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f'cp -a {src} {dst} failed:\n{p.stdout[-2000:]}')


def place_deb(root, deb):
    """Copies the .deb into ROOT; returns its path inside."""
    d = os.path.join(root, DEB_IN_ROOT.lstrip('/'))
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o755)
    shutil.copy(deb, d)
    os.chmod(os.path.join(d, os.path.basename(deb)), 0o644)
    return os.path.join(DEB_IN_ROOT, os.path.basename(deb))


# --- a booted container ------------------------------------------------------

class Container:
    """systemd-nspawn -b on ROOT, without network. Commands run inside with
    nsenter into every namespace of the container's PID 1, with a clean
    environment. poweroff() or kill() ends it; kill() is safe to repeat."""

    def __init__(self, root, name, console_log):
        self.root = root
        self.name = name
        self.console_log = console_log
        self.proc = None
        self.leader = None

    def boot(self, report, timeout=120):
        cmd = ['systemd-nspawn', '--keep-unit', '--register=no', '-b', '-D', self.root,
               '-M', self.name, '--private-network', '--console=passive',
               # A throwaway root: dpkg's fsyncs only cost time.
               '--suppress-sync=yes']
        console = open(self.console_log, 'ab')
        # Its own session: a Ctrl-C on the terminal reaches the test, which
        # powers the container off, not nspawn.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=console,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        console.close()
        deadline = time.monotonic() + timeout
        while self.leader is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f'systemd-nspawn exited ({self.proc.returncode}):\n'
                                   + self.console_tail())
            if time.monotonic() > deadline:
                raise RuntimeError('no systemd under systemd-nspawn:\n' + self.console_tail())
            self.leader = self._find_leader()
            time.sleep(0.05)
        state = ''
        while True:
            p = self.run(['systemctl', 'is-system-running', '--wait'],
                         timeout=max(1, deadline - time.monotonic()))
            state = p.stdout.strip().split('\n')[-1] if p.stdout.strip() else ''
            if state in ('running', 'degraded', 'maintenance', 'stopping', 'offline'):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)  # systemd not answering yet
        ok = report.check(f'boot {self.name}: systemctl is-system-running is running or '
                          f'degraded (got {state or "nothing"})',
                          state in ('running', 'degraded'), self.console_tail())
        if state == 'degraded':
            log(indent(self.run(['systemctl', '--failed', '--no-legend']).stdout))
        return ok

    def _find_leader(self):
        for entry in os.listdir('/proc'):
            if not entry.isdigit():
                continue
            try:
                with open(f'/proc/{entry}/stat') as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index('(') + 1:stat.rindex(')')]
            ppid = int(stat[stat.rindex(')') + 2:].split()[1])
            if ppid == self.proc.pid and comm == 'systemd':
                return int(entry)
        return None

    def console_tail(self, n=40):
        try:
            with open(self.console_log, errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except OSError:
            return ''

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def run(self, cmd, input=None, timeout=120):
        full = ['nsenter', '-t', str(self.leader), '-a', 'env', '-i'] + ENV_INSIDE + cmd
        try:
            p = subprocess.run(full, input=input, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, errors='replace',
                               timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode(errors='replace') if isinstance(e.stdout, bytes) \
                else (e.stdout or '')
            p = subprocess.CompletedProcess(full, 124, out + f'\n(timed out after {timeout} s)')
        p.inside = cmd
        return p

    def sh(self, script, input=None, timeout=120):
        return self.run(['sh', '-c', script], input=input, timeout=timeout)

    def poweroff(self, timeout=90):
        if not self.running():
            return True
        self.run(['systemctl', 'poweroff'], timeout=30)
        try:
            self.proc.wait(timeout)
            return True
        except subprocess.TimeoutExpired:
            self.kill()
            return False

    def kill(self):
        if not self.running():
            return
        # nspawn forwards SIGTERM as the container's shutdown signal.
        self.proc.terminate()
        try:
            self.proc.wait(20)
            return
        except subprocess.TimeoutExpired:
            pass
        if self.leader:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)  # ends its PID namespace
        self.proc.kill()
        self.proc.wait(20)


# --- what the checks read inside ---------------------------------------------

def nft_sets(c, prefix):
    """{set name: set of elements} for the sets of table inet f2b-table whose
    name starts with PREFIX; None when nft fails (no table yet: {})."""
    p = c.run(['nft', '-j', 'list', 'ruleset'], timeout=30)
    if p.returncode != 0:
        return None
    try:
        data = json.loads(p.stdout)
    except ValueError:
        return None
    sets = {}
    for item in data.get('nftables', []):
        s = item.get('set')
        if not s or s.get('family') != 'inet' or s.get('table') != 'f2b-table':
            continue
        if not s.get('name', '').startswith(prefix):
            continue
        elems = set()
        for e in s.get('elem', []):
            if isinstance(e, dict):
                e = e.get('elem', {}).get('val', e.get('prefix', ''))
            elems.add(str(e))
        sets[s['name']] = elems
    return sets


def in_every_set(sets, addresses):
    return bool(sets) and all(set(addresses) <= elems for elems in sets.values())


def wait_for(predicate, timeout, interval=0.25):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def attack_lines(c, addresses, count):
    """COUNT failed SIP registrations per address, dated now in the
    container's time zone, as Asterisk logs them."""
    now = c.run(['date', '+%b %e %H:%M:%S']).stdout.strip()
    lines = []
    for ip in addresses:
        for i in range(count):
            ext = 100 + i
            lines.append(f"[{now}] NOTICE[2112] chan_sip.c: Registration from "
                         f"'\"{ext}\" <sip:{ext}@pbx.example.org>' failed for "
                         f"'{ip}:5060' - Wrong password\n")
    return ''.join(lines)


def append_log(c, text):
    return c.sh(f'cat >> {ASTERISK_LOG}', input=text)


BANLINE = re.compile(r'^(\S+)\s+(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) \+ (-?\d+) = '
                     r'(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\s*$')


def ban_ends(output):
    """{address: end of ban (datetime)} from `get JAIL banip --with-time`."""
    ends = {}
    for line in output.split('\n'):
        m = BANLINE.match(line.strip())
        if m:
            ends[m.group(1)] = datetime.datetime.strptime(m.group(4), '%Y-%m-%d %H:%M:%S')
    return ends


def ends_match(expected, actual, tolerance=5):
    """'' when every address in EXPECTED ends its ban in ACTUAL within
    TOLERANCE seconds, else what differs."""
    problems = []
    for ip, end in sorted(expected.items()):
        if ip not in actual:
            problems.append(f'{ip}: missing')
        elif abs((actual[ip] - end).total_seconds()) > tolerance:
            problems.append(f'{ip}: ends {actual[ip]}, expected {end}')
    return '; '.join(problems)


def show(p):
    cmd = getattr(p, 'inside', p.args)
    return f'$ {shlex.join(cmd)}\n(exit {p.returncode})\n{p.stdout}'


def wait_in_sets(c, addresses, timeout):
    """The asterisk sets once every address is in each of them, else None."""
    def ready():
        sets = nft_sets(c, 'addr-set-asterisk')
        return sets if in_every_set(sets, addresses) else None
    return wait_for(ready, timeout)


def active(c, unit):
    return c.run(['systemctl', 'is-active', unit]).stdout.strip()


def service_diagnostics(c, units):
    if not c.running():
        return '(container not running)'
    out = []
    for unit in units:
        out.append(show(c.run(['systemctl', 'status', '--no-pager', '-l', unit])))
        out.append(show(c.run(['journalctl', '-u', unit, '-n', '60', '--no-pager', '-o',
                               'short-precise'])))
    out.append(show(c.sh('tail -n 40 /var/log/bantam.log /var/log/fail2ban.log 2>&1')))
    out.append(show(c.run(['nft', 'list', 'ruleset'])))
    return '\n'.join(out)


def ban_table(c, db='/var/lib/fail2ban/fail2ban.sqlite3'):
    """The database's bans (python3 is there with fail2ban)."""
    return c.run(['python3', '-c', 'import sqlite3, sys\n'
                  'db = sqlite3.connect(sys.argv[1])\n'
                  'for t in ("bans", "bips"):\n'
                  '  for r in db.execute(f"select jail, ip, timeofban, bantime, bancount '
                  'from {t} order by rowid"): print(t, *r)\n'
                  'for r in db.execute("select * from logs"): print("logs", *r)', db])


def config_dir(c):
    p = c.run(['cat', '/etc/default/bantam'])
    m = re.search(r'^\s*BANTAM_CONFDIR\s*=\s*["\']?([^"\'\s]+)', p.stdout, re.M)
    return (m.group(1) if m else None), p.stdout


# --- the cases ----------------------------------------------------------------

class Case:
    """One working copy of the cached root (made by main()) and the
    container booted on it; teardown() powers off and deletes it."""

    def __init__(self, name, report, work, deb_inside):
        self.name = name
        self.report = report
        self.root = os.path.join(work, name)
        self.console = os.path.join(work, f'{name}-console.log')
        self.deb_inside = deb_inside
        self.compat_inside = None  # bantam-fail2ban-compat, when built
        self.container = None

    def check(self, *a, **kw):
        return self.report.check(*a, **kw)

    def boot(self):
        self.container = Container(self.root, f'bantam-{self.name}-{os.getpid()}',
                                   self.console)
        return self.container.boot(self.report)

    def poweroff(self):
        c = self.container
        return self.check('systemctl poweroff: the container stops within 90 s',
                          c.poweroff(), c.console_tail())

    def teardown(self):
        if self.container:
            self.container.kill()
        remove_tree(self.root)

    def install(self, packages, what):
        c = self.container
        names = [self.deb_inside if n == 'DEB' else n for n in packages]
        # No network inside: apt finds everything in the root's apt cache
        # or fails to fetch it.
        p = c.run(['apt-get', 'install', '-y'] + names, timeout=600)
        self.check(f'apt-get install {what}', p.returncode == 0, show(p)[-6000:])
        return p


def fresh_case(case):
    report = case.report
    report.diagnose = lambda: service_diagnostics(case.container, ['bantam', 'exim4'])
    try:
        with report.phase('fresh: boot'):
            if not case.boot():
                return
        c = case.container
        with report.phase('fresh: apt-get install the package and exim4'):
            # The asterisk log does not exist yet: a missing log is a warning.
            c.run(['rm', '-f', ASTERISK_LOG])
            case.install(FRESH_INSTALL, 'the package with exim4-daemon-light (no fail2ban)')
        with report.phase('fresh: the installed service'):
            confdir, text = config_dir(c)
            case.check('/etc/default/bantam names BANTAM_CONFDIR=/etc/bantam',
                       confdir == '/etc/bantam', text)
            for path in ('/usr/sbin/bantamd', '/usr/bin/bantam', '/usr/bin/bantam-regex'):
                p = c.run(['test', '-x', path])
                case.check(f'{path} is installed', p.returncode == 0)
            p = c.run(['systemctl', 'is-enabled', 'bantam'])
            case.check('bantam.service is enabled by the package',
                       p.stdout.strip() == 'enabled', show(p))
            state = wait_for(lambda: active(c, 'bantam') == 'active' or None, 15)
            case.check('bantam.service was started by the package and is active, '
                       f'with {ASTERISK_LOG} missing', state, service_diagnostics(c, ['bantam']))
            p = c.sh('grep -i -E "warn" /var/log/bantam.log | grep -F asterisk')
            case.check('the missing asterisk log is a warning in /var/log/bantam.log',
                       p.returncode == 0 and p.stdout.strip(),
                       show(c.sh('tail -n 30 /var/log/bantam.log')))
            # --man=no: minbase has no man(1), which verify would run for
            # each Documentation=man:...; the pages are checked as files.
            p = c.run(['systemd-analyze', 'verify', '--man=no', 'bantam.service'])
            case.check('systemd-analyze verify --man=no bantam.service prints nothing',
                       p.returncode == 0 and not p.stdout.strip(), show(p))
            doc = shlex.split(c.run(['systemctl', 'show', '-P', 'Documentation',
                                     'bantam']).stdout)
            pages = [m.groups() for m in (re.match(r'man:([^()]+)\((\w+)\)$', d) for d in doc) if m]
            missing = [f'{n}({sec})' for n, sec in pages
                       if c.run(['test', '-e', f'/usr/share/man/man{sec[0]}/{n}.{sec}.gz'])
                       .returncode != 0]
            case.check(f'the unit\'s Documentation= man pages are installed '
                       f'({", ".join(f"{n}({sec})" for n, sec in pages)})',
                       pages and not missing, f'Documentation={" ".join(doc)}; missing {missing}')
            p = c.run(['systemd-analyze', 'security', '--no-pager', 'bantam.service'])
            m = re.search(r'Overall exposure level for \S+: ([\d.]+) (\S+)', p.stdout)
            if m:
                log(f'     systemd-analyze security bantam.service: overall exposure '
                    f'{m.group(1)} {m.group(2)}')
            case.check('systemd-analyze security bantam.service gives an exposure level',
                       m, show(p))
            case.check('the exposure level is under 3.0 (issue 13\'s target)',
                       m and float(m.group(1)) < 3.0, show(p))
            p = c.run(['bantam', 'ping'])
            case.check('bantam ping (client on the default socket) answers pong',
                       'pong' in p.stdout, show(p))
            p = c.run(['test', '-S', '/run/bantam/bantam.sock'])
            case.check('the control socket is /run/bantam/bantam.sock', p.returncode == 0,
                       show(c.sh('ls -la /run/bantam /run/fail2ban 2>&1')))
        with report.phase('fresh: fail2ban\'s names (bantam-fail2ban-compat)'):
            case.check('bantam-fail2ban-compat was built beside the package',
                       case.compat_inside, 'no bantam-fail2ban-compat_*.deb beside the .deb')
            if case.compat_inside:
                p = c.run(['apt-get', 'install', '-y', case.compat_inside], timeout=300)
                case.check('apt-get install bantam-fail2ban-compat (no fail2ban here)',
                           p.returncode == 0, show(p)[-3000:])
                p = c.run(['fail2ban-client', 'ping'])
                case.check('fail2ban-client (a link to bantam) answers "Server replied: pong"',
                           'Server replied: pong' in p.stdout, show(p))
                p = c.run(['fail2ban-client', '-V'])
                case.check('fail2ban-client -V says the fail2ban release it follows (1.0.2)',
                           p.stdout.strip() == '1.0.2', show(p))
        with report.phase('fresh: operator configuration (ban mails), restart'):
            c.run(['mkdir', '-p', '/var/log/asterisk'])
            c.run(['touch', ASTERISK_LOG])
            c.sh('cat > /etc/bantam/jail.d/mail.local',
                 input='[asterisk]\naction = %(action_mw)s\ndestemail = root\n')
            p = c.run(['systemctl', 'restart', 'bantam'], timeout=120)
            case.check('systemctl restart bantam with jail.d/mail.local and the log present',
                       p.returncode == 0 and active(c, 'bantam') == 'active',
                       show(p) + service_diagnostics(c, ['bantam']))
            p = c.run(['systemctl', 'enable', '--now', 'bantam'])
            case.check('systemctl enable --now bantam; is-active is active',
                       p.returncode == 0 and active(c, 'bantam') == 'active', show(p))
            p = c.run(['bantam', 'get', 'asterisk', 'maxretry'])
            maxretry = int(p.stdout) if p.stdout.strip().isdigit() else None
            case.check('bantam get asterisk maxretry is 4 (the package\'s tree)',
                       maxretry == 4, show(p))
            maxretry = maxretry or 4
        attackers = ['203.0.113.5', '198.51.100.23', '192.0.2.77']
        bystander = '192.0.2.200'
        with report.phase('fresh: attack, bans in the kernel set'):
            start = time.monotonic()
            append_log(c, attack_lines(c, attackers, maxretry) +
                       attack_lines(c, [bystander], 1))
            sets = wait_in_sets(c, attackers, 10)
            elapsed = time.monotonic() - start
            case.check(f'the three attackers are in inet f2b-table addr-set-asterisk* within '
                       f'10 s ({elapsed:.1f} s)', sets,
                       f'sets: {nft_sets(c, "addr-set-asterisk")}\n' +
                       service_diagnostics(c, ['bantam']))
            sets = nft_sets(c, 'addr-set-asterisk')
            case.check(f'{bystander} (one failure) is not banned',
                       in_every_set(sets, attackers)
                       and not any(bystander in e for e in sets.values()), str(sets))
            p = c.run(['bantam', 'status', 'asterisk'])
            case.check('bantam status asterisk lists the three bans',
                       p.returncode == 0 and all(a in p.stdout for a in attackers)
                       and re.search(r'Currently banned:\s*3\b', p.stdout), show(p))
            log(indent(p.stdout))
            p = c.run(['bantam', 'get', 'asterisk', 'banip', '--with-time'])
            ends = ban_ends(p.stdout)
            case.check('bantam get asterisk banip --with-time gives the three bans with '
                       'their end', set(ends) == set(attackers), show(p))
        with report.phase('fresh: ban mails through exim'):
            def mailbox():
                # /var/spool/mail links to /var/mail on Debian.
                p = c.sh('for f in /var/mail/* /root/Maildir/new/* /root/mbox; do '
                         '[ -f "$f" ] && [ -s "$f" ] && '
                         '{ echo "==> $f"; cat "$f"; }; done')
                text = p.stdout
                got = [a for a in attackers
                       if any(a in m and 'asterisk' in m
                              for m in re.split(r'\n(?=From )', text))]
                return (text, got) if len(got) == len(attackers) else None
            found = wait_for(mailbox, 45, 0.5)
            if found:
                boxes = re.findall(r'^==> (\S+)$', found[0], re.M)
                log(f'     ban mails delivered to {", ".join(boxes)}')
            if not case.check('a ban mail per attacker (jail name and address) reaches root\'s '
                              'mailbox through exim within 45 s', found,
                              show(c.sh('ls -la /var/mail 2>&1; cat /var/mail/* 2>&1 | '
                                        'tail -n 40; exim4 -bp; tail -n 30 /var/log/exim4/mainlog '
                                        '/var/log/exim4/paniclog 2>&1; grep -i mail '
                                        '/var/log/bantam.log | tail -n 20'))):
                # Tells a mail bantam never handed over from one exim
                # could not deliver from inside the service.
                p = c.sh('exim4 -qff; sleep 1; tail -n 8 /var/log/exim4/mainlog')
                log('     after a queue run outside the service (exim4 -qff):')
                log(indent(p.stdout) + '\n     ' + ('the mails are now delivered' if mailbox()
                                                  else 'still not delivered'))
        with report.phase('fresh: reload and restart'):
            p = c.run(['systemctl', 'reload', 'bantam'], timeout=120)
            case.check('systemctl reload bantam succeeds and the service stays active',
                       p.returncode == 0 and active(c, 'bantam') == 'active',
                       show(p) + service_diagnostics(c, ['bantam']))
            sets = nft_sets(c, 'addr-set-asterisk')
            case.check('after reload the bans are still in the kernel set',
                       in_every_set(sets, attackers), str(sets))
            p = c.run(['systemctl', 'restart', 'bantam'], timeout=120)
            case.check('systemctl restart bantam; active',
                       p.returncode == 0 and active(c, 'bantam') == 'active',
                       show(p) + service_diagnostics(c, ['bantam']))
            sets = wait_in_sets(c, attackers, 10)
            case.check('after restart the bans are back in the kernel set', sets,
                       str(nft_sets(c, 'addr-set-asterisk')))
            p = c.run(['bantam', 'get', 'asterisk', 'banip', '--with-time'])
            diff = ends_match(ends, ban_ends(p.stdout), tolerance=1)
            case.check('after restart every ban keeps its end time', ends and not diff,
                       diff + '\n' + show(p))
        with report.phase('fresh: poweroff, boot again'):
            if not case.poweroff():
                return
            if not case.boot():
                return
            c = case.container
            state = wait_for(lambda: active(c, 'bantam') == 'active' or None, 30)
            case.check('after reboot bantam.service is active', state,
                       service_diagnostics(c, ['bantam']))
            sets = wait_in_sets(c, attackers, 10)
            case.check('after reboot every unexpired ban is back in the kernel set', sets,
                       str(nft_sets(c, 'addr-set-asterisk')) + '\n' +
                       service_diagnostics(c, ['bantam']))
            p = c.run(['bantam', 'get', 'asterisk', 'banip', '--with-time'])
            diff = ends_match(ends, ban_ends(p.stdout), tolerance=1)
            case.check('after reboot every ban keeps its end time', ends and not diff,
                       diff + '\n' + show(p))
            case.poweroff()
    finally:
        report.diagnose = None
        with report.phase('fresh: teardown'):
            case.teardown()


def switch_case(case):
    report = case.report
    report.diagnose = lambda: service_diagnostics(case.container, ['fail2ban', 'bantam'])
    try:
        with report.phase('switch: boot'):
            if not case.boot():
                return
        c = case.container
        with report.phase('switch: fail2ban installed, configured and banning'):
            case.install(F2B_INSTALL, 'fail2ban python3-systemd nftables')
            c.run(['mkdir', '-p', '/var/log/asterisk'])
            c.run(['touch', ASTERISK_LOG])
            c.sh('cat > /etc/fail2ban/jail.d/pbx.local', input=(
                '[DEFAULT]\nbanaction = nftables-multiport\n'
                'banaction_allports = nftables-allports\n\n'
                '[sshd]\nenabled = false\n\n[asterisk]\nenabled = true\n'))
            p = c.run(['systemctl', 'restart', 'fail2ban'], timeout=120)
            up = wait_for(lambda: 'pong' in c.run(['fail2ban-client', 'ping']).stdout, 30)
            case.check('fail2ban runs with jail.d/pbx.local (asterisk on nftables)',
                       p.returncode == 0 and up and active(c, 'fail2ban') == 'active',
                       show(p) + service_diagnostics(c, ['fail2ban']))
            p = c.run(['fail2ban-client', 'get', 'asterisk', 'maxretry'])
            maxretry = int(p.stdout) if p.stdout.strip().isdigit() else 10
            first = ['203.0.113.10', '203.0.113.11']
            append_log(c, attack_lines(c, first, maxretry))
            sets = wait_in_sets(c, first, 30)
            case.check('fail2ban bans two attackers into its nft sets', sets,
                       str(nft_sets(c, 'addr-set-asterisk')) + '\n' +
                       service_diagnostics(c, ['fail2ban']))
            p = c.run(['fail2ban-client', 'get', 'asterisk', 'banip', '--with-time'])
            f2b_ends = ban_ends(p.stdout)
            log(indent(p.stdout))
            case.check('fail2ban-client get asterisk banip --with-time lists both',
                       set(f2b_ends) == set(first), show(p))
        with report.phase('switch: the package installed beside running fail2ban'):
            case.install(SWITCH_INSTALL, 'the package while fail2ban runs')
            confdir, text = config_dir(c)
            case.check('/etc/default/bantam names BANTAM_CONFDIR=/etc/fail2ban',
                       confdir == '/etc/fail2ban', text)
            time.sleep(1)
            case.check('bantam.service was not started by the package while fail2ban runs',
                       active(c, 'bantam') != 'active', service_diagnostics(c, ['bantam']))
            case.check('fail2ban.service is still active after the install',
                       active(c, 'fail2ban') == 'active', service_diagnostics(c, ['fail2ban']))
            # Not a check: with fail2ban enabled, enabling bantam too would
            # put two conflicting units in the boot transaction.
            log(f'     bantam.service after the install beside fail2ban: '
                f'{c.run(["systemctl", "is-enabled", "bantam"]).stdout.strip()}, '
                f'{active(c, "bantam")}')
            sets = nft_sets(c, 'addr-set-asterisk')
            case.check('fail2ban\'s bans are still in the kernel sets',
                       in_every_set(sets, first), str(sets))
        with report.phase('switch: fail2ban off, bantam on'):
            p = c.run(['systemctl', 'disable', '--now', 'fail2ban'], timeout=120)
            case.check('systemctl disable --now fail2ban', p.returncode == 0, show(p))
            p = c.run(['systemctl', 'enable', '--now', 'bantam'], timeout=120)
            case.check('systemctl enable --now bantam; active',
                       p.returncode == 0 and active(c, 'bantam') == 'active',
                       show(p) + service_diagnostics(c, ['bantam']))
            p = c.run(['test', '-S', '/run/fail2ban/fail2ban.sock'])
            case.check('bantamd listens on fail2ban.conf\'s socket /run/fail2ban/fail2ban.sock',
                       p.returncode == 0, show(c.sh('ls -la /run/fail2ban /run/bantam 2>&1')))
            sets = wait_in_sets(c, first, 10)
            case.check('bantam restores fail2ban\'s bans into the same kernel sets', sets,
                       str(nft_sets(c, 'addr-set-asterisk')) + '\n' +
                       service_diagnostics(c, ['bantam']))
            p = c.run(['bantam', 'get', 'asterisk', 'banip', '--with-time'])
            bantam_ends = ban_ends(p.stdout)
            log(indent(p.stdout))
            diff = ends_match(f2b_ends, bantam_ends)
            case.check('bantam get asterisk banip --with-time: the same bans ending when '
                       'fail2ban\'s did (within 5 s)', f2b_ends and not diff
                       and set(bantam_ends) == set(f2b_ends),
                       diff + '\n' + show(p) + show(ban_table(c)) +
                       show(c.sh('grep -v "\] Found " /var/log/fail2ban.log | tail -n 60')))
            third = '203.0.113.12'
            append_log(c, attack_lines(c, [third], maxretry))
            allthree = first + [third]
            sets = wait_in_sets(c, allthree, 10)
            case.check(f'bantam bans a third attacker {third} on fail2ban\'s tree', sets,
                       str(nft_sets(c, 'addr-set-asterisk')) + '\n' +
                       service_diagnostics(c, ['bantam']))
            p = c.run(['bantam', 'get', 'asterisk', 'banip', '--with-time'])
            bantam_ends = ban_ends(p.stdout)
            case.check('bantam lists all three bans with their end',
                       set(bantam_ends) == set(allthree), show(p))
        with report.phase('switch: bantam off, fail2ban on again'):
            p = c.run(['systemctl', 'disable', '--now', 'bantam'], timeout=120)
            case.check('systemctl disable --now bantam', p.returncode == 0, show(p))
            p = c.run(['systemctl', 'enable', '--now', 'fail2ban'], timeout=120)
            up = wait_for(lambda: 'pong' in c.run(['fail2ban-client', 'ping']).stdout, 30)
            case.check('systemctl enable --now fail2ban; active and answering',
                       p.returncode == 0 and up and active(c, 'fail2ban') == 'active',
                       show(p) + service_diagnostics(c, ['fail2ban']))

            def restored():
                p = c.run(['fail2ban-client', 'get', 'asterisk', 'banip', '--with-time'])
                ends = ban_ends(p.stdout)
                return (p, ends) if set(allthree) <= set(ends) else None
            got = wait_for(restored, 30, 0.5)
            p = c.run(['fail2ban-client', 'get', 'asterisk', 'banip', '--with-time'])
            log(indent(p.stdout))
            back_ends = ban_ends(p.stdout)
            case.check('fail2ban has all three bans, the one made under bantam too', got,
                       show(p) + service_diagnostics(c, ['fail2ban']))
            diff = ends_match(bantam_ends, back_ends)
            case.check('fail2ban\'s ban ends are bantam\'s (within 5 s): none made twice',
                       bantam_ends and not diff and set(back_ends) == set(allthree),
                       diff + '\n' + show(p) + show(ban_table(c)) +
                       show(c.sh('grep -v "\] Found " /var/log/fail2ban.log | tail -n 60')))
            sets = wait_in_sets(c, allthree, 30)
            case.check('fail2ban put all three back in the kernel sets', sets,
                       str(nft_sets(c, 'addr-set-asterisk')))
            case.poweroff()
    finally:
        report.diagnose = None
        with report.phase('switch: teardown'):
            case.teardown()


# --- main ---------------------------------------------------------------------

def prerequisites():
    """A sentence naming what is missing, or None."""
    if os.geteuid() != 0:
        return 'needs root (debootstrap, chroot, mount and systemd-nspawn)'
    for tool, package in (('debootstrap', 'debootstrap'), ('systemd-nspawn', 'systemd-container'),
                          ('nsenter', 'util-linux'), ('dpkg-deb', 'dpkg')):
        if not shutil.which(tool):
            return f'needs {tool} (Debian package {package}); set up with packaging/setup.sh'
    return None


def build_deb(source_dir, outdir):
    script = os.path.join(source_dir, 'packaging', 'build-deb.sh')
    if not os.path.exists(script):
        raise RuntimeError(f'no --deb given and {script} does not exist')
    p = run(['bash', script, outdir], timeout=3600, cwd=source_dir)
    if p.returncode != 0:
        raise RuntimeError(f'packaging/build-deb.sh failed ({p.returncode}):\n{p.stdout[-4000:]}')
    debs = [d for d in glob.glob(os.path.join(outdir, 'bantam_*.deb')) if 'dbgsym' not in d]
    if len(debs) != 1:
        raise RuntimeError(f'packaging/build-deb.sh made {debs or "no bantam_*.deb"}')
    return debs[0]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--deb', default=os.environ.get('BANTAM_TEST_DEB'),
                    help='the package to test (default: $BANTAM_TEST_DEB, else build one)')
    ap.add_argument('--case', choices=['all', 'fresh', 'switch'], default='all')
    ap.add_argument('--cache-dir', default=os.environ.get('BANTAM_TEST_CACHE')
                    or '/var/cache/bantam-tests')
    ap.add_argument('--findings', help='append every failure with diagnostics to FILE')
    ap.add_argument('--source-dir', default=os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__)))))
    ap.add_argument('--bantam', help='ignored (the package is what is tested)')
    args = ap.parse_args()
    os.environ['PATH'] = os.environ.get('PATH', '') + ':/usr/sbin:/usr/bin:/sbin:/bin'

    missing = prerequisites()
    if missing:
        if os.environ.get('CI'):
            log(f'FAIL: the package system test {missing}.')
            log('0 passed, 1 failed')
            return 1
        log(f'SKIP: the package system test {missing}.')
        return 0

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    report = Report(args.findings)
    report.case = 'setup'
    total = time.monotonic()
    work = tempfile.mkdtemp(prefix='bantam-system-', dir='/var/tmp')
    try:
        deb = args.deb
        if not deb:
            with report.phase('build the package (packaging/build-deb.sh)'):
                deb = build_deb(args.source_dir, os.path.join(work, 'deb'))
        deb = os.path.abspath(deb)
        log(f'package: {deb}')
        fields = {}
        for field in ('Package', 'Version', 'Architecture', 'Depends', 'Pre-Depends',
                      'Recommends'):
            p = run(['dpkg-deb', '-f', deb, field])
            if p.returncode != 0:
                raise RuntimeError(f'dpkg-deb -f {deb} failed:\n{p.stdout}')
            fields[field] = p.stdout.strip()
        log(f'Depends: {fields["Depends"]}')
        if fields['Recommends']:
            log(f'Recommends: {fields["Recommends"]}')
        entries = host_sources()
        mirror = os.environ.get('BANTAM_TEST_MIRROR') or next(
            (e[0] for e in entries if e[1] == SUITE), 'http://deb.debian.org/debian')
        if not entries:
            entries = [(mirror, SUITE, 'main', '')]
        sources = sources_list(entries)
        runs = [(name, fn) for name, fn in (('fresh', fresh_case), ('switch', switch_case))
                if args.case in ('all', name)]
        cases = []
        with report.phase('cache: Debian 12 root with the packages downloaded, working copies'):
            with Cache(args.cache_dir) as cache:
                base_key, base_root = cache.base(mirror)
                cached_root = cache.prepared(
                    base_key, base_root, sources, deb,
                    {k: fields[k] for k in ('Depends', 'Pre-Depends', 'Recommends')})
                # The copies are made under the lock, so that no concurrent
                # run prunes the cache entry meanwhile.
                # build-deb.sh makes the optional bantam-fail2ban-compat
                # package beside the main one.
                compat = sorted(glob.glob(os.path.join(os.path.dirname(deb),
                                                       'bantam-fail2ban-compat_*.deb')))
                for name, fn in runs:
                    root = os.path.join(work, name)
                    copy_tree(cached_root, root)
                    case = Case(name, report, work, place_deb(root, deb))
                    case.compat_inside = place_deb(root, compat[-1]) if compat else None
                    cases.append((case, fn))
        for case, fn in cases:
            report.case = case.name
            try:
                fn(case)
            except Exception as e:
                report.check('the case ran to its end without an error', False,
                             f'{type(e).__name__}: {e}')
            finally:
                remove_tree(case.root)
    except Interrupted as e:
        report.check(f'the run was not interrupted ({e})', False)
    except Exception as e:
        report.check('the run completed without an error', False,
                     f'{type(e).__name__}: {e}')
    finally:
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        for point in reversed(list(MOUNTS)):
            umount(point)
        remove_tree(work)
    log(f'total: {time.monotonic() - total:.1f} s')
    log(f'{report.passed} passed, {report.failed} failed')
    return 1 if report.failed else 0


if __name__ == '__main__':
    sys.exit(main())
