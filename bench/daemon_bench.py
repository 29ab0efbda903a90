#!/usr/bin/env python3
"""Daemon benchmarks: stock fail2ban-server and bantamd, side by side, on the
same generated Asterisk input and the stock `asterisk` filter.

Scenarios (--scenarios, comma separated; default all):
  detect   200k generated lines appended at once to the watched log; a jail
           (maxretry 3, findtime 1d) whose only action does nothing (empty
           actionstart/ban/unban/check/stop: fail2ban runs no command for it).
           Time from the append until the daemon's log holds as many
           "[asterisk] Ban" lines as the input has offenders; the banned sets
           are compared with each other and with the generator's truth.
  nft      the same input, the jail's action the stock nftables-allports
           action (protocol "tcp,udp"): fail2ban runs its shell commands,
           bantamd its native netlink action (unless the action is given
           `native=no`). Each daemon in a fresh network namespace of its own.
           Time until every banned address is an element of the kernel sets
           (addr-set-asterisk and addr6-set-asterisk), as `nft monitor`
           reports them; CPU = user+sys of the daemon and its reaped children
           (/proc/PID/stat) over that time.
  restore  20k and 100k unexpired bans in the database (--restore-counts),
           the same action, each daemon in a fresh namespace: exec -> every
           ban an element of the kernel set (five of the addresses asked for
           over netlink every 2 ms by a child in the namespace, then a full
           listing confirms; its time is not counted). fail2ban is watched for at
           most --restore-fail2ban-timeout seconds (default 120), then its
           rate so far is reported.
  latency  maxretry 1: one failure line of a new address at a time; latency =
           line written -> the action's `echo <ip> > FIFO` read by this script
           (both timestamps from this script's monotonic clock).
  latency-nft
           maxretry 1, the stock nftables-allports action (bantamd: its native
           netlink action), each daemon in a network namespace of its own:
           one failure line of a new address at a time; latency = line
           written -> the element reported by `nft monitor new elements` in
           that namespace (fail2ban gets one ban first, outside the figures,
           so its on-demand actionstart has run).
  startup  exec -> ready, with the asterisk jail and an empty log (the ban
           database already created by a warm-up start). fail2ban: its log's
           "Jail 'asterisk' started"; bantamd: READY=1 on a NOTIFY_SOCKET
           made by this script (sent after its own "Jail 'asterisk' started",
           after the first read of the logs).
  memory   VmRSS/VmHWM idle (1 s after ready), then after 100k failure lines
           of 100k distinct IPv4 addresses (each below maxretry 3; read 3 s
           after the last is found); then, for bantamd only
           (--flood-fail2ban adds fail2ban), a flood of 1M lines
           of 1M distinct IPv6 addresses: peak RSS while it lasts, and the
           failure-table cap from bantamd's "oldest addresses dropped" log.

Each scenario runs fail2ban then bantamd in the same run and prints both
figures and the ratio; a markdown summary table ends the output. Everything
started (daemons, namespaces, temp dirs) is stopped and removed on exit.

Run as root (namespaces, nft). Needs the stock fail2ban (/usr/bin/fail2ban-
server, /etc/fail2ban/{filter.d,action.d}); any python3 runs this script.

  sudo bench/daemon_bench.py --bantamd build/bantamd
  bench/daemon_bench.py --scenarios detect,latency --latency-count 50
"""

import argparse
import atexit
import calendar
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import struct
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")
BAN_RE = re.compile(r"NOTICE\s+\[asterisk\] Ban (\S+)$")
ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "TZ": "UTC", "LANG": "C.UTF-8"}

# ---------------------------------------------------------------------------
# cleanup of everything started


_procs = []      # Popen objects, each the leader of its own session
_netns = []      # namespace names
_tmpdirs = []
_keep = False


def cleanup():
    for p in _procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    _procs.clear()
    for ns in _netns:
        subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
    _netns.clear()
    if not _keep:
        for d in _tmpdirs:
            shutil.rmtree(d, ignore_errors=True)
    _tmpdirs.clear()


def on_signal(signo, _frame):
    raise KeyboardInterrupt("signal %d" % signo)


# ---------------------------------------------------------------------------
# helpers


def now_stamp():
    return time.strftime("[%Y-%m-%d %H:%M:%S]", time.gmtime())


def fail_line(addr):
    host = "[%s]:5060" % addr if ":" in addr else "%s:5060" % addr
    return ("%s NOTICE[4242] chan_sip.c: Registration from '\"100\" <sip:100@203.0.113.5>' "
            "failed for '%s' - Wrong password\n" % (now_stamp(), host))


def norm(addr):
    return ipaddress.ip_address(addr).compressed


def proc_cpu(pid):
    """user+sys of pid and its reaped children, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is state (field 3); utime is field 14.
    return sum(int(x) for x in fields[11:15]) / CLK_TCK


def proc_mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])  # kB
    return out


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


class LogWatch:
    """Reads a growing log incrementally; counts Ban/Found lines, keeps banned ids."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.rest = b""
        self.bans = []
        self.ban_stamps = []  # each Ban line's "YYYY-mm-dd HH:MM:SS,mmm"
        self.found = 0
        self.lines = []   # other lines of interest
        self.keep = None  # optional substring filter for self.lines

    def skip_existing(self):
        try:
            self.offset = os.path.getsize(self.path)
        except FileNotFoundError:
            self.offset = 0

    def poll(self):
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return False
        if size <= self.offset:
            if size < self.offset:
                self.offset = 0
            return False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        text = data[:cut].decode("utf-8", "replace")
        self.found += text.count("] Found ")
        if "Ban " in text or self.keep:
            for line in text.splitlines():
                m = BAN_RE.search(line)
                if m:
                    self.bans.append(m.group(1))
                    self.ban_stamps.append(line[:23])
                elif self.keep and any(k in line for k in self.keep):
                    self.lines.append(line)
        return True


