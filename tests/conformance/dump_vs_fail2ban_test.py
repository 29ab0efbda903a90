#!/usr/bin/env python3
"""Conformance: `bantam -c DIR --dump` must print what `fail2ban-client -c DIR -d` does.

Both programs resolve a fail2ban configuration tree into the command stream
the client would send to the server. fail2ban prints one Python literal per
line (['set', 'sshd', 'maxretry', 5]); bantam prints one JSON array per line.
We parse each side (ast.literal_eval / json.loads) and compare the streams as
Python values with strict types, so 5 != '5', True != 1 and 1.0 != 1.

Every scenario starts from a private copy of the stock tree (/etc/fail2ban is
only ever read), adds the files an operator would add, runs both programs
with `-c COPY` from the scenario's directory, and compares. Differences are
shown per jail as a unified diff, one command per line (list arguments one
element per line). fail2ban-client is used only with -d: no server is started.

Exit status: 0 if every selected scenario matches, 1 otherwise, 2 on usage
errors.
"""

import argparse
import ast
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import traceback

STOCK_DIR = "/etc/fail2ban"
# Ends the sentence naming a missing package.
SETUP = "; set up with packaging/setup.sh"
TIMEOUT_SECONDS = 120


# ---------------------------------------------------------------------------
# Scenarios


