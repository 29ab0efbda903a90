#!/usr/bin/env python3
"""docs/asterisk.md, run as an operator would run it.

Every ```sh block of the guide is run, in the guide's order, one bash process
per block fed one command at a time (so `umask` and the like carry to the
next line of the same block, and each command is checked before the next
runs), inside a network namespace this test creates with `ip netns add` and
deletes at the end (and those of earlier runs killed outright at the start):
`nft` and `iptables` only ever see that namespace, never the host's
ruleset. Each command's exit status and a key part of its output are
checked against CHECKS below; a command of the guide without a check, or a
check whose command is no longer in the guide, is a failure, so the two
cannot drift apart.

```ini blocks name their file on their first line (`; /etc/...`):
  - files under /etc/bantam are written into the sandbox's tree when the
    guide reaches them, except the alternatives in VARIANTS, which are
    checked in a scratch copy (`bantam -d` shows their effect) and not kept;
  - files under /etc/asterisk are parsed and checked (ASTERISK_CHECKS):
    there is no Asterisk to load them.
```text blocks are output or Asterisk's console (`*CLI>` lines, which must
be among ASTERISK_CLI) and are not run.

The mapping the guide's last section documents:
  - /etc/bantam, /etc/fail2ban, /etc/asterisk, /var/log/asterisk,
    /var/log/bantam.log, /var/lib/bantam, /run/bantam are directories and
    files under a temporary directory (SB), in the commands, the snippets
    and the copied bundled tree alike;
  - /etc/bantam is a copy of config/, plus jail.d/sandbox.local with the
    sshd jail off (there is no journal of ours to read);
  - /etc/fail2ban is a copy of the system's /etc/fail2ban with its own
    socket, pidfile, database and log (fail2ban.local) and the asterisk jail
    on the sandbox's Asterisk log, sshd off (jail.local);
  - bantam, bantamd and bantam-regex are the built programs, given
    `-c SB/etc/bantam` unless the command names a tree with -c;
  - systemctl is a small script: start/enable --now/restart/stop/reload of
    `bantam` run bantamd -b, bantam stop and bantam reload in the namespace;
    of `fail2ban` they run fail2ban-client start/stop on the sandbox's
    fail2ban tree. Before the "Switching from fail2ban" section the test
    stops bantamd and starts that fail2ban-server in the namespace: the
    situation the section starts from.
  - the Asterisk log starts with the golden corpus
    (tests/filter/samples/asterisk.log, old dates) followed by a manager
    (AMI) login brute force from 203.0.113.50 dated now, which the bundled
    default configuration must ban;
  - Asterisk's manager interface is a scripted AMI server
    (tests/testing/ami_server.py) on 127.0.0.1:5038 in the namespace,
    started just before the guide writes its AMI jail snippet, with the
    secret the guide put in /etc/bantam/ami.secret. Once `bantam status
    asterisk` shows the connection, it sends InvalidPassword security events
    from 203.0.113.77 until the jail's maxretry, which must ban it.

Needs root, ip (iproute2), nft (nftables), iptables, fail2ban-client
(fail2ban), bash and diff. Missing ones fail under CI ($CI set), naming the
Debian package, and skip otherwise. Ends with "N passed, M failed".
"""
import argparse
import configparser
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
ap.add_argument('--keep', action='store_true', help='keep the temporary directory')
args = ap.parse_args()
BUILD = os.path.dirname(os.path.abspath(args.bantam))
SRC = os.path.abspath(args.source_dir)
GUIDE = os.path.join(SRC, 'docs', 'asterisk.md')
AMI_SNIPPET = '/etc/bantam/jail.d/asterisk-ami-events.local'
AMI_BRUTE = '203.0.113.77'  # not in the log corpus
BRUTE = '203.0.113.50'

TOOLS = (('ip', 'iproute2'), ('nft', 'nftables'), ('iptables', 'iptables'),
         ('fail2ban-client', 'fail2ban'), ('bash', 'bash'), ('diff', 'diffutils'))

# Asterisk console commands the guide may show (not run: no Asterisk here).
ASTERISK_CLI = {'logger reload', 'manager reload'}

