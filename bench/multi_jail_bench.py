#!/usr/bin/env python3
"""Many jails on one file: stock fail2ban-server and bantamd, side by side,
with 1 and with N jails reading the same generated Asterisk log.

A real PBX enables several jails on the same files. This measures what each
extra jail costs: the daemon set up as in daemon_bench.py's detect scenario
(same temp trees, no-op action, loglevel INFO, a real SQLite file), but
with --jails N jails on the one log:

  asterisk            the stock asterisk filter (maxretry 3, findtime 1d)
  asterisk-2 ..       renamed copies of it (--copies K, default 1): each
                      finds and bans the same offenders
  others              stock filters that read this log and ban nothing in it
                      (sshd, recidive, freeswitch, asterisk with another
                      datepattern ...: --others), until N jails in all

Time from one write() of the generated log (--lines, --attack-ratio,
--sources as in detect) until the daemon's log holds every expected Ban line
(offenders x banning jails), and the daemon's CPU (user+sys) over that time.
The banned sets of every banning jail are checked against the generator's
truth. Also printed: exec -> ready (bantamd: READY=1, sent once every jail
has started; fail2ban: its log's "Jail '<last jail>' started"). Each configuration runs --runs times; the medians are printed, with
the ratio N jails / 1 jail for each daemon.

  bench/multi_jail_bench.py --bantamd build/bantamd --jails 10
  bench/multi_jail_bench.py --daemons bantamd --runs 5

Needs the stock fail2ban (/usr/bin/fail2ban-server, /etc/fail2ban); any
python3. Not root: no namespaces or nft are used.
"""

import argparse
import atexit
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import daemon_bench as db  # noqa: E402  (the daemon harness)

ANY_BAN_RE = re.compile(r"NOTICE\s+\[([^\]]+)\] Ban (\S+)$")

# Stock filters that read an Asterisk log and match nothing in the generated
# one: what a box with several services on one log (or a careless jail.local)
# runs next to the asterisk jail. Each is a jail of its own.
DEFAULT_OTHERS = "sshd,recidive,freeswitch,named-refused,selinux-ssh,dropbear,postfix,dovecot,pam-generic"


class MultiLog(db.LogWatch):
    """Counts Ban lines of every jail."""

    def poll(self):
        try:
            size = os.path.getsize(self.path)
        except FileNotFoundError:
            return False
        if size <= self.offset:
            return False
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(size - self.offset)
        self.offset += len(data)
        data = self.rest + data
        cut = data.rfind(b"\n") + 1
        self.rest = data[cut:]
        for line in data[:cut].decode("utf-8", "replace").splitlines():
            m = ANY_BAN_RE.search(line)
            if m:
                self.bans.append((m.group(1), m.group(2)))
        return True


