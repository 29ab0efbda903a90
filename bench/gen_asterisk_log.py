#!/usr/bin/env python3
"""Generates a synthetic Asterisk /var/log/asterisk/messages log, deterministically.

The log mixes ordinary PBX chatter (dialplan execution, calls, registrations,
console connections, qualify results, benign security events) with attack
lines: failed SIP registrations (chan_sip and res_pjsip), calls to unknown
extensions, IAX2 and AMI authentication failures and the SECURITY events of
res_security_log. Every attack line has a shape the stock fail2ban
filter.d/asterisk.conf matches, and no benign line does; attacks come from a
fixed pool of IPv4 (198.18.0.0/15, RFC 2544 benchmarking) and IPv6
(2001:db8::/32, RFC 3849 documentation) sources, a few of them very noisy.

Timestamps increase; their style is Asterisk's classic `[Nov 25 16:18:31]`,
the ISO `[2026-11-25 16:18:31]` (dateformat = %F %T), or both, switching in
runs as after a reconfiguration (--date-style). Times are formatted as UTC
wall clock text, so the output does not depend on the time zone.

The same options and seed always give the same bytes. Python 3 only, no
third-party modules. The number of attack lines goes to stderr.

  gen_asterisk_log.py --lines 1000000 --seed 1 --out /tmp/asterisk.log
"""

import argparse
import random
import sys
import time

DEFAULT_START = 1793491200  # 2026-11-01 00:00:00 UTC

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

REG_REASONS_SIP = (
    "Wrong password", "Wrong password", "Wrong password", "No matching peer found",
    "No matching peer found", "Username/auth name mismatch", "Device does not match ACL",
    "Not a local domain", "Peer is not supposed to register", "ACL error (permit/deny)",
)
PJSIP_REASONS = (
    "No matching endpoint found", "No matching endpoint found", "Failed to authenticate",
    "Failed to authenticate", "Not match Endpoint ACL", "Not match Endpoint Contact ACL",
    "Error to authenticate",
)
SECURITY_FAILURES = ("InvalidAccountID", "InvalidAccountID", "ChallengeResponseFailed",
                     "InvalidPassword", "FailedACL")
SCAN_USERS = ("100", "101", "1000", "1001", "200", "admin", "test", "user", "sip", "asterisk",
              "6001", "2000", "guest", "operator", "0000", "1234", "99", "500", "office")
SCAN_NUMBERS = ("00972599580679", "011441234567890", "9011442037690237", "0046812345678",
                "810441619900000", "00441613939000", "+442037690237", "9900972592",
                "011972595133", "000972597000002")
LOCAL_EXTS = tuple(str(n) for n in range(100, 140))
CONTEXTS = ("from-internal", "from-trunk", "ext-local", "macro-dial-one", "app-blackhole")
APPS = (
    ('Answer', '""'), ('Set', '"__FROM_DID=${EXTEN}"'), ('Gosub', '"sub-record-check,s,1(in,${EXTEN},)"'),
    ('Dial', '"SIP/%(ext)s,20,tTr"'), ('NoOp', '"Call from %(ext)s"'), ('Wait', '"1"'),
    ('Playback', '"custom/welcome"'), ('VoiceMail', '"%(ext)s@default,u"'), ('Hangup', '""'),
    ('GotoIf', '"1?from-internal,%(ext)s,1"'), ('Macro', '"user-callerid,"'),
    ('ExecIf', '"0?Set(CALLERID(name)=Internal)"'), ('MixMonitor', '"%(ext)s-rec.wav,ab,"'),
)