# Snippets that show an alternative setup: checked in a scratch copy of the
# tree (`bantam -d`, SB for the sandbox, must show each regex), never applied
# to the sandbox's tree. The log files they name are created first: the
# resolved configuration, as fail2ban's, lists only files that exist.
VARIANTS = {
    '/etc/bantam/paths-overrides.local':
        [r'^\["set", "asterisk", "addlogpath", "SB/var/log/asterisk/syslog", "head"\]$'],
    '/etc/bantam/jail.d/asterisk-security-log.local':
        [r'^\["set", "asterisk", "addlogpath", "SB/var/log/asterisk/messages", "head"\]$',
         r'^\["set", "asterisk", "addlogpath", "SB/var/log/asterisk/security", "head"\]$'],
    '/etc/bantam/jail.d/asterisk-journal.local':
        [r'^\["add", "asterisk", "systemd"\]$',
         r'^\["set", "asterisk", "addjournalmatch", "_SYSTEMD_UNIT=asterisk.service"\]$'],
}

# (command, occurrence) -> what it must do. out: regexes that must all be
# found (re.M); absent: regexes that must not; rc: exit status; retry:
# seconds to retry a read-only command whose result follows an asynchronous
# ban; post: name of an extra check (POST below) run after the command.
CHECKS = {
    ('bantam -t', 1): dict(out=[r'^OK: configuration test is successful$']),
    ('systemctl enable --now bantam', 1): dict(out=[r'^sandbox: bantamd running, pid \d+$']),
    ('bantam status', 1): dict(out=[r'^`- Jail list:\tasterisk$'], retry=5, post='brute_force_banned'),
    ('systemctl reload bantam', 1): dict(out=[r'^OK$']),
    ('bantam get asterisk bantime', 1): dict(out=[r'^86400$']),
    ('bantam -t', 2): dict(out=[r'^OK: configuration test is successful$']),
    ('systemctl reload bantam', 2): dict(out=[r'^OK$']),
    ('bantam status', 2): dict(out=[r'Number of jail:\t2$', r'Jail list:\tasterisk, asterisk-ami$'],
                               post='one_jail_counts_manager'),
    ('rm /etc/bantam/jail.d/asterisk-ami.local', 1): dict(),
    ('systemctl reload bantam', 3): dict(out=[r'^OK$']),
    ('systemctl reload bantam', 4): dict(out=[r'^OK$']),
    ('bantam get asterisk ignoreip', 1): dict(out=[r'192\.0\.2\.0/24', r'198\.51\.100\.7', r'127\.0\.0\.0/8', r'::1']),
    ('umask 077', 1): dict(),
    ('head -c 18 /dev/urandom | base64 > /etc/bantam/ami.secret', 1): dict(),
    ('ls -l /etc/bantam/ami.secret', 1): dict(out=[r'^-rw------- .*/etc/bantam/ami\.secret$']),
    ('bantam status asterisk', 1): dict(out=[r'Total failed:\t[1-9]\d*$', r'Banned IP list:\t.*\b203\.0\.113\.50\b'], retry=10),
    ('bantam-regex /var/log/asterisk/messages asterisk', 1): dict(out=['MATCHED_LINE', r'^Date template hits:$',
                                                                       r'^\|  \[\d+\] \{\^LN-BEG\}ExYear']),
    ('bantam set asterisk banip 203.0.113.45', 1): dict(out=[r'^1$']),
    ('nft list ruleset', 1): dict(out=[r'^table inet f2b-table \{$', r'set addr-set-asterisk \{',
                                       r'elements = \{[^}]*\b203\.0\.113\.45\b',
                                       r'tcp dport \{ 4569, 5038, 5060, 5061 \} ip saddr @addr-set-asterisk reject',
                                       r'udp dport \{ 4569, 5038, 5060, 5061 \} ip saddr @addr-set-asterisk reject'],
                                  retry=10),
    ('bantam set asterisk unbanip 203.0.113.45', 1): dict(out=[r'^1$'], post='unbanned_45'),
    ('systemctl restart bantam', 1): dict(out=[r'^sandbox: bantamd running, pid \d+$']),
    ('bantam set asterisk banip 203.0.113.46', 1): dict(out=[r'^1$']),
    ('iptables -L -n -v', 1): dict(out=[r'^Chain f2b-asterisk \(2 references\)$',
                                        r'f2b-asterisk +6 .*multiport dports 5060,5061,4569,5038$',
                                        r'f2b-asterisk +17 .*multiport dports 5060,5061,4569,5038$',
                                        r'REJECT .* 203\.0\.113\.46 ',
                                        r'REJECT .* 203\.0\.113\.50 '],
                                   retry=10),
    ('bantam set asterisk unbanip 203.0.113.46', 1): dict(out=[r'^1$']),
    ('rm /etc/bantam/jail.d/iptables.local', 1): dict(),
    ('systemctl restart bantam', 2): dict(out=[r'^sandbox: bantamd running, pid \d+$'], post='nft_again'),
    ('bantam -c /etc/fail2ban -t', 1): dict(out=[r'^OK: configuration test is successful$']),
    ('diff <(fail2ban-client -c /etc/fail2ban -d) <(bantam -c /etc/fail2ban --dp) && echo same', 1):
        dict(out=[r'^same$'], absent=[r'^[<>] ']),
    ('systemctl disable --now fail2ban', 1): dict(out=[r'^Shutdown successful$'], post='fail2ban_gone'),
    ('systemctl enable --now bantam', 2): dict(out=[r'^sandbox: bantamd running, pid \d+$']),
    ('bantam status', 3): dict(out=[r'^`- Jail list:\tasterisk$']),
    ('bantam status', 4): dict(out=[r'^`- Jail list:\tasterisk$']),
    ('bantam -t', 3): dict(out=[r'^OK: configuration test is successful$']),
    ('bantam get asterisk logpath', 1): dict(out=[r'^`- SB/var/log/asterisk/messages$']),
    ('ls -l /var/log/asterisk/messages', 1): dict(out=[r' SB/var/log/asterisk/messages$']),
    ('tail -n 20 /var/log/bantam.log', 1): dict(out=[r'Server ready$']),
}

