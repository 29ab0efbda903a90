#!/usr/bin/env python3
"""bantamd's Prometheus endpoint, scraped by the real Prometheus.

A real bantamd on a temporary tree (a recording shell action, so no
firewall is touched; no root needed), its endpoint on a free loopback
port. Checks, in order:

  config-check  `bantam -t`: a non-loopback `metrics` without
                metrics_allow_remote, a host name and a bad boolean are
                errors naming fail2ban.local and the line; with
                metrics_allow_remote = yes it passes
  counts        after failures, an ignored address and bans, /metrics
                holds exactly what happened: lines and bytes read, the
                last line's time, failures, ignored failures, failing and
                banned addresses, bans by cause, action runs
  promtool      `promtool check metrics` finds nothing wrong in the text
                format (0.0.4); OpenMetrics ends with # EOF
  not-found     any other path, and POST, are 404
  prometheus    a real Prometheus (its own TSDB in a temp dir, scraping
                every second) scrapes the endpoint (in OpenMetrics, which
                it asks for); its HTTP API (/api/v1/query) reports the
                bans, failures and the manual ban and unban
  reload        an expired ban is counted as such; SIGHUP with a changed jail and a removed one: the kept
                jail's counters go on from where they were, the removed
                jail's series are gone, the reload is counted; a broken
                configuration is counted as a failed reload
  slow-clients  20 connections that never send a request, and a half
                request: a new attacker is still banned within a second,
                and a scrape still answers once their timeout closes them
  json          `bantam status --json`, `status JAIL --json`, `banned
                --json` and `banned IP... --json` hold the jail's state
  restore       a restart counts the bans read back as cause="restored";
                the endpoint on a unix socket
  nft           the native nftables action in a network namespace: its
                netlink transactions and their sizes (3 bans) are counted

Needs promtool and prometheus (Debian package prometheus), ip and nft, and
root (the nft case); under CI (CI set) a missing one is a failure naming
the package, otherwise a skip.
Ends with "N passed, M failed".
"""
import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument('--bantam', required=True)
ap.add_argument('--source-dir', required=True)
ap.add_argument('--keep', action='store_true')
args = ap.parse_args()
BANTAM = os.path.abspath(args.bantam)
BANTAMD = os.path.join(os.path.dirname(BANTAM), 'bantamd')
sys.path.insert(0, os.path.join(args.source_dir, 'tests', 'testing'))
from netns_script import require  # noqa: E402
PROMTOOL = '/usr/bin/promtool'
PROMETHEUS = '/usr/bin/prometheus'


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


