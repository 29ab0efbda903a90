#!/usr/bin/env python3
"""bantamd against the real kernel firewall, end to end.

Every scenario builds its own network namespaces (never the host's
ruleset): `pbx`, where bantamd runs on the bundled configuration (copied,
with its own log, socket, pidfile and database) and small listeners answer
on UDP 5060 and TCP 5061, and `attacker`, joined to it by a veth pair with
10.77.N.1/.2 and fd00::1/.2. Failed SIP registrations naming the attacker
are appended to the asterisk jail's log; probes from `attacker` (UDP, TCP,
ping; IPv4 and IPv6) must pass before the ban, be refused after it (and the
listener must not have received them), and pass again after
`bantam set asterisk unbanip ADDR` or after the ban expires.

Scenarios (FW_ONLY=name runs one; all by default):
  iptables-allports   iptables-allports[name=ASTERISK, protocol=all] through
                      the shell, ip6tables for IPv6; iptables -S shows the
                      chain and the ban rules; a 2 s ban expires
  nft-shell           nftables[type=allports, native=no]: always the shell
  nft-native          nftables[type=allports]: over netlink (the log must
                      say so, unless --allow-shell-nft)
  nft-multiport       nftables[type=multiport, port="5060,5061",
                      protocol=udp]: UDP 5060 refused, TCP 5061 and ping pass
  nft-ruleset-equal   the same bans through native and native=no give the
                      same `nft list ruleset` (set elements compared as sets)
  nft-repair          `nft flush ruleset` behind bantamd's back, one more
                      ban: table, chain, sets and rules come back holding
                      every ban in force, not only the new one; then the
                      same after deleting only the IPv6 rules and set
  iptables-repair     the same with iptables/ip6tables -F and -X
  iptables-startup    three iptables-allports jails start at once, each with
                      a ban restored from the database: no "Error starting
                      action"/xtables lock errors, every restored ban in force
  ami-nft-native      backend = ami: the scripted AMI server
                      (tests/testing/ami_server.py) in `pbx` sends security
                      events; Informational ones for the attacker never ban,
                      Error ones (IPv4 and IPv6 RemoteAddress) ban it through
                      the bundled asterisk filter and native nftables

The nftables allports actions are given protocol="tcp,udp,icmp,ipv6-icmp":
the stock action's default (tcp) would leave UDP and ping through, and nft
has no `meta l4proto all`.

bantamd logs at debug level how each action runs ("action 'nftables'
(shell)" or "(nftables netlink)"); the PASS lines show it as kind=.
The nftables actions without native=no must run over netlink (the daemon
logs each action's kind); --allow-shell-nft accepts the shell too.

Scenarios run FW_JOBS (3) at a time, each in its own namespaces and temp
tree. One line per scenario (PASS/FAIL, in the order above), exit 1 on any
failure. Needs root, `ip netns`, nft, iptables. --keep keeps the temp trees
(bantam.log), never the namespaces; namespaces left by a killed earlier run
(named after its pid) are deleted at start.
"""
import argparse
import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# ---------------------------------------------------------------------------
# The agent: this file run as `python3 THIS --agent` inside a namespace. It
# reads one JSON request a line and answers one JSON line. In `pbx` it runs
# the listeners (every UDP datagram and TCP payload is recorded with its
# sender and echoed); in `attacker` it runs the probes.

AGENT_FLAG = '--agent'