class Workspace:
    """A scenario's private directory: conf/ (a copy of the stock tree), logs/."""

    def __init__(self, root, stock_dir):
        self.root = root
        self.stock_dir = stock_dir
        self.conf = os.path.join(root, "conf")
        self.logs = os.path.join(root, "logs")
        # Copy file contents, not symlinks, so no write can reach the original.
        shutil.copytree(stock_dir, self.conf, symlinks=False)
        os.makedirs(self.logs)

    def _inside(self, base, relpath):
        path = os.path.realpath(os.path.join(base, relpath))
        if os.path.commonpath([path, os.path.realpath(self.root)]) != os.path.realpath(self.root):
            raise RuntimeError("refusing to write outside the workspace: %s" % path)
        return path

    def write(self, relpath, text):
        """Writes conf/RELPATH; TEXT is dedented, so scenarios can indent it."""
        path = self._inside(self.conf, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(textwrap.dedent(text).lstrip("\n"))

    def log(self, relpath, text=""):
        """Creates logs/RELPATH and returns its absolute path."""
        path = self._inside(self.logs, relpath)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class Scenario:
    def __init__(self, name, description, setup, expect_jails=(), expect_text=(),
                 expect_failure=False):
        self.name = name
        self.description = description
        self.setup = setup
        # fail2ban refuses the tree: bantam must refuse it too, with the same
        # exit status and without printing a command stream.
        self.expect_failure = expect_failure
        # Self-checks on fail2ban's own output, so that a typo in a scenario
        # cannot silently turn it into a test of something else. expect_jails
        # may be a function of the stock directory.
        self.expect_jails = expect_jails
        self.expect_text = tuple(expect_text)


SCENARIOS = []


def scenario(name, description, expect_jails=(), expect_text=(), expect_failure=False):
    def register(setup):
        SCENARIOS.append(
            Scenario(name, description, setup, expect_jails, expect_text, expect_failure))
        return setup

    return register


def stock_jail_names(stock_dir):
    """Jail sections of the stock jail.conf, in file order."""
    with open(os.path.join(stock_dir, "jail.conf"), encoding="utf-8") as f:
        headers = re.findall(r"(?m)^\[([^\]\n]+)\]\s*$", f.read())
    return [h for h in headers if h not in ("INCLUDES", "DEFAULT")]


@scenario("stock", "the stock tree unchanged (Debian enables sshd; its log may be missing)",
          expect_jails=["sshd"])
def _stock(ws):
    pass


@scenario("all-jails", "every jail of the stock jail.conf enabled, each with its own log file",
          expect_jails=stock_jail_names)
def _all_jails(ws):
    sections = []
    for name in stock_jail_names(ws.stock_dir):
        sections.append("[%s]\nenabled = true\nlogpath = %s\n" % (name, ws.log(name + ".log")))
    ws.write("jail.local", "\n".join(sections))


def pbx_jails(ws):
    """jail.local with the jails a typical Asterisk/FreePBX box enables."""
    base = """
        [sshd]
        enabled = true
        port    = ssh,2222
        logpath = %s

        [asterisk]
        enabled = true
        logpath = %s

        [recidive]
        enabled = true
        logpath = %s
        """ % (ws.log("auth.log"), ws.log("asterisk/messages"), ws.log("fail2ban.log"))
    ws.write("jail.local", base)


PBX = ["sshd", "asterisk", "recidive"]


@scenario("banaction-nftables",
          "[DEFAULT] banaction = nftables, allports via nftables[type=allports]",
          expect_jails=PBX, expect_text=["nft"])
def _banaction_nftables(ws):
    pbx_jails(ws)
    ws.write("jail.d/banaction.local", """
        [DEFAULT]
        banaction = nftables
        banaction_allports = nftables[type=allports]
        """)


@scenario("banaction-nftables-allports", "[DEFAULT] banaction = nftables-allports for every jail",
          expect_jails=PBX, expect_text=["nftables-allports"])
def _banaction_nftables_allports(ws):
    pbx_jails(ws)
    ws.write("jail.d/banaction.local", """
        [DEFAULT]
        banaction = nftables-allports
        banaction_allports = nftables-allports
        """)


@scenario("banaction-iptables-allports", "[DEFAULT] banaction = iptables-allports",
          expect_jails=PBX, expect_text=["iptables-allports"])
def _banaction_iptables_allports(ws):
    pbx_jails(ws)
    ws.write("jail.d/banaction.local", """
        [DEFAULT]
        banaction = iptables-allports
        """)


@scenario("banaction-type-allports",
          "per-jail banaction = iptables[type=allports] / nftables[type=allports]",
          expect_jails=PBX, expect_text=["'type', 'allports'"])
def _banaction_type_allports(ws):
    pbx_jails(ws)
    ws.write("jail.d/types.local", """
        [sshd]
        banaction = iptables[type=allports]

        [asterisk]
        banaction = nftables[type=allports]
        """)


@scenario("asterisk-multiline-action",
          "asterisk: action = iptables-allports[name=ASTERISK, protocol=all] + sendmail-whois[...] "
          "on a continuation line",
          expect_jails=["asterisk"], expect_text=["sendmail-whois", "ASTERISK"])
def _asterisk_multiline_action(ws):
    ws.write("jail.local", """
        [asterisk]
        enabled  = true
        port     = 5060,5061
        logpath  = %s
        maxretry = 4
        action   = iptables-allports[name=ASTERISK, protocol=all]
                   sendmail-whois[name=ASTERISK, dest=root, sender=fail2ban@example.org]
        """ % ws.log("asterisk/messages"))


@scenario("action-mwl", "action = %(action_mwl)s with destemail/sender/mta set in [DEFAULT]",
          expect_jails=["sshd", "asterisk"],
          expect_text=["sendmail-whois-lines", "security@example.org"])
def _action_mwl(ws):
    ws.write("jail.local", """
        [DEFAULT]
        destemail = security@example.org
        sender    = fail2ban@pbx.example.org
        sendername = PBX Fail2Ban
        mta       = sendmail
        action    = %%(action_mwl)s

        [sshd]
        enabled = true
        logpath = %s

        [asterisk]
        enabled = true
        logpath = %s
        action  = %%(action_mwl)s
        """ % (ws.log("auth.log"), ws.log("asterisk/messages")))


@scenario("filter-sshd-aggressive",
          "filter = sshd[mode=aggressive], plus a custom jail on sshd[mode=ddos]",
          expect_jails=["sshd", "sshd-ddos"])
def _filter_sshd_aggressive(ws):
    log = ws.log("auth.log")
    ws.write("jail.local", """
        [sshd]
        enabled = true
        filter  = sshd[mode=aggressive]
        logpath = %s

        [sshd-ddos]
        enabled  = true
        filter   = sshd[mode=ddos]
        port     = ssh
        logpath  = %s
        maxretry = 2
        findtime = 1h
        """ % (log, log))


@scenario("filter-local-known",
          "filter.d/asterisk.local: failregex = <known/failregex> plus one more line",
          expect_jails=["asterisk"], expect_text=["Bad nonce"])
def _filter_local_known(ws):
    ws.write("filter.d/asterisk.local", r"""
        [Definition]
        failregex = <known/failregex>
                    ^Registration from '[^']*' failed for '<HOST>(:\d+)?' - Bad nonce$
        ignoreregex = ^Registration from '[^']*' failed for '10\.1\.
        """)
    ws.write("jail.local", """
        [asterisk]
        enabled = true
        logpath = %s
        """ % ws.log("asterisk/messages"))


@scenario("jail-d-layering",
          "jail.conf < jail.d/*.conf < jail.local < jail.d/*.local, a custom jail, a disabled one, "
          "and files jail.d must ignore",
          expect_jails=["sshd", "asterisk", "recidive", "freepbx-admin"])
def _jail_d_layering(ws):
    asterisk_log = ws.log("asterisk/messages")
    ws.write("jail.d/10-pbx.conf", """
        [DEFAULT]
        bantime  = 1h
        findtime = 30m

        [asterisk]
        enabled  = true
        logpath  = %s
        maxretry = 3
        """ % asterisk_log)
    ws.write("jail.d/20-ssh.conf", """
        [sshd]
        port     = 2222
        maxretry = 4
        logpath  = %s
        """ % ws.log("auth.log"))
    ws.write("jail.d/20-ssh.local", """
        [sshd]
        maxretry = 6
        """)
    ws.write("jail.local", """
        [sshd]
        maxretry = 5
        bantime  = 2h

        [recidive]
        enabled = true
        logpath = %s
        """ % ws.log("fail2ban.log"))
    ws.write("jail.d/50-freepbx.conf", """
        [freepbx-admin]
        enabled  = true
        filter   = freepbx-admin
        port     = http,https
        logpath  = %s
        maxretry = 3

        [freepbx-off]
        enabled = true
        filter  = asterisk
        logpath = %s
        """ % (ws.log("freepbx_security.log"), asterisk_log))
    ws.write("filter.d/freepbx-admin.conf", """
        [Definition]
        failregex = ^%(__prefix_line)s\\[SECURITY\\] .* Authentication failure for \\S+ from <HOST>$
        __prefix_line = \\S+ \\S+
        ignoreregex =
        datepattern = ^\\[%%Y-%%b-%%d %%H:%%M:%%S\\]
        """)
    ws.write("jail.d/60-off.local", """
        [freepbx-off]
        enabled = false

        [asterisk]
        findtime = 15m
        """)
    # Neither *.conf nor *.local: fail2ban reads none of these.
    ws.write("jail.d/README", "[sshd]\nenabled = false\n")
    ws.write("jail.d/30-old.conf.dpkg-old", "[sshd]\nenabled = false\n")
    ws.write("jail.d/40-backup.local~", "[asterisk]\nenabled = false\n")


@scenario("fail2ban-local",
          "fail2ban.local and fail2ban.d/ change dbfile, dbpurgeage, loglevel, logtarget, [Thread]",
          expect_jails=["sshd"], expect_text=["dbpurgeage', '7d'", "'DEBUG'", "stacksize"])
def _fail2ban_local(ws):
    ws.write("fail2ban.local", """
        [Definition]
        loglevel   = DEBUG
        logtarget  = %s
        dbfile     = %s
        dbpurgeage = 7d

        [Thread]
        stacksize = 256
        """ % (os.path.join(ws.root, "fail2ban.log"), os.path.join(ws.root, "fail2ban.sqlite3")))
    ws.write("fail2ban.d/10-matches.conf", """
        [Definition]
        dbmaxmatches = 20
        loglevel = NOTICE
        """)
    ws.write("fail2ban.d/90-ipv6.local", """
        [Definition]
        allowipv6 = no
        """)


@scenario("ignoreip-cidrs",
          "ignoreip with CIDRs, IPv6, a hostname, commas and several lines; "
          "ignoreself, ignorecommand",
          expect_jails=["sshd", "asterisk"], expect_text=["addignoreip", "'ignoreself', False"])
def _ignoreip(ws):
    ws.write("jail.local", """
        [DEFAULT]
        ignoreip = 127.0.0.1/8 ::1 10.0.0.0/8,192.168.0.0/16
                   203.0.113.17 2001:db8::/32 pbx.example.org
        ignoreself = false

        [sshd]
        enabled  = true
        logpath  = %s
        ignoreip = %%(known/ignoreip)s 198.51.100.0/24
        ignorecommand = /usr/local/bin/f2b-is-trusted <ip>

        [asterisk]
        enabled  = true
        logpath  = %s
        ignoreip = 172.16.0.0/12, 100.64.0.0/10
        """ % (ws.log("auth.log"), ws.log("asterisk/messages")))


@scenario("bantime-increment",
          "bantime.increment with factor, formula, multipliers, maxtime, rndtime, overalljails",
          expect_jails=["sshd", "asterisk"], expect_text=["bantime.formula", "bantime.multipliers"])
def _bantime_increment(ws):
    ws.write("jail.local", """
        [DEFAULT]
        bantime = 1h
        bantime.increment = true
        bantime.rndtime = 5m
        bantime.maxtime = 5w
        bantime.factor = 2
        bantime.formula = ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)
        bantime.overalljails = true

        [sshd]
        enabled = true
        logpath = %s
        bantime.multipliers = 1 5 30 60 300 720 1440 2880

        [asterisk]
        enabled = true
        logpath = %s
        bantime.factor = 3
        bantime.overalljails = false
        """ % (ws.log("auth.log"), ws.log("asterisk/messages")))


@scenario("backend-systemd",
          "backend = systemd with journalmatch (logpath then ignored), next to a polling jail",
          expect_jails=["sshd", "asterisk", "recidive"],
          expect_text=["'systemd'", "addjournalmatch"])
def _backend_systemd(ws):
    ws.write("jail.local", """
        [sshd]
        enabled = true
        backend = systemd
        journalmatch = _SYSTEMD_UNIT=ssh.service + _COMM=sshd

        [asterisk]
        enabled = true
        backend = systemd[journalflags=1]
        journalmatch = _SYSTEMD_UNIT=asterisk.service
        logpath = /nonexistent/asterisk/messages

        [recidive]
        enabled = true
        backend = polling
        logpath = %s
        """ % ws.log("fail2ban.log"))


@scenario("logpath-globs",
          "logpath globs matching several files, ' tail', several lines, a glob matching nothing",
          expect_jails=["sshd", "asterisk", "freeswitch"], expect_text=["'tail'", "messages.1"])
def _logpath_globs(ws):
    for name in ("messages", "messages.1", "messages.2", "full", "security"):
        ws.log("asterisk/" + name)
    ws.log("auth.log")
    ws.log("auth2.log")
    ws.log("freeswitch/freeswitch.log")
    ws.write("jail.local", """
        [sshd]
        enabled = true
        logpath = {logs}/auth*.log

        [asterisk]
        enabled = true
        logpath = {logs}/asterisk/messages* tail
                  {logs}/asterisk/security
                  {logs}/asterisk/full head

        [freeswitch]
        enabled = true
        logpath = {logs}/nomatch/*.log
                  {logs}/freeswitch/*.log tail
        """.format(logs=ws.logs))


@scenario("known-default-refs",
          "%(known/...)s and %(default/...)s references in jail and filter overrides",
          expect_jails=["sshd", "asterisk", "pbx-sip"],
          expect_text=["2222", "Bad protocol version identification"])
def _known_default_refs(ws):
    ws.write("jail.local", """
        [DEFAULT]
        bantime  = 30m
        maxretry = 4
        pbx_logdir = %s

        [sshd]
        enabled  = true
        port     = %%(known/port)s,2222
        logpath  = %s
        maxretry = %%(default/maxretry)s

        [asterisk]
        enabled  = true
        logpath  = %s
        bantime  = %%(known/bantime)s
        findtime = %%(default/bantime)s
        maxretry = %%(known/maxretry)s

        [pbx-sip]
        enabled  = true
        filter   = asterisk
        port     = %%(default/port)s
        logpath  = %%(pbx_logdir)s/messages
        """ % (os.path.join(ws.logs, "asterisk"), ws.log("auth.log"), ws.log("asterisk/messages")))
    ws.write("filter.d/sshd.local", r"""
        [Definition]
        failregex = %(known/failregex)s
                    ^Bad protocol version identification '.*' from <HOST>
        """)


@scenario("action-init-family-inet6",
          "action.d/iptables.local with [Init] and [Init?family=inet6] overrides, "
          "plus jail action options",
          expect_jails=["sshd", "asterisk"],
          expect_text=["blocktype?family=inet6", "icmp-host-prohibited"])
def _action_init_family(ws):
    ws.write("action.d/iptables.local", """
        [Init]
        blocktype = REJECT --reject-with icmp-host-prohibited

        [Init?family=inet6]
        blocktype = DROP
        lockingopt = -w 5
        """)
    ws.write("jail.local", """
        [sshd]
        enabled = true
        logpath = %s
        action  = iptables-multiport[name=SSH, port="ssh,2222", blocktype=DROP, returntype=RETURN]

        [asterisk]
        enabled = true
        logpath = %s
        action  = iptables-allports[name=SIP, protocol=all, chain=INPUT, lockingopt="-w 10"]
        """ % (ws.log("auth.log"), ws.log("asterisk/messages")))


@scenario("invalid-action-options",
          "a '?family=' key in jail action options is not valid syntax: "
          "fail2ban prints a config-error",
          expect_jails=["sshd"], expect_text=["config-error", "unexpected option syntax"])
def _invalid_action_options(ws):
    ws.write("jail.local", """
        [sshd]
        enabled = true
        logpath = %s

        [asterisk]
        enabled = true
        logpath = %s
        action  = iptables-multiport[name=SIP, port="5060,5061", blocktype?family=inet6="DROP"]
        """ % (ws.log("auth.log"), ws.log("asterisk/messages")))


@scenario("missing-filter",
          "a jail whose filter does not exist: fail2ban prints a config-error command",
          expect_jails=["sshd", "asterisk"], expect_text=["config-error", "does-not-exist"])
def _missing_filter(ws):
    ws.write("jail.local", """
        [sip-scanners]
        enabled = true
        filter  = does-not-exist
        port    = 5060
        logpath = %s

        [asterisk]
        enabled = true
        logpath = %s
        """ % (ws.log("scanners.log"), ws.log("asterisk/messages")))


@scenario("duplicate-section", "jail.local defines [sshd] twice: fail2ban refuses the whole tree",
          expect_failure=True)
def _duplicate_section(ws):
    ws.write("jail.local", """
        [sshd]
        enabled = true

        [asterisk]
        enabled = true

        [sshd]
        port = 2222
        """)


@scenario("syntax-error",
          "jail.d/pbx.local has a line that is no 'name = value': fail2ban refuses the tree",
          expect_failure=True)
def _syntax_error(ws):
    ws.write("jail.d/pbx.local", """
        [asterisk]
        enabled = true
        maxretry
        """)


# ---------------------------------------------------------------------------
# Running and parsing


class Unparsable:
    """A stdout line that is not a literal of the expected syntax."""

    def __init__(self, line, error):
        self.line = line
        self.error = error

    def __repr__(self):
        return "<unparsable: %r (%s)>" % (self.line, self.error)


def parse_stream(stdout, parse):
    commands = []
    for line in stdout.splitlines():
        if not line.strip():
            continue
        try:
            commands.append(parse(line))
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as e:
            commands.append(Unparsable(line, "%s: %s" % (type(e).__name__, e)))
    return commands


def parse_python_literal(line):
    return ast.literal_eval(line)


def parse_json(line):
    return json.loads(line)


def canonical(value):
    """A hashable form in which equal means equal value *and* type.

    Tuples count as lists: JSON cannot tell them apart, and the command
    stream does not rely on the difference.
    """
    if isinstance(value, Unparsable):
        return ("unparsable", value.line)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, str):
        return ("str", value)
    if value is None:
        return ("none",)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(canonical(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((canonical(k), canonical(v)) for k, v in value.items())))
    return ("other", repr(value))