class Tree:
    def __init__(self, metrics=None, extra_jail=True):
        self.dir = tempfile.mkdtemp(prefix='bantam-metrics-')
        self.port = free_port()
        self.metrics = metrics or '127.0.0.1:%d' % self.port
        self.extra_jail = extra_jail
        self.write_config()
        self.write('pbx.log', '')
        self.write('other.log', '')
        self.write('extra.log', '')
        self.proc = None

    def write_config(self, maxretry=3, other=True, broken=False):
        d = self.dir
        self.write('fail2ban.conf', f'''[Definition]
loglevel = INFO
logtarget = {d}/bantam.log
pidfile = {d}/bantamd.pid
socket = {d}/bantam.sock
dbfile = {d}/db.sqlite3
''')
        self.write('fail2ban.local', f'[Definition]\nmetrics = {self.metrics}\n')
        self.write('filter.d/pbx.conf', '[Definition]\nfailregex = ^\\s*auth failed from <HOST>$\n')
        self.write('action.d/record.conf', f'''[Definition]
actionstart = echo start <name> >> {d}/actions.log
actionstop = echo stop <name> >> {d}/actions.log
actionban = echo ban <name> <ip> >> {d}/actions.log
actionunban = echo unban <name> <ip> >> {d}/actions.log
[Init]
name = default
''')
        jail = f'''[DEFAULT]
ignoreself = false
findtime = 600
bantime = 3600
[pbx]
enabled = true
filter = pbx
action = record[name=pbx]
logpath = {d}/pbx.log
maxretry = {maxretry}
ignoreip = 203.0.113.250
'''
        if other and self.extra_jail:
            jail += f'''[other]
enabled = true
filter = pbx
action = record[name=other]
logpath = {d}/other.log
          {d}/extra.log
maxretry = 2
bantime = 2
'''
        if broken:
            jail += '[broken\n'
        self.write('jail.conf', jail)

    def write(self, rel, text, mode='w'):
        p = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, mode) as f:
            f.write(text)

    def read(self, rel):
        try:
            with open(os.path.join(self.dir, rel)) as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def fail(self, ip, n=1, log='pbx.log'):
        now = time.strftime('%Y-%m-%d %H:%M:%S')
        text = ''.join('%s auth failed from %s\n' % (now, ip) for _ in range(n))
        self.write(log, text, 'a')
        return text

    def start(self):
        ready = self.read('bantam.log').count('Server ready') + 1
        self.proc = subprocess.Popen([BANTAMD, '-f', '-c', self.dir],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.wait_for('bantam.log', 'Server ready', count=ready)

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=30)
        rc = self.proc.returncode
        self.proc = None
        return rc, out.decode(errors='replace')

    def client(self, *words):
        return subprocess.run([BANTAM, '-c', self.dir] + list(words), capture_output=True,
                              text=True, timeout=30)

    def wait_for(self, rel, text, count=1, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            if self.read(rel).count(text) >= count:
                return True
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError('bantamd exited (%s): %s' % (
                    self.proc.returncode, self.proc.stdout.read().decode(errors='replace')))
            time.sleep(0.02)
        raise AssertionError('timed out waiting for %r x%d in %s:\n%s' % (
            text, count, rel, self.read(rel)[-3000:]))

    def scrape(self, path='/metrics', accept=None, method='GET'):
        req = urllib.request.Request('http://127.0.0.1:%d%s' % (self.port, path), method=method)
        if accept:
            req.add_header('Accept', accept)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, r.headers.get('Content-Type'), r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get('Content-Type'), e.read().decode()

    def cleanup(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        if not args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def scrape_unix(sock):
    """GET /metrics over the unix socket `sock`: (status line and headers, body)."""
    c = socket.socket(socket.AF_UNIX)
    c.settimeout(5)
    try:
        c.connect(sock)
        c.sendall(b'GET /metrics HTTP/1.1\r\nHost: bantam\r\nConnection: close\r\n\r\n')
        data = b''
        while True:
            b = c.recv(65536)
            if not b:
                break
            data += b
    finally:
        c.close()
    head, _, body = data.decode().partition('\r\n\r\n')
    return head, body


def parse(text):
    """{(name, frozenset(labels.items())): value} of a text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
        expect(m, 'unparsable sample line %r' % line)
        labels = {}
        if m.group(3):
            for k, v in re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(3)):
                labels[k] = v
        out[(m.group(1), frozenset(labels.items()))] = float(m.group(4))
    return out


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def series_of(samples, jail):
    return [k for k in samples if ('jail', jail) in k[1]]


def check_config(t, state):
    """bantam -t on the metrics options: file:line messages."""
    local = os.path.join(t.dir, 'fail2ban.local')
    cases = [
        ('[Definition]\n# remote\nmetrics = 0.0.0.0:9191\n', 255,
         '%s:3: metrics = \'0.0.0.0:9191\' is reachable from other hosts' % local),
        ('[Definition]\nmetrics = localhost:9191\n', 255,
         "%s:2: metrics = 'localhost:9191': 'localhost' is not an IPv4 address" % local),
        ('[Definition]\nmetrics = 127.0.0.1:9191\nmetrics_allow_remote = maybe\n', 255,
         "%s:3: metrics_allow_remote = 'maybe' is not yes or no" % local),
        ('[Definition]\nmetrics = [::]:9191\nmetrics_allow_remote = yes\n', 0,
         'OK: configuration test is successful'),
        ('[Definition]\nmetrics = unix:/run/bantam/metrics.sock\n', 0,
         'OK: configuration test is successful'),
    ]
    for text, rc, want in cases:
        t.write('fail2ban.local', text)
        r = t.client('-t')
        out = r.stdout + r.stderr
        expect(r.returncode == rc and want in out,
               'bantam -t with %r: exit %d (want %d), want %r in:\n%s' % (text, r.returncode, rc, want, out))
    t.write_config()


def counts(t, state):
    t.start()
    pbx_text = ''
    pbx_text += t.fail('192.0.2.1', 3)
    pbx_text += t.fail('192.0.2.2', 3)
    pbx_text += t.fail('192.0.2.3', 2)          # failing, not banned
    pbx_text += t.fail('203.0.113.250', 4)      # ignoreip
    pbx_text += 'a line that is no failure\n'
    t.write('pbx.log', 'a line that is no failure\n', 'a')
    # other reads two logs; lines alternate between them, each one's
    # count is its own.
    other_text = ''
    extra_text = ''
    for i in range(3):
        extra_text += 'no failure %d\n' % i
        t.write('extra.log', 'no failure %d\n' % i, 'a')
        if i < 2:
            other_text += t.fail('198.51.100.1', 1, log='other.log')
        time.sleep(0.05)
    t.wait_for('actions.log', 'ban pbx 192.0.2.2')
    t.wait_for('actions.log', 'ban other 198.51.100.1')
    t.wait_for('bantam.log', 'Found 192.0.2.3', count=2)
    before = time.time()
    status, ctype, body = t.scrape()
    expect(status == 200, 'GET /metrics: %d %s' % (status, body))
    expect(ctype == 'text/plain; version=0.0.4; charset=utf-8', 'Content-Type %r' % ctype)
    s = parse(body)
    pbx_log = os.path.join(t.dir, 'pbx.log')
    other_log = os.path.join(t.dir, 'other.log')
    extra_log = os.path.join(t.dir, 'extra.log')
    want = {
        ('bantam_failures_total', (('jail', 'pbx'),)): 8,
        ('bantam_failures_total', (('jail', 'other'),)): 2,
        ('bantam_ignored_failures_total', (('jail', 'pbx'), ('reason', 'ip'))): 4,
        ('bantam_ignored_failures_total', (('jail', 'pbx'), ('reason', 'self'))): 0,
        ('bantam_bans_total', (('jail', 'pbx'), ('cause', 'maxretry'))): 2,
        ('bantam_bans_total', (('jail', 'pbx'), ('cause', 'manual'))): 0,
        ('bantam_bans_total', (('jail', 'pbx'), ('cause', 'fleet'))): 0,
        ('bantam_bans_total', (('jail', 'other'), ('cause', 'maxretry'))): 1,
        ('bantam_unbans_total', (('jail', 'pbx'), ('cause', 'expired'))): 0,
        ('bantam_banned_addresses', (('jail', 'pbx'),)): 2,
        ('bantam_failing_addresses', (('jail', 'pbx'),)): 1,
        ('bantam_source_lines_read_total', (('jail', 'pbx'), ('source', pbx_log))):
            pbx_text.count('\n'),
        ('bantam_source_read_bytes_total', (('jail', 'pbx'), ('source', pbx_log))):
            len(pbx_text.encode()) - pbx_text.count('\n'),
        ('bantam_source_lines_read_total', (('jail', 'other'), ('source', other_log))):
            other_text.count('\n'),
        ('bantam_source_lines_read_total', (('jail', 'other'), ('source', extra_log))):
            extra_text.count('\n'),
        ('bantam_action_runs_total', (('jail', 'pbx'), ('action', 'record'), ('operation', 'ban'))): 2,
        ('bantam_action_runs_total', (('jail', 'pbx'), ('action', 'record'), ('operation', 'start'))): 1,
        ('bantam_action_errors_total', (('jail', 'pbx'), ('action', 'record'), ('operation', 'ban'))): 0,
        ('bantam_jails', ()): 2,
        ('bantam_config_reloads_total', (('result', 'success'),)): 0,
        ('bantam_build_info', (('version', '0.1.0'), ('fail2ban_version', '1.0.2'))): 1,
    }
    for (name, labels), v in want.items():
        got = value(s, name, **dict(labels))
        expect(got == v, '%s%s = %r, want %r' % (name, dict(labels), got, v))
    last = value(s, 'bantam_source_last_line_timestamp_seconds', jail='pbx', source=pbx_log)
    expect(last is not None and before - 10 < last <= before + 1,
           'last line time %r, now %r' % (last, before))
    start = value(s, 'process_start_time_seconds')
    expect(start is not None and before - 60 < start <= before, 'start time %r' % start)
    hist = value(s, 'bantam_action_duration_seconds_count', jail='pbx', action='record')
    expect(hist is not None and hist >= 3, 'action duration count %r' % hist)
    expect((value(s, 'bantam_db_transactions_total', result='success') or 0) >= 1,
           'database transactions counted')
    # No label names an address, ever.
    expect(not re.search(r'192\.0\.2\.|198\.51\.100\.|203\.0\.113\.', body),
           'an address in the exposition:\n' + body)
    state['text'] = body


def promtool(t, state):
    r = subprocess.run([PROMTOOL, 'check', 'metrics'], input=state['text'], capture_output=True,
                       text=True, timeout=60)
    expect(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
           'promtool check metrics: exit %d\n%s%s' % (r.returncode, r.stdout, r.stderr))
    status, ctype, body = t.scrape(accept='application/openmetrics-text;version=1.0.0')
    expect(status == 200 and ctype.startswith('application/openmetrics-text; version=1.0.0'),
           'OpenMetrics: %d %r' % (status, ctype))
    expect(body.endswith('# EOF\n'), 'OpenMetrics ends with # EOF: ...%r' % body[-50:])
    expect('# TYPE bantam_bans counter\n' in body and 'bantam_bans_total{' in body,
           'OpenMetrics counter family names: %s' % body[:2000])


def not_found(t, state):
    for path in ('/', '/metrics/', '/favicon.ico', '/api/v1/query?query=up'):
        status, _, _ = t.scrape(path)
        expect(status == 404, 'GET %s: %d, want 404' % (path, status))
    status, _, _ = t.scrape(method='POST')
    expect(status == 404, 'POST /metrics: %d, want 404' % status)


class Prometheus:
    def __init__(self, target):
        self.dir = tempfile.mkdtemp(prefix='bantam-prometheus-')
        self.port = free_port()
        with open(os.path.join(self.dir, 'prometheus.yml'), 'w') as f:
            f.write(f'''global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: bantam
    scrape_interval: 1s
    scrape_timeout: 900ms
    static_configs:
      - targets: ['{target}']
''')
        self.log = open(os.path.join(self.dir, 'prometheus.log'), 'w')
        self.proc = subprocess.Popen(
            [PROMETHEUS, '--config.file=' + os.path.join(self.dir, 'prometheus.yml'),
             '--storage.tsdb.path=' + os.path.join(self.dir, 'data'),
             '--web.listen-address=127.0.0.1:%d' % self.port],
            stdout=self.log, stderr=subprocess.STDOUT)

    def query(self, q):
        url = 'http://127.0.0.1:%d/api/v1/query?%s' % (self.port, urllib.parse.urlencode({'query': q}))
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.load(r)
        expect(data['status'] == 'success', data)
        return data['data']['result']

    def wait_value(self, q, want, timeout=30):
        """Waits until the instant query `q` gives one series of value `want`."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            try:
                res = self.query(q)
                last = res
                if len(res) == 1 and float(res[0]['value'][1]) == want:
                    return
            except (urllib.error.URLError, ConnectionError, OSError) as e:
                last = e
            if self.proc.poll() is not None:
                raise AssertionError('prometheus exited: ' + self.read_log())
            time.sleep(0.25)
        raise AssertionError('prometheus: %s never %r (last: %r)\n%s' % (q, want, last, self.read_log()[-2000:]))

    def read_log(self):
        self.log.flush()
        with open(os.path.join(self.dir, 'prometheus.log')) as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if not args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)


def prometheus(t, state):
    p = Prometheus('127.0.0.1:%d' % t.port)
    try:
        p.wait_value('up{job="bantam"}', 1)
        p.wait_value('bantam_bans_total{job="bantam",jail="pbx",cause="maxretry"}', 2)
        p.wait_value('sum(bantam_failures_total{job="bantam"})', 10)
        p.wait_value('sum(bantam_bans_total{job="bantam"})', 3)
        # A manual ban and unban show up as such.
        r = t.client('set', 'pbx', 'banip', '192.0.2.77')
        expect(r.returncode == 0, 'banip: %s%s' % (r.stdout, r.stderr))
        p.wait_value('bantam_bans_total{job="bantam",jail="pbx",cause="manual"}', 1)
        r = t.client('set', 'pbx', 'unbanip', '192.0.2.77')
        expect(r.returncode == 0, 'unbanip: %s%s' % (r.stdout, r.stderr))
        p.wait_value('bantam_unbans_total{job="bantam",jail="pbx",cause="manual"}', 1)
        p.wait_value('bantam_banned_addresses{job="bantam",jail="pbx"}', 2)
        # What it scraped was OpenMetrics (it asks for it first).
        targets = json.load(urllib.request.urlopen(
            'http://127.0.0.1:%d/api/v1/targets' % p.port, timeout=5))
        active = targets['data']['activeTargets']
        expect(len(active) == 1 and active[0]['health'] == 'up' and not active[0]['lastError'],
               'target: %r' % active)
    finally:
        p.stop()


def reload(t, state):
    # other's ban (bantime 2 s) has run out meanwhile: an expired unban.
    end = time.time() + 15
    while True:
        _, _, body = t.scrape()
        s0 = parse(body)
        if value(s0, 'bantam_unbans_total', jail='other', cause='expired') == 1:
            break
        expect(time.time() < end, 'no expired unban counted for jail other:\n%s' % body)
        time.sleep(0.2)
    expect(value(s0, 'bantam_banned_addresses', jail='other') == 0, 'other still bans')
    expect(value(s0, 'bantam_action_runs_total', jail='other', action='record',
                 operation='unban') == 1, 'the unban ran')
    expect(series_of(s0, 'other'), 'jail other has series before the reload')
    # pbx changes (rebuilt, its counters kept); other goes.
    t.write_config(maxretry=4, other=False)
    t.proc.send_signal(signal.SIGHUP)
    t.wait_for('bantam.log', 'Reload finished.')
    t.wait_for('bantam.log', "Jail 'pbx' reloaded")
    _, _, body = t.scrape()
    s = parse(body)
    for key, v in s0.items():
        name, labels = key
        if ('jail', 'pbx') not in labels or not name.endswith('_total'):
            continue
        expect(s.get(key) == v, 'after SIGHUP %s%s = %r, was %r' % (name, dict(labels), s.get(key), v))
    expect(not series_of(s, 'other'), 'removed jail still has series: %r' % series_of(s, 'other'))
    expect(value(s, 'bantam_config_reloads_total', result='success') == 1, 'reload counted')
    expect(value(s, 'bantam_config_last_reload_successful') == 1, 'last reload successful')
    # Counting goes on from there.
    t.fail('192.0.2.4', 4)
    t.wait_for('actions.log', 'ban pbx 192.0.2.4')
    _, _, body = t.scrape()
    s = parse(body)
    expect(value(s, 'bantam_bans_total', jail='pbx', cause='maxretry') == 3,
           'bans after reload: %r' % value(s, 'bantam_bans_total', jail='pbx', cause='maxretry'))
    expect(value(s, 'bantam_failures_total', jail='pbx') == 12, 'failures after reload')
    # A configuration that does not load is a failed reload.
    t.write_config(maxretry=4, other=False, broken=True)
    t.proc.send_signal(signal.SIGHUP)
    t.wait_for('bantam.log', 'Reload failed')
    _, _, body = t.scrape()
    s = parse(body)
    expect(value(s, 'bantam_config_reloads_total', result='failure') == 1, 'failed reload counted')
    expect(value(s, 'bantam_config_last_reload_successful') == 0, 'last reload failed')
    expect(value(s, 'bantam_bans_total', jail='pbx', cause='maxretry') == 3, 'kept after a failed reload')
    t.write_config(maxretry=4, other=False)


def slow_clients(t, state):
    silent = []
    for _ in range(20):
        c = socket.socket()
        c.settimeout(5)
        try:
            c.connect(('127.0.0.1', t.port))
        except OSError:
            pass
        silent.append(c)
    half = socket.create_connection(('127.0.0.1', t.port), timeout=5)
    half.sendall(b'GET /metr')
    silent.append(half)
    try:
        t0 = time.time()
        t.fail('192.0.2.5', 4)
        t.wait_for('actions.log', 'ban pbx 192.0.2.5', timeout=5)
        took = time.time() - t0
        expect(took < 1.0, 'a ban took %.2f s with 21 stalled metrics clients' % took)
        # The stalled ones are closed after the timeout (10 s); then a scrape answers.
        end = time.time() + 25
        status = None
        while time.time() < end:
            try:
                status, _, _ = t.scrape()
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        expect(status == 200, 'no scrape answered after the stalled clients timed out')
        closed = 0
        for c in silent:
            try:
                c.settimeout(0.5)
                if c.recv(1) == b'':
                    closed += 1
            except OSError:
                closed += 1
        expect(closed == len(silent), '%d of %d stalled connections closed' % (closed, len(silent)))
    finally:
        for c in silent:
            c.close()


def json_output(t, state):
    """bantam status --json and bantam banned --json (docs/metrics.md)."""
    want = ['192.0.2.1', '192.0.2.2', '192.0.2.4', '192.0.2.5']
    r = t.client('status', '--json')
    expect(r.returncode == 0, 'status --json: %d %s%s' % (r.returncode, r.stdout, r.stderr))
    doc = json.loads(r.stdout)
    expect(doc['version'] == 1 and list(doc['jails']) == ['pbx'], doc)
    pbx = doc['jails']['pbx']
    # total: the four, and the manual ban of 192.0.2.77 since lifted.
    expect(pbx['actions']['currently_banned'] == 4 and pbx['actions']['total_banned'] == 5
           and sorted(pbx['actions']['banned_ip_list']) == want, pbx)
    expect(pbx['filter']['total_failed'] == 16 and pbx['filter']['currently_failed'] == 1, pbx)
    expect(pbx['filter']['file_list'] == [os.path.join(t.dir, 'pbx.log')], pbx)
    r = t.client('status', 'pbx', '--json')
    expect(r.returncode == 0, 'status pbx --json: %s%s' % (r.stdout, r.stderr))
    one = json.loads(r.stdout)
    expect(one['jail']['name'] == 'pbx' and one['jail']['actions'] == pbx['actions'], one)
    r = t.client('banned', '--json')
    expect(r.returncode == 0, 'banned --json: %s%s' % (r.stdout, r.stderr))
    b = json.loads(r.stdout)
    expect(b['version'] == 1 and sorted(b['banned']['pbx']) == want, b)
    r = t.client('banned', '192.0.2.1', '192.0.2.9', '--json')
    b = json.loads(r.stdout)
    expect(b['addresses'] == {'192.0.2.1': ['pbx'], '192.0.2.9': []}, b)
    r = t.client('status', 'nosuchjail', '--json')
    expect(r.returncode != 0 and 'error' in json.loads(r.stdout), 'unknown jail: %r' % r.stdout)


def restore(t, state):
    rc, out = t.stop()
    expect(rc == 0, 'stop: %d %s' % (rc, out))
    banned = 4  # 192.0.2.1, .2, .4, .5
    sock = os.path.join(t.dir, 'metrics.sock')
    t.metrics = 'unix:' + sock
    t.write_config(maxretry=4, other=False)
    t.start()
    t.wait_for('bantam.log', 'Restore Ban 192.0.2.5')
    head, body = scrape_unix(sock)
    expect(head.startswith('HTTP/1.1 200'), 'unix socket: %s' % head)
    s = parse(body)
    got = value(s, 'bantam_bans_total', jail='pbx', cause='restored')
    expect(got == banned, 'restored bans %r, want %d' % (got, banned))
    expect(value(s, 'bantam_bans_total', jail='pbx', cause='maxretry') == 0,
           'a new process counts from 0')
    rc, out = t.stop()
    expect(rc == 0, 'stop: %d %s' % (rc, out))
    expect(not os.path.exists(sock), 'the unix socket is removed at stop')


def nft(t, state):
    """The native nftables action in a network namespace of its own: its
    transactions and their sizes are counted (endpoint on a unix socket,
    which the host reaches across the namespace)."""
    ns = 'bantam-metrics-%d' % os.getpid()
    subprocess.run(['ip', 'netns', 'add', ns], check=True)
    n = Tree(extra_jail=False)
    try:
        sock = os.path.join(n.dir, 'metrics.sock')
        n.metrics = 'unix:' + sock
        n.write_config()
        for f in ('nftables.conf', 'nftables-allports.conf'):
            shutil.copy(os.path.join(args.source_dir, 'config', 'action.d', f),
                        os.path.join(n.dir, 'action.d', f))
        jail = n.read('jail.conf').replace('action = record[name=pbx]',
                                           'action = nftables-allports[name=pbx]')
        n.write('jail.conf', jail)
        ready = n.read('bantam.log').count('Server ready') + 1
        n.proc = subprocess.Popen(['ip', 'netns', 'exec', ns, BANTAMD, '-f', '-c', n.dir],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        n.wait_for('bantam.log', 'Server ready', count=ready)
        expect('runs through the shell' not in n.read('bantam.log'),
               'the native action did not run:\n' + n.read('bantam.log')[-2000:])
        for ip in ('192.0.2.11', '192.0.2.12', '2001:db8::13'):
            n.fail(ip, 3)
        end = time.time() + 10
        while time.time() < end:
            out = subprocess.run(['ip', 'netns', 'exec', ns, 'nft', 'list', 'ruleset'],
                                 capture_output=True, text=True).stdout
            if all(a in out for a in ('192.0.2.11', '192.0.2.12', '2001:db8::13')):
                break
            time.sleep(0.1)
        expect(all(a in out for a in ('192.0.2.11', '192.0.2.12', '2001:db8::13')),
               'bans not in the kernel:\n' + out)
        s = parse(scrape_unix(sock)[1])
        lab = {'jail': 'pbx', 'action': 'nftables-allports'}
        txns = value(s, 'bantam_nft_transactions_total', **lab)
        elements = value(s, 'bantam_nft_transaction_elements_sum', **lab)
        count = value(s, 'bantam_nft_transaction_elements_count', **lab)
        expect(txns is not None and 1 <= txns <= 3 and count == txns,
               'nft transactions %r (histogram count %r)' % (txns, count))
        expect(elements == 3, 'elements in those transactions: %r, want 3' % elements)
        expect(value(s, 'bantam_nft_transaction_failures_total', **lab) == 0, 'no failed transaction')
        expect(value(s, 'bantam_action_runs_total', operation='ban', **lab) == 3, 'three ban runs')
        rc, out = n.stop()
        expect(rc == 0, 'stop: %d %s' % (rc, out))
    finally:
        n.cleanup()
        subprocess.run(['ip', 'netns', 'delete', ns], stderr=subprocess.DEVNULL)


CASES = [('config-check', check_config), ('counts', counts), ('promtool', promtool),
         ('not-found', not_found), ('prometheus', prometheus), ('reload', reload),
         ('slow-clients', slow_clients), ('json', json_output), ('restore', restore),
         ('nft', nft)]


def main():
    rc = require(((PROMTOOL, 'Debian package prometheus'), (PROMETHEUS, 'Debian package prometheus'),
                  ('ip', 'Debian package iproute2'), ('nft', 'Debian package nftables'),
                  (BANTAMD, 'build it')),
                 root='the nft case runs bantamd in a network namespace')
    if rc is not None:
        return rc
    passed = failed = 0
    t = Tree()
    state = {}
    try:
        for name, case in CASES:
            try:
                case(t, state)
                print('PASS ' + name)
                passed += 1
            except AssertionError as e:
                print('FAIL %s: %s' % (name, e))
                failed += 1
                if name in ('counts',):
                    break  # the rest builds on it
    finally:
        t.cleanup()
    print('%d passed, %d failed' % (passed, failed))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
