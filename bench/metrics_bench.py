#!/usr/bin/env python3
"""Scrape time of bantamd's Prometheus endpoint (issue 17) with many jails
and many bans.

A temp tree with --jails jails (each its own empty log, a no-op action)
and the endpoint on a loopback port. bantamd is started once to make the
database, stopped; --banned bans in force are written into it, spread
evenly over the jails; bantamd is started again and restores them. Once
/metrics reports them all, --reps scrapes are timed from this client (a
fresh connection each, the whole answer read: an upper bound of what a
Prometheus on the same host sees), in the text format and in OpenMetrics.
The render time alone is not visible from outside; the round trip
includes it.

Run: python3 bench/metrics_bench.py [--bantamd build/bantamd]
"""
import argparse
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bantamd", default=os.path.join(HERE, "..", "build", "bantamd"))
    p.add_argument("--jails", type=int, default=50)
    p.add_argument("--banned", type=int, default=100000)
    p.add_argument("--reps", type=int, default=100)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()

    d = tempfile.mkdtemp(prefix="bantam-mbench-")
    port = free_port()
    url = "http://127.0.0.1:%d/metrics" % port
    proc = None

    def write(rel, text):
        path = os.path.join(d, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def start():
        nonlocal proc
        log = open(os.path.join(d, "stdout.log"), "a")
        proc = subprocess.Popen([args.bantamd, "-f", "-c", d], stdout=log, stderr=subprocess.STDOUT)
        end = time.time() + 120
        while time.time() < end:
            with open(os.path.join(d, "bantam.log")) as f:
                if f.read().count("Server ready") >= starts:
                    return
            if proc.poll() is not None:
                raise SystemExit("bantamd exited: see %s" % d)
            time.sleep(0.05)
        raise SystemExit("bantamd not ready: see %s" % d)

    def stop():
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)

    def scrape(accept=None):
        req = urllib.request.Request(url)
        if accept:
            req.add_header("Accept", accept)
        t0 = time.perf_counter()
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return time.perf_counter() - t0, body.decode()

    try:
        write("fail2ban.conf", "[Definition]\nloglevel = INFO\nlogtarget = %s/bantam.log\n"
              "socket = %s/bantam.sock\npidfile = %s/bantamd.pid\ndbfile = %s/db.sqlite3\n"
              % (d, d, d, d))
        write("fail2ban.local", "[Definition]\nmetrics = 127.0.0.1:%d\n" % port)
        write("filter.d/bench.conf", "[Definition]\nfailregex = ^auth failed from <HOST>$\n")
        write("action.d/noop.conf", "[Definition]\nactionstart =\nactionstop =\nactionban =\n"
              "actionunban =\n")
        jails = ["jail%02d" % i for i in range(args.jails)]
        conf = "[DEFAULT]\nignoreself = false\nfilter = bench\naction = noop\nbantime = 1d\n"
        for j in jails:
            write("%s.log" % j, "")
            conf += "[%s]\nenabled = true\nlogpath = %s/%s.log\n" % (j, d, j)
        write("jail.conf", conf)
        write("bantam.log", "")

        starts = 1
        start()
        stop()
        now = int(time.time())
        db = sqlite3.connect(os.path.join(d, "db.sqlite3"))
        rows = []
        for n in range(args.banned):
            ip = "10.%d.%d.%d" % (n >> 16 & 255, n >> 8 & 255, n & 255)
            rows.append((jails[n % len(jails)], ip, now, 86400, 1, '{"failures": 5}'))
        db.executemany("INSERT INTO bans(jail, ip, timeofban, bantime, bancount, data) "
                       "VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.executemany("INSERT OR REPLACE INTO bips(jail, ip, timeofban, bantime, bancount, data) "
                       "VALUES (?, ?, ?, ?, ?, ?)", rows)
        db.commit()
        db.close()

        starts = 2
        t0 = time.time()
        start()
        end = time.time() + 300
        while True:
            _, body = scrape()
            banned = sum(float(v) for v in re.findall(
                r"^bantam_banned_addresses\{[^}]*\} (\S+)$", body, re.M))
            if banned >= args.banned:
                break
            if time.time() > end:
                raise SystemExit("only %d of %d bans restored" % (banned, args.banned))
            time.sleep(0.2)
        print("%d jails, %d bans restored and reported in %.1f s" % (args.jails, banned,
                                                                     time.time() - t0))
        series = len([l for l in body.splitlines() if l and not l.startswith("#")])
        print("exposition: %d bytes, %d samples; no address in it: %s" % (
            len(body), series, not re.search(r"\b10\.\d+\.\d+\.\d+\b", body)))
        for name, accept in (("text 0.0.4", None),
                             ("OpenMetrics", "application/openmetrics-text;version=1.0.0")):
            times, renders = [], []
            for _ in range(args.reps):
                t, body = scrape(accept)
                times.append(t)
                # The render time of the previous scrape, as bantamd measured it.
                m = re.search(r"^bantam_metrics_last_render_seconds (\S+)$", body, re.M)
                renders.append(float(m.group(1)))
            times.sort()
            renders = sorted(renders[1:])
            print("scrape (%s), %d reps: round trip min %.2f ms, median %.2f ms, p95 %.2f ms, "
                  "max %.2f ms; render in bantamd median %.2f ms, max %.2f ms" % (
                      name, args.reps, times[0] * 1e3, statistics.median(times) * 1e3,
                      times[int(len(times) * 0.95) - 1] * 1e3, times[-1] * 1e3,
                      statistics.median(renders) * 1e3, renders[-1] * 1e3))
        stop()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if not args.keep:
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