class Sources:
    """The attacking addresses: K of them, 70 % IPv4, popularity skewed."""

    def __init__(self, rng, count):
        self.addrs = []
        seen = set()
        while len(self.addrs) < count:
            if rng.random() < 0.7:
                a = "198.%d.%d.%d" % (rng.randint(18, 19), rng.randint(0, 255), rng.randint(1, 254))
            else:
                groups = [rng.randint(0, 0xffff) for _ in range(3)]
                if rng.random() < 0.5:
                    a = "2001:db8:%x:%x::%x" % tuple(groups)
                else:
                    a = "2001:db8:%x:%x:%x:%x:%x:%x" % tuple(
                        groups + [rng.randint(0, 0xffff) for _ in range(3)])
            if a not in seen:
                seen.add(a)
                self.addrs.append(a)
        # Zipf-like weights: a handful of scanners send most of the traffic.
        weights = [1.0 / (i + 1) ** 0.9 for i in range(count)]
        total = 0.0
        self.cum = []
        for w in weights:
            total += w
            self.cum.append(total)
        self.total = total

    def pick(self, rng):
        return rng.choices(self.addrs, cum_weights=self.cum, k=1)[0]


def is_v6(addr):
    return ":" in addr


def hostport(addr, port):
    return "[%s]:%d" % (addr, port) if is_v6(addr) else "%s:%d" % (addr, port)


def sec_addr(addr, port, transport="UDP"):
    return "IPV%d/%s/%s/%d" % (6 if is_v6(addr) else 4, transport, addr, port)