# ---------------------------------------------------------------------------
# the daemons


class Daemon:
    """One daemon on a temp config tree: fail2ban.conf, jail.conf, the stock
    filter.d and action.d, bench actions, its own log/db/socket/pidfile."""

    def __init__(self, kind, args, jail, netns=None, loglevel=None):
        self.kind = kind
        self.args = args
        self.dir = tempfile.mkdtemp(prefix="bantam-dbench-%s-" % kind)
        _tmpdirs.append(self.dir)
        self.netns = netns
        self.proc = None
        d = self.dir
        for sub in ("filter.d", "action.d"):
            shutil.copytree(os.path.join(args.fail2ban_conf, sub), os.path.join(d, sub))
        self.logpath = os.path.join(d, "asterisk.log")
        self.fifo = os.path.join(d, "bans.fifo")
        self.daemon_log = os.path.join(d, "daemon.log")
        self.sock = os.path.join(d, "daemon.sock")
        self.pidfile = os.path.join(d, "daemon.pid")
        self.write("fail2ban.conf", "[Definition]\nloglevel = %s\nlogtarget = %s\nsocket = %s\n"
                   "pidfile = %s\ndbfile = %s\ndbpurgeage = 1d\n" % (
                       loglevel or args.loglevel, self.daemon_log, self.sock, self.pidfile,
                       args.dbfile or os.path.join(d, "db.sqlite3")))
        if kind == "bantamd" and getattr(args, "bantam_metrics", None):
            # Issue 17: the Prometheus endpoint on, scraped every
            # --bantam-metrics-interval while the daemon runs.
            self.write("fail2ban.local", "[Definition]\nmetrics = %s\n" % args.bantam_metrics)
        self.scraper = None
        self.write("action.d/bench-noop.conf", "[Definition]\nactionstart =\nactionstop =\n"
                   "actioncheck =\nactionban =\nactionunban =\n")
        self.write("action.d/bench-fifo.conf", "[Definition]\nactionban = echo <ip> > %s\n"
                   "actionunban =\n" % self.fifo)
        jail_conf = {"enabled": "true", "filter": "asterisk", "logpath": self.logpath,
                     "maxretry": "3", "findtime": "1d", "bantime": "1w", "action": "bench-noop"}
        jail_conf.update(jail)
        self.write("jail.conf", "[DEFAULT]\nignoreself = false\nusedns = no\nbackend = auto\n\n"
                   "[asterisk]\n" + "".join("%s = %s\n" % kv for kv in jail_conf.items()))
        self.write("asterisk.log", "")
        self.log = LogWatch(self.daemon_log)
        self.loglevel = (loglevel or args.loglevel).upper()
        self.notify = None

    def write(self, rel, text):
        with open(os.path.join(self.dir, rel), "w") as f:
            f.write(text)

    def command(self):
        if self.kind == "fail2ban":
            cmd = [self.args.fail2ban_server, "-f", "-x", "-c", self.dir, "-s", self.sock,
                   "-p", self.pidfile]
        else:
            cmd = [self.args.bantamd, "-f", "-x", "-c", self.dir, "-s", self.sock, "-p", self.pidfile]
        if self.kind == "bantamd" and self.args.bantamd_prefix:
            cmd = self.args.bantamd_prefix.split() + cmd
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns] + cmd
        return cmd

    def start(self):
        """Starts the daemon; returns the perf_counter time just before."""
        env = dict(ENV)
        if self.kind == "bantamd":
            # bantamd's sd_notify READY=1 marks it ready, whatever the loglevel.
            path = os.path.join(self.dir, "notify.sock")
            if os.path.exists(path):
                os.unlink(path)
            if self.notify is not None:
                self.notify.close()
            self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.notify.bind(path)
            self.notify.setblocking(False)
            env["NOTIFY_SOCKET"] = path
        self.log.skip_existing()
        self.out = open(os.path.join(self.dir, "stdout.txt"), "ab")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(self.command(), env=env, stdin=subprocess.DEVNULL,
                                     stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _procs.append(self.proc)
        return t0

    def is_ready(self):
        """bantamd: READY=1 on the notify socket. fail2ban (which has no
        sd_notify): its log's "Jail 'asterisk' started" (INFO), or at a
        higher loglevel `fail2ban-client status asterisk` answering."""
        if self.kind == "bantamd":
            try:
                return b"READY=1" in self.notify.recv(4096).split(b"\n")
            except BlockingIOError:
                return False
        if self.loglevel in ("INFO", "DEBUG", "TRACEDEBUG", "HEAVYDEBUG"):
            self.log.keep = ["Jail 'asterisk' started"]
            self.log.poll()
            if self.log.lines:
                self.log.lines.clear()
                self.log.keep = None
                return True
            return False
        r = subprocess.run([os.path.join(os.path.dirname(self.args.fail2ban_server), "fail2ban-client"),
                            "-s", self.sock, "status", "asterisk"], capture_output=True, env=ENV)
        return r.returncode == 0

    def wait_ready(self, timeout=60, poll=0.002):
        """Waits until is_ready(); returns the perf_counter time it saw it."""
        end = time.time() + timeout
        while time.time() < end:
            if self.is_ready():
                if (self.kind == "bantamd" and getattr(self.args, "bantam_metrics", None) and self.scraper is None
                        and self.args.bantam_metrics_interval > 0):
                    self.scraper = []
                    threading.Thread(target=self.scrape_metrics, daemon=True).start()
                return time.perf_counter()
            self.check_alive()
            time.sleep(poll)
        raise RuntimeError("%s: not ready after %d s; see %s" % (self.kind, timeout, self.dir))

    def check_alive(self):
        if self.proc.poll() is not None:
            raise RuntimeError("%s exited with %s; see %s" % (self.kind, self.proc.returncode, self.dir))

    def scrape_metrics(self):
        """Scrapes /metrics every --bantam-metrics-interval until self.scraper is cleared."""
        import urllib.request
        url = "http://%s/metrics" % self.args.bantam_metrics
        me = self.scraper
        while self.scraper is me:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
                    me.append(1)
            except OSError:
                pass
            time.sleep(self.args.bantam_metrics_interval)

    def stop(self, timeout=120):
        if self.scraper is not None:
            print("  (%d scrapes of /metrics during the run)" % len(self.scraper))
            self.scraper = None
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            print("  (%s did not stop in %d s: killed)" % (self.kind, timeout))
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.out.close()
        if self.notify is not None:
            self.notify.close()
            self.notify = None

    def append(self, data):
        fd = os.open(self.logpath, os.O_WRONLY | os.O_APPEND)
        try:
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)


