#!/usr/bin/env python3
"""Conformance: bantam-regex must find the failures fail2ban-regex finds, line for line.

Differential test on generated logs (bench/gen_asterisk_log.py and
bench/gen_sshd_log.py, fixed seeds): for each case, the same log and filter
go through

  bantam-regex --json --raw --now NOW -c /etc/fail2ban LOG FILTER
  /usr/bin/python3 fail2ban_regex_json.py   (same arguments)

the second being fail2ban-regex's own Fail2banRegex class driven line by line
(fail2ban-regex itself prints no line numbers). Both run under the same fixed
time zone. The failures must be identical: same lines, same ids, same times
(exact float equality) and the same fail dict (captured groups, users as a
set, matched lines).

Two self-checks keep the oracle honest: for Asterisk logs the failures must
be exactly the generator's attack lines (--truth), and the real
`fail2ban-regex` command must report as many matched lines as the oracle
found failures.

Exit status: 0 if every case agrees, 1 otherwise, 2 on usage errors. fail2ban
not installed is a failure, not a skip.
"""

import argparse
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
F2B_PYTHON = "/usr/bin/python3"
ORACLE = os.path.join(HERE, "fail2ban_regex_json.py")
CONFIG_DIR = "/etc/fail2ban"
# Ends the sentence naming a missing package.
SETUP = "; set up with packaging/setup.sh"
TZ = "CET-01CEST-02,M3.5.0,M10.5.0"
TIMEOUT_SECONDS = 300

NOW_NOV_2026 = 1794268800   # 2026-11-10 00:00:00 UTC: after the generated weeks
NOW_JAN_2027 = 1798848000   # 2027-01-02 00:00:00 UTC: "Nov 1" means last year


class Case:
    def __init__(self, name, generator, gen_args, filter_spec, now, truth=False, cli_count=False):
        self.name = name
        self.generator = generator
        self.gen_args = gen_args
        self.filter_spec = filter_spec
        self.now = now
        self.truth = truth          # generator writes the attack lines: oracle must equal them
        self.cli_count = cli_count  # fail2ban-regex's "matched" must equal the failure count


ASTERISK_MIX = ["--lines", "20000", "--seed", "7", "--date-style", "mix"]
ASTERISK_SHORT = ["--lines", "5000", "--seed", "8", "--date-style", "short", "--sources", "300"]
SSHD_MIX = ["--lines", "20000", "--seed", "7", "--date-style", "mix"]

CASES = [
    Case("asterisk", "gen_asterisk_log.py", ASTERISK_MIX, "asterisk", NOW_NOV_2026,
         truth=True, cli_count=True),
    Case("asterisk-year-rollover", "gen_asterisk_log.py", ASTERISK_SHORT, "asterisk",
         NOW_JAN_2027, truth=True, cli_count=True),
    Case("sshd", "gen_sshd_log.py", SSHD_MIX, "sshd", NOW_NOV_2026),
    Case("sshd-ddos", "gen_sshd_log.py", SSHD_MIX, "sshd[mode=ddos]", NOW_NOV_2026),
    Case("sshd-extra", "gen_sshd_log.py", SSHD_MIX, "sshd[mode=extra]", NOW_NOV_2026),
    Case("sshd-aggressive", "gen_sshd_log.py", SSHD_MIX, "sshd[mode=aggressive]", NOW_NOV_2026),
]