def plain(value):
    """The value as fail2ban would print it (tuples as lists)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def render(command):
    """Lines for a diff: scalars inline, each element of a list argument on its own line."""
    if not isinstance(command, list) or not any(isinstance(x, list) for x in command):
        return [repr(plain(command))]
    lines = []
    text = "["
    for i, item in enumerate(command):
        sep = ", " if i else ""
        if isinstance(item, list):
            lines.append(text + sep + "[")
            lines.extend("    %r," % (plain(element),) for element in item)
            text = "]"
        else:
            text += sep + repr(plain(item))
    lines.append(text + "]")
    return lines


GLOBAL = "<global>"
CONFIG_ERRORS = "<config-error>"


def jail_names(commands):
    names = []
    for c in commands:
        if isinstance(c, list) and len(c) >= 2 and c[0] == "add" and isinstance(c[1], str):
            if c[1] not in names:
                names.append(c[1])
    return names


def section_of(command, jails):
    if not isinstance(command, list) or not command:
        return GLOBAL
    head = command[0]
    if head == "config-error":
        return CONFIG_ERRORS
    if len(command) >= 2 and isinstance(command[1], str) and command[1] in jails:
        if head in ("add", "start", "stop") or (head in ("set", "multi-set") and len(command) >= 3):
            return command[1]
    return GLOBAL


def split_sections(commands, jails):
    sections = {}
    for c in commands:
        sections.setdefault(section_of(c, jails), []).append(c)
    return sections


def run(argv, cwd):
    """Returns (exit code or None, stdout, stderr, failure text or None)."""
    try:
        p = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=TIMEOUT_SECONDS)
    except FileNotFoundError as e:
        return None, "", "", "cannot run %s: %s" % (argv[0], e.strerror)
    except PermissionError as e:
        return None, "", "", "cannot run %s: %s" % (argv[0], e.strerror)
    except subprocess.TimeoutExpired:
        return None, "", "", "%s timed out after %ds" % (argv[0], TIMEOUT_SECONDS)
    stdout = p.stdout.decode("utf-8", errors="replace")
    stderr = p.stderr.decode("utf-8", errors="replace")
    failure = None
    if p.returncode != 0:
        failure = "%s exited with status %d" % (os.path.basename(argv[0]), p.returncode)
    return p.returncode, stdout, stderr, failure


def tail(text, lines=8):
    kept = text.rstrip("\n").splitlines()[-lines:]
    return "\n".join("      | " + line for line in kept) if kept else "      (nothing)"


# ---------------------------------------------------------------------------
# Comparing


class Outcome:
    def __init__(self, name):
        self.name = name
        self.passed = False
        self.summary = ""
        self.details = []  # Lines printed under the summary.


MAX_DIFF_LINES_PER_JAIL = 60


def section_diff(name, expected, actual, max_hunks):
    exp_lines = [line for c in expected for line in render(c)]
    act_lines = [line for c in actual for line in render(c)]
    diff = list(difflib.unified_diff(exp_lines, act_lines,
                                     fromfile="fail2ban-client -d  [%s]" % name,
                                     tofile="bantam --dump  [%s]" % name, lineterm="", n=1))
    out, hunks = [], 0
    for i, line in enumerate(diff):
        if len(out) >= MAX_DIFF_LINES_PER_JAIL:
            out.append("... %d more diff line(s) in [%s]" % (len(diff) - i, name))
            break
        if line.startswith("@@"):
            hunks += 1
            if hunks > max_hunks:
                more = sum(1 for d in diff if d.startswith("@@")) - max_hunks
                out.append("... %d more differing hunk(s) in [%s]" % (more, name))
                break
        out.append(line)
    return out


def compare(outcome, expected, actual, max_hunks):
    """Fills OUTCOME from the two parsed streams; returns True if identical."""
    exp_keys = [canonical(c) for c in expected]
    act_keys = [canonical(c) for c in actual]
    jails = jail_names(expected)
    jails += [j for j in jail_names(actual) if j not in jails]
    exp_sections = split_sections(expected, set(jails))
    act_sections = split_sections(actual, set(jails))

    order = [GLOBAL] + jails + [CONFIG_ERRORS]
    same_jails = 0
    matched = 0
    differing = []
    for name in order:
        exp = exp_sections.get(name, [])
        act = act_sections.get(name, [])
        ek = [canonical(c) for c in exp]
        ak = [canonical(c) for c in act]
        matcher = difflib.SequenceMatcher(None, ek, ak, autojunk=False)
        matched += sum(block.size for block in matcher.get_matching_blocks())
        if ek == ak:
            if name in jails:
                same_jails += 1
            continue
        differing.append(name)
        if name in jails and name not in exp_sections:
            outcome.details.append(
                "  jail [%s]: printed by bantam only (%d commands)" % (name, len(act)))
        elif name in jails and name not in act_sections:
            outcome.details.append(
                "  jail [%s]: missing from bantam's output (%d commands)" % (name, len(exp)))
        elif max_hunks > 0:
            outcome.details.extend("  " + line for line in section_diff(name, exp, act, max_hunks))
    if differing and max_hunks <= 0:
        outcome.details.append("  differing: " + ", ".join("[%s]" % name for name in differing))

    identical = exp_keys == act_keys
    notes = []
    if GLOBAL in differing:
        notes.append("global settings differ")
    if CONFIG_ERRORS in differing:
        notes.append("config-error commands differ")
    if len(actual) != len(expected):
        notes.append("bantam printed %d commands" % len(actual))
    unparsable = sum(1 for c in actual if isinstance(c, Unparsable))
    if unparsable:
        notes.append("%d bantam line(s) are not JSON" % unparsable)
    if not identical and not differing:
        # Every section matches, so the jails or their commands are interleaved
        # differently; show the stream by command heads.
        notes.append("same commands in a different order")
        heads_e = [repr(plain(c[:3])) if isinstance(c, list) else repr(c) for c in expected]
        heads_a = [repr(plain(c[:3])) if isinstance(c, list) else repr(c) for c in actual]
        diff = list(difflib.unified_diff(heads_e, heads_a, fromfile="fail2ban-client -d (order)",
                                         tofile="bantam --dump (order)", lineterm="", n=1))
        outcome.details.extend("  " + line for line in diff[:40])
    outcome.summary = "%d/%d jails identical, %d/%d commands" % (
        same_jails, len(jails), min(matched, len(expected)), len(expected))
    if notes:
        outcome.summary += " (" + "; ".join(notes) + ")"
    return identical


def self_check(sc, stock_dir, expected, stdout):
    problems = []
    jails = jail_names(expected)
    wanted = sc.expect_jails(stock_dir) if callable(sc.expect_jails) else sc.expect_jails
    for jail in wanted:
        if jail not in jails:
            problems.append("fail2ban did not start jail [%s]" % jail)
    for text in sc.expect_text:
        if text not in stdout:
            problems.append("fail2ban's output lacks %r" % text)
    if any(isinstance(c, Unparsable) for c in expected):
        problems.append("fail2ban printed lines that are not Python literals")
    return problems


def judge_refusal(outcome, f2b_code, f2b_err, ban_code, ban_out, ban_err, ban_fail):
    if f2b_code in (0, None):
        outcome.summary = (
            "scenario is broken: fail2ban-client accepted the tree (status %s)" % f2b_code)
        outcome.details.append(tail(f2b_err))
        return outcome
    commands = [c for c in parse_stream(ban_out, parse_json) if not isinstance(c, Unparsable)]
    problems = []
    if ban_code is None:
        problems.append(ban_fail)
    elif ban_code != f2b_code:
        problems.append("bantam exited with status %d, fail2ban-client with %d" % (
            ban_code, f2b_code))
    if commands:
        problems.append("bantam printed %d command(s)" % len(commands))
    if problems:
        outcome.summary = "both should refuse the tree: " + "; ".join(problems)
        outcome.details.append("  fail2ban-client stderr:\n" + tail(f2b_err, 3))
        outcome.details.append("  bantam stderr:\n" + tail(ban_err, 3))
        return outcome
    outcome.summary = "both refuse the tree with status %d" % f2b_code
    outcome.passed = True
    return outcome


def run_scenario(sc, args, tmp_root):
    outcome = Outcome(sc.name)
    root = os.path.join(tmp_root, sc.name)
    os.makedirs(root)
    ws = Workspace(root, args.stock_dir)
    sc.setup(ws)

    f2b_code, f2b_out, f2b_err, f2b_fail = run([args.fail2ban_client, "-c", ws.conf, "-d"], root)
    ban_code, ban_out, ban_err, ban_fail = run([args.bantam, "-c", ws.conf, "--dump"], root)
    for name, text in (("fail2ban.out", f2b_out), ("fail2ban.err", f2b_err),
                       ("bantam.out", ban_out), ("bantam.err", ban_err)):
        with open(os.path.join(root, name), "w", encoding="utf-8") as f:
            f.write(text)

    if sc.expect_failure:
        return judge_refusal(outcome, f2b_code, f2b_err, ban_code, ban_out, ban_err, ban_fail)
    if f2b_fail:
        outcome.summary = "fail2ban-client failed: " + f2b_fail
        outcome.details.append(tail(f2b_err))
        return outcome
    expected = parse_stream(f2b_out, parse_python_literal)
    problems = self_check(sc, args.stock_dir, expected, f2b_out)
    if problems:
        outcome.summary = "scenario is broken: " + "; ".join(problems)
        outcome.details.append(tail(f2b_err))
        return outcome

    if ban_code is None:
        outcome.summary = "bantam failed: " + ban_fail
        return outcome
    actual = parse_stream(ban_out, parse_json)
    identical = compare(outcome, expected, actual, args.max_hunks)
    if ban_fail:
        outcome.summary += "; " + ban_fail
        outcome.details.append("  bantam stderr:\n" + tail(ban_err))
    outcome.passed = identical and not ban_fail
    return outcome


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bantam", required=True, help="the bantam program under test")
    parser.add_argument("--source-dir", help="repository root (accepted for ctest; unused)")
    parser.add_argument("--fail2ban-client", default="fail2ban-client", help="the oracle")
    parser.add_argument("--stock-dir", default=STOCK_DIR, help="stock tree to copy (read only)")
    parser.add_argument("--scenario", action="append", metavar="NAME",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    parser.add_argument("--max-hunks", type=int, default=3, metavar="N",
                        help="diff hunks shown per jail (default 3; 0: list differing jails)")
    args = parser.parse_args(argv)
    # The programs run inside each scenario's directory: pin relative paths
    # now (bare names are still looked up in PATH).
    for attr in ("bantam", "fail2ban_client", "stock_dir"):
        value = getattr(args, attr)
        if os.sep in value:
            setattr(args, attr, os.path.abspath(value))

    if args.list:
        for sc in SCENARIOS:
            print("%-28s %s" % (sc.name, sc.description))
        return 0
    selected = SCENARIOS
    if args.scenario:
        known = {sc.name: sc for sc in SCENARIOS}
        unknown = [n for n in args.scenario if n not in known]
        if unknown:
            parser.error("unknown scenario(s) %s; known: %s" % (
                ", ".join(unknown), ", ".join(known)))
        selected = [known[n] for n in args.scenario]

    if not os.path.isfile(os.path.join(args.stock_dir, "jail.conf")):
        print("FATAL: needs the stock fail2ban tree at %s (Debian package fail2ban)%s"
              % (args.stock_dir, SETUP))
        return 1
    _, version, _, failure = run([args.fail2ban_client, "--version"], os.getcwd())
    if failure:
        print("FATAL: the oracle is unusable: %s; needs %s (Debian package fail2ban)%s"
              % (failure, args.fail2ban_client, SETUP))
        return 1
    print("oracle: %s (%s); stock tree: %s; bantam: %s" % (
        args.fail2ban_client, version.strip(), args.stock_dir, args.bantam))

    tmp_root = tempfile.mkdtemp(prefix="bantam-dump-")
    outcomes = []
    try:
        for sc in selected:
            try:
                outcome = run_scenario(sc, args, tmp_root)
            except Exception:  # A bug in a scenario must not hide the others.
                outcome = Outcome(sc.name)
                outcome.summary = "harness error"
                outcome.details = traceback.format_exc().rstrip("\n").splitlines()
            outcomes.append(outcome)
            print("%s %s: %s" % ("PASS" if outcome.passed else "FAIL", sc.name, outcome.summary))
            for line in outcome.details:
                print(line)
            sys.stdout.flush()
    finally:
        if args.keep:
            print("kept scenario directories under %s" % tmp_root)
        else:
            shutil.rmtree(tmp_root, ignore_errors=True)

    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