class Generator:
    def __init__(self, rng, sources, server_ip):
        self.rng = rng
        self.sources = sources
        self.server = server_ip
        self.pid = rng.randint(1000, 30000)
        self.channel = rng.randint(1, 500)
        self.session = rng.randint(1, 1 << 30)

    # -- helpers ---------------------------------------------------------

    def tid(self):
        return self.pid + self.rng.randint(0, 400)

    def cid(self):
        self.channel += 1
        return "[C-%08x]" % self.channel

    def callid(self):
        r = self.rng
        return "%08x%08x%04x@%s" % (r.getrandbits(32), r.getrandbits(32), r.getrandbits(16),
                                    self.server) if r.random() < 0.5 else \
            "%032x" % r.getrandbits(128)

    def sport(self):
        return self.rng.choice((5060, 5060, 5060, 5061, 5062, 5070, 5080, 5090)) \
            if self.rng.random() < 0.6 else self.rng.randint(1024, 65535)

    def chan_sip_loc(self, func):
        """chan_sip's file:line function prefix in its three observed shapes."""
        r = self.rng.random()
        if r < 0.4:
            return "chan_sip.c:"
        if r < 0.8:
            return "chan_sip.c:%d %s:" % (self.rng.randint(20000, 30000), func)
        return "chan_sip.c:%d in %s:" % (self.rng.randint(20000, 30000), func)

    def sip_from(self, user):
        r = self.rng.random()
        if r < 0.5:
            return '"%s" <sip:%s@%s>' % (user, user, self.server)
        if r < 0.8:
            return "<sip:%s@%s>" % (user, self.server)
        return '"%s" <sip:%s@%s;transport=UDP>' % (user, user, self.server)

    def now_iso(self, t):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%06d+0000" % (
            self.rng.randint(0, 999999))

    # -- attack lines ----------------------------------------------------

    def attack(self, t):
        """Returns (message, attacking address)."""
        a = self.sources.pick(self.rng)
        return self.attack_from(t, a), a

    def attack_from(self, t, a):
        r = self.rng
        user = r.choice(SCAN_USERS)
        k = r.random()
        if k < 0.30:
            return "NOTICE[%d] %s Registration from '%s' failed for '%s' - %s" % (
                self.tid(), self.chan_sip_loc("handle_request_register"), self.sip_from(user),
                hostport(a, self.sport()), r.choice(REG_REASONS_SIP))
        if k < 0.50:
            method = r.choice(("REGISTER", "REGISTER", "REGISTER", "INVITE", "OPTIONS"))
            loc = "res_pjsip/pjsip_distributor.c:%d log_failed_request:" % r.randint(500, 700) \
                if r.random() < 0.5 else "res_pjsip/pjsip_distributor.c:"
            return "NOTICE[%d] %s Request '%s' from '%s' failed for '%s' (callid: %s) - %s" % (
                self.tid(), loc, method, self.sip_from(user), hostport(a, self.sport()),
                self.callid(), r.choice(PJSIP_REASONS))
        if k < 0.70:
            return self.security_failure(t, a, user)
        if k < 0.78:
            num = r.choice(SCAN_NUMBERS)
            if r.random() < 0.5:
                return ("NOTICE[%d]%s %s Call from '%s' (%s) to extension '%s' rejected because "
                        "extension not found in context 'default'.") % (
                    self.tid(), self.cid(), self.chan_sip_loc("handle_request_invite"),
                    r.choice(("", user, "anonymous")), hostport(a, self.sport()), num)
            return ("NOTICE[%d]%s res_pjsip_session.c:%d new_invite: Call from '%s' (%s:%s) to "
                    "extension '%s' rejected because extension not found in context '%s'.") % (
                self.tid(), self.cid(), r.randint(2000, 4000), r.choice(("anonymous", user)),
                r.choice(("UDP", "TCP")), "[%s]:%d" % (a, self.sport()), num,
                r.choice(("default", "anonymous", "public")))
        if k < 0.85:
            if r.random() < 0.6:
                return "NOTICE[%d] chan_iax2.c: Host %s failed to authenticate as '%s'" % (
                    self.tid(), a, user)
            return "NOTICE[%d] chan_iax2.c: Host %s failed MD5 authentication for '%s' (%032x != %032x)" % (
                self.tid(), a, user, r.getrandbits(128), r.getrandbits(128))
        if k < 0.91:
            if r.random() < 0.5:
                return "NOTICE[%d] manager.c: %s tried to authenticate with nonexistent user '%s'" % (
                    self.tid(), a, user)
            return "NOTICE[%d] manager.c: %s failed to authenticate as '%s'" % (self.tid(), a, user)
        if k < 0.95:
            return "NOTICE[%d] %s No registration for peer '%s' (from %s)" % (
                self.tid(), self.chan_sip_loc("register_verify"), user, a)
        if k < 0.97:
            return "NOTICE[%d] %s hacking attempt detected '%s'" % (
                self.tid(), self.chan_sip_loc("handle_request_register"), a)
        return ('WARNING[%d]%s: Ext. s:%d in @ from-sip-external: '
                '"Rejecting unknown SIP connection from %s"') % (
            self.tid(), self.cid(), r.randint(1, 9), a)

    def security_event(self, t, event, service, account, remote, extra):
        self.session += 1
        severity = "Informational" if event in ("SuccessfulAuth", "ChallengeSent") else "Error"
        fields = [
            ("SecurityEvent", event), ("EventTV", self.now_iso(t)), ("Severity", severity),
            ("Service", service), ("EventVersion", "2" if event == "InvalidPassword" else "1"),
            ("AccountID", account),
            ("SessionID", "0x%x" % self.session if service == "SIP" else "%x" % self.session),
            ("LocalAddress", sec_addr(self.server, 5060)),
            ("RemoteAddress", remote),
        ] + extra
        return "SECURITY[%d] res_security_log.c: %s" % (
            self.tid(), ",".join('%s="%s"' % kv for kv in fields))

    def security_failure(self, t, a, user):
        r = self.rng
        event = r.choice(SECURITY_FAILURES)
        service = r.choice(("SIP", "PJSIP", "PJSIP", "AMI"))
        remote = sec_addr(a, self.sport(), r.choice(("UDP", "UDP", "TCP")))
        extra = []
        if event in ("ChallengeResponseFailed", "InvalidPassword"):
            extra = [("Challenge", "%08x" % r.getrandbits(32)),
                     ("ReceivedChallenge", "%08x" % r.getrandbits(32)),
                     ("ReceivedHash", "%032x" % r.getrandbits(128))]
        elif event == "FailedACL":
            extra = [("ACLName", r.choice(("no_name", "acl_sip", "permit")))]
        return self.security_event(t, event, service, user, remote, extra)

    # -- benign lines ----------------------------------------------------

    def benign(self, t):
        r = self.rng
        ext = r.choice(LOCAL_EXTS)
        lan = "192.168.%d.%d" % (r.randint(0, 3), r.randint(2, 250))
        chan = "SIP/%s-%08x" % (ext, r.randint(1, 0xfff))
        k = r.random()
        if k < 0.35:
            app, arg = r.choice(APPS)
            return 'VERBOSE[%d]%s pbx.c:     -- Executing [%s@%s:%d] %s("%s", %s) in new stack' % (
                self.tid(), self.cid(), r.choice((ext, "s", "h")), r.choice(CONTEXTS),
                r.randint(1, 20), app, chan, arg % {"ext": ext})
        if k < 0.45:
            return "VERBOSE[%d]%s app_dial.c:     -- %s" % (self.tid(), self.cid(), r.choice((
                "Called SIP/%s" % ext, "%s is ringing" % chan,
                "%s answered SIP/%s-%08x" % (chan, r.choice(LOCAL_EXTS), r.randint(1, 0xfff)),
                "Nobody picked up in 20000 ms", "Everyone is busy/congested at this time (1:0/0/1)")))
        if k < 0.52:
            return "VERBOSE[%d]%s bridge_channel.c:     -- Channel %s %s 'simple_bridge' basic-bridge <%08x-%04x>" % (
                self.tid(), self.cid(), chan, r.choice(("joined", "left")), r.getrandbits(32),
                r.getrandbits(16))
        if k < 0.58:
            return "VERBOSE[%d] asterisk.c: Remote UNIX connection%s" % (
                self.tid(), r.choice(("", " disconnected")))
        if k < 0.64:
            return "VERBOSE[%d] %s     -- Registered SIP '%s' at %s" % (
                self.tid(), "chan_sip.c:", ext, hostport(lan, 5060))
        if k < 0.69:
            return "NOTICE[%d] chan_sip.c: Peer '%s' is now %s" % (self.tid(), ext, r.choice((
                "Reachable. (%dms / 2000ms)" % r.randint(3, 80), "UNREACHABLE!  Last qualify: %d" % r.randint(5, 90),
                "Lagged. (2411ms / 2000ms)")))
        if k < 0.74:
            return "VERBOSE[%d] res_pjsip_registrar.c: Added contact 'sip:%s@%s;transport=UDP;rinstance=%016x' to AOR '%s' with expiration of 3600 seconds" % (
                self.tid(), ext, hostport(lan, r.randint(5060, 5090)), r.getrandbits(64), ext)
        if k < 0.78:
            return "VERBOSE[%d] res_pjsip/pjsip_options.c: Endpoint %s is now %s" % (
                self.tid(), ext, r.choice(("Reachable", "Unreachable")))
        if k < 0.83:
            self.session += 1
            event = r.choice(("SuccessfulAuth", "ChallengeSent"))
            extra = [("UsingPassword", "1")] if event == "SuccessfulAuth" else \
                [("Challenge", "%08x" % r.getrandbits(32))]
            return self.security_event(t, event, "PJSIP", ext, sec_addr(lan, 5060), extra)
        if k < 0.87:
            return "WARNING[%d]%s chan_sip.c: Retransmission timeout reached on transmission %s for seqno %d (Critical Request) -- See https://wiki.asterisk.org/wiki/display/AST/SIP+Retransmissions" % (
                self.tid(), self.cid(), self.callid(), r.randint(1, 200))
        if k < 0.90:
            return "VERBOSE[%d]%s pbx.c:     -- Auto fallthrough, channel '%s' status is '%s'" % (
                self.tid(), self.cid(), chan, r.choice(("NOANSWER", "BUSY", "CHANUNAVAIL")))
        if k < 0.93:
            return "VERBOSE[%d]%s pbx.c:   == Spawn extension (%s, %s, %d) exited non-zero on '%s'" % (
                self.tid(), self.cid(), r.choice(CONTEXTS), ext, r.randint(1, 12), chan)
        if k < 0.95:
            return "VERBOSE[%d] chan_sip.c: Unregistered SIP '%s'" % (self.tid(), ext)
        if k < 0.97:
            return "NOTICE[%d] cdr.c: CDR simple logging enabled." % self.tid() \
                if r.random() < 0.3 else "VERBOSE[%d] logger.c: Asterisk Queue Logger restarted" % self.tid()
        return "VERBOSE[%d]%s app_voicemail.c:     -- Playing '%s' (language 'en')" % (
            self.tid(), self.cid(), r.choice(("vm-intro", "vm-goodbye", "beep", "custom/welcome")))