# The AMI section, last before the guide's own: a scripted AMI server stands
# in for Asterisk (see Sandbox.start_ami).
CHECKS.update({
    ('bantam -t', 4): dict(out=[r'^OK: configuration test is successful$']),
    ('systemctl reload bantam', 5): dict(out=[r'^OK$']),
    ('bantam status asterisk', 2): dict(out=[r'File list:\tami://bantam@127\.0\.0\.1:5038 \(connected\)$'],
                                        retry=10, post='ami_event_bans'),
})


def asterisk_check_logger(cp):
    levels = [s.strip() for s in cp.get('logfiles', 'messages').split(',')]
    assert 'security' in levels and 'notice' in levels, 'messages => %s' % levels


def asterisk_check_manager(cp):
    assert cp.get('general', 'enabled') == 'yes', 'AMI not enabled'
    assert cp.get('general', 'port') == '5038', 'AMI port'
    user = cp['bantam']
    assert user.get('read') == 'security', 'read = %s' % user.get('read')
    assert user.get('permit', '').startswith('127.0.0.1/'), 'permit = %s' % user.get('permit')
    assert user.get('deny') == '0.0.0.0/0.0.0.0', 'deny = %s' % user.get('deny')
    assert not user.get('write'), 'the bantam user needs no write permission'


ASTERISK_CHECKS = {'/etc/asterisk/logger.conf': asterisk_check_logger,
                   '/etc/asterisk/manager.conf': asterisk_check_manager}

passed = failed = 0


def result(ok, what, detail=''):
    global passed, failed
    if ok:
        passed += 1
        print('PASS %s' % what)
    else:
        failed += 1
        print('FAIL %s\n%s' % (what, detail.rstrip()))


# ---------------------------------------------------------------------------
# The guide


class Block:
    def __init__(self, lang, lines, section, lineno):
        self.lang, self.lines, self.section, self.lineno = lang, lines, section, lineno

    def commands(self):
        """Shell commands, one per line (a trailing backslash continues)."""
        out, cur = [], ''
        for l in self.lines:
            s = l.strip()
            if not cur and (not s or s.startswith('#')):
                continue
            if s.endswith('\\'):
                cur += s[:-1] + ' '
                continue
            out.append(cur + s)
            cur = ''
        return out