def run(cmd, env=None, timeout=TIMEOUT_SECONDS):
    """(returncode, stdout, stderr) or raises RuntimeError with the reason."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError("timed out after %d s: %s" % (timeout, shell_join(cmd)))
    except OSError as e:
        raise RuntimeError("cannot run %s: %s" % (cmd[0], e))
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def shell_join(cmd):
    return " ".join(shlex.quote(c) for c in cmd)


def tail(text, n=5):
    lines = text.strip().splitlines()
    return "\n      ".join(lines[-n:]) if lines else "(empty)"


def run_json(cmd, env):
    code, out, err = run(cmd, env)
    if code != 0:
        raise RuntimeError("exit status %d: %s\n      stderr: %s" % (code, shell_join(cmd), tail(err)))
    failures = []
    for n, line in enumerate(out.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise RuntimeError("%s: stdout line %d is not JSON (%s): %r" % (cmd[0], n, e, line[:200]))
        if not isinstance(obj, dict) or "lineno" not in obj:
            raise RuntimeError("%s: stdout line %d is not a failure object: %r" % (cmd[0], n, line[:200]))
        failures.append(obj)
    return failures


def norm_fail(fail):
    out = dict(fail or {})
    if isinstance(out.get("users"), list):
        out["users"] = sorted(out["users"], key=repr)
    return out


def describe_diff(a, b):
    keys = sorted(set(a) | set(b))
    parts = []
    for k in keys:
        if a.get(k) != b.get(k):
            parts.append("%s: fail2ban %s, bantam %s" % (
                k, json.dumps(a.get(k)) if k in a else "(absent)",
                json.dumps(b.get(k)) if k in b else "(absent)"))
    return "; ".join(parts)


def compare(expected, actual, compare_fail):
    """Differences as (category, lineno, message) in line order."""
    def by_line(fs):
        d = {}
        for f in fs:
            d.setdefault(f.get("lineno"), []).append(f)
        return d
    exp, act = by_line(expected), by_line(actual)
    diffs = []
    for lineno in sorted(set(exp) | set(act), key=lambda x: (not isinstance(x, int), x if isinstance(x, int) else 0)):
        e, a = exp.get(lineno, []), act.get(lineno, [])
        if not a:
            diffs.append(("missing", lineno, "fail2ban: %s; bantam: nothing" % summarize(e)))
            continue
        if not e:
            diffs.append(("extra", lineno, "fail2ban: nothing; bantam: %s" % summarize(a)))
            continue
        if len(e) != len(a):
            diffs.append(("count", lineno, "fail2ban %d failure(s): %s; bantam %d: %s" % (
                len(e), summarize(e), len(a), summarize(a))))
            continue
        for fe, fa in zip(e, a):
            if fe.get("id") != fa.get("id"):
                diffs.append(("id", lineno, "fail2ban %r, bantam %r" % (fe.get("id"), fa.get("id"))))
            if fe.get("time") != fa.get("time") or isinstance(fa.get("time"), bool):
                te, ta = fe.get("time"), fa.get("time")
                delta = (" (bantam - fail2ban = %+.6f s)" % (ta - te)) \
                    if isinstance(te, (int, float)) and isinstance(ta, (int, float)) else ""
                diffs.append(("time", lineno, "fail2ban %r, bantam %r%s" % (te, ta, delta)))
            if compare_fail:
                ne, na = norm_fail(fe.get("fail")), norm_fail(fa.get("fail"))
                if ne != na:
                    diffs.append(("fail-dict", lineno, describe_diff(ne, na)))
    return diffs


def summarize(fs):
    return ", ".join("%s@%r" % (f.get("id"), f.get("time")) for f in fs)


def check_truth(case, failures, truth_path):
    problems = []
    truth = {}
    with open(truth_path) as f:
        for line in f:
            n, addr = line.split()
            truth[int(n)] = addr
    got = {}
    for fl in failures:
        got.setdefault(fl["lineno"], []).append(fl["id"])
    for n, addr in sorted(truth.items()):
        ids = got.get(n)
        if ids is None:
            problems.append("line %d: attack from %s not found" % (n, addr))
        elif len(ids) != 1 or ipaddress.ip_address(ids[0]) != ipaddress.ip_address(addr):
            problems.append("line %d: attack from %s, found %r" % (n, addr, ids))
    for n in sorted(set(got) - set(truth)):
        problems.append("line %d: benign line found as failure %r" % (n, got[n]))
    return problems


def cli_matched(log, spec, env):
    cmd = ["fail2ban-regex", "-c", CONFIG_DIR, log, spec]
    code, out, err = run(cmd, env)
    if code != 0:
        raise RuntimeError("exit status %d: %s\n      %s" % (code, shell_join(cmd), tail(out + err)))
    m = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", out, re.M)
    if not m:
        raise RuntimeError("no 'Lines:' summary in fail2ban-regex output")
    return int(m.group(3))


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bantam", help="the bantam program; bantam-regex is beside it")
    parser.add_argument("--bantam-regex", help="the bantam-regex program under test")
    parser.add_argument("--source-dir", help="repository root (default: from this script)")
    parser.add_argument("--case", action="append", metavar="NAME", help="run only this case")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--no-fail-dict", action="store_true",
                        help="compare lines, ids and times only, not the fail dicts")
    parser.add_argument("--oracle-selftest", action="store_true",
                        help="run the oracle as the implementation under test")
    parser.add_argument("--max-diffs", type=int, default=8, metavar="N",
                        help="differences shown per category (default 8; 0: all)")
    parser.add_argument("--keep", action="store_true", help="keep the generated logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="show command lines")
    args = parser.parse_args(argv)

    if args.list:
        for c in CASES:
            print("%-24s %s %s | %s" % (c.name, c.generator, " ".join(c.gen_args), c.filter_spec))
        return 0
    cases = CASES
    if args.case:
        known = dict((c.name, c) for c in CASES)
        unknown = [n for n in args.case if n not in known]
        if unknown:
            parser.error("unknown case(s) %s; known: %s" % (", ".join(unknown), ", ".join(known)))
        cases = [known[n] for n in args.case]

    source_dir = os.path.abspath(args.source_dir) if args.source_dir else \
        os.path.dirname(os.path.dirname(HERE))
    bench_dir = os.path.join(source_dir, "bench")

    if args.oracle_selftest:
        under_test = [F2B_PYTHON, ORACLE]
    else:
        program = args.bantam_regex
        if not program:
            if not args.bantam:
                parser.error("give --bantam-regex PATH or --bantam PATH (or --oracle-selftest)")
            program = os.path.join(os.path.dirname(os.path.abspath(args.bantam)), "bantam-regex")
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            print("FATAL: bantam-regex not found or not executable: %s" % program)
            return 1
        under_test = [os.path.abspath(program)]

    if not os.path.isdir(os.path.join(CONFIG_DIR, "filter.d")):
        print("FATAL: needs %s/filter.d (Debian package fail2ban)%s" % (CONFIG_DIR, SETUP))
        return 1
    if not shutil.which("fail2ban-regex"):
        print("FATAL: needs fail2ban-regex in PATH (Debian package fail2ban)%s" % SETUP)
        return 1
    try:
        code, _, err = run([F2B_PYTHON, "-c", "import fail2ban"])
    except RuntimeError as e:
        code, err = 1, str(e)
    if code != 0:
        print("FATAL: needs %s -c 'import fail2ban' (Debian package fail2ban)%s\n%s"
              % (F2B_PYTHON, SETUP, tail(err, 2)))
        return 1

    env = dict(os.environ)
    env["TZ"] = TZ
    env.setdefault("LC_ALL", "C.UTF-8")
    print("under test: %s; oracle: %s %s; TZ=%s" % (shell_join(under_test), F2B_PYTHON, ORACLE, TZ))

    tmp = tempfile.mkdtemp(prefix="bantam-regex-diff-")
    logs = {}
    failed = 0
    try:
        for case in cases:
            print("%s: %s | %s" % (case.name, " ".join([case.generator] + case.gen_args),
                                   case.filter_spec))
            problems = []
            try:
                key = (case.generator, tuple(case.gen_args))
                if key not in logs:
                    n = len(logs)
                    log = os.path.join(tmp, "log%d.log" % n)
                    truth = os.path.join(tmp, "log%d.truth" % n)
                    gen = [sys.executable, os.path.join(bench_dir, case.generator)] + case.gen_args \
                        + ["--out", log] + (["--truth", truth] if case.truth else [])
                    code, _, err = run(gen)
                    if code != 0:
                        raise RuntimeError("generator failed: %s\n      %s" % (shell_join(gen), tail(err)))
                    logs[key] = (log, truth)
                log, truth = logs[key]
                common = ["--json", "--raw", "--now", str(case.now), "-c", CONFIG_DIR, log,
                          case.filter_spec]
                if args.verbose:
                    print("  $ TZ=%s %s" % (shlex.quote(TZ), shell_join(under_test + common)))
                expected = run_json([F2B_PYTHON, ORACLE] + common, env)
                # Self-checks of the oracle first: a broken reference proves nothing.
                if case.truth:
                    tp = check_truth(case, expected, truth)
                    if tp:
                        problems.append("ORACLE: generator's attack lines and fail2ban disagree "
                                        "(%d lines):" % len(tp))
                        problems += ["  " + p for p in tp[:args.max_diffs or None]]
                if case.cli_count:
                    m = cli_matched(log, case.filter_spec, env)
                    if m != len(expected):
                        problems.append("ORACLE: fail2ban-regex reports %d matched lines, the "
                                        "oracle %d failures" % (m, len(expected)))
                actual = run_json(under_test + common, env)
            except RuntimeError as e:
                problems.append("error: %s" % e)
                expected = actual = None
            if expected is not None and actual is not None:
                diffs = compare(expected, actual, not args.no_fail_dict)
                lines = None
                if diffs:
                    with open(log, encoding="utf-8", errors="replace") as f:
                        lines = f.read().split("\n")
                    cats = {}
                    for cat, lineno, msg in diffs:
                        cats.setdefault(cat, []).append((lineno, msg))
                    problems.append("%d difference(s): %s" % (len(diffs), ", ".join(
                        "%s %d" % (c, len(v)) for c, v in sorted(cats.items()))))
                    for cat, items in sorted(cats.items()):
                        shown = items if not args.max_diffs else items[:args.max_diffs]
                        for lineno, msg in shown:
                            text = lines[lineno - 1] if isinstance(lineno, int) and \
                                0 < lineno <= len(lines) else "?"
                            problems.append("  [%s] line %s: %s" % (cat, lineno, msg))
                            problems.append("      %s" % text)
                        if len(shown) < len(items):
                            problems.append("  [%s] ... %d more" % (cat, len(items) - len(shown)))
                summary = "%d failures from fail2ban, %d from bantam-regex" % (
                    len(expected), len(actual))
            else:
                summary = "not compared"
            if problems:
                failed += 1
                print("FAIL %s: %s" % (case.name, summary))
                for p in problems:
                    print("  " + p)
            else:
                print("PASS %s: %s, identical" % (case.name, summary))
            sys.stdout.flush()
    finally:
        if args.keep:
            print("kept generated logs under %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print("%d passed, %d failed" % (len(cases) - failed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