def agent_main():
    import errno
    import socket
    import threading

    lock = threading.Lock()
    received = []  # [proto, port, peer, token]

    def peer_of(addr):
        host = addr[0]
        return host[7:] if host.startswith('::ffff:') else host

    def record(proto, port, peer, data):
        with lock:
            received.append([proto, port, peer, data.decode(errors='replace')])

    def udp_server(port):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(('::', port))
        while True:
            data, addr = s.recvfrom(2048)
            record('udp', port, peer_of(addr), data)
            s.sendto(data, addr)

    def tcp_server(s, port):
        while True:
            c, addr = s.accept()
            c.settimeout(1.0)
            try:
                data = c.recv(2048)
                record('tcp', port, peer_of(addr), data)
                c.sendall(data)
            except OSError:
                pass
            finally:
                c.close()

    def listen(udp, tcp):
        for p in udp:
            threading.Thread(target=udp_server, args=(p,), daemon=True).start()
        for p in tcp:
            s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            s.bind(('::', p))
            s.listen(16)
            threading.Thread(target=tcp_server, args=(s, p), daemon=True).start()
        return 'listening'

    def family(addr):
        return socket.AF_INET6 if ':' in addr else socket.AF_INET

    def outcome(e):
        if isinstance(e, ConnectionRefusedError):
            return 'refused'
        if isinstance(e, socket.timeout):
            return 'timeout'
        return 'error:' + errno.errorcode.get(e.errno, str(e.errno))

    def udp(addr, port, token, timeout):
        s = socket.socket(family(addr), socket.SOCK_DGRAM)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.send(token.encode())
            data = s.recv(2048)
            return 'ok' if data == token.encode() else 'garbled'
        except OSError as e:
            return outcome(e)
        finally:
            s.close()

    def tcp(addr, port, token, timeout):
        s = socket.socket(family(addr), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
            s.sendall(token.encode())
            data = s.recv(2048)
            return 'ok' if data == token.encode() else 'garbled'
        except OSError as e:
            return outcome(e)
        finally:
            s.close()

    ping_seq = [0]

    def ping(addr, timeout):
        """One ICMP echo over a raw socket (no ping binary needed): 'ok' on
        the reply, 'unreach' on an ICMP error about it, else 'timeout'."""
        import struct
        v6 = ':' in addr
        if v6:
            s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            req_type, reply_type, unreach_type = 128, 129, 1
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            req_type, reply_type, unreach_type = 8, 0, 3
        ping_seq[0] += 1
        ident, seq = os.getpid() & 0xffff, ping_seq[0] & 0xffff
        payload = b'bantam-fw-test'
        pkt = struct.pack('!BBHHH', req_type, 0, 0, ident, seq) + payload
        if not v6:  # the kernel fills in the ICMPv6 checksum
            total = sum(struct.unpack('!%dH' % (len(pkt) // 2), pkt))
            total = (total >> 16) + (total & 0xffff)
            total += total >> 16
            pkt = pkt[:2] + struct.pack('!H', ~total & 0xffff) + pkt[4:]
        try:
            s.connect((addr, 0))
            s.send(pkt)
            end = time.time() + timeout
            while True:
                left = end - time.time()
                if left <= 0:
                    return 'timeout'
                s.settimeout(left)
                try:
                    data = s.recv(2048)
                except socket.timeout:
                    return 'timeout'
                if not v6:
                    data = data[(data[0] & 0x0f) * 4:]  # the IPv4 header
                if len(data) < 8:
                    continue
                typ = data[0]
                if typ == reply_type and struct.unpack('!HH', data[4:8]) == (ident, seq):
                    return 'ok'
                if typ == unreach_type:
                    return 'unreach'
        except ConnectionRefusedError:  # the error, reported on the connected socket
            return 'unreach'
        except OSError as e:
            return outcome(e)
        finally:
            s.close()

    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop('op')
        if op == 'listen':
            res = listen(**req)
        elif op == 'received':
            with lock:
                res = list(received)
        elif op == 'udp':
            res = udp(**req)
        elif op == 'tcp':
            res = tcp(**req)
        elif op == 'ping':
            res = ping(**req)
        else:
            res = 'unknown op ' + op
        sys.stdout.write(json.dumps(res) + '\n')
        sys.stdout.flush()


if __name__ == '__main__' and AGENT_FLAG in sys.argv:
    agent_main()
    sys.exit(0)

# ---------------------------------------------------------------------------

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
ap.add_argument('--keep', action='store_true')
ap.add_argument('--allow-shell-nft', dest='expect_native', action='store_false',
                help='accept the stock nftables actions running through the shell (by '
                'default they must run over netlink unless given native=no)')
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)
BANTAMD = os.path.join(os.path.dirname(BANTAM), 'bantamd')
SOURCE = os.path.abspath(args.source_dir)
THIS = os.path.abspath(__file__)

# What this process started, for the cleanup that runs however it ends.
_lock = threading.Lock()
_namespaces = []
_procs = []
_tmpdirs = []
_closing = [False]


def spawn(cmd, **kw):
    """Popen, recorded for the cleanup; refused once the cleanup began."""
    with _lock:
        if _closing[0]:
            raise Fail('shutting down')
        p = subprocess.Popen(cmd, **kw)
        _procs.append(p)
        return p


def forget(p):
    with _lock:
        if p in _procs:
            _procs.remove(p)


def cleanup_all():
    with _lock:
        _closing[0] = True  # nothing is created after this (spawn, new_netns)
        procs, namespaces, tmpdirs = list(_procs), list(_namespaces), list(_tmpdirs)
        _procs.clear()
        _namespaces.clear()
        _tmpdirs.clear()
    for p in procs:
        if p.poll() is None:
            p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
    for ns in namespaces:
        subprocess.run(['ip', 'netns', 'delete', ns], stderr=subprocess.DEVNULL)
    if not args.keep:
        for d in tmpdirs:
            shutil.rmtree(d, ignore_errors=True)


atexit.register(cleanup_all)


def _on_signal(signum, frame):
    # Scenarios run on worker threads: clean up now and leave without
    # waiting for them.
    cleanup_all()
    os._exit(128 + signum)


signal.signal(signal.SIGTERM, _on_signal)
signal.signal(signal.SIGINT, _on_signal)


class Fail(AssertionError):
    pass


def expect(cond, what):
    if not cond:
        raise Fail(what)


def run(cmd, check=True, timeout=10):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    if check and r.returncode != 0:
        raise Fail('%s: exit %d: %s' % (' '.join(cmd), r.returncode, r.stderr.decode(errors='replace')))
    return r.stdout.decode(errors='replace')


def poll(fn, timeout, interval=0.05):
    """Calls fn until it returns a true value or timeout passes; returns its last value."""
    end = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() >= end:
            return v
        time.sleep(interval)


_ns_counter = [0]
_NS_NAME = re.compile(r'^bt(?:pbx|atk)-(\d+)-\d+$')


def delete_stale_netns():
    """Namespaces of earlier runs of this test that were killed outright
    (SIGKILL leaves no chance to clean up): named by a pid that is gone."""
    for line in run(['ip', 'netns', 'list']).splitlines():
        name = line.split()[0] if line.split() else ''
        m = _NS_NAME.match(name)
        if m and not os.path.exists('/proc/' + m.group(1)):
            subprocess.run(['ip', 'netns', 'delete', name], stderr=subprocess.DEVNULL)


def new_netns(role):
    with _lock:
        if _closing[0]:
            raise Fail('shutting down')
        _ns_counter[0] += 1
        ns = 'bt%s-%d-%d' % (role, os.getpid(), _ns_counter[0])
        run(['ip', 'netns', 'add', ns])
        _namespaces.append(ns)
    run(['ip', '-n', ns, 'link', 'set', 'lo', 'up'])
    return ns


def delete_netns(ns):
    subprocess.run(['ip', 'netns', 'delete', ns], stderr=subprocess.DEVNULL)
    with _lock:
        if ns in _namespaces:
            _namespaces.remove(ns)


class Agent:
    def __init__(self, ns):
        self.proc = spawn(['ip', 'netns', 'exec', ns, sys.executable, '-u', THIS, AGENT_FLAG],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def ask(self, **req):
        self.proc.stdin.write((json.dumps(req) + '\n').encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise Fail('agent died (%s)' % self.proc.poll())
        return json.loads(line)

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        forget(self.proc)


UDP_PORT = 5060
TCP_PORT = 5061


class Topology:
    """pbx and attacker namespaces on a veth pair, listeners in pbx."""

    def __init__(self):
        self.pbx = new_netns('pbx')
        self.attacker = new_netns('atk')
        n = int(self.pbx.rsplit('-', 1)[1]) % 250 + 1
        self.pbx4, self.atk4 = '10.77.%d.1' % n, '10.77.%d.2' % n
        self.pbx6, self.atk6 = 'fd00::1', 'fd00::2'
        run(['ip', '-n', self.pbx, 'link', 'add', 'veth0', 'type', 'veth',
             'peer', 'name', 'veth1', 'netns', self.attacker])
        for ns, dev, a4, a6 in ((self.pbx, 'veth0', self.pbx4, self.pbx6),
                                (self.attacker, 'veth1', self.atk4, self.atk6)):
            run(['ip', '-n', ns, 'addr', 'add', a4 + '/24', 'dev', dev])
            run(['ip', '-n', ns, '-6', 'addr', 'add', a6 + '/64', 'dev', dev, 'nodad'])
            run(['ip', '-n', ns, 'link', 'set', dev, 'up'])
        # Permanent neighbour entries both ways: a ban on all protocols
        # also rejects the banned address's ICMPv6 neighbour solicitations
        # and advertisements, which on this one-link topology (unlike an
        # attacker behind a router) would cut IPv6 at layer 2 and turn
        # refusals into timeouts.
        mac = {ns: json.loads(run(['ip', '-n', ns, '-j', 'link', 'show', dev]))[0]['address']
               for ns, dev in ((self.pbx, 'veth0'), (self.attacker, 'veth1'))}
        for ns, dev, peer, peer_ns in ((self.pbx, 'veth0', (self.atk4, self.atk6), self.attacker),
                                       (self.attacker, 'veth1', (self.pbx4, self.pbx6), self.pbx)):
            for a in peer:
                run(['ip', '-n', ns, 'neigh', 'replace', a, 'lladdr', mac[peer_ns], 'dev', dev,
                     'nud', 'permanent'])
        # The kernel rate-limits ICMP errors per peer (a burst of 6, then
        # 1/s): the polled probes would see timeouts instead of rejects.
        with open(os.devnull, 'w') as null:
            subprocess.run(['ip', 'netns', 'exec', self.pbx, 'sh', '-c',
                            'echo 0 > /proc/sys/net/ipv4/icmp_ratelimit; '
                            'echo 0 > /proc/sys/net/ipv6/icmp/ratelimit'], check=True, stderr=null)
        self.listener = Agent(self.pbx)
        self.prober = Agent(self.attacker)
        self.listener.ask(op='listen', udp=[UDP_PORT], tcp=[TCP_PORT])
        self.tokens = 0
        self.blocked_tokens = []  # sent while expected blocked: must never arrive

    def target(self, v6):
        return self.pbx6 if v6 else self.pbx4

    def token(self):
        self.tokens += 1
        return 'tok-%d' % self.tokens

    def probe(self, v6, what=('udp', 'tcp', 'ping'), timeout=0.5):
        """{'udp': outcome, 'tcp': ..., 'ping': ...} from attacker to pbx."""
        dst = self.target(v6)
        out = {}
        for w in what:
            if w == 'ping':
                out[w] = self.prober.ask(op='ping', addr=dst, timeout=timeout)
                continue
            tok = self.token()
            port = UDP_PORT if w == 'udp' else TCP_PORT
            out[w] = self.prober.ask(op=w, addr=dst, port=port, token=tok, timeout=timeout)
            out[w + '_token'] = tok
        return out

    def received_tokens(self):
        return {r[3] for r in self.listener.ask(op='received')}

    def expect_pass(self, v6, what=('udp', 'tcp', 'ping'), timeout=3.0, why=''):
        """Polls until every probe in `what` passes (the kernel rules may
        lag the daemon's log line; the link may still be coming up)."""
        last = {}

        def ok():
            last.clear()
            last.update(self.probe(v6, what))
            return all(last[w] == 'ok' for w in what)
        expect(poll(ok, timeout, 0.1), 'IPv%d %s should pass%s: %s' %
               (6 if v6 else 4, '/'.join(what), why, _outcomes(last)))
        got = self.received_tokens()
        for w in what:
            if w != 'ping':
                expect(last[w + '_token'] in got, 'listener did not record %s %s' % (w, last[w + '_token']))

    def expect_blocked(self, v6, what=('udp', 'tcp', 'ping'), timeout=5.0, why=''):
        """Polls until every probe in `what` is refused (reject blocktype:
        an ICMP error, so UDP and TCP get ECONNREFUSED, ping an ICMP
        destination unreachable); the
        listener must not have received any of them."""
        last = {}

        def blocked():
            last.clear()
            last.update(self.probe(v6, what, timeout=0.3))
            for w in what:
                if w != 'ping' and last[w] != 'ok':
                    self.blocked_tokens.append(last[w + '_token'])
            want = {'udp': {'refused'}, 'tcp': {'refused'}, 'ping': {'unreach'}}
            if v6:
                # The ICMPv6 port unreachable arrives (UDP and ping see it)
                # but this kernel (6.18) does not abort an IPv6 connect in
                # SYN_SENT on it: the SYN is retried until the timeout.
                # What matters, that the listener gets nothing, is checked.
                want['tcp'] = {'refused', 'timeout'}
            return all(last[w] in want[w] for w in what)
        expect(poll(blocked, timeout, 0.1), 'IPv%d %s should be refused%s: %s' %
               (6 if v6 else 4, '/'.join(what), why, _outcomes(last)))
        self.expect_no_blocked_delivered()

    def expect_no_blocked_delivered(self):
        leaked = set(self.blocked_tokens) & self.received_tokens()
        expect(not leaked, 'listener received probes sent while banned: %s' % sorted(leaked))

    def close(self):
        self.listener.close()
        self.prober.close()
        delete_netns(self.pbx)
        delete_netns(self.attacker)


def _outcomes(d):
    return ', '.join('%s=%s' % (k, v) for k, v in d.items() if not k.endswith('_token'))


def fail_line(ip):
    host = '[%s]' % ip if ':' in ip else ip
    return ("[%s] NOTICE[2112] chan_sip.c: Registration from '\"100\" <sip:100@pbx.example.org>' "
            "failed for '%s:5060' - Wrong password\n" % (time.strftime('%b %e %H:%M:%S'), host))


class Daemon:
    """bantamd on a copy of the bundled config/ tree, inside namespace `ns`.
    `jails`: the jail.local text ({d} is the temp dir)."""

    def __init__(self, ns, jails):
        self.ns = ns
        self.dir = tempfile.mkdtemp(prefix='bantam-fw-')
        with _lock:
            _tmpdirs.append(self.dir)
        self.conf = os.path.join(self.dir, 'conf')
        shutil.copytree(os.path.join(SOURCE, 'config'), self.conf, symlinks=False)
        self.sock = os.path.join(self.dir, 'bantam.sock')
        self.log = os.path.join(self.dir, 'bantam.log')
        with open(os.path.join(self.conf, 'fail2ban.local'), 'w') as f:
            f.write('[Definition]\nloglevel = DEBUG\nlogtarget = %s\nsocket = %s\n'
                    'pidfile = %s/bantamd.pid\ndbfile = %s/bantam.sqlite3\n'
                    % (self.log, self.sock, self.dir, self.dir))
        self.write_jails(jails)
        open(self.path('asterisk.log'), 'w').close()
        self.proc = None
        self.out = None

    def write_jails(self, jails):
        # Only the scenario's jails: the bundled sshd and asterisk jails are
        # on (jail.d/bantam-defaults.conf) unless the scenario redefines them;
        # asterisk-ami stays off even if a default turns it on again.
        text = ('[DEFAULT]\nignoreself = false\nignoreip =\n[sshd]\nenabled = false\n'
                '[asterisk-ami]\nenabled = false\n')
        if '[asterisk]' not in jails:
            text += '[asterisk]\nenabled = false\n'
        text += jails.format(d=self.dir)
        with open(os.path.join(self.conf, 'jail.local'), 'w') as f:
            f.write(text)

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def read_log(self):
        try:
            with open(self.log, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def start(self):
        ready = self.read_log().count('Server ready')
        self.out = open(self.path('stdout.txt'), 'ab')
        self.proc = spawn(['ip', 'netns', 'exec', self.ns, BANTAMD, '-f', '-x', '-c', self.conf],
                          stdout=self.out, stderr=subprocess.STDOUT)
        self.wait_log('Server ready', count=ready + 1)

    def stop(self):
        """`bantam stop`; the daemon must exit 0 (its actions' stop run)."""
        r = subprocess.run([BANTAM, '-c', self.conf, '-s', self.sock, 'stop'],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Fail('bantamd did not exit after stop (%s)' % r.stdout.decode(errors='replace'))
        finally:
            forget(self.proc)
            self.proc = None
            self.out.close()
        expect(rc == 0, 'bantamd exit %d after stop:\n%s' % (rc, self.tail()))

    def kill(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            forget(self.proc)
            self.proc = None
            self.out.close()

    def client(self, *cmd):
        r = subprocess.run([BANTAM, '-c', self.conf, '-s', self.sock] + list(cmd),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        expect(r.returncode == 0, 'bantam %s: exit %d: %s' % (' '.join(cmd), r.returncode,
                                                               r.stdout.decode(errors='replace')))
        return r.stdout.decode(errors='replace')

    def fail(self, ip, n=2, logname='asterisk.log'):
        with open(self.path(logname), 'a') as f:
            f.write(fail_line(ip) * n)

    def wait_log(self, text, count=1, timeout=10):
        def seen():
            if self.proc is not None and self.proc.poll() is not None:
                raise Fail('bantamd exited (%s):\n%s' % (self.proc.returncode, self.tail()))
            return self.read_log().count(text) >= count
        expect(poll(seen, timeout),
               'timed out waiting for %r x%d in the log:\n%s' % (text, count, self.tail()))

    def ban(self, ip, jail='asterisk', logname='asterisk.log'):
        line = '[%s] Ban %s' % (jail, ip)
        n = self.read_log().count(line)
        self.fail(ip, 2, logname)
        self.wait_log(line, n + 1)

    def tail(self, n=40, pattern=None):
        lines = self.read_log().splitlines()
        if pattern:
            lines = [l for l in lines if re.search(pattern, l)]
        return '\n'.join(lines[-n:])

    def action_kind(self, jail, action):
        # The action's name may carry its name= (iptables-allports-ASTERISK).
        pattern = r"Jail '%s': action '%s(?:-[^']*)?' \(([^)]*)\)" % (re.escape(jail), re.escape(action))
        m = re.findall(pattern, self.read_log())
        return m[-1] if m else None

    def errors(self):
        return [l for l in self.read_log().splitlines() if ' ERROR ' in l or 'CRITICAL' in l]

    def in_ns(self, *cmd, check=True):
        return run(['ip', 'netns', 'exec', self.ns] + list(cmd), check=check)


def asterisk_jail(action, name='asterisk', logname='asterisk.log', extra=''):
    return ('[{name}]\nenabled = true\nfilter = asterisk\nlogpath = {{d}}/{log}\n'
            'action = {action}\nmaxretry = 2\nfindtime = 10m\nbantime = 1h\n{extra}'
            .format(name=name, log=logname, action=action, extra=extra))


NFT_ALL_PROTOS = 'protocol="tcp,udp,icmp,ipv6-icmp"'

# ---------------------------------------------------------------------------
# Firewall inspection helpers.


def iptables_rules(d, v6):
    return d.in_ns('ip6tables' if v6 else 'iptables', '-w', '-S').splitlines()


def nft_json(ns):
    out = run(['ip', 'netns', 'exec', ns, 'nft', '-j', 'list', 'ruleset'])
    objs = json.loads(out)['nftables'] if out.strip() else []
    return [o for o in objs if 'metainfo' not in o]


def nft_set_elements(ns, table, set_name):
    for obj in nft_json(ns):
        s = obj.get('set')
        if s and s.get('table') == table and s.get('name') == set_name:
            return {_elem_key(e) for e in s.get('elem', [])}
    return None


def _elem_key(e):
    if isinstance(e, dict):
        e = e.get('elem', {}).get('val', e)
    if isinstance(e, dict) and 'prefix' in e:
        return '%s/%s' % (e['prefix']['addr'], e['prefix']['len'])
    return str(e)


def _strip(obj):
    """The ruleset as data without what legitimately varies: handles,
    element expiry, nft's own version; set elements as sorted lists."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ('handle', 'expires', 'metainfo'):
                continue
            if k == 'elem':
                out[k] = sorted(json.dumps(_strip(e), sort_keys=True) for e in v)
            else:
                out[k] = _strip(v)
        return out
    if isinstance(obj, list):
        return [_strip(x) for x in obj if not (isinstance(x, dict) and 'metainfo' in x)]
    return obj


def ruleset_objects(ns):
    """The ruleset's tables, chains, sets and rules (nft -j), stripped as
    above, in a stable order: the order the objects were created in (one
    family's set and rules before or after the other's) is not compared."""
    return sorted(json.dumps(_strip(o), sort_keys=True) for o in nft_json(ns))


def nft_text_normalized(ns):
    text = run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'ruleset'])

    def sort_elems(m):
        items = sorted(x.strip() for x in m.group(1).replace('\n', ' ').split(',') if x.strip())
        return 'elements = { %s }' % ', '.join(items)
    return re.sub(r'elements = \{([^}]*)\}', sort_elems, text, flags=re.S)


# ---------------------------------------------------------------------------
# Scenarios. Each returns a short note for its PASS line (or '').

A4_OTHER = ['192.0.2.10', '198.51.100.20', '203.0.113.30']
A6_OTHER = ['2001:db8::10', '2001:db8:1::20']


def traffic_cycle(action, check_fw, expiry=False, kind_check=None):
    """The common ban/unban cycle on a fresh topology for one action."""
    topo = Topology()
    d = Daemon(topo.pbx, asterisk_jail(action))
    try:
        d.start()
        note = ''
        for v6 in (False, True):
            topo.expect_pass(v6, timeout=5.0, why=' before any ban')
        # IPv4 ban: IPv4 refused, IPv6 untouched.
        d.ban(topo.atk4)
        topo.expect_blocked(False, why=' after the ban')
        check_fw(d, topo, {topo.atk4})
        topo.expect_pass(True, why=' (only IPv4 is banned)')
        # IPv6 ban.
        d.ban(topo.atk6)
        topo.expect_blocked(True, why=' after the ban')
        check_fw(d, topo, {topo.atk4, topo.atk6})
        # The real client lifts them one at a time.
        d.client('set', 'asterisk', 'unbanip', topo.atk4)
        topo.expect_pass(False, why=' after unbanip')
        topo.expect_blocked(True, timeout=1.0, why=' (only IPv4 was unbanned)')
        check_fw(d, topo, {topo.atk6})
        d.client('set', 'asterisk', 'unbanip', topo.atk6)
        topo.expect_pass(True, why=' after unbanip')
        check_fw(d, topo, set())
        if expiry:
            d.client('set', 'asterisk', 'bantime', '2')
            for v6, ip in ((False, topo.atk4), (True, topo.atk6)):
                d.ban(ip)
                topo.expect_blocked(v6, why=' after the 2 s ban')
            t0 = time.time()
            d.wait_log('[asterisk] Unban %s' % topo.atk6, timeout=6)
            for v6 in (False, True):
                topo.expect_pass(v6, why=' after the ban expired')
            check_fw(d, topo, set())
            note = (note + ' ' if note else '') + 'expired after %.1fs' % (time.time() - t0)
        topo.expect_no_blocked_delivered()
        errs = d.errors()
        expect(not errs, 'errors in the log:\n' + '\n'.join(errs[-10:]))
        if kind_check:
            note = kind_check(d) + (' ' + note if note else '')
        d.stop()
        expect_no_f2b_left(d)
        return note
    finally:
        d.kill()
        topo.close()


def expect_no_f2b_left(d):
    """After a stop, the actions' actionstop removed what they made."""
    left = [l for l in d.in_ns('nft', 'list', 'ruleset').splitlines() if 'f2b' in l]
    expect(not left, 'left in the ruleset after stop:\n' + '\n'.join(left))


def check_iptables(chain):
    """iptables -S / ip6tables -S: the chain, the jump and one REJECT rule
    per banned address. A family's chain appears with its first ban (the
    stock action starts each family on demand)."""
    def check(d, topo, banned):
        for v6, ip in ((False, topo.atk4), (True, topo.atk6)):
            tool = 'ip6tables' if v6 else 'iptables'
            rules = iptables_rules(d, v6)
            if '-N ' + chain not in rules and ip not in banned:
                continue
            expect('-N ' + chain in rules, '%s -S has no chain %s:\n%s' % (tool, chain, '\n'.join(rules)))
            expect('-A INPUT -j %s' % chain in rules,
                   '%s -S: no jump into %s:\n%s' % (tool, chain, '\n'.join(rules)))
            cidr = ip + ('/128' if v6 else '/32')
            has = [r for r in rules if r.startswith('-A %s -s %s ' % (chain, cidr))]
            if ip in banned:
                reject = 'icmp6-port-unreachable' if v6 else 'icmp-port-unreachable'
                expect(has == ['-A %s -s %s -j REJECT --reject-with %s' % (chain, cidr, reject)],
                       '%s -S: ban rule for %s in %s:\n%s' % (tool, ip, chain, '\n'.join(rules)))
            else:
                expect(not has, '%s -S: no rule for %s may remain:\n%s' % (tool, ip, '\n'.join(rules)))
    return check


def check_nft(jail):
    def check(d, topo, banned):
        for v6, ip in ((False, topo.atk4), (True, topo.atk6)):
            set_name = ('addr6-set-' if v6 else 'addr-set-') + jail
            elems = poll(lambda: _elems_match(d.ns, set_name, ip, ip in banned), 3.0)
            expect(elems, 'set %s: %s should %sbe in it: %s' % (set_name, ip, '' if ip in banned else 'not ',
                                                             nft_set_elements(d.ns, 'f2b-table', set_name)))
    return check


def _elems_match(ns, set_name, ip, want):
    elems = nft_set_elements(ns, 'f2b-table', set_name)
    if elems is None:
        return not want  # the family's set appears with its first ban
    return (ip in elems) == want


def kind_of(d, action='nftables', want=None, native_expected=False):
    kind = poll(lambda: d.action_kind('asterisk', action), 3.0)
    expect(kind is not None, "no \"action '%s' (...)\" line at debug level:\n%s" % (action, d.tail()))
    if want is not None:
        expect(kind == want, "action '%s' runs as %r, expected %r" % (action, kind, want))
    if native_expected:
        expect(kind == 'nftables netlink', "action '%s' runs as %r, expected 'nftables netlink'"
               % (action, kind))
    return 'kind=' + kind


def sc_iptables_allports():
    note = traffic_cycle('iptables-allports[name=ASTERISK, protocol=all]', check_iptables('f2b-ASTERISK'),
                         expiry=True, kind_check=lambda d: kind_of(d, 'iptables-allports', want='shell'))
    return note


def sc_nft_shell():
    return traffic_cycle('nftables[type=allports, native=no, %s]' % NFT_ALL_PROTOS, check_nft('asterisk'),
                         kind_check=lambda d: kind_of(d, want='shell'))


def sc_nft_native():
    return traffic_cycle('nftables[type=allports, %s]' % NFT_ALL_PROTOS, check_nft('asterisk'),
                         kind_check=lambda d: kind_of(d, native_expected=args.expect_native))


def sc_nft_multiport():
    topo = Topology()
    d = Daemon(topo.pbx, asterisk_jail('nftables[type=multiport, port="5060,5061", protocol=udp]'))
    try:
        d.start()
        for v6 in (False, True):
            topo.expect_pass(v6, timeout=5.0, why=' before any ban')
        for v6, ip in ((False, topo.atk4), (True, topo.atk6)):
            d.ban(ip)
            topo.expect_blocked(v6, what=('udp',), why=' (UDP 5060 is in the banned ports)')
            topo.expect_pass(v6, what=('tcp', 'ping'), why=' (the ban is UDP 5060,5061 only)')
        for v6, ip in ((False, topo.atk4), (True, topo.atk6)):
            d.client('set', 'asterisk', 'unbanip', ip)
            topo.expect_pass(v6, why=' after unbanip')
        topo.expect_no_blocked_delivered()
        errs = d.errors()
        expect(not errs, 'errors in the log:\n' + '\n'.join(errs[-10:]))
        kind = kind_of(d, native_expected=args.expect_native)
        d.stop()
        expect_no_f2b_left(d)
        return kind
    finally:
        d.kill()
        topo.close()


def ban_all(d, ips, jail='asterisk', logname='asterisk.log'):
    with open(d.path(logname), 'a') as f:
        for ip in ips:
            f.write(fail_line(ip) * 2)
    for ip in ips:
        d.wait_log('[%s] Ban %s' % (jail, ip))


def wait_nft_bans(ns, jail, v4, v6, timeout=5.0):
    """Polls until the jail's sets hold exactly v4 and v6; returns what they hold."""
    last = {}

    def done():
        last['v4'] = nft_set_elements(ns, 'f2b-table', 'addr-set-' + jail)
        last['v6'] = nft_set_elements(ns, 'f2b-table', 'addr6-set-' + jail)
        # A family never banned has no set (None).
        return all(last[f] == set(want) or (last[f] is None and not want)
                   for f, want in (('v4', v4), ('v6', v6)))
    return poll(done, timeout), last


def sc_nft_ruleset_equal():
    ns_native, ns_shell = new_netns('pbx'), new_netns('pbx')
    native = Daemon(ns_native, asterisk_jail('nftables[type=allports, %s]' % NFT_ALL_PROTOS))
    shell = Daemon(ns_shell, asterisk_jail('nftables[type=allports, native=no, %s]' % NFT_ALL_PROTOS))
    try:
        native.start()
        shell.start()
        # IPv4 first, then IPv6, so both create their objects in one order.
        for v4, v6 in ((A4_OTHER, []), (A4_OTHER, A6_OTHER)):
            for d in (native, shell):
                ban_all(d, v6 or v4)
            for d in (native, shell):
                ok, got = wait_nft_bans(d.ns, 'asterisk', v4, v6)
                expect(ok, '%s: sets hold %s' % (d.ns, got))
        a, b = ruleset_objects(ns_native), ruleset_objects(ns_shell)
        if a != b:
            ta, tb = nft_text_normalized(ns_native), nft_text_normalized(ns_shell)
            import difflib
            diff = '\n'.join(difflib.unified_diff(tb.splitlines(), ta.splitlines(), 'native=no', 'native',
                                                  lineterm=''))
            raise Fail('rulesets differ (nft list ruleset, elements sorted):\n' +
                       (diff or 'nft -j:\n%s\n%s' % (a, b)))
        kinds = kind_of(native, native_expected=args.expect_native)
        kind_of(shell, want='shell')
        for d in (native, shell):
            d.stop()
            rest = run(['ip', 'netns', 'exec', d.ns, 'nft', 'list', 'ruleset'])
            expect(not rest.strip(), '%s: ruleset left after stop:\n%s' % (d.ns, rest))
        return 'native ' + kinds
    finally:
        native.kill()
        shell.kill()
        delete_netns(ns_native)
        delete_netns(ns_shell)


REPAIR_TIMEOUT = 8


def sc_nft_repair():
    ns = new_netns('pbx')
    d = Daemon(ns, asterisk_jail('nftables[type=allports, %s]' % NFT_ALL_PROTOS))
    try:
        d.start()
        v4, v6 = list(A4_OTHER[:2]), list(A6_OTHER[:1])
        ban_all(d, v4 + v6)
        ok, got = wait_nft_bans(ns, 'asterisk', v4, v6)
        expect(ok, 'before the flush the sets hold %s' % got)
        before = ruleset_objects(ns)
        took = []

        def ban_and_wait(how, new):
            t0 = time.time()
            ban_all(d, [new])
            (v6 if ':' in new else v4).append(new)
            # Plain builds take 1-3 s (the shell action's stop, start and
            # rebans), ASan builds up to ~4.5 s; 8 s leaves room for load.
            ok, got = wait_nft_bans(ns, 'asterisk', v4, v6, timeout=REPAIR_TIMEOUT)
            took.append(time.time() - t0)
            if not ok:
                raise Fail('within %d s of the ban after %s the sets hold %s, expected IPv4 %s and IPv6 %s '
                           '(every ban in force)\nruleset:\n%s\nlog:\n%s'
                           % (REPAIR_TIMEOUT, how, got, sorted(v4), sorted(v6),
                              run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'ruleset']),
                              d.tail(30, r'Ban|Reban|ERROR|Invariant|restore|nft|repair')))
            # Same table, chain, sets and rules as before (only elements added).
            after = ruleset_objects(ns)
            expect(_without_elems(after) == _without_elems(before),
                   'after %s the rebuilt ruleset differs from the original:\nbefore %s\nafter  %s'
                   % (how, before, after))

        # Everything gone at once.
        d.in_ns('nft', 'flush', 'ruleset')
        expect(not nft_json(ns), 'nft flush ruleset left objects')
        ban_and_wait('`nft flush ruleset`', A4_OTHER[2])
        # Only the IPv6 set and the rules reading it; the IPv6 ban that
        # finds them gone must bring them back with the earlier IPv6 ban.
        chain = d.in_ns('nft', '-a', 'list', 'chain', 'inet', 'f2b-table', 'f2b-chain')
        for handle in re.findall(r'@addr6-set-asterisk .*# handle (\d+)', chain):
            d.in_ns('nft', 'delete', 'rule', 'inet', 'f2b-table', 'f2b-chain', 'handle', handle)
        d.in_ns('nft', 'delete', 'set', 'inet', 'f2b-table', 'addr6-set-asterisk')
        ban_and_wait('deleting the IPv6 rules and set', A6_OTHER[1])
        kind = kind_of(d, native_expected=args.expect_native)
        d.stop()
        expect_no_f2b_left(d)
        return '%s, restored in %s' % (kind, ' and '.join('%.1fs' % t for t in took))
    finally:
        d.kill()
        delete_netns(ns)


def _without_elems(objs):
    """ruleset_objects() with the sets' elements left out."""
    out = []
    for text in objs:
        o = json.loads(text)
        if 'set' in o:
            o['set'].pop('elem', None)
        out.append(json.dumps(o, sort_keys=True))
    return sorted(out)


def iptables_bans(d, chain, v6):
    rules = iptables_rules(d, v6)
    if '-N ' + chain not in rules or '-A INPUT -j %s' % chain not in rules:
        return None
    pre = '-A %s -s ' % chain
    return {r[len(pre):].split()[0].rsplit('/', 1)[0] for r in rules if r.startswith(pre)}


def wait_iptables_bans(d, chain, v4, v6, timeout=5.0):
    last = {}

    def done():
        last['v4'] = iptables_bans(d, chain, False)
        last['v6'] = iptables_bans(d, chain, True)
        # A family never banned has no chain (None).
        return all(last[f] == set(want) or (last[f] is None and not want)
                   for f, want in (('v4', v4), ('v6', v6)))
    return poll(done, timeout), last


def sc_iptables_repair():
    ns = new_netns('pbx')
    chain = 'f2b-ASTERISK'
    d = Daemon(ns, asterisk_jail('iptables-allports[name=ASTERISK, protocol=all]'))
    try:
        d.start()
        v4, v6 = list(A4_OTHER[:2]), list(A6_OTHER)
        ban_all(d, v4 + v6)
        ok, got = wait_iptables_bans(d, chain, v4, v6)
        expect(ok, 'before the flush: %s' % got)
        for tool in ('iptables', 'ip6tables'):
            d.in_ns(tool, '-w', '-F')
            d.in_ns(tool, '-w', '-X')
        new = A4_OTHER[2]
        t0 = time.time()
        ban_all(d, [new])
        v4.append(new)
        ok, got = wait_iptables_bans(d, chain, v4, v6, timeout=REPAIR_TIMEOUT)
        took = time.time() - t0
        if not ok:
            raise Fail('within %d s of the ban after iptables/ip6tables -F -X: %s, expected IPv4 %s and '
                       'IPv6 %s\nlog:\n%s' % (REPAIR_TIMEOUT, got, sorted(v4), sorted(v6),
                                               d.tail(30, r'Ban|Reban|ERROR|Invariant|restore|repair')))
        d.stop()
        expect_no_f2b_left(d)
        return 'restored in %.1fs' % took
    finally:
        d.kill()
        delete_netns(ns)


def sc_iptables_startup():
    ns = new_netns('pbx')
    jails = ''.join(asterisk_jail('iptables-allports[name=J%d, protocol=all]' % i, name='pbx%d' % i,
                                  logname='pbx%d.log' % i) for i in (1, 2, 3))
    d = Daemon(ns, jails)
    bans = {1: ['192.0.2.1', '2001:db8::1'], 2: ['192.0.2.2'], 3: ['192.0.2.3']}
    try:
        for i in bans:
            open(d.path('pbx%d.log' % i), 'w').close()
        d.start()
        for i, ips in bans.items():
            ban_all(d, ips, jail='pbx%d' % i, logname='pbx%d.log' % i)
        for i, ips in bans.items():
            ok, got = wait_iptables_bans(d, 'f2b-J%d' % i, [x for x in ips if ':' not in x],
                                         [x for x in ips if ':' in x])
            expect(ok, 'first run, jail pbx%d: %s' % (i, got))
        d.stop()
        for tool in ('iptables', 'ip6tables'):
            rest = [r for r in d.in_ns(tool, '-w', '-S').splitlines() if 'f2b-' in r]
            expect(not rest, '%s rules left after stop: %s' % (tool, rest))
        mark = len(d.read_log())
        d.start()
        for i, ips in bans.items():
            for ip in ips:
                d.wait_log('[pbx%d] Restore Ban %s' % (i, ip))
        missing = []
        for i, ips in bans.items():
            ok, got = wait_iptables_bans(d, 'f2b-J%d' % i, [x for x in ips if ':' not in x],
                                         [x for x in ips if ':' in x])
            if not ok:
                missing.append('pbx%d: %s' % (i, got))
        second = d.read_log()[mark:]
        bad = [l for l in second.splitlines()
               if 'Error starting action' in l or 'xtables lock' in l or ' ERROR ' in l]
        expect(not bad and not missing, 'after the restart: restored bans not in force: %s\nerrors:\n%s'
               % (missing, '\n'.join(bad[-15:])))
        d.stop()
        expect_no_f2b_left(d)
        return ''
    finally:
        d.kill()
        delete_netns(ns)


class AmiAgent:
    """tests/testing/ami_server.py inside a namespace, driven over its stdin."""

    def __init__(self, ns, secret, port=5038):
        self.proc = spawn(['ip', 'netns', 'exec', ns, sys.executable, '-u',
                           os.path.join(SOURCE, 'tests', 'testing', 'ami_server.py'),
                           '--host', '127.0.0.1', '--port', str(port), '--username', 'bantam',
                           '--secret', secret], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        line = self.proc.stdout.readline()
        if not line:
            raise Fail('ami_server.py did not start (%s)' % self.proc.poll())
        self.port = json.loads(line)['port']

    def ask(self, **req):
        self.proc.stdin.write((json.dumps(req) + '\n').encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise Fail('ami_server.py died (%s)' % self.proc.poll())
        res = json.loads(line)
        if res.get('ok') is False:
            raise Fail('ami_server.py: %s' % res)
        return res

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        forget(self.proc)


def sc_ami_nft_native():
    topo = Topology()
    secret = 'ami-%d' % os.getpid()
    ami = AmiAgent(topo.pbx, secret)
    d = Daemon(topo.pbx, '[asterisk]\nenabled = true\nfilter = asterisk\n'
               'backend = ami[host=127.0.0.1, port=%d, username=bantam, secret_file={d}/ami.secret]\n'
               'action = nftables[type=allports, %s]\nmaxretry = 2\nfindtime = 10m\nbantime = 1h\n'
               % (ami.port, NFT_ALL_PROTOS))
    with open(d.path('ami.secret'), 'w') as f:
        f.write(secret + '\n')
    os.chmod(d.path('ami.secret'), 0o600)
    try:
        d.start()
        expect(ami.ask(op='wait_login', timeout=10)['ok'], 'bantamd did not log in to AMI:\n' + d.tail())
        for v6 in (False, True):
            topo.expect_pass(v6, timeout=5.0, why=' before any ban')
        remote4 = 'IPV4/UDP/%s/5060' % topo.atk4
        remote6 = 'IPV6/UDP/%s/5060' % topo.atk6
        # Informational events for the IPv4 attacker, then Error events for
        # the IPv6 one: once the IPv6 ban is in, the earlier events were
        # read, and they must not have banned.
        for _ in range(3):
            ami.ask(op='event', name='ChallengeSent', remote=remote4)
            ami.ask(op='event', name='SuccessfulAuth', remote=remote4)
        ami.ask(op='event', name='InvalidAccountID', remote=remote6)
        ami.ask(op='event', name='ChallengeResponseFailed', remote=remote6)
        d.wait_log('[asterisk] Ban %s' % topo.atk6)
        topo.expect_blocked(True, why=' after the AMI ban')
        expect('[asterisk] Ban %s' % topo.atk4 not in d.read_log(),
               'Informational events banned:\n' + d.tail())
        topo.expect_pass(False, why=' (Informational events never ban)')
        ami.ask(op='event', name='InvalidPassword', remote=remote4)
        ami.ask(op='event', name='FailedACL', remote=remote4)
        d.wait_log('[asterisk] Ban %s' % topo.atk4)
        topo.expect_blocked(False, why=' after the AMI ban')
        check_nft('asterisk')(d, topo, {topo.atk4, topo.atk6})
        status = d.client('status', 'asterisk')
        expect('ami://bantam@127.0.0.1:%d (connected)' % ami.port in status, status)
        expect('Total failed:\t4' in status, status)
        topo.expect_no_blocked_delivered()
        errs = d.errors()
        expect(not errs, 'errors in the log:\n' + '\n'.join(errs[-10:]))
        kind = kind_of(d, native_expected=args.expect_native)
        d.stop()
        expect_no_f2b_left(d)
        expect(secret not in d.read_log(), 'the AMI secret is in the log')
        return kind
    finally:
        d.kill()
        ami.close()
        topo.close()


SCENARIOS = (
    ('iptables-allports', sc_iptables_allports),
    ('nft-shell', sc_nft_shell),
    ('nft-native', sc_nft_native),
    ('nft-multiport', sc_nft_multiport),
    ('nft-ruleset-equal', sc_nft_ruleset_equal),
    ('nft-repair', sc_nft_repair),
    ('iptables-repair', sc_iptables_repair),
    ('iptables-startup', sc_iptables_startup),
    ('ami-nft-native', sc_ami_nft_native),
)


def main():
    for tool in (BANTAMD, BANTAM):
        if not os.path.exists(tool):
            print('FATAL: %s missing' % tool)
            return 1
    if os.geteuid() != 0:
        print('FATAL: needs root (network namespaces); run the tests as root (sudo tests/run.sh)')
        return 1
    for tool, package in (('ip', 'iproute2'), ('nft', 'nftables'), ('iptables', 'iptables'),
                          ('ip6tables', 'iptables')):
        if not shutil.which(tool):
            print('FATAL: needs %s (Debian package %s); set up with packaging/setup.sh'
                  % (tool, package))
            return 1
    if subprocess.run(['ip', 'netns', 'list'], stdout=subprocess.DEVNULL,
                      stderr=subprocess.DEVNULL).returncode != 0:
        print('FATAL: needs ip netns (iproute2 with network namespace support)')
        return 1
    delete_stale_netns()
    only = os.environ.get('FW_ONLY')
    names = [n for n, _ in SCENARIOS]
    if only and only not in names:
        print('FATAL: FW_ONLY=%s: no such scenario (%s)' % (only, ', '.join(names)))
        return 1
    passed = failed = 0
    t_all = time.time()

    def timed(fn):
        t0 = time.time()
        try:
            return True, fn(), time.time() - t0
        except (Fail, subprocess.TimeoutExpired) as e:
            return False, str(e), time.time() - t0
    # Each scenario has its own namespaces and temp tree, and most of its
    # time is spent waiting (probes, polls, the 2 s ban): several at once.
    jobs = int(os.environ.get('FW_JOBS', '3'))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(name, pool.submit(timed, fn)) for name, fn in SCENARIOS if not only or name == only]
        for name, fut in futures:
            ok, note, took = fut.result()
            if ok:
                passed += 1
                print('PASS %s (%.1fs)%s' % (name, took, ' ' + note if note else ''), flush=True)
            else:
                failed += 1
                print('FAIL %s (%.1fs): %s' % (name, took, note), flush=True)
    print('%d passed, %d failed (%.1fs)' % (passed, failed, time.time() - t_all))
    return 1 if failed else 0


if __name__ == '__main__':
    try:
        rc = main()
    finally:
        cleanup_all()
    sys.exit(rc)
