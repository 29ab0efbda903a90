"""What the script tests that run bantamd in network namespaces share:
the required-tools check, running a command, polling, the pass/fail
tally and the namespaces each run creates and deletes.

  sys.path.insert(0, os.path.join(SOURCE_DIR, 'tests', 'testing'))
  from netns_script import Checks, Namespaces, poll, require, run
"""
import os
import re
import shutil
import subprocess
import time


def require(tools, root='network namespaces'):
    """None when every tool is there (and we are root, if asked); else why
    not, as the exit status: 1 under CI (a missing tool fails), 0 outside.

    `tools`: (name or path, what provides it) pairs; a bare name is looked
    up in PATH, a path must be executable. `root`: why root is needed, or
    None when it is not."""
    missing = []
    for tool, provider in tools:
        if not (os.access(tool, os.X_OK) if '/' in tool else shutil.which(tool)):
            missing.append('%s (%s)' % (tool, provider))
    if root and os.geteuid() != 0:
        missing.append('root (%s): run the tests as root (sudo tests/run.sh)' % root)
    if not missing:
        return None
    why = 'needs ' + ', '.join(missing) + '; set up with packaging/setup.sh'
    if os.environ.get('CI'):
        print('FATAL: ' + why)
        return 1
    print('SKIP: ' + why)
    return 0


def run(cmd, check=True, timeout=30, **kw):
    """The command's stdout and stderr as text; raises AssertionError on a
    non-zero exit when `check`."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise AssertionError('%s: exit %d: %s' % (cmd, p.returncode, p.stdout.decode(errors='replace')))
    return p.stdout.decode(errors='replace')


def poll(cond, timeout, step=0.05):
    """True as soon as cond() is, False once `timeout` seconds passed."""
    end = time.time() + timeout
    while True:
        if cond():
            return True
        if time.time() >= end:
            return False
        time.sleep(step)


class Checks:
    """The run's tally: each check prints ok/FAIL and its description."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, cond, what):
        if cond:
            self.passed += 1
            print('ok   ' + what, flush=True)
        else:
            self.failed += 1
            print('FAIL ' + what, flush=True)
        return cond


class Namespaces:
    """Network namespaces named PREFIX-PID-TAG. delete_stale() removes those
    a killed earlier run (its PID gone) left behind; delete_all() those of
    this run, for a finally block."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.names = []

    def new(self, tag):
        ns = '%s-%d-%s' % (self.prefix, os.getpid(), tag)
        run(['ip', 'netns', 'add', ns])
        self.names.append(ns)
        run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
        return ns

    def delete_stale(self):
        for line in run(['ip', 'netns', 'list']).splitlines():
            m = re.match(r'^(%s-(\d+)-\w+)' % re.escape(self.prefix), line)
            if m and not os.path.exists('/proc/' + m.group(2)):
                subprocess.run(['ip', 'netns', 'delete', m.group(1)], stderr=subprocess.DEVNULL)

    def delete_all(self):
        for ns in self.names:
            subprocess.run(['ip', 'netns', 'delete', ns], stderr=subprocess.DEVNULL)
        self.names = []