def stamp(t, iso):
    tm = time.gmtime(t)
    if iso:
        return time.strftime("[%Y-%m-%d %H:%M:%S]", tm)
    return "[%s %2d %s]" % (MONTHS[tm.tm_mon - 1], tm.tm_mday, time.strftime("%H:%M:%S", tm))


def generate(out, lines, seed, attack_ratio, sources, date_style, start, truth=None):
    rng = random.Random(seed)
    srcs = Sources(rng, sources)
    gen = Generator(rng, srcs, "203.0.113.%d" % rng.randint(2, 250))
    t = float(start)
    iso = date_style == "iso"
    run_left = rng.randint(lines // 8 + 1, lines // 3 + 2) if date_style == "mix" else -1
    attacks = 0
    buf = []
    for lineno in range(1, lines + 1):
        t += rng.expovariate(1 / 0.3)  # ~0.3 s between lines: 1M lines ~ 3.5 days
        if run_left == 0:
            iso = not iso
            run_left = rng.randint(lines // 8 + 1, lines // 3 + 2)
        run_left -= 1
        if rng.random() < attack_ratio:
            msg, addr = gen.attack(t)
            attacks += 1
            if truth is not None:
                truth.write("%d %s\n" % (lineno, addr))
        else:
            msg = gen.benign(t)
        buf.append("%s %s\n" % (stamp(int(t), iso), msg))
        if len(buf) >= 4096:
            out.write("".join(buf))
            buf = []
    out.write("".join(buf))
    return attacks


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", type=int, default=1000000, help="lines to write (default %(default)s)")
    p.add_argument("--seed", type=int, default=1, help="random seed (default %(default)s)")
    p.add_argument("--attack-ratio", type=float, default=0.10,
                   help="share of attack lines (default %(default)s)")
    p.add_argument("--sources", type=int, default=3000,
                   help="distinct attacking addresses (default %(default)s)")
    p.add_argument("--date-style", choices=("short", "iso", "mix"), default="mix",
                   help="[Nov 25 16:18:31], [2026-11-25 16:18:31] or runs of both (default)")
    p.add_argument("--start", type=int, default=DEFAULT_START,
                   help="epoch of the first line's wall clock, read as UTC (default %(default)s)")
    p.add_argument("--out", default="-", help="output file (default stdout)")
    p.add_argument("--truth", metavar="FILE",
                   help="also write 'LINENO ADDRESS' for every attack line to FILE")
    args = p.parse_args(argv)
    if args.lines < 0 or not 0 <= args.attack_ratio <= 1 or args.sources < 1:
        p.error("need --lines >= 0, 0 <= --attack-ratio <= 1, --sources >= 1")
    if args.sources > 100000:
        p.error("--sources is at most 100000")
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="ascii", newline="\n")
    truth = open(args.truth, "w", encoding="ascii", newline="\n") if args.truth else None
    try:
        attacks = generate(out, args.lines, args.seed, args.attack_ratio, args.sources,
                           args.date_style, args.start, truth)
    finally:
        if out is not sys.stdout:
            out.close()
        if truth is not None:
            truth.close()
    sys.stderr.write("gen_asterisk_log: %d lines, %d attack lines (seed %d)\n" % (
        args.lines, attacks, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