def parse_guide(path):
    blocks, section = [], ''
    lines = open(path).read().split('\n')
    i = 0
    while i < len(lines):
        l = lines[i]
        if l.startswith('## '):
            section = l[3:].strip()
        m = re.match(r'^```(\S*)\s*$', l)
        if m:
            lang, start, body = m.group(1), i + 1, []
            i += 1
            while i < len(lines) and lines[i] != '```':
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise SystemExit('FATAL: %s:%d: unterminated code block' % (path, start))
            blocks.append(Block(lang, body, section, start))
        i += 1
    return blocks


# ---------------------------------------------------------------------------
# The sandbox


class Sandbox:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix='bantam-guide-')
        self.ns = 'btguide-%d' % os.getpid()
        self.ami = None
        sb = self.dir
        self.map = [('/var/log/bantam.log', sb + '/var/log/bantam.log'),
                    ('/var/log/asterisk', sb + '/var/log/asterisk'),
                    ('/var/lib/bantam', sb + '/var/lib/bantam'),
                    ('/run/bantam', sb + '/run/bantam'),
                    ('/etc/bantam', sb + '/etc/bantam'),
                    ('/etc/fail2ban', sb + '/etc/fail2ban'),
                    ('/etc/asterisk', sb + '/etc/asterisk')]
        for d in ('var/log/asterisk', 'var/lib/bantam', 'run/bantam', 'etc/asterisk', 'bin', 'f2b'):
            os.makedirs(os.path.join(sb, d))
        self.conf = sb + '/etc/bantam'
        self.copy_tree(os.path.join(SRC, 'config'), self.conf)
        self.write(self.conf + '/jail.d/sandbox.local',
                   '# guide test: no journal of ours to read\n[sshd]\nenabled = false\n')
        self.f2b = sb + '/etc/fail2ban'
        shutil.copytree('/etc/fail2ban', self.f2b, symlinks=False)
        self.write(self.f2b + '/fail2ban.local',
                   '[Definition]\nlogtarget = %s/f2b/fail2ban.log\nsocket = %s/f2b/fail2ban.sock\n'
                   'pidfile = %s/f2b/fail2ban.pid\ndbfile = %s/f2b/fail2ban.sqlite3\n' % (sb, sb, sb, sb))
        self.write(self.f2b + '/jail.local',
                   '[sshd]\nenabled = false\n[asterisk]\nenabled = true\nlogpath = %s/var/log/asterisk/messages\n' % sb)
        self.write_fixture()
        self.write_wrappers()
        subprocess.run(['ip', 'netns', 'add', self.ns], check=True)
        subprocess.run(['ip', '-n', self.ns, 'link', 'set', 'lo', 'up'], check=True)

    def sub(self, text):
        for a, b in self.map:
            text = re.sub(r'(?<![\w./-])' + re.escape(a) + r'(?![\w.-])', b, text)
        return text

    def unsub(self, text):
        return text.replace(self.dir, 'SB')

    def write(self, path, text):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'w') as f:
            f.write(text)

    def copy_tree(self, src, dst):
        """The bundled tree as the package installs it, its paths mapped."""
        shutil.copytree(src, dst, symlinks=False)
        for root, _, files in os.walk(dst):
            for name in files:
                p = os.path.join(root, name)
                with open(p) as f:
                    text = f.read()
                mapped = self.sub(text)
                if mapped != text:
                    with open(p, 'w') as f:
                        f.write(mapped)

    def write_fixture(self):
        corpus = open(os.path.join(SRC, 'tests', 'filter', 'samples', 'asterisk.log')).read()
        now = time.strftime('%Y-%m-%d %H:%M:%S')
        brute = ''
        for user in ('admin', 'root', 'manager', 'asterisk'):
            brute += ('[%s] NOTICE[3101] manager.c: %s tried to authenticate with nonexistent user '
                      "'%s'\n" % (now, BRUTE, user))
            brute += "[%s] NOTICE[3101] manager.c: %s failed to authenticate as '%s'\n" % (now, BRUTE, user)
        self.write(self.dir + '/var/log/asterisk/messages', corpus + brute)
        expected = [l for l in open(os.path.join(SRC, 'tests', 'filter', 'samples', 'asterisk.expected'))
                    if l.strip()]
        self.fixture_lines = corpus.count('\n') + brute.count('\n')
        self.fixture_matches = len(expected) + 4  # one counted line per manager attempt

    def write_wrappers(self):
        b = self.dir + '/bin'
        for prog in ('bantam', 'bantamd', 'bantam-regex'):
            self.write(b + '/' + prog, '''#!/bin/sh
# guide test: the built %(prog)s on the sandbox's tree unless -c names one
for a in "$@"; do case "$a" in -c|--conf|--conf=*) exec %(bin)s "$@";; esac; done
exec %(bin)s -c %(conf)s "$@"
''' % dict(prog=prog, bin=os.path.join(BUILD, prog), conf=self.conf))
        self.write(b + '/systemctl', r'''#!/bin/bash
# guide test: systemctl for the units the guide names, inside the namespace
conf=%(conf)s; f2b=%(f2b)s; pidfile=%(sb)s/run/bantam/bantamd.pid
running() { bantam ping >/dev/null 2>&1; }
start() {
  if running; then echo "sandbox: bantamd running, pid $(cat $pidfile)"; return 0; fi
  bantamd -b -x || return $?
  for _ in $(seq 200); do
    if running; then echo "sandbox: bantamd running, pid $(cat $pidfile)"; return 0; fi
    sleep 0.05
  done
  echo "sandbox: bantamd did not answer"; return 1
}
stop() {
  running || return 0
  pid=$(cat $pidfile)
  bantam stop || return $?
  for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.05; done
  echo "sandbox: bantamd $pid still there"; return 1
}
args=("$@"); unit=${args[-1]%%.service}; verb=$1
[ "$verb $2" = "enable --now" ] && verb=start
[ "$verb $2" = "disable --now" ] && verb=stop
case "$unit:$verb" in
  bantam:start) start ;;
  bantam:stop) stop ;;
  bantam:restart) stop && start ;;
  bantam:reload) bantam reload ;;
  fail2ban:start) fail2ban-client -c "$f2b" -x start ;;
  fail2ban:stop) fail2ban-client -c "$f2b" stop ;;
  *) echo "sandbox systemctl: '$*' is not part of the guide"; exit 2 ;;
esac
''' % dict(conf=self.conf, f2b=self.f2b, sb=self.dir))
        for name in ('bantam', 'bantamd', 'bantam-regex', 'systemctl'):
            os.chmod(b + '/' + name, 0o755)

    def env(self):
        return dict(os.environ, PATH=self.dir + '/bin:/usr/sbin:/usr/bin:/sbin:/bin', TZ='UTC',
                    LC_ALL='C')

    def shell(self):
        """A bash in the namespace, for one block of the guide."""
        return Shell(self)

    def sh(self, command):
        """One command on its own: (exit status, output with SB for the sandbox)."""
        with Shell(self) as sh:
            return sh.run(command)

    def start_ami(self):
        """Asterisk's manager interface: the scripted AMI server, in the
        namespace, accepting the user and secret the guide set up."""
        try:
            secret = open(self.conf + '/ami.secret').read().strip()
        except OSError as e:
            return False, 'no secret to give the AMI server: %s' % e
        self.ami = subprocess.Popen(['ip', 'netns', 'exec', self.ns, sys.executable,
                                     os.path.join(SRC, 'tests', 'testing', 'ami_server.py'),
                                     '--host', '127.0.0.1', '--port', '5038', '--username', 'bantam',
                                     '--secret', secret],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self.ami.stdout.readline()
        return first.startswith('{"port": 5038'), 'AMI server: %r' % first

    def ami_request(self, **req):
        self.ami.stdin.write(json.dumps(req) + '\n')
        self.ami.stdin.flush()
        return json.loads(self.ami.stdout.readline() or '{}')

    def cleanup(self):
        self.sh('systemctl stop bantam')
        if self.ami:
            self.ami.stdin.close()
            try:
                self.ami.wait(5)
            except subprocess.TimeoutExpired:
                self.ami.kill()
                self.ami.wait()
        pid = os.path.join(self.dir, 'run/bantam/bantamd.pid')
        if os.path.exists(pid):
            try:
                os.kill(int(open(pid).read().strip()), 9)
            except (ValueError, OSError):
                pass
        if os.path.exists(self.dir + '/f2b/fail2ban.sock'):
            self.sh('systemctl stop fail2ban')
        subprocess.run(['ip', 'netns', 'delete', self.ns], stderr=subprocess.DEVNULL)
        if args.keep:
            print('kept %s' % self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


class Shell:
    """bash in the sandbox's namespace, fed one command at a time, so that a
    block's commands share the shell's state (umask, variables) and each is
    checked before the next one runs."""

    def __init__(self, sb):
        self.sb = sb
        self.token = '@@guide-%d-%d' % (os.getpid(), time.monotonic_ns())
        self.proc = subprocess.Popen(['ip', 'netns', 'exec', sb.ns, 'bash', '--norc', '--noprofile'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, env=sb.env())
        self.proc.stdin.write(('exec 2>&1\ncd %s\n' % sb.dir).encode())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def run(self, command, timeout=120):
        self.proc.stdin.write(('%s\nprintf "\\n%s %%d\\n" $?\n' % (self.sb.sub(command), self.token)).encode())
        self.proc.stdin.flush()
        out = b''
        deadline = time.time() + timeout
        end = re.compile((r'\n%s (\d+)\n$' % re.escape(self.token)).encode())
        while True:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                return None, self.sb.unsub(out.decode(errors='replace')) + '\n(timed out)'
            chunk = os.read(self.proc.stdout.fileno(), 65536)
            if not chunk:
                return None, self.sb.unsub(out.decode(errors='replace')) + '\n(shell exited)'
            out += chunk
            m = end.search(out)
            if m:
                return int(m.group(1)), self.sb.unsub(out[:m.start()].decode(errors='replace'))

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


# ---------------------------------------------------------------------------
# Extra checks after some commands


def post_brute_force_banned(sb):
    """The bundled default configuration banned the manager brute force."""
    for _ in range(100):
        rc, out = sb.sh('bantam get asterisk banned %s' % BRUTE)
        if rc == 0 and out.strip() == '1':
            return True, ''
        time.sleep(0.1)
    return False, 'bantam get asterisk banned %s: exit %s: %s\n%s' % (
        BRUTE, rc, out, open(sb.dir + '/var/log/bantam.log').read()[-3000:])


def post_one_jail_counts_manager(sb):
    """With asterisk in mode voip next to asterisk-ami, the manager's lines
    are asterisk-ami's alone."""
    _, a = sb.sh('bantam get asterisk failregex')
    _, b = sb.sh('bantam get asterisk-ami failregex')
    ok = ('failed to authenticate as' not in a.replace('Host <HOST>', '') and
          'Service="(?!AMI")' in a and
          'Service="AMI"' in b and 'failed to authenticate as' in b)
    return ok, 'asterisk:\n%s\nasterisk-ami:\n%s' % (a, b)


def wait_asterisk_set(sb, good):
    """Polls the asterisk jail's nftables set for up to 10 s until good(its
    listing) holds: (whether it did, the last listing)."""
    for _ in range(100):
        rc, out = sb.sh('nft list set inet f2b-table addr-set-asterisk')
        if rc == 0 and good(out):
            return True, out
        time.sleep(0.1)
    return False, out


def post_unbanned_45(sb):
    ok, out = wait_asterisk_set(sb, lambda s: '203.0.113.45' not in s)
    return ok, '' if ok else out


def post_nft_again(sb):
    """Back on nftables: the bans in force are in the set again."""
    ok, out = wait_asterisk_set(sb, lambda s: BRUTE in s)
    if not ok:
        return False, out
    _, ipt = sb.sh('iptables -S')
    return 'f2b-asterisk' not in ipt, 'iptables chain left behind:\n' + ipt


def post_ami_event_bans(sb):
    """Security events from AMI ban as the log lines would: maxretry
    InvalidPassword events from one address, and it is in the nftables set."""
    rc, out = sb.sh('bantam get asterisk maxretry')
    if rc != 0 or not out.strip().isdigit():
        return False, 'bantam get asterisk maxretry: exit %s: %s' % (rc, out)
    if sb.ami_request(op='wait_login', count=1, timeout=10).get('ok') is not True:
        return False, 'bantamd never logged in to the AMI server'
    for _ in range(int(out.strip())):
        res = sb.ami_request(op='event', name='InvalidPassword', remote='IPV4/UDP/%s/5060' % AMI_BRUTE)
        if res.get('ok') is not True:
            return False, 'AMI server: %s' % res
    ok, out = wait_asterisk_set(sb, lambda s: AMI_BRUTE in s)
    if ok:
        return True, ''
    return False, 'nft set without %s:\n%s\n%s' % (AMI_BRUTE, out,
                                                   open(sb.dir + '/var/log/bantam.log').read()[-3000:])


def post_fail2ban_gone(sb):
    return not os.path.exists(sb.dir + '/f2b/fail2ban.sock'), 'fail2ban socket still there'


POST = {'brute_force_banned': post_brute_force_banned,
        'one_jail_counts_manager': post_one_jail_counts_manager,
        'unbanned_45': post_unbanned_45, 'nft_again': post_nft_again,
        'fail2ban_gone': post_fail2ban_gone, 'ami_event_bans': post_ami_event_bans}


# ---------------------------------------------------------------------------


def check_output(check, rc, out, sb):
    want_rc = check.get('rc', 0)
    problems = []
    if rc != want_rc:
        problems.append('exit %s, want %d' % (rc, want_rc))
    for pat in check.get('out', []):
        if pat == 'MATCHED_LINE':
            pat = r'^Lines: %d lines, 0 ignored, %d matched, %d missed$' % (
                sb.fixture_lines, sb.fixture_matches, sb.fixture_lines - sb.fixture_matches)
        if not re.search(pat, out, re.M):
            problems.append('no match for %r' % pat)
    for pat in check.get('absent', []):
        if re.search(pat, out, re.M):
            problems.append('unexpected %r' % pat)
    return problems


def apply_ini(sb, block):
    first = block.lines[0].strip() if block.lines else ''
    m = re.match(r'^; (/\S+)$', first)
    if not m:
        return False, 'ini block at line %d does not name its file on its first line' % block.lineno
    target = m.group(1)
    text = sb.sub('\n'.join(block.lines) + '\n')
    if target in ASTERISK_CHECKS:
        cp = configparser.ConfigParser(delimiters=('=>', '='), comment_prefixes=(';',),
                                       strict=True, interpolation=None)
        try:
            cp.read_string(text)
            ASTERISK_CHECKS[target](cp)
        except (configparser.Error, AssertionError, KeyError) as e:
            return False, '%s: %s' % (target, e)
        sb.write(sb.sub(target), text)
        return True, target
    if not target.startswith('/etc/bantam/'):
        return False, 'ini block at line %d writes %s, outside the mapped trees' % (block.lineno, target)
    if target in VARIANTS:
        scratch = tempfile.mkdtemp(prefix='variant-', dir=sb.dir)
        shutil.copytree(sb.conf, scratch + '/t')
        sb.write(scratch + '/t' + target[len('/etc/bantam'):], text)
        for p in re.findall(r'(?<![\w%)])(/var/log/[\w./-]+)', '\n'.join(block.lines[1:])):
            if not os.path.exists(sb.sub(p)):
                sb.write(sb.sub(p), '')
        rc, out = sb.sh('bantam -c %s/t -d' % scratch)
        missing = [r for r in VARIANTS[target] if not re.search(r, out, re.M)]
        if rc == 0 and not missing:
            return True, '%s (alternative, checked in a copy of the tree)' % target
        return False, 'variant %s: exit %s, missing %s\n%s' % (target, rc, missing, out[-2000:])
    sb.write(sb.sub(target), text)
    return True, target


def main():
    ci = bool(os.environ.get('CI'))
    missing = ['%s (Debian package %s)' % (t, p) for t, p in TOOLS if not shutil.which(t)]
    if os.geteuid() != 0:
        missing.append('root (network namespaces): run the tests as root (sudo tests/run.sh)')
    if not os.path.isdir('/etc/fail2ban'):
        missing.append('/etc/fail2ban (Debian package fail2ban)')
    if missing:
        why = 'needs %s; set up with packaging/setup.sh' % ', '.join(missing)
        print(('FATAL: ' if ci else 'SKIP: ') + why)
        return 1 if ci else 0

    # Namespaces of earlier runs killed outright (named by a pid now gone).
    for line in subprocess.run(['ip', 'netns', 'list'], stdout=subprocess.PIPE, text=True).stdout.splitlines():
        m = re.match(r'^btguide-(\d+)\b', line)
        if m and not os.path.exists('/proc/' + m.group(1)):
            subprocess.run(['ip', 'netns', 'delete', 'btguide-' + m.group(1)], stderr=subprocess.DEVNULL)

    blocks = parse_guide(GUIDE)
    checks = dict(CHECKS)
    seen, used = {}, set()
    for b in blocks:
        if b.lang == 'text':
            for l in b.lines:
                if l.startswith('*CLI>') and l[5:].strip() not in ASTERISK_CLI:
                    result(False, 'guide line %d: unknown Asterisk command %r' % (b.lineno, l))
        elif b.lang not in ('sh', 'ini'):
            result(False, 'guide line %d: code block of kind %r (sh, ini or text)' % (b.lineno, b.lang))
    sb = Sandbox()
    try:
        for b in blocks:
            if b.lang == 'ini' and b.lines and b.lines[0].strip() == '; ' + AMI_SNIPPET:
                ok, what = sb.start_ami()
                result(ok, 'setup: a scripted AMI server on 127.0.0.1:5038 in the namespace', what)
            if b.lang == 'ini':
                ok, what = apply_ini(sb, b)
                result(ok, 'ini %s' % what if ok else 'ini block at line %d' % b.lineno, '' if ok else what)
                continue
            if b.lang != 'sh':
                continue
            if b.section == 'Switching from fail2ban' and b is next(
                    x for x in blocks if x.lang == 'sh' and x.section == b.section):
                # Where the section starts: fail2ban in charge, bantam stopped.
                rc1, o1 = sb.sh('systemctl stop bantam')
                rc2, o2 = sb.sh('systemctl start fail2ban')
                result(rc1 == 0 and rc2 == 0 and 'Server ready' in o2,
                       'setup: bantamd stopped, fail2ban-server started in the namespace', o1 + o2)
            with sb.shell() as shell:
                for c in b.commands():
                    seen[c] = seen.get(c, 0) + 1
                    key = (c, seen[c])
                    label = '%s [#%d, line %d]' % (c, seen[c], b.lineno)
                    rc, out = shell.run(c)
                    check = checks.get(key)
                    if check is None:
                        result(False, label, 'no check for this command in CHECKS (exit %s):\n%s' % (rc, out))
                        continue
                    used.add(key)
                    problems = check_output(check, rc, out, sb)
                    # Read-only commands whose result follows an asynchronous
                    # ban are asked again for a while, before the next command.
                    deadline = time.time() + check.get('retry', 0)
                    while problems and time.time() < deadline:
                        time.sleep(0.2)
                        rc, out = shell.run(c)
                        problems = check_output(check, rc, out, sb)
                    if not problems and check.get('post'):
                        ok, detail = POST[check['post']](sb)
                        if not ok:
                            problems.append('%s: %s' % (check['post'], detail))
                    result(not problems, label, '\n'.join(problems) + '\n--- output:\n' + out)
        for key in sorted(set(checks) - used):
            result(False, 'check %r' % (key,), 'the guide no longer has this command')
    finally:
        sb.cleanup()
    left = subprocess.run(['ip', 'netns', 'list'], stdout=subprocess.PIPE, text=True).stdout
    result(sb.ns not in left, 'namespace %s deleted' % sb.ns, left)
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


sys.exit(main())
