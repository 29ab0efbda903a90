#!/usr/bin/env python3
"""Generates a synthetic syslog auth.log with OpenSSH sessions, deterministically.

Sessions are simulated one connection (one sshd[PID]) at a time and their
lines interleaved, as on a busy host: password and user-name guessing
(invalid users, root, PAM failures, "maximum authentication attempts",
"Too many authentication failures"), scanners that never authenticate
(banner/kex errors, "Did not receive identification string", closed or
reset [preauth] connections, algorithm negotiation failures), public-key
probes, and legitimate logins (public key, password after a typo) with their
PAM session lines, plus CRON, systemd and kernel chatter. The point is to
exercise sshd.conf's multi-line logic (mlfid, nofail, mlfforget, mlfgained)
in every mode, so which lines are failures is left to the filter.

Timestamps increase and are either classic syslog (`Nov 25 16:18:31`),
rsyslog's RFC 3339 high precision (`2026-11-25T16:18:31.123456+01:00`), or
runs of both (--date-style). Addresses: attackers in 198.18.0.0/15 and
2001:db8::/32, the LAN in 192.168.0.0/16. Same options and seed, same bytes.

  gen_sshd_log.py --lines 20000 --seed 1 --out /tmp/auth.log
"""

import argparse
import random
import sys
import time

DEFAULT_START = 1793491200  # 2026-11-01 00:00:00 UTC
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
HOST = "gw"
INVALID_USERS = ("admin", "test", "user", "oracle", "postgres", "ubuntu", "pi", "git", "ftpuser",
                 "guest", "support", "deploy", "hadoop", "jenkins", "minecraft", "steam", "a b",
                 "from", "123456", "Administrator")
VALID_USERS = ("alice", "bob", "carol", "backup")
KEYS = ("ED25519 SHA256:3kq6TtTm0bXqmn1SmcLQ5R2qOZS2dNHd8Z0XbKCqQrY",
        "RSA SHA256:Dq8X4v2F0mFZ4oq3dV0HzZPz6S0s3Dq0Yt9A6qC2mJw",
        "ECDSA SHA256:t0pN2l4xVqzCwLr8oQmXfS8y2k9m5JZ0b3Yd7Hh1aPs")
KEX = ("diffie-hellman-group1-sha1,diffie-hellman-group14-sha1",
       "diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1")


def attacker(rng, pool):
    return pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]


def make_pool(rng, count):
    pool, seen = [], set()
    while len(pool) < count:
        if rng.random() < 0.75:
            a = "198.%d.%d.%d" % (rng.randint(18, 19), rng.randint(0, 255), rng.randint(1, 254))
        else:
            a = "2001:db8:%x:%x::%x" % (rng.getrandbits(16), rng.getrandbits(16), rng.getrandbits(16))
        if a not in seen:
            seen.add(a)
            pool.append(a)
    return pool


def session_script(rng, pool):
    """(daemon, lines) of one connection; '%(pid)s'-free, the caller adds the prefix."""
    port = rng.randint(1024, 65535)
    k = rng.random()
    if k < 0.30:  # invalid user guessing
        a, u = attacker(rng, pool), rng.choice(INVALID_USERS)
        out = ["Invalid user %s from %s port %d" % (u, a, port),
               "pam_unix(sshd:auth): check pass; user unknown",
               "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s" % a]
        n = rng.randint(1, 6)
        out += ["Failed password for invalid user %s from %s port %d ssh2" % (u, a, port)] * n
        end = rng.random()
        if n >= 6 or end < 0.2:
            out += ["error: maximum authentication attempts exceeded for invalid user %s from %s port %d ssh2 [preauth]" % (u, a, port),
                    "Disconnecting invalid user %s %s port %d: Too many authentication failures [preauth]" % (u, a, port)]
        elif end < 0.6:
            out += ["Connection closed by invalid user %s %s port %d [preauth]" % (u, a, port)]
        else:
            out += ["Received disconnect from %s port %d:11: Bye Bye [preauth]" % (a, port),
                    "Disconnected from invalid user %s %s port %d [preauth]" % (u, a, port)]
        return out
    if k < 0.48:  # root guessing
        a = attacker(rng, pool)
        n = rng.randint(1, 4)
        out = ["pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=root" % a]
        out += ["Failed password for root from %s port %d ssh2" % (a, port)] * n
        if n > 1:
            out.append("PAM %d more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=%s  user=root" % (n - 1, a))
        out.append(rng.choice((
            "Connection closed by authenticating user root %s port %d [preauth]" % (a, port),
            "Received disconnect from %s port %d:11: Bye Bye [preauth]" % (a, port),
            "Disconnected from authenticating user root %s port %d [preauth]" % (a, port))))
        return out
    if k < 0.66:  # scanners
        a = attacker(rng, pool)
        return rng.choice((
            ["Connection closed by %s port %d [preauth]" % (a, port)],
            ["Connection reset by %s port %d [preauth]" % (a, port)],
            ["Did not receive identification string from %s port %d" % (a, port)],
            ["banner exchange: Connection from %s port %d: invalid format" % (a, port)],
            ["error: kex_exchange_identification: Connection closed by remote host",
             "Connection closed by %s port %d" % (a, port)],
            ["error: kex_exchange_identification: read: Connection reset by peer",
             "Connection reset by %s port %d" % (a, port)],
            ["Unable to negotiate with %s port %d: no matching key exchange method found. Their offer: %s [preauth]"
             % (a, port, rng.choice(KEX))],
            ["Unable to negotiate with %s port %d: no matching host key type found. Their offer: ssh-rsa,ssh-dss [preauth]" % (a, port)],
            ["Received disconnect from %s port %d:14: No supported authentication methods available [preauth]" % (a, port),
             "Disconnected from %s port %d [preauth]" % (a, port)],
            ["Bad protocol version identification 'GET / HTTP/1.1' from %s port %d" % (a, port)],
        ))
    if k < 0.74:  # public key probes
        a = attacker(rng, pool)
        u = rng.choice(("root",) + INVALID_USERS[:5])
        inv = "" if u == "root" else "invalid user "
        out = [] if not inv else ["Invalid user %s from %s port %d" % (u, a, port)]
        out += ["Failed publickey for %s%s from %s port %d ssh2: %s" % (inv, u, a, port, rng.choice(KEYS))] * rng.randint(1, 3)
        out.append("Connection closed by %s %s %s port %d [preauth]" % (
            "invalid user" if inv else "authenticating user", u, a, port))
        return out
    # legitimate users from the LAN (a typo first, sometimes)
    a = "192.168.%d.%d" % (rng.randint(0, 3), rng.randint(2, 250))
    u = rng.choice(VALID_USERS)
    out = []
    if rng.random() < 0.3:
        out.append("Failed password for %s from %s port %d ssh2" % (u, a, port))
        out.append("Accepted password for %s from %s port %d ssh2" % (u, a, port))
    else:
        out.append("Accepted publickey for %s from %s port %d ssh2: %s" % (u, a, port, rng.choice(KEYS)))
    out += ["pam_unix(sshd:session): session opened for user %s(uid=%d) by (uid=0)" % (u, 1000 + VALID_USERS.index(u)),
            "Received disconnect from %s port %d:11: disconnected by user" % (a, port),
            "Disconnected from user %s %s port %d" % (u, a, port),
            "pam_unix(sshd:session): session closed for user %s" % u]
    return out