def daemons(args):
    return [k for k in ("fail2ban", "bantamd") if k in args.daemons.split(",")]


# ---------------------------------------------------------------------------
# input


def gen_detect_log(args, workdir):
    """The generated log ends a little before now (findtime 1d covers it);
    returns (bytes, expected offender set, attack lines)."""
    span = int(args.detect_lines * 0.3 * 1.05) + 300
    out = os.path.join(workdir, "input.log")
    truth = os.path.join(workdir, "input.truth")
    subprocess.run([sys.executable, os.path.join(HERE, "gen_asterisk_log.py"),
                    "--lines", str(args.detect_lines), "--seed", str(args.seed),
                    "--attack-ratio", str(args.detect_attack_ratio),
                    "--sources", str(args.detect_sources), "--start", str(int(time.time()) - span),
                    "--out", out, "--truth", truth], check=True, stderr=subprocess.DEVNULL)
    counts = {}
    attacks = 0
    with open(truth) as f:
        for line in f:
            a = norm(line.split()[1])
            counts[a] = counts.get(a, 0) + 1
            attacks += 1
    expected = {a for a, n in counts.items() if n >= 3}
    with open(out, "rb") as f:
        data = f.read()
    return data, expected, attacks


# ---------------------------------------------------------------------------
# scenarios

results = []  # (scenario, metric, f2b, bantamd, unit, better, target)


def record(scenario, metric, values, unit, target=None, lower_is_better=True):
    results.append((scenario, metric, values.get("fail2ban"), values.get("bantamd"), unit,
                    target, lower_is_better))
    f, b = values.get("fail2ban"), values.get("bantamd")
    line = "  %-34s" % metric
    for k in ("fail2ban", "bantamd"):
        if k in values:
            line += "  %s %s %s" % (k, fmt(values[k]), unit)
    if f and b:
        line += "  ratio %.1fx" % (f / b if lower_is_better else b / f)
    print(line, flush=True)


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, int):
        return "{:,}".format(v)
    if v >= 100:
        return "{:,.0f}".format(v)
    if v >= 10:
        return "%.1f" % v
    return "%.3g" % v


def wait_bans(d, expected_n, timeout, poll=0.002, on_tick=None):
    """Polls d's log until it holds expected_n Ban lines (or the daemon stalls:
    no new ban and no CPU used for 10 s). Returns the perf_counter time."""
    last_change = time.perf_counter()
    last = (-1, -1.0)
    end = time.perf_counter() + timeout
    while True:
        d.log.poll()
        t = time.perf_counter()
        if len(d.log.bans) >= expected_n:
            return t
        if on_tick:
            on_tick()
        d.check_alive()
        state = (len(d.log.bans), proc_cpu(d.proc.pid))
        if state != last:
            last, last_change = state, t
        elif t - last_change > 10:
            print("  %s stalled at %d of %d bans" % (d.kind, len(d.log.bans), expected_n))
            return None
        if t > end:
            print("  %s timed out at %d of %d bans" % (d.kind, len(d.log.bans), expected_n))
            return None
        time.sleep(poll)


def scenario_detect(args, workdir):
    print("\n== detect: %d lines appended at once, maxretry 3, no-op action" % args.detect_lines)
    data, expected, attacks = gen_detect_log(args, workdir)
    print("  input: %d lines (%.1f MB), %d attack lines, %d offenders (>= 3 failures), seed %d, "
          "--attack-ratio %s --sources %d" % (args.detect_lines, len(data) / 1e6, attacks,
                                                len(expected), args.seed, args.detect_attack_ratio,
                                                args.detect_sources))
    wall, cpu, sets = {}, {}, {}
    for kind in daemons(args):
        d = Daemon(kind, args, {})
        d.start()
        d.wait_ready()
        time.sleep(1)
        c0 = proc_cpu(d.proc.pid)
        t0 = time.perf_counter()
        d.append(data)
        t1 = wait_bans(d, len(expected), args.timeout)
        c1 = proc_cpu(d.proc.pid)
        time.sleep(0.5)
        d.log.poll()
        sets[kind] = {norm(a) for a in d.log.bans}
        if t1 is not None:
            wall[kind] = t1 - t0
            cpu[kind] = c1 - c0
        dup = len(d.log.bans) - len(sets[kind])
        print("  %s: %d Ban lines (%d distinct, %d missing, %d unexpected)%s" % (
            kind, len(d.log.bans), len(sets[kind]), len(expected - sets[kind]),
            len(sets[kind] - expected), "" if dup == 0 else " DUPLICATES %d" % dup))
        d.stop()
    if len(sets) == 2:
        same = sets["fail2ban"] == sets["bantamd"]
        print("  banned sets %s" % ("identical" if same else "DIFFER: %d only fail2ban, %d only bantamd" % (
            len(sets["fail2ban"] - sets["bantamd"]), len(sets["bantamd"] - sets["fail2ban"]))))
    record("detect", "append -> all %d bans logged" % len(expected), wall, "s", "bantamd < 0.15 s")
    record("detect", "CPU (user+sys) over that time", cpu, "s")