def jail_sections(args, logpath):
    """[(name, options)] of the N jails."""
    base = {"enabled": "true", "logpath": logpath, "maxretry": "3", "findtime": "1d",
            "bantime": "1w", "action": "bench-noop"}
    jails = [("asterisk", dict(base, filter="asterisk"))]
    for k in range(2, args.copies + 1):
        if len(jails) >= args.jails:
            break
        jails.append(("asterisk-%d" % k, dict(base, filter="asterisk")))
    others = [o for o in args.others.split(",") if o]
    i = 0
    while len(jails) < args.jails:
        name = others[i % len(others)]
        label = name if i < len(others) else "%s-%d" % (name, i // len(others) + 1)
        jails.append((label, dict(base, filter=name)))
        i += 1
    return jails


def banning(jails):
    return [name for name, o in jails if o["filter"] == "asterisk"]


def run_one(kind, args, data, expected, njails):
    d = db.Daemon(kind, args, {})
    jails = jail_sections(args, d.logpath)
    text = "[DEFAULT]\nignoreself = false\nusedns = no\nbackend = auto\n\n"
    for name, o in jails:
        text += "[%s]\n" % name + "".join("%s = %s\n" % kv for kv in o.items()) + "\n"
    d.write("jail.conf", text)
    d.log = MultiLog(d.daemon_log)
    # fail2ban is ready when its last jail has started (its log says so).
    last = jails[-1][0]
    if kind == "fail2ban":
        d.is_ready = lambda: _f2b_started(d, last)
    t_exec = d.start()
    t_ready = d.wait_ready(timeout=120, poll=0.001)
    time.sleep(1)
    d.log.poll()
    d.log.bans.clear()
    want = len(expected) * len(banning(jails))
    c0 = db.proc_cpu(d.proc.pid)
    t0 = time.perf_counter()
    d.append(data)
    t1 = db.wait_bans(d, want, args.timeout)
    c1 = db.proc_cpu(d.proc.pid)
    time.sleep(0.3)
    d.log.poll()
    ok = True
    for name in banning(jails):
        got = {db.norm(a) for j, a in d.log.bans if j == name}
        if got != expected:
            ok = False
            print("  %s %s: %d banned, %d missing, %d unexpected" % (
                kind, name, len(got), len(expected - got), len(got - expected)))
    stray = [j for j, _ in d.log.bans if j not in banning(jails)]
    if stray:
        ok = False
        print("  %s: %d bans by jails that should ban nothing (%s)" % (kind, len(stray), stray[0]))
    d.stop()
    if t1 is None:
        return None
    return t1 - t0, c1 - c0, ok, t_ready - t_exec


def _f2b_started(d, last):
    d.log.poll()  # counts bans only; read the file for the started line
    try:
        with open(d.daemon_log, encoding="utf-8", errors="replace") as f:
            return ("Jail '%s' started" % last) in f.read()
    except FileNotFoundError:
        return False


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--bantamd", default=os.path.join(HERE, "..", "build", "bantamd"))
    p.add_argument("--bantamd-prefix", default="")
    p.add_argument("--fail2ban-server", default="/usr/bin/fail2ban-server")
    p.add_argument("--fail2ban-conf", default="/etc/fail2ban")
    p.add_argument("--daemons", default="fail2ban,bantamd")
    p.add_argument("--jails", type=int, default=10)
    p.add_argument("--copies", type=int, default=1,
                   help="jails with the asterisk filter among them (default %(default)s)")
    p.add_argument("--others", default=DEFAULT_OTHERS)
    p.add_argument("--runs", type=int, default=3, help="runs of bantamd per configuration")
    p.add_argument("--fail2ban-runs", type=int, default=1)
    p.add_argument("--loglevel", default="INFO")
    p.add_argument("--dbfile", default="")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--lines", type=int, default=200000)
    p.add_argument("--attack-ratio", type=float, default=0.1)
    p.add_argument("--sources", type=int, default=25000)
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    args.bantamd = os.path.abspath(args.bantamd)
    # daemon_bench's names for the same settings.
    args.detect_lines, args.detect_attack_ratio, args.detect_sources = (
        args.lines, args.attack_ratio, args.sources)
    db._keep = args.keep
    atexit.register(db.cleanup)
    signal.signal(signal.SIGTERM, db.on_signal)
    signal.signal(signal.SIGINT, db.on_signal)
    workdir = tempfile.mkdtemp(prefix="bantam-mjbench-input-")
    db._tmpdirs.append(workdir)
    rev = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    print("# multi_jail_bench %s  bantamd %s (commit %s)" % (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), args.bantamd, rev))
    print("# uptime:%s" % subprocess.run(["uptime"], capture_output=True, text=True).stdout.rstrip())
    data, expected, attacks = db.gen_detect_log(args, workdir)
    print("# input: %d lines (%.1f MB), %d attack lines, %d offenders, seed %d" % (
        args.lines, len(data) / 1e6, attacks, len(expected), args.seed))
    one = argparse.Namespace(**vars(args))
    one.jails = 1
    print("# %d jails: %s" % (args.jails, ", ".join(n for n, _ in jail_sections(args, "LOG"))))
    table = {}
    for kind in [k for k in ("fail2ban", "bantamd") if k in args.daemons.split(",")]:
        runs = args.fail2ban_runs if kind == "fail2ban" else args.runs
        for label, a in (("1 jail", one), ("%d jails" % args.jails, args)):
            walls, cpus, readys, oks = [], [], [], True
            for _ in range(runs):
                r = run_one(kind, a, data, expected, a.jails)
                if r is None:
                    oks = False
                    continue
                walls.append(r[0])
                cpus.append(r[1])
                readys.append(r[3])
                oks = oks and r[2]
                print("  %s, %s: %.3f s wall, %.3f s CPU, exec -> ready %.1f ms%s" % (
                    kind, label, r[0], r[1], r[3] * 1000, "" if r[2] else "  RESULTS DIFFER"),
                    flush=True)
            if walls:
                table[(kind, label)] = (median(walls), median(cpus), len(walls), oks,
                                        median(readys))
    print("# uptime at end:%s" % subprocess.run(["uptime"], capture_output=True,
                                                 text=True).stdout.rstrip())
    print()
    print("| daemon | jails | runs | append -> all bans, median | CPU, median | N/1 (wall) | N/1 (CPU) "
          "| exec -> ready, median | bans as truth |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for kind in ("fail2ban", "bantamd"):
        base = table.get((kind, "1 jail"))
        for label in ("1 jail", "%d jails" % args.jails):
            r = table.get((kind, label))
            if r is None:
                continue
            ratio_w = "%.2fx" % (r[0] / base[0]) if base and base[0] else "-"
            ratio_c = "%.2fx" % (r[1] / base[1]) if base and base[1] else "-"
            print("| %s | %s | %d | %.3f s | %.3f s | %s | %s | %.1f ms | %s |" % (
                kind, label, r[2], r[0], r[1], ratio_w, ratio_c, r[4] * 1000,
                "yes" if r[3] else "NO"))


if __name__ == "__main__":
    main()