def other_line(rng):
    k = rng.random()
    if k < 0.4:
        return "CRON[%d]" % rng.randint(1000, 99999), rng.choice((
            "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
            "pam_unix(cron:session): session closed for user root"))
    if k < 0.7:
        n = rng.randint(1, 9999)
        return "systemd-logind[612]", rng.choice((
            "New session %d of user %s." % (n, rng.choice(VALID_USERS)),
            "Session %d logged out. Waiting for processes to exit." % n,
            "Removed session %d." % n))
    if k < 0.85:
        n = rng.randint(1, 9999)
        return "systemd[1]", rng.choice(("Started session-%d.scope - Session %d of User alice." % (n, n),
                                         "Starting apt-daily.service - Daily apt download activities...",
                                         "Finished logrotate.service - Rotate log files."))
    return "sudo[%d]" % rng.randint(1000, 99999), rng.choice((
        "   alice : TTY=pts/0 ; PWD=/home/alice ; USER=root ; COMMAND=/usr/bin/apt update",
        "pam_unix(sudo:session): session opened for user root(uid=0) by alice(uid=1000)",
        "pam_unix(sudo:session): session closed for user root"))


def stamp(t, rfc3339, frac):
    if rfc3339:  # rsyslog's RSYSLOG_FileFormat, in a +01:00 zone
        tm = time.gmtime(int(t) + 3600)
        return time.strftime("%Y-%m-%dT%H:%M:%S", tm) + ".%06d+01:00" % frac
    tm = time.gmtime(int(t))
    return "%s %2d %s" % (MONTHS[tm.tm_mon - 1], tm.tm_mday, time.strftime("%H:%M:%S", tm))


def generate(out, lines, seed, sources, date_style, start, concurrency=8):
    rng = random.Random(seed)
    pool = make_pool(rng, sources)
    t = float(start)
    rfc = date_style == "rfc3339"
    run_left = rng.randint(lines // 6 + 1, lines // 3 + 2) if date_style == "mix" else -1
    active = []  # [pid, remaining lines]
    next_pid = rng.randint(2000, 9000)
    written = 0
    buf = []
    while written < lines:
        t += rng.expovariate(1 / 0.5)
        if run_left == 0:
            rfc = not rfc
            run_left = rng.randint(lines // 6 + 1, lines // 3 + 2)
        run_left -= 1
        if rng.random() < 0.15:
            daemon, msg = other_line(rng)
        else:
            if len(active) < concurrency and (not active or rng.random() < 0.3):
                next_pid += rng.randint(1, 40)
                active.append([next_pid, session_script(rng, pool)])
            sess = rng.choice(active)
            daemon, msg = "sshd[%d]" % sess[0], sess[1].pop(0)
            if not sess[1]:
                active.remove(sess)
        buf.append("%s %s %s: %s\n" % (stamp(t, rfc, rng.randint(0, 999999)), HOST, daemon, msg))
        written += 1
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf = []
    out.write("".join(buf))


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=20000, help="lines to write (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument("--sources", type=int, default=500, help="attacking addresses (default %(default)s)")
    p.add_argument("--date-style", choices=("syslog", "rfc3339", "mix"), default="mix",
                   help="classic syslog, RFC 3339 high precision, or runs of both (default)")
    p.add_argument("--start", type=int, default=DEFAULT_START,
                   help="epoch of the first line (default %(default)s)")
    p.add_argument("--out", default="-", help="output file (default stdout)")
    args = p.parse_args(argv)
    if args.lines < 0 or args.sources < 1:
        p.error("need --lines >= 0 and --sources >= 1")
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="ascii", newline="\n")
    try:
        generate(out, args.lines, args.seed, args.sources, args.date_style, args.start)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