def nft_count(ns):
    r = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "table", "inet", "f2b-table"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None
    import json
    n = 0
    for item in json.loads(r.stdout)["nftables"]:
        s = item.get("set")
        if s and s["name"] in ("addr-set-asterisk", "addr6-set-asterisk"):
            n += len(s.get("elem", []))
    return n


def scenario_nft(args, workdir):
    print("\n== nft: %d lines appended at once, stock nftables-allports, each daemon in its own netns"
          % args.detect_lines)
    data, expected, _ = gen_detect_log(args, workdir)
    print("  %d offenders expected in the sets" % len(expected))
    wall, cpu, logged = {}, {}, {}
    for kind in daemons(args):
        ns = "bantam-dbench-%s-%d" % (kind, os.getpid())
        subprocess.run(["ip", "netns", "add", ns], check=True)
        _netns.append(ns)
        d = Daemon(kind, args, {"action": 'nftables-allports[name=asterisk, protocol="tcp,udp"]'},
                   netns=ns)
        try:
            d.start()
            d.wait_ready()
            # fail2ban runs this actionstart on demand (at the first ban),
            # bantamd at start. Set elements are seen as they are added by
            # `nft monitor` in the namespace (no polling load on the machine).
            mon = subprocess.Popen(["ip", "netns", "exec", ns, "stdbuf", "-oL", "nft", "monitor",
                                    "new", "elements"], stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
            _procs.append(mon)
            added = set()
            done = threading.Event()
            t_done = [None]

            def watch():
                pat = re.compile(r"^add element inet f2b-table (addr6?-set-asterisk) \{ (.*) \}$")
                for line in mon.stdout:
                    m = pat.match(line.strip())
                    if not m:
                        continue
                    for a in m.group(2).split(","):
                        added.add(norm(a.strip()))
                    if len(added) >= len(expected) and t_done[0] is None:
                        t_done[0] = time.perf_counter()
                        done.set()

            th = threading.Thread(target=watch, daemon=True)
            th.start()
            time.sleep(1)
            c0 = proc_cpu(d.proc.pid)
            t0 = time.perf_counter()
            d.append(data)
            t_log = None
            last_change, last_n = time.perf_counter(), -1
            while not done.wait(0.05):
                d.log.poll()
                if t_log is None and len(d.log.bans) >= len(expected):
                    t_log = time.perf_counter()
                d.check_alive()
                t = time.perf_counter()
                if len(added) != last_n:
                    last_n, last_change = len(added), t
                elif t - last_change > 30:
                    print("  %s stalled at %d of %d set elements" % (kind, len(added), len(expected)))
                    break
            c1 = proc_cpu(d.proc.pid)
            # bantamd applies a turn's bans before its commit and logs their
            # Ban lines after it: the last ones may follow the set.
            log_deadline = time.perf_counter() + 30
            while t_log is None and time.perf_counter() < log_deadline:
                d.log.poll()
                if len(d.log.bans) >= len(expected):
                    t_log = time.perf_counter()
                else:
                    time.sleep(0.01)
            if t_done[0] is not None:
                wall[kind] = t_done[0] - t0
                cpu[kind] = c1 - c0
            if t_log is not None:
                logged[kind] = t_log - t0
            n = nft_count(ns)
            os.killpg(mon.pid, signal.SIGTERM)
            mon.wait()
            print("  %s: %d addresses seen added, %s elements in the sets at the end, %d Ban lines, "
                  "%s" % (kind, len(added), n, len(d.log.bans),
                          "set = expected" if added == expected else "SET DIFFERS from expected"))
            d.stop()
        finally:
            if d.proc is not None and d.proc.poll() is None:
                os.killpg(d.proc.pid, signal.SIGKILL)
                d.proc.wait()
            subprocess.run(["ip", "netns", "del", ns], check=True)
            _netns.remove(ns)
    record("nft", "append -> all %d in the kernel sets" % len(expected), wall, "s",
           "bantamd >= 3x faster")
    record("nft", "CPU (user+sys, daemon + children)", cpu, "s")
    record("nft", "append -> all Ban lines logged", logged, "s")


def _nlattr(t, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, t) + payload + b"\0" * ((4 - n % 4) % 4)


def probe_main(ips, timeout):
    """Runs inside a namespace (restore scenario): asks the kernel, one
    NFT_MSG_GETSETELEM per address over netlink, whether each of `ips` is in
    inet f2b-table addr-set-asterisk, every 2 ms, and prints "done T" with
    time.monotonic() once all are, or "timeout" after `timeout` seconds.
    (`nft get element` would first list the whole set: 0.6 s at 100k.)"""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
    sock.bind((0, 0))
    nested = 0x8000
    msgs = []
    for ip in ips:
        elem = _nlattr(1 | nested, _nlattr(1 | nested, _nlattr(1, ipaddress.ip_address(ip).packed)))
        body = (struct.pack("=BBH", 1, 0, 0) + _nlattr(1, b"f2b-table\0") +
                _nlattr(2, b"addr-set-asterisk\0") + _nlattr(3 | nested, elem))
        msgs.append(body)
    seq = 0

    def present(body):
        nonlocal seq
        seq += 1
        # NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_GETSETELEM, NLM_F_REQUEST|NLM_F_ACK
        sock.send(struct.pack("=IHHII", 16 + len(body), (10 << 8) | 13, 0x5, seq, 0) + body)
        found = False
        while True:  # the element (if any), then the ack or the error
            data = sock.recv(65536)
            off = 0
            while off < len(data):
                ln, typ = struct.unpack_from("=IH", data, off)
                if typ == 2:  # NLMSG_ERROR: 0 is the ack
                    return found and struct.unpack_from("=i", data, off + 16)[0] == 0
                found = True
                off += (ln + 3) & ~3

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if all(present(m) for m in msgs):
            print("done %.6f" % time.monotonic(), flush=True)
            return
        time.sleep(0.002)
    print("timeout", flush=True)


def make_ban_db(args, path, n):
    """A fail2ban database holding n unexpired bans of jail 'asterisk'
    (10.x.y.z addresses, 1 week each): the schema is made by running bantamd
    once on it, the rows are inserted directly."""
    d = Daemon("bantamd", args, {}, loglevel="ERROR")
    d.write("fail2ban.conf", "[Definition]\nloglevel = ERROR\nlogtarget = %s\nsocket = %s\n"
            "pidfile = %s\ndbfile = %s\n" % (d.daemon_log, d.sock, d.pidfile, path))
    d.start()
    d.wait_ready()
    d.stop()
    import sqlite3
    now = int(time.time())
    con = sqlite3.connect(path)
    data = '{"matches": [], "failures": 3}'
    rows = [("asterisk", "10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255), now - 60,
             7 * 86400, 1, data) for i in range(1, n + 1)]
    con.executemany("INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.executemany("INSERT OR REPLACE INTO bips(jail, ip, timeofban, bantime, bancount, data) "
                    "VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()


def scenario_restore(args, workdir):
    counts = [int(x) for x in args.restore_counts.split(",") if x]
    print("\n== restore: N unexpired bans in the database, start with stock nftables-allports in a "
          "netns, until all N are in the kernel set (fail2ban given at most %d s)"
          % args.restore_fail2ban_timeout)
    for n in counts:
        db = os.path.join(workdir, "restore-%d.sqlite3" % n)
        if not os.path.exists(db):
            make_ban_db(args, db, n)
        wall = {}
        for kind in daemons(args):
            ns = "bantam-dbench-r%s-%d" % (kind[0], os.getpid())
            subprocess.run(["ip", "netns", "add", ns], check=True)
            _netns.append(ns)
            run_db = os.path.join(workdir, "run-%s-%d.sqlite3" % (kind, n))
            shutil.copy(db, run_db)
            d = Daemon(kind, args, {"action": 'nftables-allports[name=asterisk, protocol="tcp,udp"]'},
                       netns=ns, loglevel="NOTICE")
            d.write("fail2ban.conf", "[Definition]\nloglevel = NOTICE\nlogtarget = %s\nsocket = %s\n"
                    "pidfile = %s\ndbfile = %s\ndbpurgeage = 1d\n" % (
                        d.daemon_log, d.sock, d.pidfile, run_db))
            limit = args.restore_fail2ban_timeout if kind == "fail2ban" else args.timeout
            # Completion is probed over netlink for a sample of the
            # addresses (first, last, three between) by a child in the
            # namespace; once all are there, one full listing confirms (its
            # time is not counted).
            ips = ["10.%d.%d.%d" % (i >> 16 & 255, i >> 8 & 255, i & 255)
                   for i in (1, n // 4, n // 2, 3 * n // 4, n)]
            prober = subprocess.Popen(
                ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                 "--probe-elements", ",".join(ips), "--timeout", str(limit)],
                stdout=subprocess.PIPE, text=True, start_new_session=True)
            _procs.append(prober)
            try:
                t0 = d.start()
                t_done, count = None, 0
                while True:
                    line = prober.stdout.readline().split()
                    if not line or line[0] != "done":
                        break
                    count = nft_count(ns) or 0
                    if count >= n:
                        t_done = float(line[1])
                        break
                    # a sample was in before the rest: probe again
                    prober.wait()
                    prober = subprocess.Popen(
                        ["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                         "--probe-elements", ",".join(ips), "--timeout",
                         str(max(1.0, limit - (time.perf_counter() - t0)))],
                        stdout=subprocess.PIPE, text=True, start_new_session=True)
                    _procs.append(prober)
                if t_done is None:
                    count = nft_count(ns) or 0
                if t_done is not None:
                    # perf_counter and monotonic are both CLOCK_MONOTONIC here
                    wall[kind] = t_done - t0
                    print("  %s: all %d in the set %.3f s after exec" % (kind, n, wall[kind]))
                else:
                    el = time.perf_counter() - t0
                    print("  %s: %d of %d in the set after %.0f s (stopped there; at that rate "
                          "all would take ~%.0f s)" % (kind, count, n, el,
                                                       el * n / count if count else float("inf")))
            finally:
                if prober.poll() is None:
                    os.killpg(prober.pid, signal.SIGKILL)
                    prober.wait()
                if d.proc is not None and d.proc.poll() is None:
                    os.killpg(d.proc.pid, signal.SIGKILL)
                    d.proc.wait()
                subprocess.run(["ip", "netns", "del", ns], check=True)
                _netns.remove(ns)
        record("restore", "exec -> %d restored bans in the kernel set" % n, wall, "s",
               "bantamd < 1 s" if n >= 100000 else None)


def scenario_latency(args, workdir):
    n = args.latency_count
    print("\n== latency: %d new addresses, maxretry 1, action 'echo <ip> > FIFO'" % n)
    lat, logged = {}, {}
    rng = random.Random(args.seed)
    for kind in daemons(args):
        d = Daemon(kind, args, {"maxretry": "1", "action": "bench-fifo"})
        os.mkfifo(d.fifo)
        arrivals = {}
        cond = threading.Condition()
        rfd = os.open(d.fifo, os.O_RDWR)  # never sees EOF, never blocks the writers' open

        def reader():
            buf = b""
            while True:
                try:
                    chunk = os.read(rfd, 65536)
                except OSError:
                    return
                if not chunk:
                    return
                t = time.perf_counter()
                buf += chunk
                *done, buf = buf.split(b"\n")
                with cond:
                    for ip in done:
                        if ip == b"quit":
                            return
                        arrivals.setdefault(ip.decode(), t)
                    cond.notify_all()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        try:
            d.start()
            d.wait_ready()
            time.sleep(1)
            fd = os.open(d.logpath, os.O_WRONLY | os.O_APPEND)
            xs = []
            wall0 = {}
            for i in range(n):
                ip = "198.19.%d.%d" % (200 + i // 250, 1 + i % 250)
                line = fail_line(ip).encode()
                wall0[ip] = time.time()
                t0 = time.perf_counter()
                os.write(fd, line)
                with cond:
                    ok = cond.wait_for(lambda: ip in arrivals, timeout=10)
                if not ok:
                    print("  %s: no ban of %s in 10 s" % (kind, ip))
                    break
                xs.append(arrivals[ip] - t0)
                time.sleep(rng.uniform(0.02, 0.1))
                d.check_alive()
            os.close(fd)
            d.stop()
        finally:
            os.write(rfd, b"quit\n")
            th.join(2)
            os.close(rfd)
        d.log.poll()
        # The Ban line's own time stamp (wall clock, ms, truncated) against
        # the wall clock read just before the write: the decision's latency,
        # without the action.
        ys = []
        for ip, stamp in zip(d.log.bans, d.log.ban_stamps):
            if ip in wall0:
                tm = calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + \
                    int(stamp[20:23]) / 1000.0
                ys.append(tm + 0.0005 - wall0[ip])
        if ys:
            logged[kind] = ys
        if xs:
            lat[kind] = xs
            print("  %s: %d bans, action ran: p50 %.2f ms, p99 %.2f ms, max %.2f ms; Ban line "
                  "stamp: p50 %.1f ms, p99 %.1f ms" % (
                      kind, len(xs), pct(xs, 50) * 1e3, pct(xs, 99) * 1e3, max(xs) * 1e3,
                      pct(ys, 50) * 1e3, pct(ys, 99) * 1e3))
    # The floor under "action ran" for any shell action: this script spawning
    # the same `sh -c 'echo IP > FIFO'` and reading the FIFO.
    fdir = tempfile.mkdtemp(prefix="bantam-dbench-sh-")
    _tmpdirs.append(fdir)
    fifo = os.path.join(fdir, "f")
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDWR)
    fl = []
    for i in range(min(n, 100)):
        t0 = time.perf_counter()
        p = subprocess.Popen(["/bin/sh", "-c", "echo 192.0.2.%d > %s" % (i % 250, fifo)], env=ENV)
        os.read(rfd, 100)
        fl.append(time.perf_counter() - t0)
        p.wait()
        time.sleep(0.01)
    os.close(rfd)
    print("  floor: spawn sh -c 'echo IP > FIFO' -> read: p50 %.2f ms, p99 %.2f ms" % (
        pct(fl, 50) * 1e3, pct(fl, 99) * 1e3))
    record("latency", "line -> action ran, p50", {k: pct(v, 50) * 1e3 for k, v in lat.items()}, "ms")
    record("latency", "line -> action ran, p99", {k: pct(v, 99) * 1e3 for k, v in lat.items()}, "ms",
           "bantamd p99 < 10 ms")
    record("latency", "spawn sh -c 'echo > FIFO', p50/p99 (floor)",
           {"bantamd": pct(fl, 50) * 1e3}, "ms")
    results[-1] = results[-1][:2] + (None, "%.1f / %.1f" % (pct(fl, 50) * 1e3, pct(fl, 99) * 1e3)) + \
        results[-1][4:]
    record("latency", "line -> Ban line stamp, p50", {k: pct(v, 50) * 1e3 for k, v in logged.items()},
           "ms")
    record("latency", "line -> Ban line stamp, p99", {k: pct(v, 99) * 1e3 for k, v in logged.items()},
           "ms")


def scenario_latency_nft(args, workdir):
    """Line -> element in the kernel set, with the stock nftables-allports
    action: fail2ban runs its shell commands, bantamd its native netlink
    action. Each daemon in a network namespace of its own; `nft monitor new
    elements` in it stamps each element as the kernel reports it."""
    n = args.latency_count
    print("\n== latency-nft: %d new addresses, maxretry 1, stock nftables-allports, each daemon "
          "in its own netns; line written -> element reported by nft monitor" % n)
    lat = {}
    rng = random.Random(args.seed)
    for kind in daemons(args):
        ns = "bantam-dbench-l%s-%d" % (kind[0], os.getpid())
        subprocess.run(["ip", "netns", "add", ns], check=True)
        _netns.append(ns)
        d = Daemon(kind, args, {"maxretry": "1",
                                "action": 'nftables-allports[name=asterisk, protocol="tcp,udp"]'},
                   netns=ns)
        mon = None
        try:
            d.start()
            d.wait_ready()
            if kind == "fail2ban":
                # fail2ban runs actionstart at the first ban: one ban of an
                # address outside the measured ones makes the table first.
                warm = "198.19.199.1"
                fd = os.open(d.logpath, os.O_WRONLY | os.O_APPEND)
                os.write(fd, fail_line(warm).encode())
                os.close(fd)
                end = time.time() + 60
                while time.time() < end and warm not in d.log.bans:
                    d.log.poll()
                    time.sleep(0.01)
                time.sleep(1)
            mon = subprocess.Popen(["ip", "netns", "exec", ns, "stdbuf", "-oL", "nft", "monitor",
                                    "new", "elements"], stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
            _procs.append(mon)
            arrivals = {}
            cond = threading.Condition()

            def watch():
                pat = re.compile(r"^add element inet f2b-table (addr6?-set-asterisk) \{ (.*) \}$")
                for line in mon.stdout:
                    t = time.perf_counter()
                    m = pat.match(line.strip())
                    if not m:
                        continue
                    with cond:
                        for a in m.group(2).split(","):
                            arrivals.setdefault(norm(a.strip().split()[0]), t)
                        cond.notify_all()

            th = threading.Thread(target=watch, daemon=True)
            th.start()
            time.sleep(1)
            fd = os.open(d.logpath, os.O_WRONLY | os.O_APPEND)
            xs = []
            for i in range(n):
                ip = "198.19.%d.%d" % (200 + i // 250, 1 + i % 250)
                line = fail_line(ip).encode()
                t0 = time.perf_counter()
                os.write(fd, line)
                with cond:
                    ok = cond.wait_for(lambda: ip in arrivals, timeout=10)
                if not ok:
                    print("  %s: %s not in the set after 10 s" % (kind, ip))
                    break
                xs.append(arrivals[ip] - t0)
                time.sleep(rng.uniform(0.02, 0.1))
                d.check_alive()
            os.close(fd)
            if xs:
                lat[kind] = xs
                print("  %s: %d elements: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms" % (
                    kind, len(xs), pct(xs, 50) * 1e3, pct(xs, 90) * 1e3, pct(xs, 99) * 1e3,
                    max(xs) * 1e3))
            d.stop()
        finally:
            if mon is not None and mon.poll() is None:
                os.killpg(mon.pid, signal.SIGTERM)
                mon.wait()
            if d.proc is not None and d.proc.poll() is None:
                os.killpg(d.proc.pid, signal.SIGKILL)
                d.proc.wait()
            subprocess.run(["ip", "netns", "del", ns], check=True)
            _netns.remove(ns)
    record("latency-nft", "line -> nft element, p50", {k: pct(v, 50) * 1e3 for k, v in lat.items()},
           "ms")
    record("latency-nft", "line -> nft element, p99", {k: pct(v, 99) * 1e3 for k, v in lat.items()},
           "ms", "bantamd p99 < 2 ms")


def scenario_startup(args, workdir):
    reps = args.startup_reps
    print("\n== startup: exec -> ready, asterisk jail, empty log, %d starts after a warm-up" % reps)
    res, floor = {}, {}
    for kind in daemons(args):
        d = Daemon(kind, args, {}, loglevel="INFO")
        xs = []
        for rep in range(reps + 1):
            t0 = d.start()
            t1 = d.wait_ready(poll=0.0005)
            d.stop()
            if rep > 0:
                xs.append(t1 - t0)
        res[kind] = median(xs) * 1e3
        print("  %s: median %.1f ms, min %.1f, max %.1f over %d" % (
            kind, median(xs) * 1e3, min(xs) * 1e3, max(xs) * 1e3, len(xs)))
        # The floor under that figure on this machine now: the same exec of
        # the same program that only prints its version and exits.
        exe = args.fail2ban_server if kind == "fail2ban" else args.bantamd
        fl = []
        for _ in range(reps):
            t0 = time.perf_counter()
            subprocess.run([exe, "-V"], env=ENV, capture_output=True)
            fl.append(time.perf_counter() - t0)
        floor[kind] = median(fl) * 1e3
        print("  %s -V (exec -> exit): median %.1f ms" % (kind, floor[kind]))
    record("startup", "exec -> ready, median", res, "ms", "bantamd < 10 ms")
    record("startup", "exec -> exit of `-V`, median (floor)", floor, "ms", "bantamd < 3 ms")


def scenario_memory(args, workdir):
    tracked = args.memory_tracked
    print("\n== memory: idle, %d tracked addresses (1 failure each, maxretry 3), flood of %d IPv6"
          % (tracked, args.flood))
    idle, track, hwm_track = {}, {}, {}
    flood_peak, flood_rss = {}, {}
    for kind in daemons(args):
        d = Daemon(kind, args, {}, loglevel="INFO")
        d.start()
        d.wait_ready()
        d.log.keep = ["addresses dropped"]
        time.sleep(1)
        idle[kind] = proc_mem(d.proc.pid)["VmRSS"] / 1024
        lines = "".join(fail_line(str(ipaddress.IPv4Address(0xC6120000 + 1 + i)))  # 198.18.0.1..
                        for i in range(tracked)).encode()
        d.append(lines)
        if wait_found(d, tracked, args.timeout):
            # Steady state after the burst: bantamd gives back SQLite's
            # cache and the freed heap once no commit ran for a second.
            time.sleep(3)
            m = proc_mem(d.proc.pid)
            track[kind], hwm_track[kind] = m["VmRSS"] / 1024, m["VmHWM"] / 1024
        print("  %s: idle %.1f MiB, %d tracked: RSS %.1f MiB (HWM %.1f)" % (
            kind, idle[kind], tracked, track.get(kind, 0), hwm_track.get(kind, 0)))
        if args.flood and (kind == "bantamd" or args.flood_fail2ban):
            peak = [0]
            stop = threading.Event()

            def sampler(pid=d.proc.pid):
                while not stop.is_set():
                    try:
                        peak[0] = max(peak[0], proc_mem(pid)["VmRSS"])
                    except (FileNotFoundError, KeyError):
                        return
                    time.sleep(0.05)

            th = threading.Thread(target=sampler, daemon=True)
            th.start()
            chunk = 100000
            base = d.log.found
            for start in range(0, args.flood, chunk):
                n = min(chunk, args.flood - start)
                d.append("".join(fail_line("2001:db8:%x:%x::1" % ((start + i) >> 16, (start + i) & 0xffff))
                                 for i in range(n)).encode())
            ok = wait_found(d, base + args.flood, args.timeout)
            time.sleep(2.5)  # the cap warning is logged by the 1 s service timer
            d.log.poll()
            stop.set()
            th.join()
            m = proc_mem(d.proc.pid)
            flood_peak[kind] = peak[0] / 1024
            flood_rss[kind] = m["VmRSS"] / 1024
            dropped = 0
            cap = None
            for l in d.log.lines:
                mm = re.search(r"\] (\d+) failure record\(s\) of the oldest addresses dropped: more than (\d+)", l)
                if mm:
                    dropped += int(mm.group(1))
                    cap = int(mm.group(2))
            print("  %s: flood of %d unique IPv6 %s: peak RSS %.1f MiB, after %.1f MiB (HWM %.1f); "
                  "cap warnings %d, cap %s, dropped %d" % (
                      kind, args.flood, "processed" if ok else "NOT fully processed",
                      flood_peak[kind], flood_rss[kind], m["VmHWM"] / 1024, len(d.log.lines),
                      cap, dropped))
            if d.log.lines:
                print("  first warning: %s" % d.log.lines[0])
        d.stop()
    record("memory", "RSS idle", idle, "MiB", target="< 6 MiB")
    record("memory", "RSS with %d tracked" % tracked, track, "MiB", target="< 25 MiB")
    # What one tracked address costs: the RSS it added over idle.
    per = {k: (track[k] - idle[k]) * 1048576 / tracked for k in track if k in idle}
    record("memory", "bytes per tracked address", per, "B")
    if flood_peak:
        record("memory", "peak RSS, flood of %d IPv6" % args.flood, flood_peak, "MiB")


def wait_found(d, n, timeout):
    end = time.time() + timeout
    last_change, last = time.time(), -1
    while d.log.found < n:
        d.log.poll()
        d.check_alive()
        t = time.time()
        if d.log.found != last:
            last, last_change = d.log.found, t
        elif t - last_change > 15 or t > end:
            print("  %s: stalled at %d of %d Found lines" % (d.kind, d.log.found, n))
            return False
        time.sleep(0.01)
    return True


# ---------------------------------------------------------------------------


def summary(args):
    print("\n## Summary (ratio = fail2ban / bantamd: how many times faster/smaller bantamd is)\n")
    print("| scenario | metric | fail2ban | bantamd | ratio | target | met |")
    print("|---|---|---:|---:|---:|---|---|")
    for scen, metric, f, b, unit, target, lower in results:
        ratio = "%.1fx" % (f / b) if f and b else "-"
        met = ""
        if target and b is not None:
            # "[bantamd] [p99] < N UNIT" or "bantamd >= Nx faster".
            limit = re.search(r"< ([\d.]+) (s|ms|MiB)$", target)
            times = re.search(r">= ([\d.]+)x", target)
            if limit:
                met = "yes" if b < float(limit.group(1)) else "no"
            elif times:
                met = ("yes" if f / b >= float(times.group(1)) else "no") if f else "?"
        print("| %s | %s | %s | %s | %s | %s | %s |" % (
            scen, metric, fmt(f) + " " + unit if f is not None else "-",
            fmt(b) + " " + unit if b is not None else "-", ratio, target or "", met))


def main():
    global _keep
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--bantamd", default=os.path.join(HERE, "..", "build", "bantamd"))
    p.add_argument("--bantamd-prefix", default="",
                   help="words run before bantamd, e.g. 'perf record -g -o FILE --' (profiling; "
                   "CPU and memory figures are then the wrapper's)")
    p.add_argument("--fail2ban-server", default="/usr/bin/fail2ban-server")
    p.add_argument("--fail2ban-conf", default="/etc/fail2ban",
                   help="where filter.d and action.d are copied from (default %(default)s)")
    p.add_argument("--scenarios", default="detect,nft,restore,latency,latency-nft,startup,memory")
    p.add_argument("--daemons", default="fail2ban,bantamd")
    p.add_argument("--loglevel", default="INFO",
                   help="both daemons' loglevel (default %(default)s; the memory scenario counts "
                   "INFO 'Found' lines)")
    p.add_argument("--dbfile", default="",
                   help="both daemons' dbfile (default: a file in each temp tree; ':memory:' or "
                   "'None' to take the database out of the figures)")
    p.add_argument("--bantam-metrics", default="",
                   help="ADDR:PORT: bantamd runs with its metrics endpoint there (issue 17's "
                        "on/off comparison)")
    p.add_argument("--bantam-metrics-interval", type=float, default=0.1,
                   help="seconds between scrapes of --bantam-metrics; 0: none")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--detect-lines", type=int, default=200000)
    p.add_argument("--detect-attack-ratio", type=float, default=0.3)
    p.add_argument("--detect-sources", type=int, default=25000)
    p.add_argument("--latency-count", type=int, default=200)
    p.add_argument("--startup-reps", type=int, default=10)
    p.add_argument("--memory-tracked", type=int, default=100000)
    p.add_argument("--flood", type=int, default=1000000, help="0: no flood")
    p.add_argument("--flood-fail2ban", action="store_true")
    p.add_argument("--restore-counts", default="20000,100000")
    p.add_argument("--restore-fail2ban-timeout", type=float, default=120,
                   help="how long fail2ban's restore is watched before it is stopped")
    p.add_argument("--timeout", type=float, default=600, help="per wait, seconds")
    p.add_argument("--keep", action="store_true", help="keep the temp trees")
    p.add_argument("--probe-elements", default="", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.probe_elements:
        probe_main(args.probe_elements.split(","), args.timeout)
        return
    args.bantamd = os.path.abspath(args.bantamd)
    _keep = args.keep
    if os.geteuid() != 0 and ("nft" in args.scenarios or "restore" in args.scenarios):
        p.error("the nft scenario needs root (network namespaces)")
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    workdir = tempfile.mkdtemp(prefix="bantam-dbench-input-")
    _tmpdirs.append(workdir)
    rev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    f2bver = subprocess.run([args.fail2ban_server, "-V"], capture_output=True, text=True).stdout.strip()
    print("# daemon_bench %s  bantamd %s (commit %s)  fail2ban-server %s" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), args.bantamd, rev, f2bver.splitlines()[0]
        if f2bver else "?"))
    print("# uptime:%s" % subprocess.run(["uptime"], capture_output=True, text=True).stdout.rstrip())
    scen = {"detect": scenario_detect, "nft": scenario_nft, "latency": scenario_latency,
            "startup": scenario_startup, "memory": scenario_memory,
            "restore": scenario_restore, "latency-nft": scenario_latency_nft}
    try:
        for name in args.scenarios.split(","):
            scen[name](args, workdir)
    finally:
        print("\n# uptime at end:%s" % subprocess.run(["uptime"], capture_output=True,
                                                      text=True).stdout.rstrip())
        summary(args)
        cleanup()


if __name__ == "__main__":
    main()
